"""CUDA graphs: a captured ``step()``, replayed, gives the eager steps' results.

The replay tests need a CUDA GPU (skipped elsewhere; ``benchmarks/gpu_check.sh`` runs them).
The guards that keep a capture from going wrong silently are tested here with the capture
simulated, so they run everywhere.
"""

import pytest
import torch
from helpers import BASE_CASES, assert_equal_states, parametrize_cases, state_tensors

import adamem
from adamem._core import optimizer as core

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
SHAPES = [(64, 48), (48,), (3, 5, 7), (1,), (4096,)]
WARMUP, REPLAYS = 3, 6
# One case per class, on each path that CUDA tensors can take (AM-Muon has no kernels).
GRAPH_CASES = [
    (case, path)
    for case in BASE_CASES
    for path in ("fused", "foreach")
    if path == "foreach" or case.cls.kernels is not None
]


def _grads(params, step: int) -> list[torch.Tensor]:
    """Step ``step``'s gradients, the same for every run: drawn on the CPU, then moved."""
    generator = torch.Generator().manual_seed(1000 + step)
    return [
        torch.randn(p.shape, generator=generator, dtype=torch.float64).to(p.dtype).to(p.device)
        for p in params
    ]


def _lr(step: int) -> float:
    return 0.02 * (1 + 0.5 * (step % 3))  # changes between replays, as a schedule would


def _setup(case, dtype, path):
    params = case.params(dtype, shapes=SHAPES, device="cuda")
    for p in params:
        p.grad = torch.zeros_like(p)
    lr = torch.tensor(_lr(0), dtype=torch.float64, device="cuda")
    optimizer = case.make(params, lr=lr, **{path: True})
    return params, optimizer, lr


def _feed(params, lr, step: int) -> None:
    """Write step ``step``'s gradients and lr into the static tensors a graph reads."""
    for p, g in zip(params, _grads(params, step)):
        p.grad.copy_(g)
    lr.fill_(_lr(step))


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("case, path", GRAPH_CASES, ids=[f"{c.name}-{p}" for c, p in GRAPH_CASES])
def test_replayed_step_equals_eager_steps(case, path, dtype):
    eager_params, eager, eager_lr = _setup(case, dtype, path)
    for step in range(WARMUP + REPLAYS):
        _feed(eager_params, eager_lr, step)
        eager.step()

    params, optimizer, lr = _setup(case, dtype, path)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up off the default stream, as torch's recipe does
        for step in range(WARMUP):
            _feed(params, lr, step)
            optimizer.step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        optimizer.step()
    for step in range(WARMUP, WARMUP + REPLAYS):
        _feed(params, lr, step)
        graph.replay()
    torch.cuda.synchronize()
    # The same kernels on the same inputs: equal to the bit.
    assert_equal_states(
        state_tensors(optimizer, params), state_tensors(eager, eager_params), rtol=0, atol=0
    )
    (solved, betas), *_ = optimizer.solved_betas()  # written by the last replay
    (eager_solved, eager_betas), *_ = eager.solved_betas()
    assert _positions(params, solved) == _positions(eager_params, eager_solved)
    torch.testing.assert_close(betas, eager_betas, rtol=0, atol=0)


def _positions(params, chosen) -> list[int]:
    return [next(i for i, p in enumerate(params) if p is q) for q in chosen]


class _Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = torch.nn.Sequential(
            torch.nn.Linear(32, 64), torch.nn.GELU(), torch.nn.LayerNorm(64), torch.nn.Linear(64, 8)
        )

    def forward(self, x):
        return self.layers(x)


@needs_cuda
@pytest.mark.parametrize("cls", [adamem.AMAdamW, adamem.AMSGD])
def test_whole_training_step_capture(cls):
    """torch's whole-network recipe: zero_grad(set_to_none=True) before the capture, so the
    gradients are allocated inside it and the fused step builds its table there."""
    torch.manual_seed(0)
    eager_model = _Model().cuda()
    model = _Model().cuda()
    model.load_state_dict(eager_model.state_dict())
    inputs = [torch.randn(16, 32, device="cuda") for _ in range(WARMUP + REPLAYS)]
    targets = [torch.randn(16, 8, device="cuda") for _ in range(WARMUP + REPLAYS)]

    def make(m):
        return cls(m.parameters(), lr=torch.tensor(0.01, device="cuda"), fused=True)

    eager = make(eager_model)
    for x, y in zip(inputs, targets):
        eager.zero_grad(set_to_none=True)
        torch.nn.functional.mse_loss(eager_model(x), y).backward()
        eager.step()

    optimizer = make(model)
    static_x, static_y = inputs[0].clone(), targets[0].clone()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for x, y in zip(inputs[:WARMUP], targets[:WARMUP]):
            optimizer.zero_grad(set_to_none=True)
            torch.nn.functional.mse_loss(model(x), y).backward()
            optimizer.step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    optimizer.zero_grad(set_to_none=True)
    with torch.cuda.graph(graph):
        torch.nn.functional.mse_loss(model(static_x), static_y).backward()
        optimizer.step()
    for x, y in zip(inputs[WARMUP:], targets[WARMUP:]):
        static_x.copy_(x)
        static_y.copy_(y)
        graph.replay()
    torch.cuda.synchronize()
    for (name, p), q in zip(model.named_parameters(), eager_model.parameters()):
        # Same kernels; the backward may reduce in another order inside a graph.
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=name)


@needs_cuda
def test_compiled_step_with_cuda_graphs():
    """torch.compile(mode="reduce-overhead") traces the torch path and replays it as a graph."""
    case = next(case for case, path in GRAPH_CASES if path == "foreach")
    eager_params, eager, eager_lr = _setup(case, torch.float32, "foreach")
    params, optimizer, lr = _setup(case, torch.float32, "foreach")

    @torch.compile(mode="reduce-overhead")
    def compiled_step():
        optimizer.step()

    for step in range(WARMUP + REPLAYS):
        _feed(eager_params, eager_lr, step)
        eager.step()
        _feed(params, lr, step)
        compiled_step()
    torch.cuda.synchronize()
    assert_equal_states(
        state_tensors(optimizer, params), state_tensors(eager, eager_params), rtol=1e-5, atol=1e-6
    )


# ------------------------------------------------------------------ guards, capture simulated
@parametrize_cases(BASE_CASES)
def test_first_step_during_capture_raises_and_leaves_no_state(case, monkeypatch):
    """A first step would be repeated by every replay: the capture is refused before any
    state exists, and the optimizer then steps as if the attempt had not happened."""
    params = case.params(torch.float64, shapes=SHAPES)
    twin = [torch.nn.Parameter(p.detach().clone()) for p in params]
    for ps in (params, twin):
        for p, g in zip(ps, _grads(ps, 0)):
            p.grad = g
    optimizer, fresh = case.make(params), case.make(twin)
    monkeypatch.setattr(core, "capturing", lambda device: True)
    with pytest.raises(RuntimeError, match="first step"):
        optimizer.step()
    assert not any(optimizer.state.values())
    monkeypatch.undo()
    optimizer.step()
    fresh.step()
    assert_equal_states(
        state_tensors(optimizer, params), state_tensors(fresh, twin), rtol=0, atol=0
    )
