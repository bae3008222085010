"""beta and the new point solve the two-plane proximal problem of ALGORITHMS.md §2.

The closed forms are checked against generic solvers that see the model only as a function:
SLSQP on the epigraph form of the primal, and a bounded 1-D search on the dual whose inner
minimisation is a Newton step with an autograd Hessian. AM-AdamW's ``scale_invariant`` model
(docs/variants.md) is checked the same way, its pull written in the metric ``P``.
"""

import numpy as np
import pytest
import torch
from scipy.optimize import minimize, minimize_scalar

import adamem
from adamem.amadamw import amadamw_tensor_step, amadamw_terms
from adamem.amsgd import amsgd_tensor_step, amsgd_terms
from adamem.beta import select_beta

UNCLIPPED_TARGETS = (-0.5, 0.4, 0.95, 1.5)  # below 0, interior, between cap and 1, above 1


def random_instance(rng, sgd: bool, scale_invariant: bool = False):
    n = int(rng.integers(2, 7))
    t = lambda scale: torch.tensor(rng.normal(size=n) * scale, dtype=torch.float64)  # noqa: E731
    instance = dict(
        x=t(1.0),
        g=t(10 ** rng.uniform(-1, 1)),
        d=t(10 ** rng.uniform(-1, 1)),
        lr=float(10 ** rng.uniform(-3, 0.3)),
        lambd=float(rng.choice([0.0, rng.uniform(0, 2)])),
        cap=float(rng.uniform(0.5, 0.95)),
        scale_invariant=scale_invariant,
    )
    if sgd:
        instance.update(p=torch.ones(n, dtype=torch.float64), mu=0.0)
    else:
        instance.update(
            p=torch.tensor(np.exp(1.5 * rng.normal(size=n))),
            mu=float(rng.choice([0.0, rng.uniform(0, 0.5)])),
        )
        instance["lr"] = min(instance["lr"], 0.9 / max(instance["mu"], 1e-12))
    return instance


def closed_form(inst, gap, sgd: bool):
    common = dict(lr=inst["lr"], lambd=inst["lambd"])
    if sgd:
        # AM-SGD's (a, b) are the general ones with P = I and mu = 0.
        a, b = amsgd_terms(inst["g"], inst["d"], gap=gap, **common)
        beta = select_beta(a, b, inst["cap"])
        x_new, _ = amsgd_tensor_step(inst["x"], inst["g"], inst["d"], beta, **common)
    else:
        common.update(weight_decay=inst["mu"], scale_invariant=inst["scale_invariant"])
        args = inst["x"], inst["g"], inst["d"], inst["p"]
        a, b = amadamw_terms(*args, gap=gap, **common)
        beta = select_beta(a, b, inst["cap"])
        x_new, _ = amadamw_tensor_step(*args, beta, **common)
    return a, b, beta, x_new


def lagrangian(inst, gap, x, beta):
    """(1-beta) l_g + beta l_d + prox + pull, with f(x_t) = 0 and l_d(x_t) = gap (model B).

    The pull is (lambd / 2 lr) ||P (x - centre) + lr d||^2, the distance to the point
    centre - lr d / P in the metric P^2 (§2), or with ``scale_invariant`` the same distance
    in the metric P of the proximal term."""
    x_t, g, d, p, lr, lambd = inst["x"], inst["g"], inst["d"], inst["p"], inst["lr"], inst["lambd"]
    centre = (1 - inst["mu"] * lr) * x_t
    plane_g = torch.dot(g, x - x_t)
    plane_d = gap + torch.dot(d, x - x_t)
    prox = torch.dot(p * (x - centre), x - centre) / (2 * lr)
    if inst["scale_invariant"]:
        kept = x - (centre - lr * d / p)
        pull = lambd / (2 * lr) * torch.dot(p * kept, kept)
    else:
        pull = lambd / (2 * lr) * torch.sum((p * (x - centre) + lr * d) ** 2)
    return (1 - beta) * plane_g + beta * plane_d + prox + pull


def primal(inst, gap, x):
    """max(l_g, (1-c) l_g + c l_d) + prox + pull: the Lagrangian at the worse of the two ends."""
    return max(lagrangian(inst, gap, x, 0.0), lagrangian(inst, gap, x, inst["cap"]))


def slsqp_solution(inst, gap):
    n = inst["x"].numel()
    as_x = lambda z: torch.tensor(z[:n], dtype=torch.float64)  # noqa: E731

    def objective(z):
        x = as_x(z)
        return float(z[n] + lagrangian(inst, gap, x, 0.0) - torch.dot(inst["g"], x - inst["x"]))

    constraints = [
        {
            "type": "ineq",
            "fun": lambda z, c=c: (
                z[n]
                - float(
                    (1 - c) * torch.dot(inst["g"], as_x(z) - inst["x"])
                    + c * (gap + torch.dot(inst["d"], as_x(z) - inst["x"]))
                )
            ),
        }
        for c in (0.0, inst["cap"])
    ]
    start = np.concatenate([inst["x"].numpy(), [abs(float(gap)) + 1.0]])
    result = minimize(
        objective,
        start,
        constraints=constraints,
        method="SLSQP",
        options=dict(ftol=1e-14, maxiter=500),
    )
    return as_x(result.x)


def dual_maximiser(inst, gap):
    def dual(beta):
        x = inst["x"].clone()
        hessian = torch.autograd.functional.hessian(lambda z: lagrangian(inst, gap, z, beta), x)
        gradient = torch.autograd.functional.jacobian(lambda z: lagrangian(inst, gap, z, beta), x)
        x_beta = x - torch.linalg.solve(hessian, gradient)
        return float(lagrangian(inst, gap, x_beta, beta))

    result = minimize_scalar(
        lambda beta: -dual(beta),
        bounds=(0.0, inst["cap"]),
        method="bounded",
        options=dict(xatol=1e-12),
    )
    return result.x


@pytest.mark.parametrize(
    "sgd, scale_invariant",
    [(True, False), (False, False), (False, True)],
    ids=["sgd", "adamw", "adamw_scale_invariant"],
)
@pytest.mark.parametrize("target", UNCLIPPED_TARGETS)
def test_closed_form_solves_the_model(sgd, scale_invariant, target):
    rng = np.random.default_rng(
        1000 * int(sgd) + 500 * int(scale_invariant) + int(100 * target) % 97
    )
    for _ in range(5):
        inst = random_instance(rng, sgd, scale_invariant)
        a0, b, _, _ = closed_form(inst, 0.0, sgd)
        # a is affine in the gap with slope 1 (a = gap - lr * ...).
        gap = target * b - a0
        a, b, beta, x_cf = closed_form(inst, gap, sgd)
        expected_beta = min(max(target, 0.0), inst["cap"])
        torch.testing.assert_close(beta, torch.tensor(expected_beta, dtype=torch.float64))

        x_generic = slsqp_solution(inst, gap)
        step = torch.linalg.norm(x_cf - inst["x"])
        assert torch.linalg.norm(x_cf - x_generic) <= 1e-4 * step + 1e-9
        scale = abs(primal(inst, gap, x_cf)) + 1.0
        assert primal(inst, gap, x_cf) <= primal(inst, gap, x_generic) + 1e-10 * scale
        assert abs(dual_maximiser(inst, gap) - float(beta)) <= 1e-5


def global_block_dual_maximiser(x_t, g, d, lambd, gap, lr, cap):
    """beta of one block whose coordinates have their own lambd (the per-group lambd of a
    scope="global" block): the dual's maximiser, its inner minimisation a Newton step with an
    autograd Hessian on the Lagrangian of §2 (P = I, mu = 0) written per coordinate."""

    def lagrangian(x, beta):
        step = x - x_t
        planes = (1 - beta) * torch.dot(g, step) + beta * (gap + torch.dot(d, step))
        prox = torch.dot(step, step) / (2 * lr)
        pull = torch.sum(lambd * (step + lr * d) ** 2) / (2 * lr)
        return planes + prox + pull

    def dual(beta):
        x = x_t.clone()
        hessian = torch.autograd.functional.hessian(lambda z: lagrangian(z, beta), x)
        gradient = torch.autograd.functional.jacobian(lambda z: lagrangian(z, beta), x)
        return float(lagrangian(x - torch.linalg.solve(hessian, gradient), beta))

    result = minimize_scalar(
        lambda beta: -dual(beta), bounds=(0.0, cap), method="bounded", options=dict(xatol=1e-12)
    )
    return result.x


@pytest.mark.parametrize("foreach", [False, True, None])  # None: the fused path
@pytest.mark.parametrize("seed", range(3))
def test_global_block_over_groups_with_different_lambd_solves_its_model(seed, foreach):
    """Each group's (a, b) enter the global block's sums with the model's weights: a block
    made of groups with lambd 0.1 and 1.0 gets the beta of that one model."""
    generator = torch.Generator().manual_seed(seed)
    w = torch.nn.Parameter(torch.randn(5, generator=generator, dtype=torch.float64))
    b = torch.nn.Parameter(torch.randn(7, generator=generator, dtype=torch.float64))
    optimizer = adamem.AMSGD(
        [{"params": [w], "lambd": 0.1}, {"params": [b], "lambd": 1.0}],
        lr=0.05,
        beta_max=0.9,
        scope="global",
        foreach=foreach,
    )
    for p in (w, b):
        p.grad = torch.randn(p.shape, generator=generator, dtype=torch.float64)
    optimizer.step()  # first step: d = g
    x_t = torch.cat([w.detach(), b.detach()])
    d = torch.cat([optimizer.state[p]["momentum_buffer"] for p in (w, b)])
    for p in (w, b):
        p.grad = torch.randn(p.shape, generator=generator, dtype=torch.float64)
    g = torch.cat([w.grad, b.grad])
    optimizer.step()
    lambd = torch.tensor([0.1] * 5 + [1.0] * 7, dtype=torch.float64)
    expected = global_block_dual_maximiser(x_t, g, d, lambd, 0.05 * torch.dot(g, d), 0.05, 0.9)
    assert 1e-3 < expected < 0.9 - 1e-3  # interior: the weighting of the groups matters
    for p in (w, b):
        assert abs(float(optimizer.state[p]["beta"]) - expected) <= 1e-6
