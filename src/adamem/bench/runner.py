"""One run: build the seeded problem and optimizer, train, and return its record."""

from __future__ import annotations

import math
import platform
import time
from datetime import datetime, timezone
from functools import cache
from importlib import metadata
from typing import Any

import torch

from .methods import Method, method, warmup_factor
from .plan import RunSpec
from .tasks import TASKS

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


def _set_lr(optimizer: torch.optim.Optimizer, base_lrs: list[float], factor: float) -> None:
    for group, base in zip(optimizer.param_groups, base_lrs):
        group["lr"] = base * factor


def run(spec: RunSpec, position: int = 0) -> dict[str, Any]:
    """Train one run and return its record (see the module docstring of :mod:`.store`).

    A run uses one CPU thread, so its numbers do not depend on how many runs share the
    machine. ``position`` places the step progress bar.
    """
    from tqdm import tqdm

    started, cpu_started = time.perf_counter(), time.process_time()
    torch.set_num_threads(1)
    task = TASKS[spec.task]
    chosen: Method = method(spec.method)
    config = spec.config
    torch.manual_seed(spec.seed)
    problem = task.build(config, spec.seed, spec.device)
    names, params = zip(*problem.module.named_parameters())
    weight_decay = config.get("weight_decay", 0.0) if chosen.family == "adam" else 0.0
    optimizer = chosen.build(list(params), spec.lr, weight_decay)
    base_lrs = [group["lr"] for group in optimizer.param_groups]
    warmup = round(config.get("warmup", 0.0) * config["steps"]) if chosen.warmup else 0

    checkpoints = evaluation_steps(config["steps"], config["evals"])
    curve: dict[str, list] = {"step": [0], task.select: [], "train_loss": [None]}
    curve[task.select].append(problem.evaluate(final=False)[task.select])
    initial = curve[task.select][0]
    betas, loss_sum, loss_count, diverged, done = [], 0.0, 0, False, 0
    bar = tqdm(total=config["steps"], desc=spec.label, position=position, leave=False, disable=None)
    for step in range(config["steps"]):
        if warmup:
            _set_lr(optimizer, base_lrs, warmup_factor(step, warmup))
        optimizer.zero_grad(set_to_none=True)
        loss = problem.loss(step)
        loss.backward()
        optimizer.step()
        loss_sum, loss_count, done = loss_sum + loss.detach(), loss_count + 1, step + 1
        if chosen.adaptive and step > 0:
            betas.append(torch.stack([optimizer.state[p]["beta"].float() for p in params]))
        bar.update()
        if done in checkpoints:
            value = problem.evaluate(final=False)[task.select]
            train_loss = float(loss_sum) / loss_count
            curve["step"].append(done)
            curve[task.select].append(value)
            curve["train_loss"].append(train_loss)
            loss_sum, loss_count = 0.0, 0
            finite = math.isfinite(value) and math.isfinite(train_loss)
            if not finite or abs(value) > DIVERGENCE_FACTOR * abs(initial):
                diverged = True
                break
    bar.close()

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
        "diverged": diverged,
        "steps_done": done,
        "metrics": {} if diverged else problem.evaluate(final=True),
        "curve": curve,
        "beta": None,
    }
    if betas:
        cap = chosen.beta_cap
        record["beta"] = beta_record(torch.stack(betas).cpu(), list(names), cap)
    record["wall_time_s"] = round(time.perf_counter() - started, 3)
    record["cpu_time_s"] = round(time.process_time() - cpu_started, 3)
    record["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    record["versions"] = versions()
    return record
