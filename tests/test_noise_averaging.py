"""AMSGD(noise_averaging=rho): beta solves the running average of the block's recent models,
each scaled to unit size (docs/variants.md). The trajectories are checked against an
independent implementation of those formulas in plain Python floats; the other paths, the
checkpoints and the distributed runs take the option through the shared cases of
tests/helpers.py (``amsgd_noise_averaging``)."""

import copy
import math

import pytest
import torch
from helpers import make_params, quadratic_grads, run

import adamem
from adamem.beta import averaged_select

LAMBD, CAP, RHO = 0.1, 0.9, 0.9
# Warm-up from a small lr, a step at lr 0, a change, and a decay to 0.
SCHEDULE = [0.001, 0.01, 0.05, 0.05, 0.0, 0.08, 0.05, 0.05, 0.03, 0.01, 0.001, 0.0]


def dot(u, v) -> float:
    return math.fsum(float(x) * float(y) for x, y in zip(u.flatten(), v.flatten()))


def clip_select(a: float, b: float) -> float:
    """ALGORITHMS.md §7 for finite a, b."""
    if b > 0:
        return min(max(a / b, 0.0), CAP)
    return CAP if a > 0 else 0.0


def independent_run(values, grads_of, blocks, lrs, rho=RHO):
    """AM-SGD (ALGORITHMS.md §3, the unscaled pair of docs/variants.md) with the averaged
    model: ``values`` the starting tensors (float64), ``grads_of(xs, step)`` the gradients,
    ``blocks`` lists of tensor indices, one per block. Returns the betas per step and the
    final tensors."""
    xs = [v.clone() for v in values]
    ds: list = [None] * len(xs)
    prev_lr = None
    average = {i: (0.0, 0.0) for i in range(len(blocks))}
    history = []
    for lr in lrs:
        gs = grads_of(xs, len(history))
        if prev_lr is None:
            ds = [g.clone() for g in gs]
            xs = [x - lr * g for x, g in zip(xs, gs)]
            prev_lr = lr
            history.append(None)
            continue
        betas = [0.0] * len(xs)
        for index, block in enumerate(blocks):
            a = b = 0.0
            for i in block:
                g, d = gs[i], ds[i]
                a += prev_lr * dot(g, d) - lr / (1 + LAMBD) * dot(d - g, g + LAMBD * d)
                b += lr / (1 + LAMBD) * dot(d - g, d - g)
            size = abs(a) + b
            unit = (a / size, b / size) if size > 0 else (0.0, 0.0)
            slope, curvature = (
                rho * old + (1 - rho) * new for old, new in zip(average[index], unit)
            )
            average[index] = (slope, curvature)
            for i in block:
                betas[i] = clip_select(slope, curvature)
        for i, (g, beta) in enumerate(zip(gs, betas)):
            ds[i] = ((beta + LAMBD) * ds[i] + (1 - beta) * g) / (1 + LAMBD)
            xs[i] = xs[i] - lr * ds[i]
        prev_lr = lr
        history.append(betas)
    return history, xs


def noisy_grads(xs, step):
    generator = torch.Generator().manual_seed(500 + step)
    return [
        (1.0 + i) * x + 0.5 * torch.randn(x.shape, generator=generator, dtype=torch.float64)
        for i, x in enumerate(xs)
    ]


@pytest.mark.parametrize("scope", ["tensor", "group", "global"])
def test_trajectory_matches_an_independent_implementation(scope):
    params = make_params(torch.float64)
    start = [p.detach().clone() for p in params]
    blocks = [[i] for i in range(len(params))] if scope == "tensor" else [list(range(len(params)))]
    expected_betas, expected_xs = independent_run(start, noisy_grads, blocks, SCHEDULE)
    optimizer = adamem.AMSGD(
        params, lr=SCHEDULE[0], scope=scope, noise_averaging=RHO, foreach=False, fused=False
    )
    for step, lr in enumerate(SCHEDULE):
        for p, g in zip(params, noisy_grads([p.detach() for p in params], step)):
            p.grad = g
        optimizer.param_groups[0]["lr"] = lr
        optimizer.step()
        if expected_betas[step] is not None:
            got = [float(optimizer.state[p]["beta"]) for p in params]
            assert got == pytest.approx(expected_betas[step], abs=1e-12), step
    for p, x in zip(params, expected_xs):
        torch.testing.assert_close(p.detach(), x, rtol=0, atol=1e-12)
    # The average changed beta: with factor 0 (the paper's model) the betas differ.
    paper_betas, _ = independent_run(start, noisy_grads, blocks, SCHEDULE, rho=0.0)
    differences = [
        abs(x - y)
        for ours, papers in zip(expected_betas[2:], paper_betas[2:])
        for x, y in zip(ours, papers)
    ]
    assert max(differences) > 0.05


def test_first_solved_beta_is_the_papers_and_factor_zero_is_the_paper():
    def betas(**options):
        params = make_params(torch.float64)
        optimizer = adamem.AMSGD(params, lr=0.05, **options)
        out = []
        for step in range(8):
            quadratic_grads(params, step)
            optimizer.step()
            out.append([float(optimizer.state[p]["beta"]) for p in params])
        return out

    paper, averaged, no_memory = betas(), betas(noise_averaging=0.9), betas(noise_averaging=0.0)
    assert averaged[1] == pytest.approx(paper[1], abs=1e-12)  # the average starts at 0
    assert max(abs(x - y) for x, y in zip(averaged[4], paper[4])) > 1e-3
    for ours, papers in zip(no_memory, paper):
        assert ours == pytest.approx(papers, abs=1e-12)


def test_averaged_select_scaling_and_non_finite_pairs():
    zero = torch.zeros(4, dtype=torch.float64)
    a = torch.tensor([3.0, 1e308, -2.0, 0.0], dtype=torch.float64)
    b = torch.tensor([1.0, 1e308, 0.0, 0.0], dtype=torch.float64)
    beta, slope, curvature = averaged_select(a, b, zero, zero, 0.9, 0.9)
    # Scaled to |a| + b = 1 (no overflow at 1e308), weight 1 - 0.9; a zero pair enters as 0.
    expected_slope = torch.tensor([0.075, 0.05, -0.1, 0.0], dtype=torch.float64)
    expected_curvature = torch.tensor([0.025, 0.05, 0.0, 0.0], dtype=torch.float64)
    torch.testing.assert_close(slope, expected_slope, rtol=1e-15, atol=0)
    torch.testing.assert_close(curvature, expected_curvature, rtol=1e-15, atol=0)
    assert beta.tolist() == pytest.approx([0.9, 0.9, 0.0, 0.0])

    old_slope = torch.tensor([0.3, 0.3, 0.3, 0.3], dtype=torch.float64)
    old_curvature = torch.tensor([0.1, 0.1, 0.1, 0.1], dtype=torch.float64)
    nan, inf = math.nan, math.inf
    a = torch.tensor([nan, inf, -inf, 1.0], dtype=torch.float64)
    b = torch.tensor([1.0, 1.0, 1.0, inf], dtype=torch.float64)
    beta, slope, curvature = averaged_select(a, b, old_slope, old_curvature, 0.9, 0.9)
    # Not finite: the average is kept, and beta is the current model's (§7: NaN 0, a/b).
    assert torch.equal(slope, old_slope) and torch.equal(curvature, old_curvature)
    assert beta.tolist() == [0.0, 0.9, 0.0, 0.0]


def test_block_members_keep_one_pair_when_a_tensor_skips_steps():
    params = make_params(torch.float32)
    optimizer = adamem.AMSGD(params, lr=0.05, scope="group", noise_averaging=0.9)
    run(optimizer, params, steps=9, skip_every=3)
    pairs = {
        (
            float(optimizer.state[p]["averaged_slope"]),
            float(optimizer.state[p]["averaged_curvature"]),
        )
        for p in params
    }
    assert len(pairs) == 1 and pairs != {(0.0, 0.0)}


def test_turned_on_from_a_checkpoint_starts_afresh():
    params = make_params(torch.float64)
    plain = adamem.AMSGD(params, lr=0.05)
    run(plain, params, steps=4)
    resumed_params = [torch.nn.Parameter(p.detach().clone()) for p in params]
    averaged = adamem.AMSGD(resumed_params, lr=0.05)
    averaged.load_state_dict(copy.deepcopy(plain.state_dict()))  # load shares tensors
    # As for any setting, the checkpoint's groups win on load; turn it on afterwards.
    averaged.param_groups[0]["noise_averaging"] = 0.9
    quadratic_grads(params, 4)
    quadratic_grads(resumed_params, 4)
    plain.step()
    averaged.step()
    # A fresh average's first beta is the current model's.
    for p, q in zip(params, resumed_params):
        assert float(averaged.state[q]["beta"]) == pytest.approx(float(plain.state[p]["beta"]))
    saved = averaged.state_dict()["state"]
    assert all({"averaged_slope", "averaged_curvature"} <= saved[i].keys() for i in saved)


@pytest.mark.parametrize("value", [1.0, -0.1, math.nan, True, "0.9"])
def test_invalid_factor_is_refused(value):
    with pytest.raises((ValueError, TypeError), match="noise_averaging"):
        adamem.AMSGD(make_params(), lr=0.1, noise_averaging=value)


def test_global_groups_must_share_the_factor():
    params = make_params()
    groups = [
        {"params": params[:2]},
        {"params": params[2:], "noise_averaging": None},
    ]
    with pytest.raises(ValueError, match="noise_averaging"):
        adamem.AMSGD(groups, lr=0.1, scope="global", noise_averaging=0.9)
