"""AM-Nesterov against independent implementations of Nesterov momentum.

With ``beta_max = 0`` AM's beta is 0 at every step, so the effective momentum is the constant
``m = lambd / (1 + lambd)``: AM-SGD with ``nesterov=True`` is then Nesterov's method in EMA
form, which ``torch.optim.SGD(momentum=m, nesterov=True)`` runs in its own units.
"""

import pytest
import torch
from helpers import make_params, quadratic_grads

import adamem


@pytest.mark.parametrize("foreach", [False, True, None])  # None: the fused path
@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
@pytest.mark.parametrize("nesterov", [True, False])
def test_amsgd_with_fixed_momentum_is_torch_sgd(nesterov, weight_decay, foreach):
    """With the momentum held fixed, AMSGD(nesterov=...) continues a torch.optim.SGD run with
    the same momentum and nesterov flag step for step (heavy ball without the look-ahead)."""
    momentum, lr = 0.5, 0.02
    torch_params = make_params()
    sgd = torch.optim.SGD(
        torch_params, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay
    )
    for step in range(3):
        quadratic_grads(torch_params, step)
        sgd.step()
    am_params = [torch.nn.Parameter(p.detach().clone()) for p in torch_params]
    am = adamem.AMSGD(
        am_params, lr=1.0, beta_max=0.0, lambd=momentum / (1 - momentum), foreach=foreach
    )
    am.load_sgd_state_dict(sgd.state_dict())
    assert am.param_groups[0]["nesterov"] is nesterov
    for step in range(3, 12):
        quadratic_grads(torch_params, step)
        quadratic_grads(am_params, step)
        sgd.step()
        am.step()
    for expected, actual in zip(torch_params, am_params):
        torch.testing.assert_close(actual, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("foreach", [False, True, None])
@pytest.mark.parametrize("nesterov", [False, True])
def test_amadamw_first_step_is_adams_with_and_without_nesterov(nesterov, foreach):
    """With lambd = 0 the bias-corrected look-ahead keeps AM-AdamW's first step Adam's."""
    torch_params = make_params()
    am_params = [torch.nn.Parameter(p.detach().clone()) for p in torch_params]
    adam = torch.optim.Adam(torch_params, lr=0.01, betas=(0.89, 0.999))
    am = adamem.AMAdamW(
        am_params, lr=0.01, weight_decay=0.0, lambd=0.0, nesterov=nesterov, foreach=foreach
    )
    quadratic_grads(torch_params, 0)
    quadratic_grads(am_params, 0)
    adam.step()
    am.step()
    for expected, actual in zip(torch_params, am_params):
        torch.testing.assert_close(actual, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", ["amsgd", "amadamw"])
def test_nesterov_changes_only_the_parameters(name):
    """From the same point, memory and gradient, the look-ahead changes the parameters only:
    the same beta and the same new memory."""
    runs = []
    for nesterov in (False, True):
        params = make_params()
        if name == "amsgd":
            optimizer = adamem.AMSGD(params, lr=0.05, nesterov=nesterov)
        else:
            optimizer = adamem.AMAdamW(params, lr=0.03, nesterov=nesterov)
        for step in range(2):
            if step == 1:  # the same point for both runs: their first steps differ
                with torch.no_grad():
                    for p, q in zip(params, make_params(seed=5)):
                        p.copy_(q)
            quadratic_grads(params, step)
            optimizer.step()
        runs.append((params, optimizer))
    (plain, plain_opt), (ahead, ahead_opt) = runs
    memory = "momentum_buffer" if name == "amsgd" else "exp_avg"
    for p, q in zip(plain, ahead):
        assert torch.equal(plain_opt.state[p]["beta"], ahead_opt.state[q]["beta"])
        assert torch.equal(plain_opt.state[p][memory], ahead_opt.state[q][memory])
    assert any(not torch.equal(p, q) for p, q in zip(plain, ahead))
