"""The fused C path equals the reference path; it falls back cleanly when it cannot run."""

import copy
import io
import warnings

import pytest
import torch
from helpers import (
    BASE_CASES,
    BETA_SOLVER_CAPS,
    CASES,
    COMPLEX_CASES,
    FUSED,
    LRS,
    REFERENCE,
    SCOPES,
    assert_equal_states,
    beta_solver_inputs,
    cases,
    make_params,
    parametrize_cases,
    quadratic_grads,
    run,
    state_tensors,
    trajectory,
    with_kernels,
)

import adamem
from adamem._kernels import build, cpu
from adamem._kernels import fused as fused_path

pytestmark = pytest.mark.skipif(build.library() is None, reason="no C compiler for the kernels")

# Enough elements for several kernel chunks on several threads.
LARGE_SHAPES = [(260, 260), (7,), (20000,), (3,)]


@pytest.fixture
def fused_calls(monkeypatch):
    """Counts the steps that took the fused path."""
    calls = []
    block_sums = cpu.FusedStep.block_sums

    def spy(self):
        calls.append(self)
        return block_sums(self)

    monkeypatch.setattr(cpu.FusedStep, "block_sums", spy)
    return calls


@pytest.mark.parametrize("maximize", [False, True])
@pytest.mark.parametrize("scope", SCOPES)
@parametrize_cases(with_kernels(CASES))
def test_fused_equals_reference_float64(case, scope, maximize, fused_calls):
    reference = trajectory(case, scope=scope, maximize=maximize, **REFERENCE)
    assert not fused_calls
    fused = trajectory(case, scope=scope, maximize=maximize, **FUSED)
    assert len(fused_calls) == 2 * 12
    assert_equal_states(fused, reference, rtol=0, atol=1e-12)


@pytest.mark.parametrize("scope", SCOPES)
@parametrize_cases(with_kernels(CASES))
def test_fused_equals_reference_float32_large(case, scope, fused_calls):
    large = dict(scope=scope, shapes=LARGE_SHAPES, steps=8)
    reference = trajectory(case, torch.float32, **large, **REFERENCE)
    fused = trajectory(case, torch.float32, **large, **FUSED)
    assert fused_calls
    assert_equal_states(fused, reference, rtol=1e-5, atol=1e-6)


@parametrize_cases(with_kernels(CASES))
def test_fused_equals_reference_float64_large(case):
    reference = trajectory(case, shapes=LARGE_SHAPES, steps=6, **REFERENCE)
    fused = trajectory(case, shapes=LARGE_SHAPES, steps=6, **FUSED)
    assert_equal_states(fused, reference, rtol=0, atol=1e-12)


@parametrize_cases(with_kernels(BASE_CASES))
def test_fused_default_on_cpu_and_results_do_not_depend_on_threads(case, fused_calls):
    results = []
    threads = torch.get_num_threads()
    try:
        for count in (1, 3):
            torch.set_num_threads(count)
            params = case.params(torch.float32, shapes=LARGE_SHAPES)
            opt = case.make(params)
            run(opt, params, steps=5)
            results.append(state_tensors(opt, params))
    finally:
        torch.set_num_threads(threads)
    assert len(fused_calls) == 10
    assert_equal_states(results[1], results[0], rtol=0, atol=0)


@parametrize_cases(COMPLEX_CASES)
def test_fused_complex_parameter_is_its_real_view(case, fused_calls):
    generator = torch.Generator().manual_seed(3)
    values = torch.randn(4, 2, generator=generator, dtype=torch.float64)
    complex_param = torch.nn.Parameter(torch.view_as_complex(values.clone()))
    real_param = torch.nn.Parameter(values.clone())
    opt_c = case.make([complex_param], fused=True)
    opt_r = case.make([real_param], fused=False)
    for _ in range(5):
        grad = torch.randn(4, 2, generator=generator, dtype=torch.float64) + real_param.detach()
        complex_param.grad = torch.view_as_complex(grad.clone())
        real_param.grad = grad.clone()
        opt_c.step()
        opt_r.step()
    assert len(fused_calls) == 5
    torch.testing.assert_close(
        torch.view_as_real(complex_param.detach()), real_param.detach(), rtol=0, atol=1e-12
    )
    torch.testing.assert_close(
        opt_c.state[complex_param]["beta"], opt_r.state[real_param]["beta"], rtol=0, atol=1e-12
    )


@parametrize_cases(with_kernels(BASE_CASES))
def test_fused_resumes_bit_exactly_and_reads_reference_checkpoints(case):
    params = case.params(torch.float32)
    uninterrupted = case.make(params, fused=True)
    run(uninterrupted, params, steps=8, lrs=LRS, skip_every=3)

    for first_half_fused in (True, False):
        first_half = case.params(torch.float32)
        opt = case.make(first_half, fused=first_half_fused)
        run(opt, first_half, steps=4, lrs=LRS, skip_every=3)
        buffer = io.BytesIO()
        torch.save({"params": [p.detach() for p in first_half], "opt": opt.state_dict()}, buffer)
        buffer.seek(0)
        checkpoint = torch.load(buffer, weights_only=True)
        resumed = [torch.nn.Parameter(p.clone()) for p in checkpoint["params"]]
        opt = case.make(resumed, fused=True)
        opt.load_state_dict(checkpoint["opt"])
        for step in range(4, 8):
            quadratic_grads(resumed, step, skip_every=3)
            opt.param_groups[0]["lr"] = LRS[step % len(LRS)]
            opt.step()
        tolerance = dict(rtol=0, atol=0) if first_half_fused else dict(rtol=1e-5, atol=1e-6)
        expected = state_tensors(uninterrupted, params)
        assert_equal_states(state_tensors(opt, resumed), expected, **tolerance)


@parametrize_cases(with_kernels(BASE_CASES))
def test_fused_tensor_lr_and_deepcopy(case, fused_calls):
    params = case.params(torch.float32)
    opt = case.make(params, lr=torch.tensor(0.02), fused=True)
    run(opt, params, steps=2)
    twin_params, twin = copy.deepcopy((params, opt))
    for optimizer, tensors in ((opt, params), (twin, twin_params)):
        quadratic_grads(tensors, 5)
        optimizer.step()
    assert len(fused_calls) == 4
    assert_equal_states(
        state_tensors(twin, twin_params), state_tensors(opt, params), rtol=0, atol=0
    )


def reset_library(monkeypatch):
    monkeypatch.setattr(build, "_library", None)
    monkeypatch.setattr(build, "_failed", False)
    monkeypatch.setattr(build, "_warned", set())


def steps_with_warnings(opt, params, steps):
    """Step ``steps`` times; return the messages of the warnings each step raised."""
    messages = []
    for step in range(steps):
        quadratic_grads(params, step)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            opt.step()
        messages.append([str(w.message) for w in caught])
    return messages


def assert_reference_result(case, params, steps):
    reference = case.params(params[0].dtype)
    opt = case.make(reference, foreach=False)
    for step in range(steps):
        quadratic_grads(reference, step)
        opt.step()
    for a, b in zip(params, reference):
        assert torch.equal(a, b)


@parametrize_cases(with_kernels(BASE_CASES))
def test_missing_compiler_falls_back_with_one_warning(case, monkeypatch, tmp_path, fused_calls):
    reset_library(monkeypatch)
    monkeypatch.setenv("ADAMEM_CC", str(tmp_path / "no-such-cc"))
    monkeypatch.setenv("ADAMEM_CACHE_DIR", str(tmp_path / "cache"))
    params = case.params()
    messages = steps_with_warnings(case.make(params), params, 6)
    assert len(messages[0]) == 1 and "no C compiler" in messages[0][0]
    assert not any(messages[1:])
    assert not fused_calls
    assert_reference_result(case, params, 6)


def test_failing_compiler_falls_back(monkeypatch, tmp_path):
    reset_library(monkeypatch)
    monkeypatch.setenv("ADAMEM_CC", "false")
    monkeypatch.setenv("ADAMEM_CACHE_DIR", str(tmp_path))
    with pytest.warns(RuntimeWarning, match="kernels are unavailable.*false failed"):
        assert build.library() is None
    assert list(tmp_path.iterdir()) == []


def test_library_is_cached_on_disk(monkeypatch, tmp_path):
    reset_library(monkeypatch)
    monkeypatch.setenv("ADAMEM_CACHE_DIR", str(tmp_path))
    assert build.library() is not None
    (built,) = tmp_path.iterdir()
    reset_library(monkeypatch)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert build.library() is not None  # loaded from the cache: no compiler needed
    assert list(tmp_path.iterdir()) == [built]


@parametrize_cases(with_kernels(BASE_CASES))
def test_fused_true_warns_once_for_tensors_it_cannot_take(case, monkeypatch, fused_calls):
    monkeypatch.setattr(build, "_warned", set())
    params = case.params(torch.bfloat16)
    messages = steps_with_warnings(case.make(params, fused=True), params, 4)
    assert len(messages[0]) == 1 and "fused=True, but" in messages[0][0]
    assert not any(messages[1:])
    silent = case.params(torch.bfloat16)
    assert not any(steps_with_warnings(case.make(silent), silent, 2))
    assert not fused_calls
    assert_reference_result(case, params, 4)


@parametrize_cases(with_kernels(BASE_CASES))
def test_non_contiguous_parameter_takes_the_torch_path(case, fused_calls):
    param = torch.nn.Parameter(torch.randn(6, 4, dtype=torch.float64).t())
    opt = case.make([param], lr=0.01)
    param.grad = torch.ones_like(param)
    opt.step()
    assert not fused_calls


@parametrize_cases(with_kernels(BASE_CASES))
def test_fused_flag_validation_and_setstate_default(case):
    with pytest.raises(TypeError, match="fused"):
        case.make(case.params(), fused="yes")
    with pytest.raises(ValueError, match="exclusive"):
        case.make(case.params(), fused=True, foreach=True)
    opt = case.make(case.params())
    state = opt.__getstate__()
    for group in state["param_groups"]:
        del group["fused"]
    opt.__setstate__(state)
    assert all(group["fused"] is None for group in opt.param_groups)


def _run_with_changes(case, fused, changes):
    """Six steps of ``case`` on fresh parameters, calling ``changes(opt, params)`` after the
    third; returns every parameter and state tensor."""
    params = case.params(torch.float64, shapes=[(4, 4), (3,), (5,)])
    opt = case.make(params, fused=fused, foreach=None if fused else False)
    for step in range(6):
        if step == 3:
            changes(opt, params)
        quadratic_grads(params, step)
        opt.step()
    return state_tensors(opt, params)


@parametrize_cases(with_kernels(BASE_CASES))
def test_cached_layout_follows_replaced_storage(case, fused_calls):
    """The kernels' records are cached per group; new storage for a parameter and a state
    loaded into the same optimizer must be seen."""

    def changes(opt, params):
        params[0].data = params[0].data.clone()
        opt.load_state_dict(copy.deepcopy(opt.state_dict()))

    fused = _run_with_changes(case, True, changes)
    assert len(fused_calls) == 6
    assert_equal_states(fused, _run_with_changes(case, False, changes), rtol=0, atol=1e-12)


@parametrize_cases(with_kernels(BASE_CASES))
def test_fresh_gradients_each_step_reuse_the_cached_records(case, monkeypatch, fused_calls):
    """A training loop's zero_grad(set_to_none=True) gives every step new gradients: the
    records are built for the first step (which creates the state) and the second, then
    take the new addresses; the steps equal the reference's."""
    built = []
    records = cpu.records
    monkeypatch.setattr(cpu, "records", lambda *args: built.append(1) or records(*args))
    fused = _run_with_changes(case, True, lambda opt, params: None)
    assert len(fused_calls) == 6 and len(built) == 2
    reference = _run_with_changes(case, False, lambda opt, params: None)
    assert_equal_states(fused, reference, rtol=0, atol=1e-12)


@parametrize_cases(with_kernels(BASE_CASES))
def test_cached_layout_rechecks_a_parameter_made_non_contiguous(case, fused_calls):
    """``p.data = p.data.t()`` keeps the address but not the layout the kernels assume."""

    def changes(opt, params):
        params[0].data = params[0].data.t()

    fused = _run_with_changes(case, True, changes)
    assert len(fused_calls) == 3  # then the torch path
    assert_equal_states(fused, _run_with_changes(case, False, changes), rtol=0, atol=1e-12)


@parametrize_cases(with_kernels(BASE_CASES))
def test_fused_path_records_the_solved_betas_exactly(case):
    """state["beta"] is the beta the step solved (``solved_betas()``, float64: by
    adamem.beta, or in C by its rules), rounded once to the state's dtype, and beta_product
    is multiplied by exactly that value."""
    params = case.params(torch.float32, shapes=[(3,)] * 40)
    optimizer = case.make(params, fused=True)
    generator = torch.Generator().manual_seed(0)
    products = None
    for step in range(6):
        for p in params:  # independent gradients: betas inside (0, cap), not at its ends
            p.grad = torch.randn(p.shape, generator=generator)
        optimizer.step()
        if step == 0:
            continue
        solved_params, betas = optimizer.solved_betas()[0]
        assert [id(p) for p in solved_params] == [id(p) for p in params]
        assert betas.dtype == torch.float64
        assert ((betas > 0) & (betas < 0.8)).sum() >= 3
        for p, beta in zip(params, betas):
            assert optimizer.state[p]["beta"] == beta.to(torch.float32)
        if case.family.second_moment_key is not None:  # AM-AdamW keeps Pi
            if products is not None:
                for p, previous, beta in zip(params, products, betas):
                    expected = previous * beta.to(torch.float32)
                    assert optimizer.state[p]["beta_product"] == expected
            products = [optimizer.state[p]["beta_product"].clone() for p in params]


def test_kernel_select_beta_follows_adamem_beta_exactly():
    """The per-tensor step solves beta in C: the same rules (ALGORITHMS.md §7) and values as
    adamem.beta.select_beta, on random (a, b, cap) and on every edge case."""
    from adamem.beta import select_beta

    kernel = build.select_beta(build.library())
    a, b = beta_solver_inputs()
    for cap in BETA_SOLVER_CAPS:
        expected = select_beta(a, b, cap)
        actual = torch.tensor(
            [kernel(x, y, cap) for x, y in zip(a.tolist(), b.tolist())], dtype=torch.float64
        )
        assert torch.equal(actual, expected), cap


# The cases whose scope="tensor" steps can take one pass (noise_averaging takes two, below).
ONE_PASS_CASES = cases(lambda case: case.options.get("noise_averaging") is None)
# Tensors from 1 << 19 elements on are shared by the threads, smaller ones taken by one each.
RUN_SHAPES = [(1100000,), (5,), (3, 7), (700000,), (400000,), (1,), (70000,)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@parametrize_cases(with_kernels(ONE_PASS_CASES))
def test_one_pass_per_tensor_equals_two_passes_bit_for_bit(case, dtype, monkeypatch):
    """scope="tensor" solves each tensor's beta between its two passes; the two-pass step
    (every tensor's sums first) gives the same bits, for tensors shared by the threads and for
    tensors taken by one thread."""
    results = []
    for one_pass in (True, False):
        monkeypatch.setattr(fused_path, "tensor_blocks", lambda batch, on=one_pass: on)
        params = case.params(dtype, shapes=RUN_SHAPES)
        optimizer = case.make(params, fused=True)
        run(optimizer, params, steps=5, lrs=LRS, skip_every=3)
        results.append(state_tensors(optimizer, params))
        for index, solved in enumerate(optimizer.solved_betas()):
            if solved is not None:
                results[-1][f"solved{index}"] = solved[1]
    assert any(key.startswith("solved") for key in results[0])
    assert_equal_states(results[0], results[1], rtol=0, atol=0)


def test_one_pass_per_tensor_only_where_each_tensor_is_a_block():
    params = make_params()
    for scope, expected in (("tensor", True), ("group", False), ("global", False)):
        optimizer = adamem.AMSGD(params, lr=0.1, scope=scope)
        for p in params:
            p.grad = torch.ones_like(p)
        batch = optimizer._collect(optimizer.param_groups[0])
        assert fused_path.tensor_blocks(batch) is expected
    # The running average of noise_averaging is kept outside the kernels: two passes.
    optimizer = adamem.AMSGD(params, lr=0.1, noise_averaging=0.9)
    assert fused_path.tensor_blocks(optimizer._collect(optimizer.param_groups[0])) is False
