"""AM-Muon against its math (docs/variants.md), generic solvers and torch.optim.Muon.

The conventions, paths, state_dict, compile and distributed tests that every AM optimizer
passes take AMMuon through the registry in tests/helpers.py; this file holds what is its own.
"""

import json
import math
from pathlib import Path

import pytest
import torch
from helpers import assert_vector_close
from test_proximal_model import dual_maximiser, slsqp_solution

import adamem
from adamem.ammuon import muon_lr_factor, orthogonalize

VECTORS = json.loads((Path(__file__).parent / "data" / "ammuon_vectors.json").read_text())
CONVERGENT = (15 / 8, -10 / 8, 3 / 8)  # the quintic whose fixed point is U V^T
torch_muon = pytest.importorskip("torch.optim._muon")


def vector_run(vector, **path):
    shapes = [tuple(s) for s in vector["shapes"]]
    params = [torch.nn.Parameter(torch.tensor(x, dtype=torch.float64)) for x in vector["x0"]]
    options = dict(vector["options"])
    cap = options.pop("cap")
    optimizer = adamem.AMMuon(params, lr=vector["lrs"][0], beta_max=cap, **options, **path)
    betas = []
    for step, lr in enumerate(vector["lrs"]):
        for index, (p, noise) in enumerate(zip(params, vector["noise"][step])):
            p.grad = (index + 1) * p.detach() + torch.tensor(noise, dtype=torch.float64)
        optimizer.param_groups[0]["lr"] = lr
        optimizer.step()
        if step:
            betas.append([float(optimizer.state[p]["beta"]) for p in params])
    assert [tuple(p.shape) for p in params] == shapes
    return params, optimizer, betas


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_vectors(vector, foreach):
    params, optimizer, betas = vector_run(vector, foreach=foreach)
    expected = vector["expected"]
    assert_vector_close(torch.tensor(betas, dtype=torch.float64), expected["betas"])
    for p, x, d in zip(params, expected["x_final"], expected["d_final"]):
        assert_vector_close(p.detach(), x)
        assert_vector_close(optimizer.state[p]["momentum_buffer"], d)


def test_vectors_cover_every_beta_rule():
    betas = [b for v in VECTORS for step in v["expected"]["betas"] for b in step]
    caps = [v["options"]["cap"] for v in VECTORS]
    assert 0.0 in betas and any(0 < b < min(caps) for b in betas)
    assert any(b == cap for v, cap in zip(VECTORS, caps) for s in v["expected"]["betas"] for b in s)


# ------------------------------------------------------------------- independent solvers
def polar(matrix: torch.Tensor) -> torch.Tensor:
    u, _, vh = torch.linalg.svd(matrix, full_matrices=False)
    return u @ vh


@pytest.mark.parametrize("shape", [(5, 3), (3, 5), (4, 4)])
def test_orthogonalize_converges_to_the_polar_factor(shape):
    matrices = torch.randn(
        3, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0)
    )
    result = orthogonalize(matrices, CONVERGENT, steps=60)
    for matrix, orthogonal in zip(matrices, result):
        torch.testing.assert_close(orthogonal, polar(matrix), atol=1e-10, rtol=0)


@pytest.mark.parametrize("shape", [(24, 40), (40, 24)])
def test_orthogonalize_is_torch_muons_for_a_matrix_and_agrees_for_a_stack(shape):
    matrices = torch.randn(3, *shape, generator=torch.Generator().manual_seed(1))
    for matrix in matrices:
        ours = orthogonalize(matrix.bfloat16(), steps=5)
        theirs = torch_muon._zeropower_via_newtonschulz(
            matrix, adamem.ammuon.NS_COEFFICIENTS, 5, 1e-7
        )
        assert torch.equal(ours, theirs)  # the same operations, bit for bit
        singular_values = torch.linalg.svdvals(ours.float())
        assert singular_values.min() > 0.5 and singular_values.max() < 1.3
    stacked = orthogonalize(matrices.double(), steps=5)
    for matrix, orthogonal in zip(matrices, stacked):
        torch.testing.assert_close(orthogonal, orthogonalize(matrix.double()), atol=1e-12, rtol=0)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("nesterov", [False, True])
def test_step_solves_the_model_then_orthogonalizes(seed, nesterov):
    """The second step against generic solvers of the Euclidean model (SLSQP on the primal, a
    1-D search on the dual; tests/test_proximal_model.py) and an SVD for the orthogonal
    factor, which AMMuon approaches with the convergent coefficients."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(4, 3, dtype=torch.float64, generator=generator)
    g0, g1 = (torch.randn(4, 3, dtype=torch.float64, generator=generator) for _ in range(2))
    g1 = g1 + (seed % 3 - 1) * g0  # from disagreement to agreement with the memory
    lr0, lr1, lambd, cap, decay = 0.04, 0.03, 0.2, 0.9, 0.1
    param = torch.nn.Parameter(x.clone())
    optimizer = adamem.AMMuon(
        [param],
        lr=lr0,
        lambd=lambd,
        beta_max=cap,
        weight_decay=decay,
        nesterov=nesterov,
        ns_coefficients=CONVERGENT,
        ns_steps=60,
    )
    param.grad = g0.clone()
    optimizer.step()
    x1 = param.detach().clone()
    optimizer.param_groups[0]["lr"] = lr1
    param.grad = g1.clone()
    optimizer.step()
    # The model of the second step: memory g0 (the first step's), gap prev_lr <g1, g0>.
    instance = dict(
        x=x1.flatten(),
        g=g1.flatten(),
        d=g0.flatten(),
        p=torch.ones(12, dtype=torch.float64),
        mu=0.0,
        lr=lr1,
        lambd=lambd,
        cap=cap,
        scale_invariant=False,
    )
    gap = lr0 * torch.dot(g1.flatten(), g0.flatten())
    beta = optimizer.state[param]["beta"]
    assert abs(dual_maximiser(instance, gap) - float(beta)) <= 1e-5
    new_memory = ((x1.flatten() - slsqp_solution(instance, gap)) / lr1).reshape(4, 3)
    memory = optimizer.state[param]["momentum_buffer"]
    torch.testing.assert_close(memory, new_memory, atol=1e-6, rtol=0)
    weight = (1 - beta) / (1 + lambd)
    direction = memory + weight * (g1 - memory) if nesterov else memory
    expected = (1 - lr1 * decay) * x1 - lr1 * math.sqrt(4 / 3) * polar(direction)
    torch.testing.assert_close(param.detach(), expected, atol=1e-10, rtol=0)


# ----------------------------------------------------------------------- torch.optim.Muon
def fp64_newton_schulz(grad, ns_coefficients, ns_steps, eps):
    return orthogonalize(grad.double(), ns_coefficients, ns_steps, eps)


def quadratic_grad(param, step):
    noise = torch.randn(
        param.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(step)
    )
    param.grad = 0.7 * param.detach() + noise.to(param.device, param.dtype)


@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("adjust_lr_fn", [None, "match_rms_adamw"])
def test_continues_a_torch_muon_run_as_muon_when_beta_is_pinned(
    monkeypatch, nesterov, adjust_lr_fn
):
    """After load_muon_state_dict, AMMuon with beta pinned at 0 (effective momentum
    lambd / (1 + lambd) = m for lambd = m / (1 - m)) steps exactly as torch.optim.Muon with
    momentum m (both orthogonalising in float64)."""
    monkeypatch.setattr(torch_muon, "_zeropower_via_newtonschulz", fp64_newton_schulz)
    momentum = 0.9
    ours = torch.nn.Parameter(torch.randn(5, 3, dtype=torch.float64))
    theirs = torch.nn.Parameter(ours.detach().clone())
    options = dict(lr=0.02, weight_decay=0.1, nesterov=nesterov, adjust_lr_fn=adjust_lr_fn)
    muon = torch.optim.Muon([theirs], momentum=momentum, ns_steps=4, **options)
    for step in range(2):
        quadratic_grad(theirs, step)
        muon.step()
    ours.data.copy_(theirs.detach())
    am = adamem.AMMuon([ours], lr=0.5, beta_max=0.0, lambd=momentum / (1 - momentum))
    am.load_muon_state_dict(muon.state_dict())
    group = am.param_groups[0]
    assert {key: group[key] for key in options} == options and group["ns_steps"] == 4
    for step in range(2, 7):
        quadratic_grad(ours, step)
        quadratic_grad(theirs, step)
        am.step()
        muon.step()
        torch.testing.assert_close(ours, theirs, atol=1e-12, rtol=0)


def test_load_state_dict_of_torch_muon_names_the_conversion():
    param = torch.nn.Parameter(torch.randn(3, 2))
    muon = torch.optim.Muon([param])
    with pytest.raises(ValueError, match="load_muon_state_dict"):
        adamem.AMMuon([param]).load_state_dict(muon.state_dict())


# ------------------------------------------------------------------------------ behaviour
@pytest.mark.parametrize("foreach", [False, True])
def test_trajectory_does_not_depend_on_the_loss_scale(foreach):
    def run(scale):
        params = [
            torch.nn.Parameter(
                torch.randn(s, dtype=torch.float64, generator=torch.Generator().manual_seed(i))
            )
            for i, s in enumerate([(6, 4), (4, 4), (2, 7)])
        ]
        optimizer = adamem.AMMuon(params, lr=0.03, foreach=foreach)
        betas = []
        for step in range(10):
            for index, p in enumerate(params):
                quadratic_grad(p, 10 * step + index)
                p.grad *= scale
            optimizer.step()
            betas.append([float(optimizer.state[p]["beta"]) for p in params])
        return torch.cat([p.detach().flatten() for p in params]), torch.tensor(betas)

    base_x, base_betas = run(1.0)
    assert 0 < base_betas[1:].min() < base_betas[1:].max()  # betas move: the test can fail
    for scale in (1e-3, 1e3, 1e5):
        x, betas = run(scale)
        torch.testing.assert_close(betas, base_betas, atol=1e-9, rtol=0)
        torch.testing.assert_close(x, base_x, atol=1e-9, rtol=0)


def test_lr_factor_follows_torch_muon():
    for shape in [(3, 7), (7, 3), (5, 5)]:
        for fn in (None, "original", "match_rms_adamw"):
            expected = torch_muon._adjust_lr(1.0, fn, torch.Size(shape))
            assert muon_lr_factor(shape, fn) == pytest.approx(expected, rel=1e-15)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_by_default_fp32_and_bf16_matrices_orthogonalise_in_bf16_as_torch_muon(dtype):
    """The default matches ns_dtype=bfloat16 exactly and differs from float32 iterations by
    bf16 rounding; fp64 matrices orthogonalise in fp64 (the vectors' tests)."""

    def step(ns_dtype):
        params = [
            torch.nn.Parameter(
                torch.randn(4, 6, generator=torch.Generator().manual_seed(i)).to(dtype)
            )
            for i in range(2)
        ]
        optimizer = adamem.AMMuon(params, lr=0.02, ns_dtype=ns_dtype)
        for p in params:
            p.grad = torch.randn(4, 6, generator=torch.Generator().manual_seed(3)).to(dtype)
        optimizer.step()
        assert all(p.dtype == dtype for p in params)
        return torch.cat([p.detach().float().flatten() for p in params])

    default = step(None)
    assert torch.equal(default, step(torch.bfloat16))
    difference = float((default - step(torch.float32)).abs().max())
    assert (dtype == torch.bfloat16 or 0 < difference) and difference < 0.02 * 0.05


@pytest.mark.parametrize(
    "param, error, match",
    [
        (torch.nn.Parameter(torch.randn(3)), ValueError, "2-D.*shape \\(3,\\).*muon_param_groups"),
        (torch.nn.Parameter(torch.randn(2, 3, 4)), ValueError, "2-D"),
        (torch.nn.Parameter(torch.randn(2, 3, dtype=torch.complex64)), TypeError, "complex"),
    ],
)
def test_refuses_what_muon_cannot_optimise(param, error, match):
    with pytest.raises(error, match=match):
        adamem.AMMuon([param])
    optimizer = adamem.AMMuon([torch.nn.Parameter(torch.randn(2, 2))])
    with pytest.raises(error, match=match):
        optimizer.add_param_group({"params": [param]})
    assert len(optimizer.param_groups) == 1


@pytest.mark.parametrize(
    "options, error, match",
    [
        ({"ns_steps": 0}, ValueError, "ns_steps"),
        ({"ns_steps": 100}, ValueError, "ns_steps"),
        ({"ns_steps": 2.0}, ValueError, "ns_steps"),
        ({"ns_coefficients": (1.0, 2.0)}, ValueError, "ns_coefficients"),
        ({"ns_coefficients": (1.0, float("nan"), 2.0)}, ValueError, "ns_coefficients"),
        ({"ns_coefficients": (float("-inf"), 1.0, 2.0)}, ValueError, "ns_coefficients"),
        ({"adjust_lr_fn": "rms"}, ValueError, "adjust_lr_fn"),
        ({"eps": 0.0}, ValueError, "eps"),
        ({"ns_dtype": torch.int32}, TypeError, "ns_dtype"),
        ({"ns_dtype": "bfloat16"}, TypeError, "ns_dtype"),
        ({"beta_max": 1.0}, ValueError, "beta_max"),
        ({"weight_decay": -0.1}, ValueError, "weight_decay"),
    ],
)
def test_bad_options_name_the_argument(options, error, match):
    with pytest.raises(error, match=match):
        adamem.AMMuon([torch.nn.Parameter(torch.randn(2, 2))], **options)


def test_zero_gradient_stays_finite():
    param = torch.nn.Parameter(torch.randn(3, 4))
    optimizer = adamem.AMMuon([param], lr=0.02)
    for _ in range(3):
        param.grad = torch.zeros(3, 4)
        optimizer.step()
    assert torch.isfinite(param).all() and torch.isfinite(optimizer.state[param]["beta"])


# ------------------------------------------------------------------------ param groups
class TinyGPT(torch.nn.Module):
    def __init__(self, tied: bool):
        super().__init__()
        self.wte = torch.nn.Embedding(11, 8)
        self.pos = torch.nn.Parameter(torch.zeros(4, 8))
        self.block = torch.nn.ModuleDict(
            {
                "attn": torch.nn.Linear(8, 24),
                "proj": torch.nn.Linear(8, 8, bias=False),
                "ln": torch.nn.LayerNorm(8),
                "conv": torch.nn.Conv1d(8, 8, 3),
            }
        )
        self.frozen = torch.nn.Linear(8, 8).requires_grad_(False)
        self.lm_head = torch.nn.Linear(8, 11, bias=False)
        self.out = torch.nn.Linear(8, 11, bias=False)  # not a head name: a hidden matrix
        if tied:
            self.out.weight = self.wte.weight


@pytest.mark.parametrize("tied", [False, True])
def test_muon_param_groups_splits_hidden_matrices_from_the_rest(tied):
    model = TinyGPT(tied)
    matrices, groups = adamem.muon_param_groups(model, weight_decay=0.1)
    expected = [model.block["attn"].weight, model.block["proj"].weight]
    if not tied:
        expected.append(model.out.weight)
    assert [id(p) for p in matrices] == [id(p) for p in expected]
    rest = [p for group in groups for p in group["params"]]
    trainable = [p for p in model.parameters() if p.requires_grad]  # tied weights once
    assert sorted(map(id, rest + matrices)) == sorted(map(id, trainable))
    decayed = {id(p) for p in groups[0]["params"]}
    assert groups[0]["weight_decay"] == 0.1 and id(model.lm_head.weight) in decayed
    assert (
        id(model.block["ln"].weight) not in decayed and id(model.block["attn"].bias) not in decayed
    )
    adamem.AMMuon(matrices)
    adamem.AMAdamW(groups)


def test_muon_param_groups_checks_head_names():
    with pytest.raises(TypeError, match="head_names"):
        adamem.muon_param_groups(TinyGPT(False), head_names="lm_head")
    matrices, _ = adamem.muon_param_groups(TinyGPT(False), head_names=("lm_head", "out"))
    assert len(matrices) == 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cuda_batched_step_equals_the_reference_and_the_cpu(dtype):
    """On CUDA the multi-tensor path stacks same-shape matrices into one orthogonalisation."""

    def run(device, foreach):
        shapes = [(6, 4), (6, 4), (4, 9), (6, 4)]
        params = [
            torch.nn.Parameter(
                torch.randn(s, generator=torch.Generator().manual_seed(i), dtype=dtype).to(device)
            )
            for i, s in enumerate(shapes)
        ]
        optimizer = adamem.AMMuon(params, lr=0.02, foreach=foreach, ns_dtype=dtype)
        for step in range(5):
            for p in params:
                quadratic_grad(p, step)
            optimizer.step()
        return torch.cat([p.detach().cpu().flatten() for p in params])

    tolerance = dict(atol=1e-12, rtol=0) if dtype == torch.float64 else dict(atol=1e-5, rtol=1e-4)
    reference = run("cpu", False)
    torch.testing.assert_close(run("cuda", True), reference, **tolerance)
    torch.testing.assert_close(run("cuda", False), reference, **tolerance)
