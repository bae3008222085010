"""Time ``optimizer.step()`` of adamem's paths against torch's AdamW and SGD.

Every implementation gets its own copy of a GPT-like parameter set (token and position
embeddings, 8 blocks of layer norms, attention and MLP weights and biases: 98 tensors) with fixed
random gradients. Steps are interleaved one at a time across implementations, in a rotating
order, so that the machine's drift and noise hit them alike; the first ``--warmup`` steps
(state creation among them) are dropped. Ratios are to torch's fused counterpart: AMAdamW to
``AdamW(fused=True)``, AMSGD to ``SGD(momentum=0.9, fused=True)``; AMMuon, on the hidden weight
matrices of the same set (embeddings, norms and biases left out), to ``torch.optim.Muon`` on the
same matrices (which has only a single-tensor path, orthogonalising in bf16). Also reported:
the first call of the fused kernels (compiling them into an empty cache, and loading them from
the cache), the peak transient memory of one step, and whole training steps of a small GPT.

Usage::

    python benchmarks/step_time.py                      # all sizes, tables
    python benchmarks/step_time.py --sizes 1e6 --json   # the last line is a JSON list
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

import adamem

Factory = Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer]
DEVICE = torch.device("cpu")  # --device


def synchronize() -> None:
    """Wait for the device's queued work (a no-op on the CPU), so that timers measure it."""
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)


def hidden_matrices(params: list[torch.nn.Parameter]) -> list[torch.nn.Parameter]:
    """The Muon part of :func:`gpt_shapes`' parameters: the 2-D ones after the two embeddings."""
    return [p for p in params[2:] if p.ndim == 2]


IMPLEMENTATIONS: dict[str, Factory] = {
    "torch-adamw-fused": lambda p: torch.optim.AdamW(p, lr=1e-3, weight_decay=0.01, fused=True),
    "torch-adamw-foreach": lambda p: torch.optim.AdamW(p, lr=1e-3, weight_decay=0.01, foreach=True),
    "amadamw-fused": lambda p: adamem.AMAdamW(p, lr=1e-3, weight_decay=0.01, fused=True),
    "amadamw-foreach": lambda p: adamem.AMAdamW(p, lr=1e-3, weight_decay=0.01, foreach=True),
    "amadamw-reference": lambda p: adamem.AMAdamW(p, lr=1e-3, weight_decay=0.01, foreach=False),
    "torch-sgd-fused": lambda p: torch.optim.SGD(p, lr=1e-2, momentum=0.9, fused=True),
    "torch-sgd-foreach": lambda p: torch.optim.SGD(p, lr=1e-2, momentum=0.9, foreach=True),
    "amsgd-fused": lambda p: adamem.AMSGD(p, lr=0.1, fused=True),
    "amsgd-foreach": lambda p: adamem.AMSGD(p, lr=0.1, foreach=True),
    "amsgd-reference": lambda p: adamem.AMSGD(p, lr=0.1, foreach=False),
    "torch-muon": lambda p: torch.optim.Muon(hidden_matrices(p), lr=0.02),
    "ammuon-foreach": lambda p: adamem.AMMuon(hidden_matrices(p), lr=0.02, foreach=True),
    "ammuon-foreach-fp32": lambda p: adamem.AMMuon(
        hidden_matrices(p), lr=0.02, foreach=True, ns_dtype=torch.float32
    ),
    "ammuon-reference": lambda p: adamem.AMMuon(hidden_matrices(p), lr=0.02, foreach=False),
    # noise_averaging: the running average between the passes; the C step takes two passes.
    "amsgd-na-fused": lambda p: adamem.AMSGD(p, lr=0.1, noise_averaging=0.9, fused=True),
    "amsgd-na-foreach": lambda p: adamem.AMSGD(p, lr=0.1, noise_averaging=0.9, foreach=True),
}


class CapturedStep:
    """An optimizer whose ``step()`` replays a CUDA graph of its own step: warm-up steps on a
    side stream, then one captured step (docs/speed.md, *CUDA graphs*). The lr is a device
    tensor, so that a schedule could change it between replays."""

    def __init__(self, optimizer: torch.optim.Optimizer, warmup: int = 3) -> None:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(warmup):
                optimizer.step()
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            optimizer.step()
        self.optimizer = optimizer

    def step(self) -> None:
        self.graph.replay()


def device_lr(value: float) -> torch.Tensor:
    return torch.tensor(value, device=DEVICE)


# Graph-replayed steps (--device cuda only): torch's fused optimizers need capturable=True.
GRAPH_IMPLEMENTATIONS: dict[str, Factory] = {
    "torch-adamw-fused-graph": lambda p: CapturedStep(
        torch.optim.AdamW(p, lr=device_lr(1e-3), weight_decay=0.01, fused=True, capturable=True)
    ),
    "amadamw-fused-graph": lambda p: CapturedStep(
        adamem.AMAdamW(p, lr=device_lr(1e-3), weight_decay=0.01, fused=True)
    ),
    "torch-sgd-fused-graph": lambda p: CapturedStep(
        torch.optim.SGD(p, lr=device_lr(1e-2), momentum=0.9, fused=True)
    ),
    "amsgd-fused-graph": lambda p: CapturedStep(adamem.AMSGD(p, lr=device_lr(0.1), fused=True)),
}
ALL_IMPLEMENTATIONS = {**IMPLEMENTATIONS, **GRAPH_IMPLEMENTATIONS}


# fp32 arrays of the parameters' size that one step reads or writes at the least (weight decay
# on for AdamW, off for SGD as configured above): torch AdamW reads x, g, m, v and writes x, m, v;
# AM-AdamW's sums pass reads x, g, d, v and writes v, its update reads x, g, d, v and writes d, x;
# torch SGD reads x, g, buf and writes x, buf; AM-SGD reads g, d, then x, g, d and writes d, x.
ARRAYS_MOVED = {"torch-adamw-fused": 7, "amadamw-fused": 11, "torch-sgd-fused": 5, "amsgd-fused": 7}
ARRAYS_MOVED.update({f"{impl}-graph": arrays for impl, arrays in ARRAYS_MOVED.items()})


def copy_bandwidth(size_bytes: int = 2**30, repeats: int = 20) -> float:
    """Bytes per second read plus written by a device-to-device copy."""
    source = torch.empty(size_bytes // 4, device=DEVICE)
    target = torch.empty_like(source)
    target.copy_(source)
    synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        target.copy_(source)
    synchronize()
    return 2 * size_bytes * repeats / (time.perf_counter() - start)


def baseline_of(impl: str) -> str:
    """torch's counterpart of an implementation: its fused AdamW or SGD, or its Muon."""
    if "muon" in impl:
        return "torch-muon"
    family = "adamw" if "adamw" in impl else "sgd"
    return f"torch-{family}-fused" + ("-graph" if impl.endswith("-graph") else "")


def gpt_shapes(target: int, layers: int = 8, context: int = 256) -> list[tuple[int, ...]]:
    """The parameter shapes of a GPT with about ``target`` parameters (vocabulary 10 * width)."""

    def shapes(width: int) -> list[tuple[int, ...]]:
        block = [(width,), (width,), (3 * width, width), (3 * width,), (width, width), (width,)]
        block += [(width,), (width,), (4 * width, width), (4 * width,), (width, 4 * width)]
        block += [(width,)]
        return [(10 * width, width), (context, width)] + block * layers

    def count(width: int) -> int:
        return sum(math.prod(shape) for shape in shapes(width))

    width = min(range(16, 8192, 16), key=lambda w: abs(count(w) - target))
    return shapes(width)


def make_parameters(shapes: list[tuple[int, ...]], seed: int) -> list[torch.nn.Parameter]:
    generator = torch.Generator().manual_seed(seed)
    params = []
    for shape in shapes:
        param = torch.nn.Parameter((torch.randn(shape, generator=generator) * 0.02).to(DEVICE))
        param.grad = (torch.randn(shape, generator=generator) * 1e-3).to(DEVICE)
        params.append(param)
    return params


def time_steps(
    optimizers: dict[str, torch.optim.Optimizer], warmup: int, steps: int
) -> dict[str, list[float]]:
    """Seconds of each step after ``warmup``, interleaving implementations in rotating order."""
    names = list(optimizers)
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(warmup + steps):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            synchronize()
            start = time.perf_counter()
            optimizers[name].step()
            synchronize()
            elapsed = time.perf_counter() - start
            if round_index >= warmup:
                times[name].append(elapsed)
    return times


def quartiles(values: list[float]) -> tuple[float, float, float]:
    q1, median, q3 = statistics.quantiles(values, n=4)
    return q1, statistics.median(values), q3


def step_records(sizes: list[int], impls: list[str], warmup: int, steps: int) -> list[dict]:
    records = []
    for size in sizes:
        shapes = gpt_shapes(size)
        numel = sum(math.prod(shape) for shape in shapes)
        optimizers = {
            impl: ALL_IMPLEMENTATIONS[impl](make_parameters(shapes, seed=index))
            for index, impl in enumerate(impls)
        }
        times = time_steps(optimizers, warmup, steps)
        del optimizers
        for impl in impls:
            q1, median, q3 = quartiles(times[impl])
            baseline = times[baseline_of(impl)]
            paired = statistics.median(t / b for t, b in zip(times[impl], baseline))
            records.append(
                {
                    "kind": "step",
                    "size": numel,
                    "tensors": len(shapes),
                    "impl": impl,
                    "ms_median": median * 1e3,
                    "ms_q1": q1 * 1e3,
                    "ms_q3": q3 * 1e3,
                    "ratio_vs_torch_fused": median / statistics.median(baseline),
                    "ratio_paired_median": paired,
                    "ms_min": min(times[impl]) * 1e3,
                    "ratio_of_minima": min(times[impl]) / min(baseline),
                }
            )
    return records


def first_call_seconds() -> dict[str, float]:
    """Seconds of a fresh process's first two fused steps (the first step and a later one
    compile different kernels), with an empty and with a filled cache."""
    script = (
        "import time, torch, adamem\n"
        f"p = torch.nn.Parameter(torch.zeros(1000, device='{DEVICE}'))\n"
        "p.grad = torch.ones_like(p)\n"
        "opt = adamem.AMAdamW([p], fused=True)\n"
        "start = time.perf_counter(); opt.step(); opt.step(); p.sum().item()\n"
        "print(time.perf_counter() - start)\n"
    )
    result = {}
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "ADAMEM_CACHE_DIR": cache, "TRITON_CACHE_DIR": cache}
        for label in ("cold_cache_s", "warm_cache_s"):
            output = subprocess.run(
                [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
            )
            result[label] = float(output.stdout.strip().splitlines()[-1])
    return result


def _rss_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def peak_transient_bytes(size: int, impls: list[str]) -> dict[str, int] | None:
    """Peak memory of one step above the memory before it (the second step: the parameters,
    gradients and state exist already).

    On CUDA, from the caching allocator's statistics. On the CPU (Linux only), from the
    resident set: the kernel's high-water mark is reset (``/proc/self/clear_refs``) before the
    step and read after it, and freed heap memory is returned to the system first, so that the
    step's temporaries show up as new pages.
    """
    shapes = gpt_shapes(size)
    peaks = {}
    for impl in impls:
        optimizer = IMPLEMENTATIONS[impl](make_parameters(shapes, seed=0))
        optimizer.step()
        if DEVICE.type == "cuda":
            torch.cuda.synchronize(DEVICE)
            before = torch.cuda.memory_allocated(DEVICE)
            torch.cuda.reset_peak_memory_stats(DEVICE)
            optimizer.step()
            peaks[impl] = torch.cuda.max_memory_allocated(DEVICE) - before
        else:
            try:
                libc = ctypes.CDLL("libc.so.6")
                libc.malloc_trim(0)
                before = _rss_bytes("VmRSS")
                Path("/proc/self/clear_refs").write_text("5")
            except OSError:
                return None
            optimizer.step()
            peaks[impl] = _rss_bytes("VmHWM") - before
        del optimizer
    return peaks


class TinyGPT(torch.nn.Module):
    """A small pre-norm GPT (causal self-attention and an MLP per block)."""

    def __init__(self, vocab: int = 2048, width: int = 256, layers: int = 4, context: int = 128):
        super().__init__()
        self.tokens = torch.nn.Embedding(vocab, width)
        self.positions = torch.nn.Embedding(context, width)
        layer = torch.nn.TransformerEncoderLayer(
            width,
            nhead=4,
            dim_feedforward=4 * width,
            dropout=0.0,
            batch_first=True,
            norm_first=True,
        )
        self.blocks = torch.nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = torch.nn.LayerNorm(width)
        self.head = torch.nn.Linear(width, vocab, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        hidden = self.tokens(tokens) + self.positions(positions)
        mask = torch.nn.Transformer.generate_square_subsequent_mask(
            tokens.shape[1], device=tokens.device
        )
        return self.head(self.norm(self.blocks(hidden, mask=mask, is_causal=True)))


def training_records(impls: list[str], warmup: int, steps: int) -> list[dict]:
    """Forward, backward and step of TinyGPT on a fixed batch, interleaved across impls."""
    torch.manual_seed(0)
    template = TinyGPT()
    numel = sum(p.numel() for p in template.parameters())
    tokens = torch.randint(0, 2048, (4, 65), generator=torch.Generator().manual_seed(1))
    tokens = tokens.to(DEVICE)
    runs = {}
    for impl in impls:
        model = TinyGPT().to(DEVICE)
        model.load_state_dict(template.state_dict())
        runs[impl] = (model, IMPLEMENTATIONS[impl](list(model.parameters())))
    times: dict[str, list[float]] = {impl: [] for impl in impls}
    step_times: dict[str, list[float]] = {impl: [] for impl in impls}
    for round_index in range(warmup + steps):
        shift = round_index % len(impls)
        for impl in impls[shift:] + impls[:shift]:
            model, optimizer = runs[impl]
            synchronize()
            start = time.perf_counter()
            optimizer.zero_grad()
            logits = model(tokens[:, :-1])
            loss = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1)
            )
            loss.backward()
            synchronize()
            before_step = time.perf_counter()
            optimizer.step()
            synchronize()
            end = time.perf_counter()
            if round_index >= warmup:
                times[impl].append(end - start)
                step_times[impl].append(end - before_step)
    records = []
    for impl in impls:
        baseline = statistics.median(times[baseline_of(impl)])
        records.append(
            {
                "kind": "train",
                "size": numel,
                "impl": impl,
                "ms_median": statistics.median(times[impl]) * 1e3,
                "ms_step_median": statistics.median(step_times[impl]) * 1e3,
                "ratio_vs_torch_fused": statistics.median(times[impl]) / baseline,
            }
        )
    return records


def parameter_count(text: str) -> int:
    """A size as written on the command line: ``1e7``, ``10M``, ``500k``, ``1.5G`` or ``123``.

    >>> [parameter_count(t) for t in ("1e7", "10M", "500k", "1.5G", "123")]
    [10000000, 10000000, 500000, 1500000000, 123]
    """
    scale = {"k": 10**3, "m": 10**6, "g": 10**9}.get(text[-1:].lower())
    if scale is not None:
        return int(float(text[:-1]) * scale)
    return int(float(text))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", default="1M,10M,50M", help="parameter counts, comma-separated (1e7, 10M, 500k)"
    )
    parser.add_argument(
        "--impls",
        default=",".join(IMPLEMENTATIONS),
        help="comma-separated (default: all but the graph-replayed steps of --device cuda, "
        + ", ".join(GRAPH_IMPLEMENTATIONS)
        + ")",
    )
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--memory-size", default="10M", help="parameters for the memory probe")
    parser.add_argument("--skip-extras", action="store_true", help="only the step() timings")
    parser.add_argument("--json", action="store_true", help="print all records as JSON, last")
    args = parser.parse_args()
    global DEVICE
    DEVICE = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = [parameter_count(size) for size in args.sizes.split(",")]
    impls = args.impls.split(",")
    for impl in impls:
        if impl in GRAPH_IMPLEMENTATIONS and DEVICE.type != "cuda":
            parser.error(f"{impl} replays a CUDA graph: it needs --device cuda")
        if impl not in ALL_IMPLEMENTATIONS:
            parser.error(f"unknown implementation {impl}")
    for impl in impls:
        if baseline_of(impl) not in impls:
            parser.error(f"{impl} needs its baseline {baseline_of(impl)} in --impls")

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, adamem {adamem.__version__}"
    )
    records = step_records(sizes, impls, args.warmup, args.steps)
    bandwidth = copy_bandwidth() if DEVICE.type == "cuda" else None
    if bandwidth is not None:
        for r in records:
            arrays = ARRAYS_MOVED.get(r["impl"])
            if arrays is not None:
                r["bound_ms"] = arrays * 4 * r["size"] / bandwidth * 1e3
                r["ratio_vs_bound"] = r["ms_median"] / r["bound_ms"]
    print(f"\nstep() time: median of {args.steps} interleaved steps after {args.warmup} warm-up")
    print("ratio: of medians; paired: median of the per-round ratios; min: ratio of the minima")
    header = f"{'params':>11} {'impl':<20} {'ms':>9} {'q1-q3 ms':>17} {'min ms':>8}"
    print(f"{header} {'ratio':>6} {'paired':>6} {'min':>6}")
    for r in records:
        spread = f"{r['ms_q1']:.2f}-{r['ms_q3']:.2f}"
        bound = f" {r['ratio_vs_bound']:6.2f}x bound" if "ratio_vs_bound" in r else ""
        print(
            f"{r['size']:>11,} {r['impl']:<20} {r['ms_median']:9.2f} {spread:>17} "
            f"{r['ms_min']:8.2f} {r['ratio_vs_torch_fused']:6.2f} "
            f"{r['ratio_paired_median']:6.2f} {r['ratio_of_minima']:6.2f}{bound}"
        )
    if bandwidth is not None:
        print(
            f"bound: fp32 arrays each step must read and write (ARRAYS_MOVED) at the measured "
            f"device-to-device copy bandwidth, {bandwidth / 1e12:.2f} TB/s"
        )

    if not args.skip_extras:
        first = first_call_seconds()
        records.append({"kind": "first_call", "impl": "amadamw-fused", **first})
        print(
            f"\nfirst two fused steps in a new process: {first['cold_cache_s']:.2f} s with an "
            f"empty kernel cache (compiles), {first['warm_cache_s']:.3f} s with cached kernels"
        )
        memory_size = parameter_count(args.memory_size)
        peaks = peak_transient_bytes(memory_size, [i for i in impls if i in IMPLEMENTATIONS])
        if peaks is not None:
            print(f"\npeak transient memory of one step, {memory_size:,} parameters:")
            for impl, peak in peaks.items():
                records.append({"kind": "memory", "size": memory_size, "impl": impl, "bytes": peak})
                print(f"  {impl:<20} {peak / 2**20:9.1f} MiB")
        fused = [impl for impl in impls if impl.endswith("fused")]
        training = training_records(fused, args.warmup, max(args.steps // 2, 5))
        records += training
        print("\nwhole training step (zero_grad, forward, backward, step) of a small GPT:")
        for r in training:
            print(
                f"  {r['size']:,} params {r['impl']:<20} {r['ms_median']:8.1f} ms "
                f"(step {r['ms_step_median']:.2f} ms), ratio {r['ratio_vs_torch_fused']:.3f}"
            )
    if args.json:
        print(json.dumps(records))


if __name__ == "__main__":
    main()
