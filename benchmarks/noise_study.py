"""AM momentum under gradient noise: a controlled study (docs/research/noise.md).

Two convex problems with the gradient-noise level as a knob, a noisy quadratic (σ) and
minibatch softmax regression on scikit-learn's wine data (batch size), run with AMSGD and
AMAdamW at their defaults, fixed-momentum baselines (heavy ball in EMA form, torch's AdamW)
and two prototype fixes of β's estimate (an EMA of the block sums (a, b); a denominator with
the gradient variance subtracted). Every method at its best learning rate of a log grid,
3 seeds. Writes ``results.json`` (scores, β statistics, the terms of num/den), ``traces.npz``
(per-step β and terms at the best lr) and the PNG plots into ``--out``.

Usage::

    python benchmarks/noise_study.py --out docs/research/noise   # the study (~15 min, 1 core)
    python benchmarks/noise_study.py --quick --out /tmp/noise    # a few seconds
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

import adamem
from adamem.amadamw import amadamw_preconditioner, amadamw_tensor_step, displacement_gap
from adamem.amsgd import amsgd_tensor_step, amsgd_terms_from_dots
from adamem.bench.heavy_ball import HeavyBall
from adamem.beta import select_beta

DTYPE = torch.float64
LAMBD = 0.1
SGD_CAP, ADAM_CAP, BETA2, EPS = 0.9, 0.89, 0.999, 1e-8
VARIANCE_FACTOR = 0.9  # prototype (b): factor of the running variance of g
DIVERGED = 1e6

# ----------------------------------------------------------------------------- problems


@dataclass
class Problem:
    """A problem at one noise level: ``grads(xs, step, gen)`` and the final ``gap(xs)``."""

    name: str
    level: float  # σ (quadratic) or batch size (softmax; 0 = full batch)
    noiseless: bool
    init: list[Tensor]
    grads: Callable[[list[Tensor], int, torch.Generator], list[Tensor]]
    gap: Callable[[list[Tensor]], float]
    steps: int


def quadratic(sigma: float, dim: int, steps: int) -> Problem:
    gen = torch.Generator().manual_seed(1234)
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=gen, dtype=DTYPE))
    eig = torch.logspace(0, 2, dim, dtype=DTYPE)
    a = (q * eig) @ q.T
    b = torch.randn(dim, generator=gen, dtype=DTYPE)
    x_star = torch.linalg.solve(a, b)

    def grads(xs: list[Tensor], step: int, g: torch.Generator) -> list[Tensor]:
        noise = torch.randn(dim, generator=g, dtype=DTYPE)
        return [a @ xs[0] - b + sigma * noise]

    def gap(xs: list[Tensor]) -> float:
        e = xs[0] - x_star
        return float(0.5 * e @ (a @ e))

    return Problem(
        "quadratic", sigma, sigma == 0, [torch.zeros(dim, dtype=DTYPE)], grads, gap, steps
    )


DATASETS = ("wine", "iris", "breast_cancer")  # scikit-learn's bundled sets


def _dataset(name: str) -> tuple[Tensor, Tensor]:
    import sklearn.datasets

    data = getattr(sklearn.datasets, f"load_{name}")()
    x = torch.tensor(data.data, dtype=DTYPE)
    x = (x - x.mean(0)) / x.std(0)
    return x, torch.tensor(data.target)


SOFTMAX_L2 = 1e-3


def _softmax_objective(w: Tensor, c: Tensor, x: Tensor, y: Tensor) -> Tensor:
    logits = x @ w + c
    return torch.nn.functional.cross_entropy(logits, y) + 0.5 * SOFTMAX_L2 * (w * w).sum()


_SOFTMAX_OPT: dict[tuple[str, float], float] = {}  # (data set, L2) -> F*


def _softmax_optimum(name: str, x: Tensor, y: Tensor, classes: int) -> float:
    if (name, SOFTMAX_L2) not in _SOFTMAX_OPT:
        from scipy.optimize import minimize

        shape = (x.shape[1], classes)
        size = shape[0] * classes

        def fun(theta: np.ndarray) -> tuple[float, np.ndarray]:
            t = torch.tensor(theta, requires_grad=True)
            w, c = t[:size].reshape(shape), t[size:]
            value = _softmax_objective(w, c, x, y)
            (grad,) = torch.autograd.grad(value, t)
            return float(value.detach()), grad.numpy()

        res = minimize(
            fun,
            np.zeros(size + classes),
            jac=True,
            method="L-BFGS-B",
            options={"gtol": 1e-12, "ftol": 0, "maxiter": 20000},
        )
        grad_norm = float(np.abs(fun(res.x)[1]).max())
        assert grad_norm < 1e-8, grad_norm  # F* then exact to ~|grad|^2 / (2e-3) < 1e-13
        _SOFTMAX_OPT[name, SOFTMAX_L2] = float(res.fun)
    return _SOFTMAX_OPT[name, SOFTMAX_L2]


def softmax(batch: int, steps: int, dataset: str = "wine") -> Problem:
    """Softmax regression on a bundled data set; ``batch`` 0 is the full batch."""
    x, y = _dataset(dataset)
    n, features = x.shape
    classes = int(y.max()) + 1
    f_star = _softmax_optimum(dataset, x, y, classes)
    onehot = torch.nn.functional.one_hot(y, classes).to(DTYPE)

    def grads(xs: list[Tensor], step: int, g: torch.Generator) -> list[Tensor]:
        w, c = xs
        if batch:
            idx = torch.randint(n, (batch,), generator=g)
            xb, yb = x[idx], onehot[idx]
        else:
            xb, yb = x, onehot
        residual = (torch.softmax(xb @ w + c, dim=1) - yb) / xb.shape[0]
        return [xb.T @ residual + SOFTMAX_L2 * w, residual.sum(0)]

    def gap(xs: list[Tensor]) -> float:
        return float(_softmax_objective(xs[0], xs[1], x, y)) - f_star

    init = [torch.zeros(features, classes, dtype=DTYPE), torch.zeros(classes, dtype=DTYPE)]
    return Problem("softmax", batch, batch == 0, init, grads, gap, steps)


# ----------------------------------------------------------------------------- AM terms


def _scalar(value: float) -> Tensor:
    return torch.tensor(value, dtype=DTYPE)


def _dot(u: Tensor, v: Tensor) -> float:
    return float((u * v).sum())


def sgd_terms(
    g: Tensor, d: Tensor, prev_lr: float, lr: float, lambd: float = LAMBD
) -> dict[str, float]:
    """AM-SGD's terms in the §3 normalisation: β = clip((G - pull) / den)."""
    gap = prev_lr * _dot(g, d)
    pull, curv = _dot(d - g, g + lambd * d), _dot(d - g, d - g)
    out = {"gap": gap, "G": (1 + lambd) * gap / lr, "pull": pull, "den": curv}
    out.update(gg=_dot(g, g), dd=_dot(d, d), gd=_dot(g, d))  # for the mechanism
    return out


def adam_terms(
    x: Tensor, g: Tensor, st: dict, lr: float, lambd: float = LAMBD
) -> tuple[dict[str, float], Tensor]:
    """AM-AdamW's terms (§2, μ = 0) from the state before the step (library key names);
    returns them and ``P_t``. ``st`` must be past its first step."""
    v, k = st["exp_avg_sq"], float(st["step"])
    bc1 = 1 - ADAM_CAP * float(st["beta_product"])
    _, p = amadamw_preconditioner(v, g, beta2=BETA2, step=k + 1, bias_correction1=bc1, eps=EPS)
    _, prev_p = amadamw_preconditioner(
        v, None, beta2=BETA2, step=k, bias_correction1=float(st["prev_bias_correction1"]), eps=EPS
    )
    d = st["exp_avg"]
    gap = float(displacement_gap(x, g, d, prev_p, prev_lr=float(st["prev_lr"]), weight_decay=0.0))
    lp = lambd * p
    md = (d - g) / p / (1 + lp)
    terms = {"gap": gap, "G": gap / lr, "pull": _dot(md, g + lp * d), "den": _dot(d - g, md)}
    metric = 1 / p / (1 + lp)  # the mechanism's norms in the M metric
    terms.update(gg=_dot(g, metric * g), dd=_dot(d, metric * d), gd=_dot(g, metric * d))
    return terms, p


def terms_ab(
    kind: str, t: dict[str, float], lr: float, lambd: float = LAMBD
) -> tuple[float, float]:
    """The library's (a, b) from the terms."""
    if kind == "sgd":
        a, b = amsgd_terms_from_dots(
            _scalar(t["gap"]),
            _scalar(t["pull"]),
            _scalar(t["den"]),
            lr=lr,
            lambd=lambd,
        )
        return float(a), float(b)
    return t["gap"] - lr * t["pull"], lr * t["den"]


# ----------------------------------------------------------------------------- methods


@dataclass
class Log:
    beta: list[list[float]] = field(default_factory=list)  # per step, per tensor
    eff: list[float] = field(default_factory=list)  # effective momentum, tensor 0
    terms: list[dict[str, float]] = field(default_factory=list)  # tensor 0


class LibraryAM:
    """The library's AMSGD / AMAdamW; the terms are recomputed from the state before the step
    and their β checked against the optimizer's."""

    def __init__(self, kind: str, xs: list[Tensor], lr: float, lambd: float = LAMBD):
        self.kind, self.xs, self.lr, self.lambd = kind, xs, lr, lambd
        common = dict(lr=lr, lambd=lambd, foreach=False, fused=False)
        if kind == "sgd":
            self.opt = adamem.AMSGD(xs, **common)
        else:
            self.opt = adamem.AMAdamW(xs, weight_decay=0.0, **common)
        self.cap = SGD_CAP if kind == "sgd" else ADAM_CAP
        self.log = Log()

    def step(self, grads: list[Tensor]) -> None:
        terms, ps = [], []
        for x, g in zip(self.xs, grads):
            st = self.opt.state.get(x, {})
            if self.kind == "sgd":
                ok = "momentum_buffer" in st and float(st.get("prev_lr", 0)) > 0
                terms.append(
                    sgd_terms(g, st["momentum_buffer"], float(st["prev_lr"]), self.lr, self.lambd)
                    if ok
                    else None
                )
            else:
                ok = "step" in st and float(st["step"]) > 0
                t, p = adam_terms(x, g, st, self.lr, self.lambd) if ok else (None, None)
                terms.append(t)
                ps.append(p)
            x.grad = g
        self.opt.step()
        betas = [float(self.opt.state[x]["beta"]) for x in self.xs]
        if terms[0] is None:
            return
        for t, beta in zip(terms, betas):
            a, b = terms_ab(self.kind, t, self.lr, self.lambd)
            mine = float(select_beta(_scalar(a), _scalar(b), self.cap))
            assert abs(mine - beta) < 1e-6, (mine, beta)
        self.log.beta.append(betas)
        self.log.terms.append(terms[0])
        self.log.eff.append(_effective(self.kind, betas[0], ps[0] if ps else None, self.lambd))


def _effective(kind: str, beta: float, p: Tensor | None, lambd: float = LAMBD) -> float:
    if kind == "sgd":
        return (beta + lambd) / (1 + lambd)
    lp = lambd * p
    return float(((beta + lp) / (1 + lp)).mean())


class PrototypeAM:
    """AM-SGD / AM-AdamW written with the library's per-tensor functions, with β's block sums
    replaced: ``variant`` None (the library's, for the check), ``("ema", rho)`` or
    ``("nc", factor)`` (den minus the running variance of g)."""

    def __init__(self, kind: str, xs: list[Tensor], lr: float, variant: tuple | None):
        self.kind, self.xs, self.lr, self.variant = kind, xs, lr, variant
        self.cap = SGD_CAP if kind == "sgd" else ADAM_CAP
        self.state: list[dict] = [{} for _ in xs]
        self.log = Log()

    def step(self, grads: list[Tensor]) -> None:
        lr, cap = self.lr, self.cap
        betas, first_terms, first_p = [], None, None
        for index, (x, g, st) in enumerate(zip(self.xs, grads, self.state)):
            first = not st
            if self.kind == "sgd":
                if first:
                    st.update(d=g.clone(), prev_lr=lr)
                    new_x, beta, p = x - lr * g, None, None
                else:
                    t = sgd_terms(g, st["d"], st["prev_lr"], lr)
                    a, b = terms_ab("sgd", t, lr)
                    beta = self._solve(st, a, b, g, None, t)
                    new_x, st["d"] = amsgd_tensor_step(
                        x, g, st["d"], _scalar(beta), lr=lr, lambd=LAMBD
                    )
                    st["prev_lr"] = lr
                    p = None
            else:
                if first:
                    st.update(
                        exp_avg=torch.zeros_like(x),
                        exp_avg_sq=torch.zeros_like(x),
                        step=0,
                        beta_product=1.0,
                        prev_bias_correction1=1.0,
                        prev_lr=lr,
                    )
                bc1 = 1 - cap * st["beta_product"]
                if first:
                    beta, t = cap, None
                else:
                    t, _ = adam_terms(x, g, st, lr)
                v, p = amadamw_preconditioner(
                    st["exp_avg_sq"],
                    g,
                    beta2=BETA2,
                    step=st["step"] + 1,
                    bias_correction1=bc1,
                    eps=EPS,
                )
                if not first:
                    a, b = terms_ab("adam", t, lr)
                    beta = self._solve(st, a, b, g, p, t)
                new_x, st["exp_avg"] = amadamw_tensor_step(
                    x, g, st["exp_avg"], p, beta, lr=lr, weight_decay=0.0, lambd=LAMBD
                )
                st.update(
                    exp_avg_sq=v,
                    step=st["step"] + 1,
                    beta_product=st["beta_product"] * beta,
                    prev_bias_correction1=bc1,
                    prev_lr=lr,
                )
            self._track_variance(st, g)
            x.copy_(new_x)
            betas.append(beta)
            if index == 0:
                first_terms, first_p = (None if first else t), p
        if first_terms is not None:
            self.log.beta.append(betas)
            self.log.terms.append(first_terms)
            self.log.eff.append(_effective(self.kind, betas[0], first_p))

    def _solve(self, st: dict, a: float, b: float, g: Tensor, p: Tensor | None, t: dict) -> float:
        variant = self.variant
        if variant is not None and variant[0] in AVERAGED:
            return AVERAGED[variant[0]](st, a, b, variant[1], self.cap)
        if variant is not None and variant[0] == "nc" and "var" in st:
            var = st["var"] if p is None else st["var"] / p / (1 + LAMBD * p)
            noise = float(var.sum())
            t["noise"] = noise
            if t["den"] > 0:
                b *= max(t["den"] - noise, 0.0) / t["den"]
        return float(select_beta(_scalar(a), _scalar(b), self.cap))

    def _track_variance(self, st: dict, g: Tensor) -> None:
        if self.variant is None or self.variant[0] != "nc":
            return
        r = self.variant[1]
        if "mean" not in st:
            st["mean"], st["var"] = g.clone(), torch.zeros_like(g)
            return
        delta = g - st["mean"]
        st["mean"] = st["mean"] + (1 - r) * delta
        st["var"] = r * (st["var"] + (1 - r) * delta * delta)


def _select(a: float, b: float, cap: float) -> float:
    return float(select_beta(_scalar(a), _scalar(b), cap))


def _ema(st: dict, key: str, value: float, rho: float) -> float:
    st[key] = rho * st.get(key, 0.0) + (1 - rho) * value
    return st[key]


def _normalised_average(st: dict, a: float, b: float, rho: float) -> tuple[float, float, float]:
    """(c)'s averages of the pair scaled to |a| + b = 1, and this step's scaled a."""
    size = abs(a) + b
    a_unit, b_unit = (a / size, b / size) if size > 0 else (0.0, 0.0)
    return _ema(st, "a_unit", a_unit, rho), _ema(st, "b_unit", b_unit, rho), a_unit


def _raw_ema(st: dict, a: float, b: float, rho: float, cap: float) -> float:
    """(a): EMA of the block sums themselves."""
    return _select(_ema(st, "a_avg", a, rho), _ema(st, "b_avg", b, rho), cap)


def _normalised_ema(st: dict, a: float, b: float, rho: float, cap: float) -> float:
    """(c): EMA of the pair scaled to unit size."""
    a_avg, b_avg, _ = _normalised_average(st, a, b, rho)
    return _select(a_avg, b_avg, cap)


def _beta_ema(st: dict, a: float, b: float, rho: float, cap: float) -> float:
    """(d): bias-corrected EMA of the per-step β."""
    st["solved"] = st.get("solved", 0) + 1
    return _ema(st, "beta_avg", _select(a, b, cap), rho) / (1 - rho ** st["solved"])


def _floor(st: dict, a: float, b: float, rho: float, cap: float) -> float:
    """(e): the per-step β, floored at (c)'s."""
    return max(_select(a, b, cap), _normalised_ema(st, a, b, rho, cap))


def _gated(st: dict, a: float, b: float, rho: float, cap: float) -> float:
    """(f): per-step β and (c)'s mixed by the spread share of the scaled slope."""
    a_avg, b_avg, a_unit = _normalised_average(st, a, b, rho)
    solved = st["solved"] = st.get("solved", 0) + 1
    if solved > 1:
        previous_mean = st["slope_mean"] / (1 - rho ** (solved - 1))
        _ema(st, "slope_var", (a_unit - previous_mean) ** 2, rho)
    mean = _ema(st, "slope_mean", a_unit, rho) / (1 - rho**solved)
    spread = st.get("slope_var", 0.0)
    share = spread / (spread + mean * mean) if spread > 0 else 0.0
    return (1 - share) * _select(a, b, cap) + share * _select(a_avg, b_avg, cap)


AVERAGED: dict[str, Callable[[dict, float, float, float, float], float]] = {
    "ema": _raw_ema,
    "nema": _normalised_ema,
    "bema": _beta_ema,
    "floor": _floor,
    "gate": _gated,
}
"""The prototypes that replace β's solve by an average over steps: name -> (state, a, b,
factor, cap) -> β."""


class Baseline:
    def __init__(self, opt: torch.optim.Optimizer, xs: list[Tensor]):
        self.opt, self.xs, self.log = opt, xs, Log()

    def step(self, grads: list[Tensor]) -> None:
        for x, g in zip(self.xs, grads):
            x.grad = g
        self.opt.step()


SGD_LRS = [1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0, 10.0]
ADAM_LRS = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0]


def methods() -> dict[str, tuple[str, Callable]]:
    """name -> (family, factory(xs, lr))."""
    out: dict[str, tuple[str, Callable]] = {
        "AMSGD": ("sgd", lambda xs, lr: LibraryAM("sgd", xs, lr)),
        "AMAdamW": ("adam", lambda xs, lr: LibraryAM("adam", xs, lr)),
    }
    for beta in (0.0, 0.5, 0.9, 0.99):
        out[f"HB {beta}"] = ("sgd", lambda xs, lr, b=beta: Baseline(HeavyBall(xs, lr, b), xs))
        out[f"AdamW {beta}"] = (
            "adam",
            lambda xs, lr, b=beta: Baseline(
                torch.optim.AdamW(xs, lr=lr, betas=(b, BETA2), eps=EPS, weight_decay=0.0), xs
            ),
        )
    for kind, prefix in (("sgd", "AMSGD"), ("adam", "AMAdamW")):
        for rho in (0.9, 0.99):
            out[f"{prefix} ema{rho}"] = (
                kind,
                lambda xs, lr, k=kind, r=rho: PrototypeAM(k, xs, lr, ("ema", r)),
            )
        out[f"{prefix} nc"] = (
            kind,
            lambda xs, lr, k=kind: PrototypeAM(k, xs, lr, ("nc", VARIANCE_FACTOR)),
        )
    return out


def candidates() -> dict[str, tuple[str, Callable]]:
    """The second round's candidates (docs/research/noise.md); run with ``--methods``."""
    out: dict[str, tuple[str, Callable]] = {}
    rounds = (("nema", 0.9), ("nema", 0.99), ("bema", 0.9), ("floor", 0.9), ("gate", 0.9))
    for kind, prefix in (("sgd", "AMSGD"), ("adam", "AMAdamW")):
        for variant in rounds:
            out[f"{prefix} {variant[0]}{variant[1]}"] = (
                kind,
                lambda xs, lr, k=kind, v=variant: PrototypeAM(k, xs, lr, v),
            )
    return out


EXTRA_METHODS = {
    "AMSGD lambd0": ("sgd", lambda xs, lr: LibraryAM("sgd", xs, lr, lambd=0.0)),
    "AMAdamW lambd0": ("adam", lambda xs, lr: LibraryAM("adam", xs, lr, lambd=0.0)),
    **candidates(),
}
"""Not in the protocol's set; run with ``--methods``."""


# ----------------------------------------------------------------------------- running


def run(problem: Problem, factory: Callable, lr: float, seed: int) -> tuple[float, Log]:
    xs = [x.clone().requires_grad_(False) for x in problem.init]
    method = factory(xs, lr)
    gen = torch.Generator().manual_seed(1000 + seed)
    with torch.no_grad():
        for step in range(problem.steps):
            method.step(problem.grads(xs, step, gen))
            if step % 50 == 49 and not all(bool(torch.isfinite(x).all()) for x in xs):
                return math.inf, method.log
    loss = problem.gap(xs)
    if not math.isfinite(loss) or loss > DIVERGED:
        loss = math.inf
    return loss, method.log


def summarize_log(log: Log, cap: float) -> dict[str, float]:
    if not log.beta:
        return {}
    beta = np.array([row[0] for row in log.beta])
    out = {
        "beta_mean": float(beta.mean()),
        "beta_zero": float((beta <= 1e-12).mean()),
        "beta_cap": float((beta >= cap - 1e-12).mean()),
        "eff_mean": float(np.mean(log.eff)),
    }
    for key in log.terms[0]:
        out[key] = float(np.mean([t.get(key, 0.0) for t in log.terms]))
    out["num"] = out["G"] - out["pull"]
    gg = np.array([t["gg"] for t in log.terms])
    out["corr_beta_gg"] = float(np.corrcoef(beta, gg)[0, 1]) if beta.std() > 0 else 0.0
    # relative spread of |g|^2 over the second half (stationary part) of the run
    half = gg[len(gg) // 2 :]
    out["gg_cv"] = float(half.std() / half.mean()) if half.mean() > 0 else 0.0
    return out


def study(problems: list[Problem], lrs: dict[str, list[float]], seeds: list[int], names: list[str]):
    registry = {**methods(), **EXTRA_METHODS}
    results, traces = [], {}
    for problem in problems:
        start = time.time()
        for name in names:
            family, factory = registry[name]
            cap = SGD_CAP if family == "sgd" else ADAM_CAP
            per_lr = []
            for lr in lrs[family]:
                runs = [run(problem, factory, lr, seed) for seed in seeds]
                losses = [loss for loss, _ in runs]
                per_lr.append((float(np.median(losses)), lr, runs))
            score, best_lr, runs = min(per_lr, key=lambda item: (item[0], item[1]))
            stats = [summarize_log(log, cap) for _, log in runs]
            record = {
                "problem": problem.name,
                "level": problem.level,
                "method": name,
                "family": family,
                "best_lr": best_lr,
                "score": score,
                "losses": [loss for loss, _ in runs],
                "by_lr": {str(lr): med for med, lr, _ in per_lr},
            }
            if stats[0]:
                record["stats"] = {k: float(np.mean([s[k] for s in stats])) for k in stats[0]}
                log = runs[0][1]
                key = f"{problem.name}|{problem.level}|{name}"
                traces[key + "|beta"] = np.array([row[0] for row in log.beta])
                for term in ("G", "pull", "den", "gg", "dd", "gd"):
                    traces[key + "|" + term] = np.array([t[term] for t in log.terms])
            results.append(record)
        print(f"{problem.name} level {problem.level}: {time.time() - start:.0f} s", flush=True)
    return results, traces


def check_prototype_matches_library(problem: Problem, steps: int = 60) -> float:
    """The prototype with no variant must give the library's β (the max difference)."""
    worst = 0.0
    for kind, lr in (("sgd", 0.01), ("adam", 0.01)):
        small = Problem(**{**problem.__dict__, "steps": steps})
        _, lib = run(small, lambda xs, lr, k=kind: LibraryAM(k, xs, lr), lr, 0)
        _, ref = run(small, lambda xs, lr, k=kind: PrototypeAM(k, xs, lr, None), lr, 0)
        worst = max(worst, float(np.abs(np.array(lib.beta) - np.array(ref.beta)).max()))
    return worst


# ----------------------------------------------------------------------------- analysis


def quadratic_prediction(level: float, dim: int, eff: float) -> dict[str, float]:
    """E[num], E[den] (§3 normalisation) for g = m + σξ, d = m + e with e independent of ξ and
    stationary EMA noise E|e|² = nσ²(1-w)/(1+w), in the noise-dominated limit (m → 0)."""
    q = (1 - eff) / (1 + eff)
    noise = dim * level**2
    return {"num": noise * (1 - LAMBD * q), "den": noise * (1 + q)}


# ----------------------------------------------------------------------------- plots


def plots(results: list[dict], traces: dict[str, np.ndarray], out: Path, dim: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by = {(r["problem"], r["level"], r["method"]): r for r in results}
    probs = [("quadratic", "gradient noise σ"), ("softmax", "1 / batch size (0 = full batch)")]

    def levels(problem: str) -> list[float]:
        return sorted(
            {r["level"] for r in results if r["problem"] == problem},
            key=lambda v: noise_rank(problem, v),
        )

    def xpos(problem: str) -> tuple[list[float], list[str]]:
        lv = levels(problem)
        labels = (
            [("full" if v == 0 else f"B={int(v)}") for v in lv]
            if problem == "softmax"
            else [f"{v:g}" for v in lv]
        )
        return list(range(len(lv))), labels

    am_methods = {
        "sgd": ["AMSGD", "AMSGD ema0.9", "AMSGD ema0.99", "AMSGD nc"],
        "adam": ["AMAdamW", "AMAdamW ema0.9", "AMAdamW ema0.99", "AMAdamW nc"],
    }
    styles = {0: "-o", 1: "--s", 2: ":^", 3: "-.d"}

    def default_am_panels(axes):
        """The 2 x 2 grid (problem x family) of default AM: each panel's axes, problem, family,
        x-axis label, positions and tick labels, method name and its records per noise level."""
        for row, (problem, xlabel) in enumerate(probs):
            x, labels = xpos(problem)
            for col, family in enumerate(("sgd", "adam")):
                name = am_methods[family][0]
                records = [by.get((problem, lv, name)) for lv in levels(problem)]
                yield axes[row, col], problem, family, xlabel, x, labels, name, records

    # 1. beta statistics vs noise (default AM)
    fig, axes = plt.subplots(2, 2, figsize=(9, 6.5), sharey=True)
    for ax, problem, _, xlabel, x, labels, name, rs in default_am_panels(axes):
        for key, label, st in (
            ("beta_mean", "mean β", "-o"),
            ("beta_zero", "fraction β = 0", "--s"),
            ("beta_cap", "fraction β = cap", ":^"),
            ("eff_mean", "mean effective momentum", "-.d"),
        ):
            ax.plot(x, [r["stats"][key] if r else np.nan for r in rs], st, label=label)
        ax.set_xticks(x, labels)
        ax.set_title(f"{name}, {problem} (best lr)")
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "beta_vs_noise.png", dpi=100)
    plt.close(fig)

    # 1b. distribution of beta_t per noise level (default AM, seed 0, best lr)
    fig, axes = plt.subplots(2, 2, figsize=(9, 6.5), sharex=True)
    bins = np.linspace(0, 0.9, 19)
    for ax, problem, _, _, _, labels, name, _ in default_am_panels(axes):
        for lv, label in zip(levels(problem), labels):
            beta = traces.get(f"{problem}|{lv}|{name}|beta")
            if beta is not None:
                ax.hist(beta, bins=bins, histtype="step", lw=1.5, density=True, label=label)
        ax.set_yscale("log")
        ax.set_title(f"{name}, {problem}: β_t histogram")
        ax.set_xlabel("β_t (all steps after the first)")
        ax.legend(fontsize=7, title="noise", title_fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "beta_hist.png", dpi=100)
    plt.close(fig)

    # 2. final loss vs noise (top) and relative to the best fixed momentum (bottom)
    fig, axes = plt.subplots(2, 4, figsize=(15, 6.5))
    for block, (problem, xlabel) in enumerate(probs):
        x, labels = xpos(problem)
        for half, family in enumerate(("sgd", "adam")):
            col = 2 * block + half
            best_fixed = np.array(
                [
                    min(by[(problem, lv, m)]["score"] for m in FIXED[family])
                    for lv in levels(problem)
                ]
            )
            top, bottom = axes[0, col], axes[1, col]
            top.plot(x, best_fixed, "-k", lw=3, alpha=0.4, label="best fixed momentum")
            bottom.axhline(1, color="k", lw=3, alpha=0.4)
            bottom.axhline(2, color="k", ls=":", lw=1, label="2× (protocol's threshold)")
            for i, name in enumerate(am_methods[family]):
                ys = np.array(
                    [by.get((problem, lv, name), {}).get("score", np.nan) for lv in levels(problem)]
                )
                top.plot(x, ys, styles[i], label=name)
                ratio = np.maximum(ys, ROUND_OFF) / np.maximum(best_fixed, ROUND_OFF)
                bottom.plot(x, ratio, styles[i], label=name)
            for ax in (top, bottom):
                ax.set_yscale("log")
                ax.set_xticks(x, labels)
                ax.grid(alpha=0.3)
            top.set_title(f"{problem}, {'SGD' if family == 'sgd' else 'Adam'} family")
            top.set_ylabel("final loss − optimum")
            bottom.set_ylabel("÷ best fixed momentum")
            bottom.set_xlabel(xlabel)
            top.legend(fontsize=7)
    axes[1, 0].legend(fontsize=7)
    fig.suptitle("median over 3 seeds at each method's best lr (ratios floored at 1e-12)")
    fig.tight_layout()
    fig.savefig(out / "loss_vs_noise.png", dpi=100)
    plt.close(fig)

    # 3. decomposition of num/den vs noise (default AM), with the quadratic prediction
    fig, axes = plt.subplots(2, 2, figsize=(9, 6.5))
    for ax, problem, family, xlabel, x, labels, name, rs in default_am_panels(axes):
        for key, label, st in (
            ("G", "gap term G", "-o"),
            ("pull", "−pull", "--s"),
            ("num", "num = G − pull", "-^"),
            ("den", "den", "-d"),
        ):
            sign = -1 if key == "pull" else 1
            ys = [abs(sign * r["stats"][key]) if r else np.nan for r in rs]
            neg = [r is not None and sign * r["stats"][key] < 0 for r in rs]
            (line,) = ax.plot(x, ys, st, label=label + " (|.|; hollow: < 0)")
            for xi, yi, n in zip(x, ys, neg):
                if n:
                    ax.plot([xi], [yi], "o", mfc="white", mec=line.get_color(), ms=9)
        if problem == "quadratic" and family == "sgd":
            pred = [
                quadratic_prediction(lv, dim, r["stats"]["eff_mean"]) if r and lv else None
                for lv, r in zip(levels(problem), rs)
            ]
            for key, st in (("num", "k+"), ("den", "kx")):
                ax.plot(
                    x,
                    [p[key] if p else np.nan for p in pred],
                    st,
                    ms=10,
                    label=f"predicted E {key} (m→0)",
                )
        ax.set_yscale("log")
        ax.set_xticks(x, labels)
        ax.set_xlabel(xlabel)
        ax.set_title(f"{name}, {problem}: mean terms per step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "decomposition.png", dpi=100)
    plt.close(fig)


def noise_rank(problem: str, level: float) -> float:
    """Sort key, least noise first: σ for the quadratic, 1/batch (full batch 0) for softmax."""
    if problem == "softmax":
        return 0.0 if level == 0 else 1 / level
    return level


FIXED = {
    "sgd": [f"HB {b}" for b in (0.0, 0.5, 0.9, 0.99)],
    "adam": [f"AdamW {b}" for b in (0.0, 0.5, 0.9, 0.99)],
}
ROUND_OFF = 1e-12  # scores below count as equal (converged to round-off)


def verdicts(results: list[dict]) -> list[dict]:
    """The protocol's verdicts for every AM method at every level (docs/research/noise.md)."""
    by = {(r["problem"], r["level"], r["method"]): r for r in results}
    rows = []
    for (problem, level, name), r in by.items():
        family = r["family"]
        if name in FIXED[family]:
            continue
        scores = [
            by[(problem, level, m)]["score"] for m in FIXED[family] if (problem, level, m) in by
        ]
        row = {"problem": problem, "level": level, "method": name, "score": r["score"]}
        if scores:
            row["best_fixed"] = min(scores)
            row["ratio_to_fixed"] = max(r["score"], ROUND_OFF) / max(min(scores), ROUND_OFF)
            row["recovers"] = row["ratio_to_fixed"] <= 2
        default = by.get((problem, level, "AMSGD" if family == "sgd" else "AMAdamW"))
        if default is not None:
            row["ratio_to_default"] = max(r["score"], ROUND_OFF) / max(default["score"], ROUND_OFF)
            if level == 0:
                row["keeps_noiseless"] = row["ratio_to_default"] <= 2
        rows.append(row)
    return rows


def markdown_table(results: list[dict]) -> str:
    """Per problem and level: every method's score (median final gap at its best lr), best lr,
    and the β statistics of the AM methods."""
    lines = [
        "| problem | level | method | best lr | score | ×fixed | mean β | β=0 | β=cap | eff. |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    verdict = {(v["problem"], v["level"], v["method"]): v for v in verdicts(results)}
    for r in sorted(results, key=lambda r: (r["problem"], noise_rank(r["problem"], r["level"]))):
        v = verdict.get((r["problem"], r["level"], r["method"]), {})
        st = r.get("stats")
        beta = (
            f"{st['beta_mean']:.2f} | {st['beta_zero']:.2f} | {st['beta_cap']:.2f} | "
            f"{st['eff_mean']:.2f}"
            if st
            else " | | | "
        )
        ratio = f"{v['ratio_to_fixed']:.2g}" if "ratio_to_fixed" in v else ""
        lines.append(
            f"| {r['problem']} | {r['level']:g} | {r['method']} | {r['best_lr']:g} | "
            f"{r['score']:.3g} | {ratio} | {beta} |"
        )
    return "\n".join(lines) + "\n"


def mechanism_table(results: list[dict], traces: dict[str, np.ndarray]) -> str:
    """The spread of |g|^2 and what β = 0 steps look like (AMSGD at its best lr): the
    coefficient of variation of |g|^2 (second half of each run, mean over the seeds), and from
    seed 0's trace its 5 % and 95 % quantiles over the median, the fraction of steps at β = 0,
    the median |g|^2 / median and |d|^2 / |g|^2 at those steps, and corr(β, log |g|^2)."""
    lines = [
        "| problem | level | cv of ‖g‖² | ‖g‖²/median 5 % … 95 % | β = 0 | at β = 0: ‖g‖²/median "
        "| at β = 0: ‖d‖²/‖g‖² | corr(β, log ‖g‖²) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(results, key=lambda r: (r["problem"], noise_rank(r["problem"], r["level"]))):
        if r["method"] != "AMSGD":
            continue
        key = f"{r['problem']}|{r['level']}|AMSGD"
        beta, gg, dd = (traces[f"{key}|{name}"] for name in ("beta", "gg", "dd"))
        median = np.median(gg)
        low, high = np.quantile(gg / median, [0.05, 0.95])
        zero = beta <= 1e-12
        at_zero = (
            f"{np.median(gg[zero]) / median:.2g} | {np.median(dd[zero] / gg[zero]):.2g}"
            if zero.any()
            else "– | –"
        )
        corr = np.corrcoef(beta, np.log(gg))[0, 1] if beta.std() > 0 else 0.0
        lines.append(
            f"| {r['problem']} | {r['level']:g} | {r['stats']['gg_cv']:.2f} | "
            f"{low:.2g} … {high:.2g} | {zero.mean():.1%} | {at_zero} | {corr:.2f} |"
        )
    return "\n".join(lines) + "\n"


def write_reports(results: list[dict], traces: dict[str, np.ndarray], out: Path) -> None:
    (out / "table.md").write_text(markdown_table(results))
    (out / "mechanism.md").write_text(mechanism_table(results, traces))


def main() -> None:
    global SOFTMAX_L2
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--quick", action="store_true", help="a few seconds: tiny grids")
    parser.add_argument(
        "--methods",
        help="comma-separated subset (default: the protocol's set); extra: "
        + ", ".join(EXTRA_METHODS),
    )
    parser.add_argument("--problem", choices=("quadratic", "softmax"), help="only this problem")
    parser.add_argument(
        "--dataset", choices=DATASETS, default="wine", help="softmax's data (protocol: wine)"
    )
    parser.add_argument(
        "--l2", type=float, default=SOFTMAX_L2, help="softmax's L2 weight (protocol: 1e-3)"
    )
    parser.add_argument("--batches", help="softmax batch sizes, comma-separated (0 = full)")
    parser.add_argument(
        "--replot",
        action="store_true",
        help="no runs: rebuild the tables and plots from --out's results.json and traces.npz",
    )
    parser.add_argument("--no-plots", action="store_true", help="results.json only")
    args = parser.parse_args()
    torch.set_num_threads(1)
    SOFTMAX_L2 = args.l2
    args.out.mkdir(parents=True, exist_ok=True)
    if args.replot:
        payload = json.loads((args.out / "results.json").read_text())
        traces = dict(np.load(args.out / "traces.npz"))
        write_reports(payload["results"], traces, args.out)
        if not args.no_plots:
            plots(payload["results"], traces, args.out, payload["dim"])
        return
    if args.quick:
        dim, q_steps, s_steps = 10, 30, 30
        sigmas, batches, seeds = [0.0, 1.0], [16, 0], [0]
        lrs = {"sgd": [0.01, 0.1], "adam": [0.01, 0.1]}
    else:
        dim, q_steps, s_steps = 50, 500, 400
        sigmas, batches, seeds = [0.0, 0.01, 0.1, 1.0, 10.0], [0, 64, 16, 4], [0, 1, 2]
        lrs = {"sgd": SGD_LRS, "adam": ADAM_LRS}
    problems = [quadratic(s, dim, q_steps) for s in sigmas]
    if args.batches:
        batches = [int(b) for b in args.batches.split(",")]
    problems += [softmax(b, s_steps, args.dataset) for b in batches]
    if args.problem:
        problems = [p for p in problems if p.name == args.problem]
    check_steps = 20 if args.quick else 60
    worst = max(
        check_prototype_matches_library(p, check_steps) for p in (problems[0], problems[-1])
    )
    print(f"prototype (no variant) vs library: max |Δβ| = {worst:.2e}")
    assert worst < 1e-9, worst
    names = args.methods.split(",") if args.methods else list(methods())
    results, traces = study(problems, lrs, seeds, names)
    payload = {
        "check_max_beta_difference": worst,
        "dim": dim,
        "results": results,
        "verdicts": verdicts(results),
    }
    (args.out / "results.json").write_text(json.dumps(payload, indent=1))
    np.savez_compressed(args.out / "traces.npz", **traces)
    write_reports(results, traces, args.out)
    if not args.no_plots:
        plots(results, traces, args.out, dim)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
