"""Loading state: numbers where tensors are expected, another optimizer's state (refused), and
continuing a torch.optim.AdamW / SGD run (converted); an lr given only per group."""

import pytest
import torch
from helpers import BASE_CASES, make_params, parametrize_cases, quadratic_grads, run, state_tensors

import adamem
from adamem.amadamw import amadamw_preconditioner, displacement_gap

BASE_CASE_OF = {case.cls: case for case in BASE_CASES}


@pytest.mark.parametrize("foreach", [False, True, None])
@parametrize_cases(BASE_CASES)
def test_statistics_saved_as_plain_numbers_load_like_tensors(case, foreach):
    """Older or hand-made checkpoints hold ``step`` (and other statistics) as Python numbers,
    as torch's own optimizers accept."""
    params = case.params()
    optimizer = case.make(params)
    run(optimizer, params, steps=3)
    saved = optimizer.state_dict()
    as_numbers = {
        "state": {
            index: {
                key: (float(value) if value.dim() == 0 else value.clone())
                for key, value in state.items()
            }
            for index, state in saved["state"].items()
        },
        "param_groups": saved["param_groups"],
    }
    results = []
    for state_dict in (saved, as_numbers):
        copies = [torch.nn.Parameter(p.detach().clone()) for p in params]
        resumed = case.make(copies)
        for group in resumed.param_groups:
            group["foreach"] = foreach
        resumed.load_state_dict(state_dict)
        for group in resumed.param_groups:
            group["foreach"] = foreach
        for step in range(3, 5):
            quadratic_grads(copies, step)
            resumed.step()
        results.append(state_tensors(resumed, copies))
    assert results[0].keys() == results[1].keys()
    for key in results[0]:
        assert results[1][key].dtype == results[0][key].dtype, key
        torch.testing.assert_close(results[1][key], results[0][key], rtol=0, atol=0, msg=key)


def stepped_state(optimizer_factory):
    params = make_params()
    optimizer = optimizer_factory(params)
    run(optimizer, params, steps=2)
    return optimizer.state_dict()


@pytest.mark.parametrize(
    "target, source, missing",
    [
        (adamem.AMAdamW, lambda p: adamem.AMSGD(p, lr=0.1), "betas"),
        (adamem.AMSGD, lambda p: adamem.AMAdamW(p), "beta_max"),
        (adamem.AMAdamW, lambda p: torch.optim.AdamW(p), "lambd"),
        (adamem.AMSGD, lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9), "beta_max"),
    ],
    ids=["amsgd-into-amadamw", "amadamw-into-amsgd", "adamw-into-amadamw", "sgd-into-amsgd"],
)
def test_another_optimizers_state_is_refused_at_load_time(target, source, missing):
    state_dict = stepped_state(source)
    params = make_params()
    optimizer = BASE_CASE_OF[target].make(params)
    run(optimizer, params, steps=1)
    before = state_tensors(optimizer, params)
    with pytest.raises(ValueError, match=missing):
        optimizer.load_state_dict(state_dict)
    after = state_tensors(optimizer, params)
    assert after.keys() == before.keys()
    for key in before:
        assert torch.equal(after[key], before[key]), key


def test_a_state_missing_a_buffer_is_refused_naming_it():
    amadamw = BASE_CASE_OF[adamem.AMAdamW]
    state_dict = stepped_state(amadamw.make)
    del state_dict["state"][1]["exp_avg_sq"]
    optimizer = amadamw.make(make_params())
    with pytest.raises(ValueError, match=r"parameter 1 has no \['exp_avg_sq'\]"):
        optimizer.load_state_dict(state_dict)


def test_refusal_names_the_conversion_for_torch_states():
    state_dict = stepped_state(lambda p: torch.optim.AdamW(p))
    with pytest.raises(ValueError, match="load_adamw_state_dict"):
        BASE_CASE_OF[adamem.AMAdamW].make(make_params()).load_state_dict(state_dict)


def last_step_displacements(torch_factory, steps=4):
    """Run a torch optimizer; return its params, state_dict, the last gradients and the last
    displacement x_{t-1} - x_t of each tensor."""
    params = make_params()
    optimizer = torch_factory(params)
    for step in range(steps):
        before = [p.detach().clone() for p in params]
        quadratic_grads(params, step)
        optimizer.step()
    displacement = [b - p.detach() for b, p in zip(before, params)]
    quadratic_grads(params, steps)  # the gradient the first AM step will see
    return params, optimizer.state_dict(), displacement


@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
def test_adamw_run_continues_with_its_moments_and_exact_last_displacement(weight_decay):
    betas = (0.9, 0.99)
    params, adamw_state, displacement = last_step_displacements(
        lambda p: torch.optim.AdamW(p, lr=0.02, betas=betas, weight_decay=weight_decay)
    )
    optimizer = adamem.AMAdamW(params, lambd=0.3, scope="group")
    optimizer.load_adamw_state_dict(adamw_state)
    group = optimizer.param_groups[0]
    assert (group["lr"], group["betas"], group["weight_decay"]) == (0.02, betas, weight_decay)
    assert (group["lambd"], group["scope"]) == (0.3, "group")
    for index, p in enumerate(params):
        state, saved = optimizer.state[p], adamw_state["state"][index]
        assert torch.equal(state["exp_avg"], saved["exp_avg"])
        assert torch.equal(state["exp_avg_sq"], saved["exp_avg_sq"])
        # Copies: stepping either optimizer afterwards must leave the other's moments alone.
        for key in ("exp_avg", "exp_avg_sq"):
            assert state[key].data_ptr() != saved[key].data_ptr()
        assert float(state["step"]) == float(saved["step"])
        # The gap of the next beta is <g, x_{t-1} - x_t> of AdamW's last step (§4).
        _, last_p = amadamw_preconditioner(
            state["exp_avg_sq"],
            None,
            beta2=betas[1],
            step=state["step"],
            bias_correction1=state["prev_bias_correction1"],
            eps=group["eps"],
        )
        gap = displacement_gap(
            p.detach(),
            p.grad,
            state["exp_avg"],
            last_p,
            prev_lr=state["prev_lr"],
            weight_decay=weight_decay,
        )
        actual = torch.dot(p.grad.flatten(), displacement[index].flatten())
        torch.testing.assert_close(gap, actual, rtol=1e-10, atol=1e-14)
        # The next bias factor 1 - beta1_max Pi continues AdamW's 1 - beta1^(k+1).
        k = float(state["step"])
        torch.testing.assert_close(
            1 - betas[0] * state["beta_product"], torch.tensor(1 - betas[0] ** (k + 1)).double()
        )
    optimizer.step()
    assert all(torch.isfinite(p).all() for p in params)


def test_adamw_with_amsgrad_is_refused():
    _, state_dict, _ = last_step_displacements(lambda p: torch.optim.AdamW(p, amsgrad=True))
    with pytest.raises(ValueError, match="amsgrad"):
        adamem.AMAdamW(make_params()).load_adamw_state_dict(state_dict)


@pytest.mark.parametrize("dampening", [0.0, 0.3])
def test_sgd_run_continues_in_ema_units_with_exact_last_displacement(dampening):
    momentum, lr = 0.9, 0.01
    params, sgd_state, displacement = last_step_displacements(
        lambda p: torch.optim.SGD(
            p, lr=lr, momentum=momentum, dampening=dampening, weight_decay=0.01
        )
    )
    optimizer = adamem.AMSGD(params, lr=1.0, beta_max=0.8)
    optimizer.load_sgd_state_dict(sgd_state)
    group = optimizer.param_groups[0]
    ema_lr = lr * (1 - dampening) / (1 - momentum)
    assert group["lr"] == pytest.approx(ema_lr, rel=1e-15)
    assert (group["beta_max"], group["weight_decay"]) == (0.8, 0.01)
    for index, p in enumerate(params):
        state = optimizer.state[p]
        # AM-SGD's gap prev_lr <g, d> is <g, x_{t-1} - x_t> of SGD's last step (§4).
        gap = state["prev_lr"] * torch.dot(p.grad.flatten(), state["momentum_buffer"].flatten())
        actual = torch.dot(p.grad.flatten(), displacement[index].flatten())
        torch.testing.assert_close(gap, actual, rtol=1e-12, atol=1e-15)
    optimizer.step()
    assert all(float(optimizer.state[p]["beta"]) <= 0.8 for p in params)


def test_sgd_without_momentum_buffers_starts_afresh():
    params, sgd_state, _ = last_step_displacements(lambda p: torch.optim.SGD(p, lr=0.1))
    optimizer = adamem.AMSGD(params, lr=1.0, nesterov=False)
    optimizer.load_sgd_state_dict(sgd_state)
    assert optimizer.param_groups[0]["lr"] == 0.1
    assert all(not optimizer.state[p] for p in params)
    before = [p.detach().clone() for p in params]
    optimizer.step()  # a first step: d = g, x -= lr g
    for p, x in zip(params, before):
        torch.testing.assert_close(p.detach(), x - 0.1 * p.grad, rtol=0, atol=1e-15)


def test_sgd_nesterov_carries_over():
    _, state_dict, _ = last_step_displacements(
        lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.9, nesterov=True)
    )
    optimizer = adamem.AMSGD(make_params(), lr=1.0)
    optimizer.load_sgd_state_dict(state_dict)
    assert optimizer.param_groups[0]["nesterov"] is True


def test_lr_given_only_in_the_groups():
    w, b = make_params(shapes=[(3, 2), (2,)])
    optimizer = adamem.AMSGD([{"params": [w], "lr": 0.1}, {"params": [b], "lr": 0.01}])
    assert [group["lr"] for group in optimizer.param_groups] == [0.1, 0.01]
    run(optimizer, [w, b], steps=2)
    with pytest.raises(ValueError, match="lr"):
        adamem.AMSGD([{"params": [w], "lr": 0.1}, {"params": [b]}])
    with pytest.raises(ValueError, match="lr"):
        adamem.AMSGD([w, b])
