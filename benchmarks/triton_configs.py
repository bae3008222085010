"""Device time of the Triton kernels per step, for a few kernel configurations (CUDA only).

``step_time.py`` times whole ``step()`` calls, host work included; this script isolates what
the GPU spends in adamem's kernels (from ``torch.profiler``) on a GPT-like parameter set, and
prints it next to the two-pass bound: the bytes each step must move (11 fp32 arrays per
parameter for AM-AdamW with weight decay, 7 for AM-SGD without) at the device-to-device copy
bandwidth measured in the same run. Configurations change the defaults
(``adamem._kernels.cuda.CONFIGS``) in warps per program, elements per loop iteration (block) and
per program (chunk), or use IEEE float32 division and roots in AM-AdamW's sums pass.

Usage::

    python benchmarks/triton_configs.py --size 5e7
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import torch

import adamem
from adamem._kernels import cuda

sys.path.insert(0, str(Path(__file__).parent))
import step_time  # noqa: E402

VARIANTS = {
    "default": {},
    "precise-sums": {"PRECISE_SUMS": True},
    "4-warps": {"num_warps": 4},
    "8-warps": {"num_warps": 8},
    "block-512": {"block": 512, "chunk": 8 * 1024},
    "block-1024": {"block": 1024, "chunk": 16 * 1024},
    "block-2048": {"block": 2048, "chunk": 32 * 1024},
}
ARRAYS = {"amadamw": 11, "amsgd": 7}


def kernel_microseconds(optimizer: torch.optim.Optimizer, steps: int) -> dict[str, float]:
    """Device microseconds per step of each adamem kernel."""
    activities = [torch.profiler.ProfilerActivity.CUDA]
    with torch.profiler.profile(activities=activities) as profile:
        for _ in range(steps):
            optimizer.step()
        torch.cuda.synchronize()
    return {
        event.key: event.self_device_time_total / steps
        for event in profile.key_averages()
        if event.key.startswith(("_adamw_", "_sgd_"))
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="5e7", help="parameters")
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    step_time.DEVICE = torch.device("cuda")
    shapes = step_time.gpt_shapes(int(float(args.size)))
    bandwidth = step_time.copy_bandwidth()
    params = step_time.make_parameters(shapes, seed=0)
    size = sum(p.numel() for p in params)
    defaults = dict(cuda.CONFIGS)
    print(f"{size:,} parameters, {len(shapes)} tensors; copy bandwidth {bandwidth / 1e12:.2f} TB/s")
    print(f"defaults: {defaults}")
    print(
        f"{'variant':<14} {'optimizer':<9} {'kernels (us per step)':<56} {'total':>7} {'bound':>7}"
    )
    try:
        for variant, changes in VARIANTS.items():
            cuda.PRECISE_SUMS = changes.get("PRECISE_SUMS", False)
            kernel_changes = {k: v for k, v in changes.items() if k != "PRECISE_SUMS"}
            for name, config in defaults.items():
                cuda.CONFIGS[name] = dataclasses.replace(config, **kernel_changes)
            for name, factory in (("amadamw", adamem.AMAdamW), ("amsgd", adamem.AMSGD)):
                decay = 0.01 if name == "amadamw" else 0.0
                optimizer = factory(params, lr=1e-3, weight_decay=decay)
                for _ in range(3):
                    optimizer.step()
                times = kernel_microseconds(optimizer, args.steps)
                total = sum(times.values())
                bound = ARRAYS[name] * 4 * size / bandwidth * 1e6
                kernels = " ".join(f"{key.strip('_')}={value:.0f}" for key, value in times.items())
                print(f"{variant:<14} {name:<9} {kernels:<56} {total:7.0f} {total / bound:6.2f}x")
    finally:
        cuda.CONFIGS.update(defaults)
        cuda.PRECISE_SUMS = False


if __name__ == "__main__":
    main()
