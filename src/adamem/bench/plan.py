"""The runs of a benchmark: one per (task, method, learning rate, seed), each with a stable key.

Two protocols choose which runs those are:

* the small suites run every seed at every learning rate of the grid, and the analysis picks
  each method's learning rate on the mean over seeds;
* the :data:`~.tasks.TUNED_SUITES` tune as AlgoPerf does, with a fixed budget per method: the
  tuning seed (:data:`TUNING_SEED`) runs every learning rate of the grid, :func:`tuned_lr`
  picks the best on the selection metric, and the other seeds run at that learning rate only.
  Those later runs depend on the tuning runs' results, so :func:`plan` plans them once the
  method's tuning runs are all in the records it is given.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any

from .tasks import (
    CUDA_SUITES,
    MIN_WARMUP_STEPS,
    SUITES,
    TASKS,
    TUNED_SUITES,
    Task,
    suite_tasks,
    warmup_steps,
)

PROTOCOL = 2  # bump when a change to the code changes what a run computes
DEFAULT_SEEDS = {"smoke": 2, "quick": 3, "medium": 3, "full": 5, "gpu": 1}
TUNING_SEED = 0

Record = dict[str, Any]


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


def final_metric(record: Record, metric: str) -> float:
    """A run's final ``metric``; ``inf`` for a diverged run, so that it never wins."""
    value = None if record["diverged"] else record["metrics"].get(metric)
    return math.inf if value is None else value


def tuned_lr(task: Task, grid: list[float], tuning_runs: Iterable[Record]) -> float | None:
    """The learning rate of ``grid`` whose run of the tuning seed ends with the lowest
    selection metric (a diverged run is infinitely bad; a tie goes to the smaller learning
    rate); ``None`` while a learning rate of the grid has no tuning run.

    >>> runs = [{"lr": lr, "seed": 0, "diverged": False, "metrics": {"val_loss": loss}}
    ...         for lr, loss in ((0.1, 2.0), (0.3, 1.5), (1.0, 1.5))]
    >>> tuned_lr(TASKS["digits-mlp"], [0.1, 0.3, 1.0], runs)
    0.3
    >>> tuned_lr(TASKS["digits-mlp"], [0.1, 0.3, 1.0, 3.0], runs) is None
    True
    """
    by_lr = {run["lr"]: run for run in tuning_runs if run["seed"] == TUNING_SEED}
    if any(lr not in by_lr for lr in grid):
        return None
    return min(grid, key=lambda lr: final_metric(by_lr[lr], task.select))


def check_arguments(suite: str, tasks: list[str], device: str) -> None:
    """Raise :class:`ValueError` unless ``suite`` exists, runs ``tasks`` and fits ``device``."""
    if suite not in SUITES:
        raise ValueError(f"unknown suite {suite!r}; choose from {', '.join(SUITES)}")
    unknown = [name for name in tasks if name not in TASKS]
    if unknown:
        raise ValueError(f"unknown task(s) {', '.join(unknown)}; choose from {', '.join(TASKS)}")
    elsewhere = [name for name in tasks if suite not in TASKS[name].configs]
    if elsewhere:
        raise ValueError(
            f"suite {suite!r} has no task(s) {', '.join(elsewhere)}; it runs "
            f"{', '.join(suite_tasks(suite))}"
        )
    if suite in CUDA_SUITES and not device.startswith("cuda"):
        raise ValueError(f"suite {suite!r} is sized for a GPU; run it with --device cuda")


def plan(
    suite: str, tasks: list[str], seeds: int, device: str, records: Iterable[Record] = ()
) -> list[RunSpec]:
    """The runs of ``suite`` for ``tasks`` with seeds ``0 .. seeds-1``, task by task: every
    seed at every learning rate, or, in a :data:`~.tasks.TUNED_SUITES` suite, the tuning seed
    at every learning rate and the other seeds at the learning rate that ``records`` (finished
    runs) show the tuning seed chose.

    A task whose ``+warmup`` methods would warm up for fewer than
    :data:`~.tasks.MIN_WARMUP_STEPS` steps is an error, and so is a task outside the suite.

    >>> runs = plan("smoke", ["quadratic"], 2, "cpu")
    >>> len(runs), runs[0].key.rsplit("|", 1)[0]
    (108, 'quadratic|amsgd-tensor|1|0')
    """
    check_arguments(suite, tasks, device)
    tuned = suite in TUNED_SUITES
    finished: dict[str, Record] = {record["key"]: record for record in records}
    runs = []
    for name in tasks:
        task = TASKS[name]
        config = task.config(suite, device)
        digest = config_hash(name, config, device)
        warmup = warmup_steps(config)
        if any(m.warmup for m in task.methods(suite)) and warmup < MIN_WARMUP_STEPS:
            raise ValueError(
                f"{name} in suite {suite!r}: a warmup of {warmup} steps is too short to be one "
                f"(at least {MIN_WARMUP_STEPS})"
            )
        for method in task.methods(suite):
            spec = partial(
                RunSpec,
                name,
                method.name,
                suite=suite,
                device=device,
                config=config,
                config_hash=digest,
            )
            grid = task.lr_grid(method.family, config)
            if not tuned:
                runs += [spec(lr, seed) for lr in grid for seed in range(seeds)]
                continue
            tuning = [spec(lr, TUNING_SEED) for lr in grid]
            runs += tuning
            chosen = tuned_lr(task, grid, (finished[s.key] for s in tuning if s.key in finished))
            if chosen is not None:
                runs += [spec(chosen, seed) for seed in range(seeds) if seed != TUNING_SEED]
    return runs


def expected_runs(suite: str, task: str, seeds: int, device: str) -> int:
    """How many runs ``task`` takes in ``suite``, including those :func:`plan` plans only
    once the tuning runs have finished: each method's learning rates, plus, in a tuned suite,
    the other seeds at the chosen one.

    >>> expected_runs("quick", "gpt", 3, "cpu") == len(plan("quick", ["gpt"], 3, "cpu"))
    True
    """
    if suite not in TUNED_SUITES:
        return len(plan(suite, [task], seeds, device))
    config = TASKS[task].config(suite, device)
    methods = TASKS[task].methods(suite)
    return sum(
        method_runs(suite, len(TASKS[task].lr_grid(m.family, config)), seeds) for m in methods
    )


def method_runs(suite: str, learning_rates: int, seeds: int) -> int:
    """The runs one method makes in ``suite`` over a grid of ``learning_rates``: each with
    every seed, or in a tuned suite each with the tuning seed and then the other seeds at the
    chosen one.

    >>> method_runs("quick", 5, 3), method_runs("medium", 3, 3)
    (15, 5)
    """
    return learning_rates + seeds - 1 if suite in TUNED_SUITES else learning_rates * seeds
