"""Shared test data: the spec's vectors, float64 helpers, and a torch-only interpreter."""

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

import adamem

VECTORS = json.loads((Path(__file__).parent / "data" / "spec_test_vectors.json").read_text())[
    "vectors"
]


def vectors_of(kind: str) -> list[dict]:
    return [v for v in VECTORS if v["kind"] == kind]


def t64(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


SHAPES = [(4, 3), (3,), (2, 2, 2), (1,), (5,)]


def make_params(dtype=torch.float64, seed: int = 0, shapes=SHAPES) -> list[torch.nn.Parameter]:
    generator = torch.Generator().manual_seed(seed)
    return [
        torch.nn.Parameter(torch.randn(shape, generator=generator, dtype=torch.float64).to(dtype))
        for shape in shapes
    ]


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


# Optimizer configurations that the path-equality tests (fused C, Triton) run through.
OPTIMIZERS = {
    "amsgd": lambda groups, **kw: adamem.AMSGD(groups, **{"lr": 0.05, **kw}),
    "amsgd_wd": lambda groups, **kw: adamem.AMSGD(groups, lr=0.05, weight_decay=0.1, **kw),
    "amadamw": lambda groups, **kw: adamem.AMAdamW(groups, **{"lr": 0.03, **kw}),
    "amadamw_compat": lambda groups, **kw: adamem.AMAdamW(
        groups, lr=0.03, gap_estimate="compat", **kw
    ),
    "amadamw_no_decay": lambda groups, **kw: adamem.AMAdamW(
        groups, lr=0.03, weight_decay=0.0, lambd=0.0, **kw
    ),
}


def assert_equal_states(actual, expected, **tolerance):
    """Two ``state_tensors`` dicts hold the same keys, dtypes and devices, and close values."""
    assert actual.keys() == expected.keys()
    for key in expected:
        assert actual[key].dtype == expected[key].dtype, key
        assert actual[key].device == expected[key].device, key
        torch.testing.assert_close(actual[key], expected[key], **tolerance, msg=key)


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
