"""One run: build the seeded problem and optimizer, train, and return its record."""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cache
from importlib import metadata
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from .methods import method
from .plan import RunSpec
from .problem import Problem
from .tasks import TASKS, lr_factor

DIVERGENCE_FACTOR = 1e3  # a run stops as diverged when its selection metric grows this much
TRACE_POINTS = 100  # beta traces are averaged into at most this many bins


@cache
def versions() -> dict[str, str]:
    """Python, the platform and the versions of the packages that shape the numbers."""
    found = {"python": platform.python_version(), "platform": platform.platform()}
    for package in ("adamem", "torch", "numpy", "scikit-learn", "mnist1d"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "absent"
    return found


def evaluation_steps(steps: int, evals: int) -> list[int]:
    """Step counts after which the run evaluates: 0, then ``evals`` evenly spaced points.

    >>> evaluation_steps(10, 3)
    [0, 3, 7, 10]
    """
    return sorted({0, *(round(steps * (i + 1) / evals) for i in range(evals))})


def beta_record(betas: torch.Tensor, names: list[str], cap: float) -> dict[str, Any]:
    """Summaries of the per-step, per-tensor betas ``betas[step, tensor]``: a trace of the
    mean/min/max over tensors, averaged in bins of consecutive steps, each tensor's mean over
    steps, and the fraction of (step, tensor) pairs at 0 and at the cap.

    >>> record = beta_record(torch.tensor([[0.0, 0.9], [0.5, 0.9]]), ["w", "b"], 0.9)
    >>> record["trace"]["mean"], record["frac_cap"], record["per_tensor"]["w"]
    ([0.45, 0.7], 0.5, 0.25)
    """
    steps = len(betas)
    width = max(1, math.ceil(steps / TRACE_POINTS))
    bins = [betas[start : start + width] for start in range(0, steps, width)]

    def rounded(values: list[float]) -> list[float]:
        return [round(float(v), 5) for v in values]

    return {
        "trace": {
            "step": [1 + start for start in range(0, steps, width)],
            "mean": rounded([b.mean() for b in bins]),
            "min": rounded([b.min(1).values.mean() for b in bins]),
            "max": rounded([b.max(1).values.mean() for b in bins]),
        },
        "per_tensor": dict(zip(names, rounded(betas.mean(0).tolist()))),
        "mean": float(betas.mean()),
        "frac_zero": float((betas <= 0).double().mean()),
        "frac_cap": float((betas >= cap * (1 - 1e-6)).double().mean()),
    }


def _finite(value: float) -> float | None:
    """``value``, or ``None`` (JSON ``null``) if it is not finite."""
    return value if math.isfinite(value) else None


@dataclass
class Training:
    """What the training loop of a run produced."""

    curve: dict[str, list[float | None]]
    betas: list[Tensor] = field(default_factory=list)  # per step after the first: per tensor
    diverged: bool = False
    steps: int = 0
    # at each point of the curve, the seconds spent training so far (evaluations left out)
    train_time_s: list[float] = field(default_factory=lambda: [0.0])


def train(problem: Problem, optimizer: Optimizer, spec: RunSpec, position: int) -> Training:
    """Take ``spec.config["steps"]`` steps with evaluations of the selection metric at
    :func:`evaluation_steps`; stop early when the run diverges."""
    from tqdm import tqdm

    config, chosen, metric = spec.config, method(spec.method), TASKS[spec.task].select
    params = list(problem.module.parameters())  # the order of the record's tensor names
    base_lrs = [group["lr"] for group in optimizer.param_groups]
    checkpoints = evaluation_steps(config["steps"], config["evals"])
    initial = problem.evaluate(final=False)[metric]
    result = Training({"step": [0], metric: [_finite(initial)], "train_loss": [None]})
    loss_sum, loss_count = 0.0, 0
    bar = tqdm(total=config["steps"], desc=spec.label, position=position, leave=False, disable=None)
    training_started, evaluating = time.perf_counter(), 0.0
    for step in range(config["steps"]):
        for group, base in zip(optimizer.param_groups, base_lrs):
            group["lr"] = base * lr_factor(config, step, chosen.warmup)
        optimizer.zero_grad(set_to_none=True)
        loss = problem.loss(step)
        loss.backward()
        optimizer.step()
        loss_sum, loss_count, result.steps = loss_sum + loss.detach(), loss_count + 1, step + 1
        if chosen.adaptive and step > 0:
            result.betas.append(torch.stack([optimizer.state[p]["beta"].float() for p in params]))
        bar.update()
        if result.steps in checkpoints:
            if spec.device.startswith("cuda"):
                torch.cuda.synchronize()  # the clock counts the queued steps as done
            evaluation_started = time.perf_counter()
            result.train_time_s.append(round(evaluation_started - training_started - evaluating, 3))
            value, train_loss = problem.evaluate(final=False)[metric], float(loss_sum) / loss_count
            evaluating += time.perf_counter() - evaluation_started
            loss_sum, loss_count = 0.0, 0
            for key, number in (
                ("step", result.steps),
                (metric, value),
                ("train_loss", train_loss),
            ):
                result.curve[key].append(_finite(number))
            blown_up = abs(value) > DIVERGENCE_FACTOR * abs(initial)
            if not (math.isfinite(value) and math.isfinite(train_loss)) or blown_up:
                result.diverged = True
                break
    bar.close()
    return result


@dataclass
class Outcome:
    """A trained run: its training, its final metrics (empty if it diverged), whether it
    diverged, the names of the problem's parameters and the fingerprint of its data."""

    training: Training
    metrics: dict[str, float]
    diverged: bool
    names: list[str]
    data: dict[str, Any] | None


def train_and_evaluate(
    spec: RunSpec, make_optimizer: Callable[[nn.Module], Optimizer], position: int = 0
) -> Outcome:
    """Seed, build the task's problem, train it with ``make_optimizer(model)`` on one CPU
    thread, and evaluate it: the order that makes a run's numbers depend on its seed alone."""
    torch.set_num_threads(1)
    torch.manual_seed(spec.seed)
    problem = TASKS[spec.task].build(spec.config, spec.seed, spec.device)
    names = [name for name, _ in problem.module.named_parameters()]
    training = train(problem, make_optimizer(problem.module), spec, position)
    metrics = {} if training.diverged else problem.evaluate(final=True)
    diverged = training.diverged or not all(map(math.isfinite, metrics.values()))
    return Outcome(training, {} if diverged else metrics, diverged, names, problem.data)


def run(spec: RunSpec, position: int = 0) -> dict[str, Any]:
    """Train one run and return its record (see the module docstring of :mod:`.store`).

    A run uses one CPU thread, so its numbers do not depend on how many runs share the
    machine. ``position`` places the step progress bar.
    """
    started, cpu_started = time.perf_counter(), time.process_time()
    chosen = method(spec.method)
    decoupled = chosen.family in ("adam", "muon")
    weight_decay = spec.config.get("weight_decay", 0.0) if decoupled else 0.0
    outcome = train_and_evaluate(
        spec, lambda model: chosen.build(model, spec.lr, weight_decay), position
    )
    training = outcome.training
    record: dict[str, Any] = {
        "key": spec.key,
        "task": spec.task,
        "method": spec.method,
        "family": chosen.family,
        "lr": spec.lr,
        "seed": spec.seed,
        "suite": spec.suite,
        "device": spec.device,
        "config_hash": spec.config_hash,
        "diverged": outcome.diverged,
        "steps_done": training.steps,
        "metrics": outcome.metrics,
        "curve": training.curve,
        "train_time_s": training.train_time_s,
        "beta": None,
        "data": outcome.data,
    }
    if training.betas:
        betas = torch.stack(training.betas).cpu()
        record["beta"] = beta_record(betas, outcome.names, chosen.beta_cap)
    record["wall_time_s"] = round(time.perf_counter() - started, 3)
    record["cpu_time_s"] = round(time.process_time() - cpu_started, 3)
    record["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    record["versions"] = versions()
    return record
