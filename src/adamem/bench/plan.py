"""The runs of a benchmark: one per (task, method, learning rate, seed), each with a stable key."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from .tasks import MIN_WARMUP_STEPS, SUITES, TASKS, warmup_steps

PROTOCOL = 2  # bump when a change to the code changes what a run computes
DEFAULT_SEEDS = {"smoke": 2, "quick": 3, "full": 5}


@dataclass(frozen=True)
class RunSpec:
    """Everything that determines one run; ``key`` identifies its record in the results file."""

    task: str
    method: str
    lr: float
    seed: int
    suite: str
    device: str
    config: dict[str, Any]
    config_hash: str

    @property
    def key(self) -> str:
        """``task|method|lr|seed|config_hash``."""
        return f"{self.task}|{self.method}|{self.lr:.6g}|{self.seed}|{self.config_hash}"

    @property
    def label(self) -> str:
        """A short name for progress bars."""
        return f"{self.task} {self.method} lr={self.lr:.3g} s{self.seed}"


def config_hash(task: str, config: dict[str, Any], device: str) -> str:
    """12 hex digits of SHA-256 over the task, its suite configuration, the device kind and
    :data:`PROTOCOL`: records made under another configuration never match."""
    payload = {"task": task, "config": config, "device": device.split(":")[0], "protocol": PROTOCOL}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


def plan(suite: str, tasks: list[str], seeds: int, device: str) -> list[RunSpec]:
    """Every run of ``suite`` for ``tasks`` with seeds ``0 .. seeds-1``, task by task.

    A task whose ``+warmup`` methods would warm up for fewer than
    :data:`~.tasks.MIN_WARMUP_STEPS` steps is an error.

    >>> runs = plan("smoke", ["quadratic"], 2, "cpu")
    >>> len(runs), runs[0].key.rsplit("|", 1)[0]
    (104, 'quadratic|amsgd-tensor|1|0')
    """
    if suite not in SUITES:
        raise ValueError(f"unknown suite {suite!r}; choose from {', '.join(SUITES)}")
    unknown = [name for name in tasks if name not in TASKS]
    if unknown:
        raise ValueError(f"unknown task(s) {', '.join(unknown)}; choose from {', '.join(TASKS)}")
    runs = []
    for name in tasks:
        task = TASKS[name]
        config = task.config(suite, device)
        digest = config_hash(name, config, device)
        warmup = warmup_steps(config)
        if any(m.warmup for m in task.methods()) and warmup < MIN_WARMUP_STEPS:
            raise ValueError(
                f"{name} in suite {suite!r}: a warmup of {warmup} steps is too short to be one "
                f"(at least {MIN_WARMUP_STEPS})"
            )
        for method in task.methods():
            for lr in task.lr_grid(method.family, config):
                for seed in range(seeds):
                    runs.append(RunSpec(name, method.name, lr, seed, suite, device, config, digest))
    return runs
