"""AM-AdamW's ``scale_invariant=True``: the pull measured in the metric ``P`` (docs/variants.md).

The closed form against independent solvers is in test_proximal_model.py, the equality of
every path (foreach, C, Triton) with the reference in the registry's cases. Here: the
50-digit vectors of data/make_scale_invariant_vectors.py, the invariance to the loss scale
that the option exists for (and its absence without it), the effective momentum, and the
first step against torch's Adam.
"""

import pytest
import torch
from helpers import (
    FUSED,
    REFERENCE,
    SCALE_INVARIANT_VECTORS,
    check_adamw_step_vector,
    check_adamw_trajectory_vector,
    vectors_of,
)

import adamem

TOL = dict(rtol=0, atol=1e-12)
PATHS = {"reference": REFERENCE, "foreach": dict(foreach=True, fused=False), "fused": FUSED}


@pytest.mark.parametrize(
    "vector", vectors_of("adamw_step", SCALE_INVARIANT_VECTORS), ids=lambda v: v["name"]
)
def test_step_vectors(vector):
    check_adamw_step_vector(vector, scale_invariant=True)


def test_vectors_cover_every_regime_of_beta():
    betas = [v["expected"]["beta"] for v in vectors_of("adamw_step", SCALE_INVARIANT_VECTORS)]
    cap = 0.89
    assert 0.0 in betas and cap in betas and any(0 < beta < cap for beta in betas)
    for vector in vectors_of("adamw_traj", SCALE_INVARIANT_VECTORS):
        solved = [beta for row in vector["expected"]["betas"][1:] for beta in row]
        assert any(0 < beta < cap for beta in solved)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    "vector", vectors_of("adamw_traj", SCALE_INVARIANT_VECTORS), ids=lambda v: v["name"]
)
def test_trajectory_vectors(vector, path):
    check_adamw_trajectory_vector(vector, scale_invariant=True, **PATHS[path])


LOSS_SCALES = (1e-3, 1.0, 1e3, 1e5)


def scaled_loss_run(scale: float, *, scale_invariant: bool, path: str, steps: int = 30):
    """Parameters of a 5-8-1 tanh network after ``steps`` full-batch steps on ``scale`` times
    a least-squares loss, and the betas of the last step. ``eps`` is scaled with the loss:
    AdamW's own trajectory is invariant to the scale only up to ``eps``, and this removes
    that part, so what remains is the optimizer's."""
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(64, 5, generator=generator, dtype=torch.float64)
    targets = inputs @ torch.randn(5, 1, generator=generator, dtype=torch.float64)
    shapes = [(8, 5), (8,), (1, 8), (1,)]
    params = [
        torch.nn.Parameter(0.5 * torch.randn(shape, generator=generator, dtype=torch.float64))
        for shape in shapes
    ]
    optimizer = adamem.AMAdamW(
        params,
        lr=0.03,
        eps=1e-8 * scale,
        weight_decay=0.0,
        lambd=0.5,
        scale_invariant=scale_invariant,
        **PATHS[path],
    )
    for _ in range(steps):
        optimizer.zero_grad()
        hidden = torch.tanh(inputs @ params[0].T + params[1])
        loss = scale * (hidden @ params[2].T + params[3] - targets).pow(2).mean()
        loss.backward()
        optimizer.step()
    betas = torch.stack([optimizer.state[p]["beta"] for p in params])
    return torch.cat([p.detach().flatten() for p in params]), betas


@pytest.mark.parametrize("path", ["reference", "fused"])
def test_trajectory_does_not_depend_on_the_loss_scale(path):
    expected, expected_betas = scaled_loss_run(1.0, scale_invariant=True, path=path)
    assert ((expected_betas > 0) & (expected_betas < 0.89)).any()  # solved, not only capped
    for scale in LOSS_SCALES:
        params, betas = scaled_loss_run(scale, scale_invariant=True, path=path)
        # Rounding only: the runs agree to ~1e-15 (float64).
        torch.testing.assert_close(params, expected, rtol=0, atol=1e-12)
        torch.testing.assert_close(betas, expected_betas, rtol=0, atol=1e-12)


def test_default_trajectory_depends_on_the_loss_scale():
    """The paper's pull, lambd P, grows with the gradients: the same run, scaled, differs."""
    expected, _ = scaled_loss_run(1.0, scale_invariant=False, path="reference")
    params, betas = scaled_loss_run(1e3, scale_invariant=False, path="reference")
    assert (params - expected).abs().max() > 1e-2
    # The memory barely moves once lambd P >> 1; beta, solved for that model, sits at the cap.
    assert (betas == 0.89).all()


@pytest.mark.parametrize("path", PATHS)
def test_effective_momentum_is_the_weight_of_the_old_memory(path):
    """d' = m d + (1 - m) g with m = effective_momentum(beta) for every coordinate."""
    generator = torch.Generator().manual_seed(1)
    param = torch.nn.Parameter(torch.randn(6, generator=generator, dtype=torch.float64))
    optimizer = adamem.AMAdamW([param], lr=0.05, lambd=0.7, scale_invariant=True, **PATHS[path])
    for _ in range(3):
        param.grad = torch.randn(6, generator=generator, dtype=torch.float64)
        memory = optimizer.state[param]["exp_avg"].clone() if optimizer.state else 0.0
        optimizer.step()
        state, group = optimizer.state[param], optimizer.param_groups[0]
        momentum = optimizer.effective_momentum(state["beta"], group)
        torch.testing.assert_close(
            state["exp_avg"], momentum * memory + (1 - momentum) * param.grad, **TOL
        )
    assert 0.7 / 1.7 <= float(momentum) <= (0.89 + 0.7) / 1.7


@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("path", PATHS)
def test_first_step_is_adams_divided_by_one_plus_lambd(path, nesterov):
    """Adam's first step shrunk: d_1 = w g with w = (1 - beta1_max) / (1 + lambd), over
    P = (1 - beta1_max) (|g| + eps), where Adam steps g / (|g| + eps)."""
    generator = torch.Generator().manual_seed(2)
    start = torch.randn(7, generator=generator, dtype=torch.float64)
    grad = torch.randn(7, generator=generator, dtype=torch.float64)
    adam_param, am_param = torch.nn.Parameter(start.clone()), torch.nn.Parameter(start.clone())
    adam = torch.optim.Adam([adam_param], lr=0.01)
    lambd = 0.3
    am = adamem.AMAdamW(
        [am_param],
        lr=0.01,
        weight_decay=0.0,
        lambd=lambd,
        nesterov=nesterov,
        scale_invariant=True,
        **PATHS[path],
    )
    for param, optimizer in ((adam_param, adam), (am_param, am)):
        param.grad = grad.clone()
        optimizer.step()
    bias_factor = 1 - 0.89
    weight = (1 - 0.89) / (1 + lambd)
    # In units of g: d_1, or with the look-ahead d_1 + w (bias_factor g - d_1).
    direction = weight + weight * (bias_factor - weight) if nesterov else weight
    shrink = direction / bias_factor
    torch.testing.assert_close(
        start - am_param.detach(), shrink * (start - adam_param.detach()), rtol=1e-12, atol=0
    )
