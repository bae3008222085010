"""The fused CUDA path (Triton kernels) equals the reference path.

On a machine with a CUDA GPU the kernels run compiled on it; elsewhere they run on CPU tensors
in Triton's interpreter (``TRITON_INTERPRET=1``, in a child process), with small chunks so that
every tensor spans several programs and the reduction loops. Without Triton only the fallback
test runs.
"""

import gc
import io
import os
import subprocess
import sys
import warnings
import weakref

import pytest
import torch
from helpers import (
    BASE_CASES,
    BETA_SOLVER_CAPS,
    CASES,
    FUSED,
    REFERENCE,
    SCOPES,
    WEIGHT_DECAY_CASES,
    assert_equal_states,
    assert_finite,
    beta_solver_inputs,
    make_params,
    parametrize_cases,
    quadratic_grads,
    state_tensors,
    trajectory,
    with_kernels,
)

import adamem
from adamem._kernels import build
from adamem._kernels import fused as fused_path

try:
    import triton
    import triton.language as tl

    from adamem._kernels.cuda import _select_beta
except ImportError:
    triton = None

CUDA = torch.cuda.is_available()
# Triton picks its interpreter when it is imported, so without CUDA the kernel tests run in a
# child process that sets TRITON_INTERPRET=1 first (test_kernels_in_interpreter).
INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
RUN_HERE = CUDA or INTERPRETED
DEVICE = torch.device("cuda" if CUDA else "cpu")
# Several chunks per tensor at the test chunk size, and several reduction rounds for the first.
SHAPES = [(20, 15), (3,), (2, 2, 2), (1,), (70,)]
STEPS = 7  # past a skipped gradient (every third step) and an lr of 0


@pytest.fixture(scope="module")
def triton_module():
    if not RUN_HERE:
        pytest.skip(
            "without CUDA, these run under TRITON_INTERPRET=1 (test_kernels_in_interpreter)"
        )
    return pytest.importorskip("adamem._kernels.cuda")


@pytest.fixture
def production_kernels(triton_module, monkeypatch):
    """The Triton path for this test's tensors; returns the list of steps that took it."""
    if not CUDA:
        monkeypatch.setattr(fused_path, "uses_triton", lambda device: True)
    calls = []
    for step_class in triton_module.STEPS.values():
        original = step_class.block_sums

        def spy(self, original=original):
            calls.append(self)
            return original(self)

        monkeypatch.setattr(step_class, "block_sums", spy)
    return calls


@pytest.fixture
def kernels(production_kernels, triton_module, monkeypatch):
    """As ``production_kernels``, with chunks so small that every tensor spans several and
    the reduction takes several rounds."""
    small = triton_module.KernelConfig(block=16, chunk=64, num_warps=1)
    for name in triton_module.CONFIGS:
        monkeypatch.setitem(triton_module.CONFIGS, name, small)
    monkeypatch.setattr(triton_module, "REDUCE_BLOCK", 4)
    return production_kernels


def device_params(dtype, shapes=SHAPES):
    return make_params(dtype, shapes=shapes, device=DEVICE)


def device_trajectory(case, dtype, steps=STEPS, **options):
    """The shared path-equality trajectory (helpers.trajectory) on DEVICE, at this module's
    shapes and STEPS, with a missing gradient every third step."""
    return trajectory(
        case, dtype, shapes=SHAPES, steps=steps, skip_every=3, device=DEVICE, **options
    )


@pytest.mark.parametrize("scope", SCOPES)
@parametrize_cases(with_kernels(CASES))
def test_triton_equals_reference_float64(case, scope, kernels):
    options = dict(scope=scope, maximize=scope == "group")
    reference = device_trajectory(case, torch.float64, **options, **REFERENCE)
    assert not kernels
    fused = device_trajectory(case, torch.float64, **options, **FUSED)
    assert len(kernels) == 2 * STEPS
    assert_equal_states(fused, reference, rtol=0, atol=1e-12)


@parametrize_cases(with_kernels(CASES))
def test_triton_equals_reference_float32(case, kernels):
    reference = device_trajectory(case, torch.float32, **REFERENCE)
    fused = device_trajectory(case, torch.float32, **FUSED)
    assert kernels
    assert_equal_states(fused, reference, rtol=1e-5, atol=1e-6)


@parametrize_cases(with_kernels(WEIGHT_DECAY_CASES))
def test_triton_production_chunk_sizes_equal_reference(case, production_kernels):
    shapes = [(150, 200), (40000,), (3,)]
    results = []
    for fused in (True, False):
        params = device_params(torch.float32, shapes)
        opt = case.make(params, fused=fused, foreach=None if fused else False)
        for step in range(4):
            quadratic_grads(params, step)
            opt.step()
        results.append(state_tensors(opt, params))
    assert len(production_kernels) == 4
    assert_equal_states(results[0], results[1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@parametrize_cases(with_kernels(BASE_CASES))
def test_triton_low_precision_parameters_match_reference(case, dtype, kernels):
    """bf16/fp16 parameters and state, fp32 arithmetic: the kernels round where the reference
    rounds, so the two differ only where an fp32 result rounds to a neighbouring value."""
    reference = device_trajectory(case, dtype, steps=4, **REFERENCE)
    fused = device_trajectory(case, dtype, steps=4, **FUSED)
    assert kernels
    assert_equal_states(fused, reference, rtol=2e-2, atol=2e-2)


@parametrize_cases(with_kernels(BASE_CASES))
def test_triton_resumes_bit_exactly(case, kernels):
    params = device_params(torch.float32)
    uninterrupted = case.make(params, fused=True)
    first_half = device_params(torch.float32)
    opt = case.make(first_half, fused=True)
    for step in range(4):
        for tensors, optimizer in ((params, uninterrupted), (first_half, opt)):
            quadratic_grads(tensors, step)
            optimizer.step()
    buffer = io.BytesIO()
    torch.save({"params": [p.detach() for p in first_half], "opt": opt.state_dict()}, buffer)
    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=True)
    resumed = [torch.nn.Parameter(p.clone()) for p in checkpoint["params"]]
    opt = case.make(resumed, fused=True)
    opt.load_state_dict(checkpoint["opt"])
    for step in range(4, 7):
        for tensors, optimizer in ((params, uninterrupted), (resumed, opt)):
            quadratic_grads(tensors, step)
            optimizer.step()
    assert_equal_states(
        state_tensors(opt, resumed), state_tensors(uninterrupted, params), rtol=0, atol=0
    )


@parametrize_cases(with_kernels(BASE_CASES))
def test_triton_tensor_lr_equals_float_lr(case, kernels):
    results = []
    for lr in (0.02, torch.tensor(0.02, dtype=torch.float64, device=DEVICE)):
        params = device_params(torch.float64)
        opt = case.make(params, lr=lr, fused=True)
        for step in range(4):
            quadratic_grads(params, step)
            opt.step()
        results.append(state_tensors(opt, params))
    assert_equal_states(results[1], results[0], rtol=0, atol=0)


@parametrize_cases(with_kernels(BASE_CASES))
def test_triton_group_with_mixed_dtypes_takes_the_torch_path(case, kernels, monkeypatch):
    monkeypatch.setattr(build, "_warned", set())
    params = device_params(torch.float32)[:2] + device_params(torch.bfloat16)[2:]
    opt = case.make(params, fused=True)
    quadratic_grads(params, 0)
    with pytest.warns(RuntimeWarning, match="one dtype per kind"):
        opt.step()
    assert not kernels


@pytest.mark.skipif(not CUDA, reason="host syncs exist only with a CUDA device")
@parametrize_cases(with_kernels(BASE_CASES))
def test_triton_step_never_waits_for_the_device(case, kernels):
    params = device_params(torch.float32)
    opt = case.make(params, lr=torch.tensor(0.01, device=DEVICE), fused=True)
    for step in range(3):
        quadratic_grads(params, step)
        torch.cuda.set_sync_debug_mode("error")
        try:
            opt.step()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    assert len(kernels) == 3


@parametrize_cases(with_kernels(BASE_CASES))
def test_without_triton_fused_true_warns_once_and_falls_back(case, monkeypatch):
    monkeypatch.setattr(fused_path, "uses_triton", lambda device: True)
    monkeypatch.setitem(sys.modules, "adamem._kernels.cuda", None)  # import fails
    monkeypatch.delattr(adamem._kernels, "cuda", raising=False)
    monkeypatch.setattr(build, "_warned", set())
    params = case.params(torch.float64)
    opt = case.make(params, fused=True)
    messages = []
    for step in range(3):
        quadratic_grads(params, step)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            opt.step()
        messages.append([str(w.message) for w in caught])
    assert len(messages[0]) == 1 and "Triton is not installed" in messages[0][0]
    assert not any(messages[1:])
    reference = case.params(torch.float64)
    ref_opt = case.make(reference, foreach=False)
    for step in range(3):
        quadratic_grads(reference, step)
        ref_opt.step()
    for a, b in zip(params, reference):
        assert torch.equal(a, b)


@pytest.mark.skipif(RUN_HERE, reason="the kernel tests run in this process")
def test_kernels_in_interpreter():
    pytest.importorskip("triton")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", __file__, "-q", "-p", "no:cacheprovider"],
        env={**os.environ, "TRITON_INTERPRET": "1"},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and " failed" not in result.stdout


@parametrize_cases(with_kernels(WEIGHT_DECAY_CASES))
def test_triton_hyperparameters_changed_between_steps(case, kernels):
    """The table keeps its hyperparameters between steps and refreshes those that change."""
    results = []
    for fused in (True, False):
        params = device_params(torch.float64)
        opt = case.make(params, fused=fused, foreach=None if fused else False)
        for step in range(5):
            if step == 2:
                opt.param_groups[0].update(lambd=0.5, weight_decay=0.2, lr=0.01)
            quadratic_grads(params, step)
            opt.step()
        results.append(state_tensors(opt, params))
    assert len(kernels) == 5
    assert_equal_states(results[0], results[1], rtol=0, atol=1e-12)


@pytest.mark.parametrize("scale", [1e-30, 1e30, 0.0])
@parametrize_cases(with_kernels(BASE_CASES))
def test_triton_extreme_gradients_stay_finite(case, scale, kernels):
    """Gradients of 1e30 (whose square overflows fp32), 1e-30 (subnormal squares) and 0."""
    params = device_params(torch.float32)
    opt = case.make(params, fused=True)
    for step in range(4):
        generator = torch.Generator().manual_seed(step)
        for p in params:
            p.grad = (torch.randn(p.shape, generator=generator) * scale).to(DEVICE)
        opt.step()
    assert len(kernels) == 4
    assert_finite(opt, params, second_moment_may_overflow=True)
    for p in params:
        assert 0 <= float(opt.state[p]["beta"]) <= case.family.beta_cap


@parametrize_cases(with_kernels(BASE_CASES))
def test_triton_table_built_during_capture_outlives_its_replacement(
    case, kernels, triton_module, monkeypatch
):
    """A CUDA graph captured while a group's table was built repeats its upload and reads the
    table at every replay: that table stays alive when a later step builds another, while an
    eagerly built table is released once replaced."""
    params = device_params(torch.float32)
    opt = case.make(params, fused=True)
    quadratic_grads(params, 0)
    opt.step()  # state, and an eager table
    layouts = opt._kernel_layouts.latest

    def new_table(capturing: bool) -> weakref.ref:
        monkeypatch.setattr(triton_module, "capturing", lambda device: capturing)
        for p in params:
            p.grad = p.grad.clone()  # new addresses: the next step builds a new table
        opt.step()
        (_, layout), *_ = layouts.values()
        return weakref.ref(layout.table)

    eager = new_table(capturing=False)
    captured = new_table(capturing=True)
    new_table(capturing=False)
    kernels.clear()  # the fixture's record of the steps holds their layouts
    gc.collect()
    assert eager() is None
    assert captured() is not None


@parametrize_cases(with_kernels(BASE_CASES))
def test_triton_betas_solved_in_the_reduction_equal_two_phases(case, kernels, monkeypatch):
    """Where each tensor is a block of its own, the reduction kernel solves the betas and the
    core solves none; the states and the recorded betas are those of the step whose betas the
    core solves from (a, b)."""
    results = []
    for in_kernel in (True, False):
        monkeypatch.setattr(fused_path, "tensor_blocks", lambda batch, on=in_kernel: on)
        params = device_params(torch.float64)
        optimizer = case.make(params, fused=True)
        for step in range(5):
            quadratic_grads(params, step)
            optimizer.step()
        results.append(state_tensors(optimizer, params))
        (_, betas), *_ = optimizer.solved_betas()
        results[-1]["solved"] = betas
        assert (kernels[-1].solved is not None) is in_kernel
    assert_equal_states(results[0], results[1], rtol=0, atol=1e-12)


if triton is not None:

    @triton.jit
    def _select_beta_kernel(a, b, cap, out, count, BLOCK: tl.constexpr):
        index = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = index < count
        beta = _select_beta(
            tl.load(a + index, mask=mask), tl.load(b + index, mask=mask), tl.load(cap)
        )
        tl.store(out + index, beta, mask=mask)


def test_triton_select_beta_follows_adamem_beta_exactly(triton_module):
    """The reduction of a group whose tensors are each a block solves beta in the kernel: the
    same rules (ALGORITHMS.md §7) and values as adamem.beta.select_beta."""
    from adamem.beta import select_beta

    a, b = (x.to(DEVICE) for x in beta_solver_inputs())
    for cap in BETA_SOLVER_CAPS:
        out = torch.empty_like(a)
        block = 1024
        _select_beta_kernel[(triton.cdiv(len(a), block),)](
            a, b, torch.tensor(cap, dtype=torch.float64, device=DEVICE), out, len(a), BLOCK=block
        )
        assert torch.equal(out, select_beta(a, b, cap)), cap
