"""All 17 vectors of ALGORITHMS.md §9 (50-digit values), through the library's public pieces."""

import pytest
import torch
from helpers import (
    assert_vector_close,
    check_adamw_step_vector,
    check_adamw_trajectory_vector,
    quadratic_trajectory,
    t64,
    vectors_of,
)

import adamem
from adamem.amadamw import (
    amadamw_preconditioner,
    compat_gap,
    displacement_gap,
)
from adamem.amsgd import amsgd_tensor_step, amsgd_terms
from adamem.beta import select_beta


@pytest.mark.parametrize("vector", vectors_of("sgd_step"), ids=lambda v: v["name"])
def test_sgd_step_through_beta_module(vector):
    i, e = vector["inputs"], vector["expected"]
    g, d, x = t64(i["g"]), t64(i["d"]), t64(i["x"])
    gap = i["eta_prev"] * torch.dot(g, d)
    a, b = amsgd_terms(g, d, gap=gap, lr=i["eta"], lambd=i["lam"])
    beta = select_beta(a, b, i["beta_max"])
    assert_vector_close(beta, e["beta"])
    if "num" in e and i["eta"] > 0:
        # a, b are eta * (num, den) of the model (§2); the vectors give §3's form, which
        # multiplies both by 1 + lambda (§9).
        scale = (1 + i["lam"]) / i["eta"]
        assert_vector_close(a * scale, e["num"])
        assert_vector_close(b * scale, e["den"])
    new_x, new_d = amsgd_tensor_step(x, g, d, beta, lr=i["eta"], lambd=i["lam"])
    assert_vector_close(new_d, e["d_next"])
    assert_vector_close(new_x, e["x_next"])


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("vector", vectors_of("sgd_step"), ids=lambda v: v["name"])
def test_sgd_step_through_optimizer(vector, foreach):
    i, e = vector["inputs"], vector["expected"]
    x = torch.nn.Parameter(t64(i["x"]))
    opt = adamem.AMSGD([x], lr=i["eta"], beta_max=i["beta_max"], lambd=i["lam"], foreach=foreach)
    opt.state[x] = {
        "momentum_buffer": t64(i["d"]),
        "prev_lr": torch.tensor(i["eta_prev"], dtype=torch.float64),
        "beta": torch.tensor(0.0, dtype=torch.float64),
    }
    x.grad = t64(i["g"])
    opt.step()
    assert_vector_close(opt.state[x]["beta"], e["beta"])
    assert_vector_close(opt.state[x]["momentum_buffer"], e["d_next"])
    assert_vector_close(x.detach(), e["x_next"])
    assert_vector_close(opt.state[x]["prev_lr"], i["eta"])


@pytest.mark.parametrize("vector", vectors_of("adamw_step"), ids=lambda v: v["name"])
def test_adamw_step(vector):
    check_adamw_step_vector(vector)


@pytest.mark.parametrize("vector", vectors_of("adamw_P"), ids=lambda v: v["name"])
def test_adamw_preconditioner(vector):
    i, e = vector["inputs"], vector["expected"]
    v, p = amadamw_preconditioner(
        t64(i["v_prev"]),
        t64(i["g"]),
        beta2=i["beta2"],
        step=torch.tensor(float(i["k"]), dtype=torch.float64),
        bias_correction1=1 - i["beta1_max"] * i["Pi"],
        eps=i["eps"],
    )
    assert_vector_close(v, e["v"])
    assert_vector_close(p, e["P"])


@pytest.mark.parametrize("vector", vectors_of("adamw_gap"), ids=lambda v: v["name"])
def test_adamw_gap_estimates(vector):
    i, e = vector["inputs"], vector["expected"]
    x, g, d = t64(i["x"]), t64(i["g"]), t64(i["d"])
    assert_vector_close(
        displacement_gap(x, g, d, t64(i["P_prev"]), prev_lr=i["eta_prev"], weight_decay=i["mu"]),
        e["Gamma_displacement"],
    )
    assert_vector_close(
        compat_gap(x, g, d, t64(i["P"]), prev_lr=i["eta_prev"], lr=i["eta"], weight_decay=i["mu"]),
        e["Gamma_compat"],
    )


def momentum_of(opt, params, key):
    return torch.cat([opt.state[p][key] for p in params])


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("vector", vectors_of("sgd_traj"), ids=lambda v: v["name"])
def test_sgd_trajectory(vector, foreach):
    def make(params, i):
        scope = "tensor" if i["per_tensor"] else "global"
        return adamem.AMSGD(
            params,
            lr=i["lrs"][0],
            beta_max=i["beta_max"],
            lambd=i["lam"],
            scope=scope,
            foreach=foreach,
        )

    assert vector["inputs"]["lr_ratio"]
    params, opt, betas = quadratic_trajectory(vector, make)
    e = vector["expected"]
    n_blocks = len(e["betas"][0])
    assert_vector_close([row[:n_blocks] for row in betas[1:]], e["betas"])
    assert_vector_close(torch.cat([p.detach() for p in params]), e["x_final"])
    assert_vector_close(momentum_of(opt, params, "momentum_buffer"), e["d_final"])


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("vector", vectors_of("adamw_traj"), ids=lambda v: v["name"])
def test_adamw_trajectory(vector, foreach):
    check_adamw_trajectory_vector(vector, foreach=foreach)


def test_every_vector_is_exercised():
    kinds = {"sgd_step", "adamw_step", "adamw_P", "adamw_gap", "sgd_traj", "adamw_traj"}
    from helpers import VECTORS

    assert len(VECTORS) == 17
    assert {v["kind"] for v in VECTORS} == kinds
