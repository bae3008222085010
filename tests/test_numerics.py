"""Where NaN and inf can come from: not from degenerate gradients, extreme scales, fp16 or bf16;
from too large a learning rate, as with torch's optimizers, with beta still in range."""

import copy

import pytest
import torch
from helpers import (
    BASE_CASES,
    CASES,
    assert_finite,
    parametrize_cases,
    quadratic_grads,
    run,
    state_tensors,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import adamem


@pytest.mark.parametrize("foreach", [False, True, None])  # None: the fused path
@parametrize_cases(BASE_CASES)
@pytest.mark.parametrize("degenerate", ["zero_grad", "lr_zero", "constant_grad"])
def test_degenerate_steps_are_finite(case, foreach, degenerate):
    params = case.params(torch.float32)
    lr = 0.0 if degenerate == "lr_zero" else 0.05
    optimizer = case.make(params, lr=lr, foreach=foreach, scope="global")
    start = [p.detach().clone() for p in params]
    for _ in range(4):
        for p in params:
            p.grad = torch.zeros_like(p) if degenerate == "zero_grad" else torch.full_like(p, 0.5)
        optimizer.step()
    assert_finite(optimizer, params)
    if degenerate == "lr_zero":
        assert all(torch.equal(p, s) for p, s in zip(params, start))
    # AM-SGD's own math: no gradient solves beta = 0, and d = g from the first step on.
    if degenerate == "zero_grad" and case.cls is adamem.AMSGD:
        assert all(float(optimizer.state[p]["beta"]) == 0.0 for p in params)
    if degenerate == "constant_grad" and case.cls is adamem.AMSGD:
        assert all(torch.equal(optimizer.state[p]["momentum_buffer"], p.grad) for p in params)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("scale", [1e-30, 1e30])
@pytest.mark.parametrize("foreach", [False, True, None])  # None: the fused path
@parametrize_cases(BASE_CASES)
def test_extreme_gradient_scales_are_finite(case, foreach, scale, dtype):
    params = case.params(dtype)
    optimizer = case.make(params, foreach=foreach)
    for step in range(5):
        generator = torch.Generator().manual_seed(step)
        for p in params:
            p.grad = (torch.randn(p.shape, generator=generator) * scale).to(dtype)
        optimizer.step()
    assert_finite(optimizer, params, second_moment_may_overflow=dtype == torch.float32)


@pytest.mark.parametrize("foreach", [False, True, None])  # None: the fused path
@parametrize_cases(BASE_CASES)
def test_fp16_with_large_gradients_is_finite(case, foreach):
    params = case.params(torch.float16)
    optimizer = case.make(params, foreach=foreach)
    for step in range(5):
        generator = torch.Generator().manual_seed(step)
        for p in params:
            p.grad = (torch.randn(p.shape, generator=generator) * 1e4).to(torch.float16)
            assert torch.isfinite(p.grad).all()
        optimizer.step()
    assert_finite(optimizer, params)


@parametrize_cases(BASE_CASES)
def test_bf16_run_is_close_to_fp32(case):
    results = {}
    for dtype in (torch.float32, torch.bfloat16):
        params = case.params(dtype)
        optimizer = case.make(params)
        run(optimizer, params, steps=20)
        assert_finite(optimizer, params)
        assert all(optimizer.state[p]["beta"].dtype == torch.float32 for p in params)
        results[dtype] = torch.cat([p.detach().float().flatten() for p in params])
    error = (results[torch.bfloat16] - results[torch.float32]).abs().max()
    assert error <= 0.05 * results[torch.float32].abs().max()


settings.register_profile(
    "adamem", deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)


@pytest.mark.parametrize("foreach", [False, True, None])  # None: the fused path
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_lambd_zero_with_overflowing_second_moment_stays_finite(dtype, foreach):
    """With lambd = 0 the model has no lambd P term, also where g*g overflows v (and P) to inf;
    computing 0 * inf there once turned finite gradients into NaN parameters."""
    generator = torch.Generator().manual_seed(0)
    param = torch.nn.Parameter(torch.randn(64, generator=generator).to(dtype))
    optimizer = adamem.AMAdamW(
        [param], lr=1e-3, betas=(0.5, 0.9), lambd=0.0, foreach=foreach, fused=None
    )
    for step in range(3):
        param.grad = (torch.randn(64, generator=generator) * 4e19).to(dtype)
        optimizer.step()
        assert torch.isfinite(param).all(), step
        assert torch.isfinite(optimizer.state[param]["exp_avg"]).all(), step


FUZZ_ARGUMENTS = dict(
    case=st.sampled_from(CASES),
    log_scale=st.floats(-30, 30),
    lr=st.floats(0.0, 10.0),
    lambd=st.one_of(st.just(0.0), st.floats(0.0, 5.0)),
    cap=st.floats(0.0, 0.99),
    weight_decay=st.floats(0.0, 0.09),
    scope=st.sampled_from(["tensor", "group", "global"]),
    foreach=st.sampled_from([False, True, None]),  # None: the fused path (fp32/fp64)
    dtype=st.sampled_from([torch.float32, torch.float64, torch.bfloat16, torch.float16]),
    seed=st.integers(0, 2**16),
)


@pytest.mark.slow
@settings(settings.get_profile("adamem"), max_examples=3000)
@given(**FUZZ_ARGUMENTS)
def test_finite_inputs_give_finite_outputs_fuzzed(**arguments):
    """The property below over thousands of cases (minutes)."""
    check_finite_inputs_give_finite_outputs(**arguments)


@settings(settings.get_profile("adamem"), max_examples=60)
@given(**FUZZ_ARGUMENTS)
def test_finite_inputs_give_finite_outputs(**arguments):
    check_finite_inputs_give_finite_outputs(**arguments)


def check_finite_inputs_give_finite_outputs(
    case, log_scale, lr, lambd, cap, weight_decay, scope, foreach, dtype, seed
):
    if dtype == torch.float16:
        # fp16 holds neither such gradients nor the parameters that such steps would reach.
        log_scale, lr = max(min(log_scale, 1.0), -4.0), min(lr, 1.0)
    elif dtype in (torch.float32, torch.bfloat16):
        log_scale = max(min(log_scale, 30.0), -30.0)
    max_finite = torch.finfo(torch.float32 if dtype == torch.float16 else dtype).max
    options = dict(lr=lr, lambd=lambd, weight_decay=weight_decay, scope=scope, foreach=foreach)
    options.update(case.family.cap_options(cap))

    def run(run_dtype):
        """Four steps in ``run_dtype``: ``(params, optimizer)``, or ``None`` if the scaled
        gradients do not fit the dtype."""
        params = case.params(run_dtype, seed=seed)
        optimizer = case.make(params, **options)
        for step in range(4):
            quadratic_grads(params, step, seed=seed)
            for p in params:
                p.grad = (p.grad.double() * 10.0**log_scale).to(run_dtype)
            if not all(torch.isfinite(p.grad).all() for p in params):
                return None
            optimizer.step()
        return params, optimizer

    if dtype != torch.float64:
        # A large lr on a steep quadratic diverges, and the exact iterates may leave the
        # dtype's range within the 4 steps (torch's SGD overflows there too): the property is
        # about runs whose float64 twin stays well in range. "Well": near the top of the range
        # the sums of squares saturate first (to inf, which gives beta 0, not NaN), and that
        # other beta moves a diverging run by a few times per step.
        twin = run(torch.float64)
        if twin is None:
            return
        saturating = case.family.second_moment_key  # may saturate: checked below
        values = [
            value
            for key, value in state_tensors(twin[1], twin[0]).items()
            if value.is_floating_point() and key.rsplit(".", 1)[-1] != saturating
        ]
        if not all((value.abs() < 1e-4 * max_finite).all() for value in values):
            return
    result = run(dtype)
    if result is None:
        return
    params, optimizer = result
    assert_finite(optimizer, params, (10.0**log_scale * 10) ** 2 > max_finite)


@pytest.mark.parametrize("foreach", [False, True, None])  # None: the fused path
def test_too_large_a_learning_rate_diverges_like_torch_sgd_with_beta_in_range(foreach):
    """The guarantee is about beta, not the parameters: on finite data, lr = 1e6 takes the
    parameters to NaN within a few steps, as the same step size does with torch's SGD."""
    torch.manual_seed(0)
    inputs, targets = torch.randn(64, 10), torch.randn(64, 1)
    start = torch.nn.Sequential(torch.nn.Linear(10, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1))
    am_model, torch_model = copy.deepcopy(start), copy.deepcopy(start)
    am = adamem.AMSGD(am_model.parameters(), lr=1e6, foreach=foreach)
    sgd = torch.optim.SGD(torch_model.parameters(), lr=1e6 * (1 - 0.9), momentum=0.9)
    for _ in range(10):
        for model, optimizer in ((am_model, am), (torch_model, sgd)):
            optimizer.zero_grad()
            torch.nn.functional.mse_loss(model(inputs), targets).backward()
            optimizer.step()
        betas = torch.stack([am.state[p]["beta"] for p in am_model.parameters()])
        assert ((betas >= 0) & (betas <= 0.9)).all()  # False for a NaN beta
    for model in (am_model, torch_model):
        assert all(torch.isnan(p).any() for p in model.parameters())
