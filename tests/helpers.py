"""Shared test data and helpers: the spec's vectors, the optimizer registry (every test draws its
optimizers from :data:`CASES`), float64 problems, the path-equality trajectory, and a
torch-only interpreter."""

from __future__ import annotations

import inspect
import json
import math
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor

import adamem

VECTORS = json.loads((Path(__file__).parent / "data" / "spec_test_vectors.json").read_text())[
    "vectors"
]
# AM-AdamW with scale_invariant=True, written by data/make_scale_invariant_vectors.py.
SCALE_INVARIANT_VECTORS = json.loads(
    (Path(__file__).parent / "data" / "scale_invariant_vectors.json").read_text()
)["vectors"]


def vectors_of(kind: str, vectors: list[dict] = VECTORS) -> list[dict]:
    return [v for v in vectors if v["kind"] == kind]


def t64(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def quadratic_trajectory(vector, make_optimizer):
    """Run an optimizer on f(z) = z'Az/2 - b'z split into tensors; record every step's betas."""
    i = vector["inputs"]
    A, b = t64(i["A"]), t64(i["b"])
    params = [torch.nn.Parameter(chunk.clone()) for chunk in t64(i["x0"]).split(i["sizes"])]
    opt = make_optimizer(params, i)
    betas = []
    for lr in i["lrs"]:
        z = torch.cat([p.detach() for p in params])
        for p, grad in zip(params, (A @ z - b).split(i["sizes"])):
            p.grad = grad.clone()
        for group in opt.param_groups:
            group["lr"] = lr
        opt.step()
        betas.append([float(opt.state[p]["beta"]) for p in params])
    return params, opt, betas


def assert_vector_close(actual, expected) -> None:
    """A computed value equals a test vector's (50-digit) value within 1e-12 (spec §9)."""
    torch.testing.assert_close(
        torch.as_tensor(actual, dtype=torch.float64), t64(expected), rtol=0, atol=1e-12
    )


def check_adamw_step_vector(vector, **options) -> None:
    """Run an ``adamw_step`` vector (given P and gap) through AM-AdamW's reference functions
    with ``options`` and compare num, den, beta and the new memory and point with the vector's."""
    from adamem.amadamw import amadamw_tensor_step, amadamw_terms
    from adamem.beta import select_beta

    i, e = vector["inputs"], vector["expected"]
    x, g, d, p = t64(i["x"]), t64(i["g"]), t64(i["d"]), t64(i["P"])
    hyper = dict(lr=i["eta"], weight_decay=i["mu"], lambd=i["lam"], **options)
    a, b = amadamw_terms(x, g, d, p, gap=i["Gamma"], **hyper)
    assert_vector_close(a / i["eta"], e["num"])
    assert_vector_close(b / i["eta"], e["den"])
    beta = select_beta(a, b, i["beta_max"])
    assert_vector_close(beta, e["beta"])
    new_x, new_d = amadamw_tensor_step(x, g, d, p, beta, **hyper)
    assert_vector_close(new_d, e["d_next"])
    assert_vector_close(new_x, e["x_next"])


def check_adamw_trajectory_vector(vector, **options) -> None:
    """Run an ``adamw_traj`` vector through ``AMAdamW`` with ``options`` (a path, a variant)
    and compare every step's beta, the final point and the final memory with the vector's."""

    def make(params, i):
        return adamem.AMAdamW(
            params,
            lr=i["lrs"][0],
            betas=(i["beta1_max"], i["beta2"]),
            eps=i["eps"],
            weight_decay=i["wd"],
            lambd=i["lam"],
            gap_estimate=i["gap"],
            **options,
        )

    params, opt, betas = quadratic_trajectory(vector, make)
    expected = vector["expected"]
    assert_vector_close(betas, expected["betas"])
    assert_vector_close(torch.cat([p.detach() for p in params]), expected["x_final"])
    assert_vector_close(torch.cat([opt.state[p]["exp_avg"] for p in params]), expected["d_final"])


SHAPES = [(4, 3), (3,), (2, 2, 2), (1,), (5,)]


def make_params(
    dtype=torch.float64,
    seed: int = 0,
    shapes=SHAPES,
    device: torch.device | str = "cpu",
    shape_of: Callable[[tuple[int, ...]], tuple[int, ...]] = tuple,
) -> list[torch.nn.Parameter]:
    """The same values on every device: drawn in float64 on the CPU, rounded, then moved;
    each of ``shapes`` is given the shape ``shape_of`` makes of it (same values)."""
    generator = torch.Generator().manual_seed(seed)
    return [
        torch.nn.Parameter(
            torch.randn(shape, generator=generator, dtype=torch.float64)
            .reshape(shape_of(tuple(shape)))
            .to(dtype)
            .to(device)
        )
        for shape in shapes
    ]


def as_matrix(shape: tuple[int, ...]) -> tuple[int, int]:
    """A test shape as a matrix: rows, then the other dimensions flattened (1 if none)."""
    return (shape[0], math.prod(shape[1:]))


def quadratic_grads(params, step: int, seed: int = 1, skip_every: int = 0) -> None:
    """Set grads of a noisy separable quadratic, g = c * x + noise; with ``skip_every`` > 0 the
    last parameter gets no gradient on every ``skip_every``-th step."""
    generator = torch.Generator().manual_seed(seed * 1000 + step)
    for index, p in enumerate(params):
        noise = torch.randn(p.shape, generator=generator, dtype=torch.float64).to(p.device)
        curvature = 0.5 + index
        p.grad = (curvature * p.detach().double() + 0.3 * noise).to(p.dtype)
    if skip_every and step % skip_every == 0:
        params[-1].grad = None


def run(optimizer, params, steps: int, lrs=None, skip_every: int = 0, seed: int = 1) -> None:
    for step in range(steps):
        quadratic_grads(params, step, seed=seed, skip_every=skip_every)
        if lrs is not None:
            for group in optimizer.param_groups:
                group["lr"] = lrs[step % len(lrs)]
        optimizer.step()


def state_tensors(optimizer, params) -> dict[str, torch.Tensor]:
    """Every parameter and state tensor, keyed by position and name."""
    out = {f"param{i}": p.detach() for i, p in enumerate(params)}
    for i, p in enumerate(params):
        for key, value in optimizer.state[p].items():
            out[f"state{i}.{key}"] = value
    return out


def assert_finite(optimizer, params, second_moment_may_overflow=False):
    """Parameters and state are finite. Like torch.optim.AdamW, the second moment of a gradient
    whose square exceeds the dtype's range saturates at +inf (the tensor then stops moving)."""
    for p in params:
        assert torch.isfinite(p).all()
        for key, value in optimizer.state[p].items():
            if key == "exp_avg_sq" and second_moment_may_overflow:
                assert not torch.isnan(value).any()
                assert (value >= 0).all()
            else:
                assert torch.isfinite(value).all(), key


# ------------------------------------------------------------------------- optimizer registry
@dataclass(frozen=True)
class Family:
    """What the tests know of one optimizer class, stated from the spec (not read from its code).

    ``lr`` is the learning rate its cases run with unless a test passes another.
    """

    cls: type[torch.optim.Optimizer]
    lr: float
    momentum_key: str  # the state tensor holding the momentum d
    beta_cap: float  # the default cap on the solved beta
    cap_options: Callable[[float], dict[str, Any]]  # constructor options that set the cap
    effective_momentum: Callable[[Tensor, float], Tensor]  # of solved betas, for a lambd
    second_moment_key: str | None = None  # the state tensor of a second moment, if any
    complex_params: bool = True  # optimises a complex parameter as its real view
    # The shape it is tested with in place of a test shape (Muon takes matrices only).
    shape_of: Callable[[tuple[int, ...]], tuple[int, ...]] = lambda shape: shape
    # Needs each matrix whole: one all-gather per sharded matrix and step under DTensor.
    whole_matrices: bool = False
    # Options that make its fp32 arithmetic fp32 throughout (AMMuon orthogonalises in bf16),
    # for comparisons that two fp32 computations must pass to fp32 rounding.
    fp32_options: Mapping[str, Any] = field(default_factory=dict)


AMSGD_FAMILY = Family(
    adamem.AMSGD,
    lr=0.05,
    momentum_key="momentum_buffer",
    beta_cap=0.9,
    cap_options=lambda cap: {"beta_max": cap},
    effective_momentum=lambda beta, lambd: (beta + lambd) / (1 + lambd),
)
AMMUON_FAMILY = Family(
    adamem.AMMuon,
    lr=0.02,
    momentum_key="momentum_buffer",
    beta_cap=0.95,
    cap_options=lambda cap: {"beta_max": cap},
    effective_momentum=lambda beta, lambd: (beta + lambd) / (1 + lambd),
    complex_params=False,
    shape_of=as_matrix,
    whole_matrices=True,
    fp32_options={"ns_dtype": torch.float32},
)
AMADAMW_FAMILY = Family(
    adamem.AMAdamW,
    lr=0.03,
    momentum_key="exp_avg",
    beta_cap=0.89,
    cap_options=lambda cap: {"betas": (cap, 0.999)},
    effective_momentum=lambda beta, lambd: beta,
    second_moment_key="exp_avg_sq",
)


@dataclass(frozen=True)
class OptimizerCase:
    """One optimizer configuration: its family's class with ``options`` on top of its defaults."""

    name: str
    family: Family
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def cls(self) -> type[torch.optim.Optimizer]:
        return self.family.cls

    def make(self, params, **overrides) -> torch.optim.Optimizer:
        """The optimizer over ``params``; ``overrides`` (``lr``, ``scope``, ...) win.

        ``fused=False``/``None`` ask for an unfused step, which a class without a ``fused``
        option always takes: it is not passed to such a class."""
        if not self.accepts("fused") and not overrides.get("fused", False):
            overrides.pop("fused", None)
        return self.cls(params, **{"lr": self.family.lr, **self.options, **overrides})

    def params(self, dtype=torch.float64, **options) -> list[torch.nn.Parameter]:
        """:func:`make_params` (``seed``, ``shapes``, ``device``) in shapes its class takes."""
        return make_params(dtype, shape_of=self.family.shape_of, **options)

    def takes(self, param: Tensor) -> bool:
        """Whether its class optimises a tensor of ``param``'s shape (Muon: matrices only)."""
        return self.family.shape_of(tuple(param.shape)) == tuple(param.shape)

    def accepts(self, option: str) -> bool:
        """Whether the class takes the constructor option ``option``."""
        return option in inspect.signature(self.cls).parameters

    @property
    def weight_decay(self) -> float:
        """The weight decay it runs with: its option, else the class default."""
        default = inspect.signature(self.cls).parameters["weight_decay"].default
        return self.options.get("weight_decay", default)


# Every configuration; a class's first case runs its defaults (see BASE_CASES). A variant (say
# AMSGD with nesterov=True) is one entry here; a new class is one Family and its entries here
# (tests/test_registry.py fails while an exported AM optimizer has none).
CASES = [
    OptimizerCase("amsgd", AMSGD_FAMILY),
    OptimizerCase("amsgd_wd", AMSGD_FAMILY, {"weight_decay": 0.1}),
    OptimizerCase("amadamw", AMADAMW_FAMILY),
    OptimizerCase("amadamw_compat", AMADAMW_FAMILY, {"gap_estimate": "compat"}),
    OptimizerCase("amadamw_lam0", AMADAMW_FAMILY, {"lambd": 0.0}),
    OptimizerCase("amadamw_no_decay", AMADAMW_FAMILY, {"weight_decay": 0.0, "lambd": 0.0}),
    OptimizerCase("amsgd_nesterov", AMSGD_FAMILY, {"nesterov": True, "weight_decay": 0.1}),
    OptimizerCase("amadamw_nesterov", AMADAMW_FAMILY, {"nesterov": True}),
    OptimizerCase("amadamw_scale_invariant", AMADAMW_FAMILY, {"scale_invariant": True}),
    OptimizerCase("ammuon", AMMUON_FAMILY),
    OptimizerCase(
        "ammuon_plain",
        AMMUON_FAMILY,
        {"nesterov": False, "weight_decay": 0.0, "adjust_lr_fn": "match_rms_adamw"},
    ),
    OptimizerCase(
        "amsgd_noise_averaging", AMSGD_FAMILY, {"noise_averaging": 0.9, "weight_decay": 0.1}
    ),
    OptimizerCase(
        "amadamw_scale_invariant_nesterov",
        AMADAMW_FAMILY,
        {"scale_invariant": True, "nesterov": True, "gap_estimate": "compat"},
    ),
]


def cases(
    where: Callable[[OptimizerCase], bool] = lambda case: True, *, one_per_class: bool = False
) -> list[OptimizerCase]:
    """The cases of :data:`CASES` that ``where`` holds for, in order; with ``one_per_class``
    only the first of each class."""
    chosen = [case for case in CASES if where(case)]
    if one_per_class:
        classes = [case.cls for case in chosen]
        chosen = [case for index, case in enumerate(chosen) if case.cls not in classes[:index]]
    return chosen


# Each class once, with its defaults: for tests of behaviour that no option changes.
BASE_CASES = cases(one_per_class=True)
# Each class once, with weight decay on.
WEIGHT_DECAY_CASES = cases(lambda case: case.weight_decay > 0, one_per_class=True)
# Each class that takes complex parameters once.
COMPLEX_CASES = cases(lambda case: case.family.complex_params, one_per_class=True)
# Options that change how a step is applied or how beta is solved: the tests of every path's
# plumbing (checkpoints, compile, distributed) run them besides the defaults.
OPTION_CASES = cases(
    lambda case: (
        case.options.get("nesterov", False) or case.options.get("noise_averaging") is not None
    )
)


def with_kernels(selected: list[OptimizerCase]) -> list[OptimizerCase]:
    """The cases whose class has fused kernels (the fused and Triton tests' cases)."""
    return [case for case in selected if case.cls.kernels is not None]


def parametrize_cases(selected: list[OptimizerCase]):
    """``@parametrize_cases(BASE_CASES)``: the test's ``case`` argument runs over ``selected``,
    each test named by its case."""
    return pytest.mark.parametrize("case", selected, ids=[case.name for case in selected])


def assert_equal_states(actual, expected, **tolerance):
    """Two ``state_tensors`` dicts hold the same keys, dtypes and devices, and close values."""
    assert actual.keys() == expected.keys()
    for key in expected:
        assert actual[key].dtype == expected[key].dtype, key
        assert actual[key].device == expected[key].device, key
        torch.testing.assert_close(actual[key], expected[key], **tolerance, msg=key)


# --------------------------------------------------------------------- beta solvers in kernels
BETA_SOLVER_CAPS = (0.0, 0.5, 0.89, 0.999)


def beta_solver_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    """``(a, b)`` on which a kernel's beta solver must agree with ``adamem.beta.select_beta``
    exactly: random pairs over sixty orders of magnitude, then every pair of the edge values
    of ALGORITHMS.md §7 (signed zeros, tiny, huge, infinite, NaN; ``b`` never negative)."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(4000, generator=generator, dtype=torch.float64) * 10.0 ** torch.randint(
        -30, 30, (4000,), generator=generator
    )
    b = torch.rand(4000, generator=generator, dtype=torch.float64) * 10.0 ** torch.randint(
        -30, 30, (4000,), generator=generator
    )
    special = [0.0, -0.0, 1.0, -1.0, 1e-300, 1e300, float("inf"), -float("inf"), float("nan")]
    edge_a = torch.tensor([x for x in special for _ in special], dtype=torch.float64)
    edge_b = torch.tensor(
        [abs(y) if y == y else y for _ in special for y in special], dtype=torch.float64
    )
    return torch.cat([a, edge_a]), torch.cat([b, edge_b])


# ---------------------------------------------------------------------------- path equality
# Every path (foreach, fused C, Triton) is compared with the single-tensor reference path on the
# same trajectory: two groups, every scope, maximize, lr changes (one of them to 0) and a
# parameter without a gradient every few steps.
REFERENCE = dict(foreach=False, fused=False)
FUSED = dict(fused=True)  # the C kernels for CPU tensors, the Triton kernels for CUDA ones
SCOPES = ("tensor", "group", "global")
LRS = [0.05, 0.05, 0.02, 0.0, 0.08, 0.05]


def two_groups(params, scope):
    """Two groups, the second with its own lr, lambd and scope (scope global needs equal caps)."""
    split = len(params) // 2 + 1
    return [
        {"params": params[:split]},
        {"params": params[split:], "lr": 0.011, "lambd": 0.3, "scope": scope},
    ]


def trajectory(
    case: OptimizerCase,
    dtype=torch.float64,
    *,
    scope: str = "tensor",
    shapes=SHAPES,
    steps: int = 12,
    skip_every: int = 4,
    device: torch.device | str = "cpu",
    **path,
) -> dict[str, Tensor]:
    """``state_tensors`` after ``steps`` steps of ``case`` on :func:`two_groups` with the lrs of
    :data:`LRS`, the last parameter without a gradient every ``skip_every``-th step; ``path``
    (``foreach``, ``fused``; :data:`REFERENCE`) and ``maximize`` go to the constructor."""
    params = case.params(dtype, shapes=shapes, device=device)
    optimizer = case.make(two_groups(params, scope), scope=scope, **path)
    run(optimizer, params, steps=steps, lrs=LRS, skip_every=skip_every)
    return state_tensors(optimizer, params)


# Makes the top-level packages named in argv[1] unimportable, as on an install of torch alone,
# then runs the rest of argv like `python` would: `-m module args...` or `script args...`.
_TORCH_ONLY = """
import runpy, sys
from importlib.machinery import PathFinder

blocked = set(sys.argv[1].split(","))

class PathFinderWithout(PathFinder):
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name.partition(".")[0] in blocked:
            return None
        return super().find_spec(name, path, target)

sys.meta_path = [PathFinderWithout if f is PathFinder else f for f in sys.meta_path]
if sys.argv[2] == "-m":
    sys.argv = sys.argv[3:]
    runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
else:
    sys.argv = sys.argv[2:]
    runpy.run_path(sys.argv[0], run_name="__main__")
"""


def run_with_torch_only(*argv: str) -> subprocess.CompletedProcess:
    """``python *argv`` in a fresh interpreter that imports this checkout's adamem and cannot
    import the optional packages (the bench extra's, and scipy)."""
    from adamem.cli import BENCH_MODULES

    blocked = ",".join((*BENCH_MODULES, "scipy"))
    sources = str(Path(adamem.__file__).parents[1])
    return subprocess.run(
        [sys.executable, "-c", _TORCH_ONLY, blocked, *argv],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": sources},
        timeout=300,
    )
