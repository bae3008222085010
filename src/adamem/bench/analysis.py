"""From run records to the protocol's numbers: best learning rate per method, final metric
over seeds, steps to reach the best baseline, width of the good learning-rate range, verdicts.

Protocol of the small suites (all metrics lower-is-better):

* each method's learning rate is the grid point with the lowest mean selection metric over
  seeds; a point where any seed diverged counts as infinitely bad;
* the *best baseline* of a family is its fixed-momentum method with the lowest mean selection
  metric at its own best learning rate;
* *steps to target*: the first evaluation step at which the seed-mean curve of the selection
  metric reaches the best baseline's final mean;
* *good learning rates*: grid points whose mean selection metric is within 2x of the method's
  best;
* *verdict* of an AM method against the best baseline, on the report metric: ``tied`` when the
  means differ by at most two standard errors of the difference or by at most 1% of the
  baseline's mean, else ``won`` or ``lost``.

The tuned suites (:data:`~.tasks.TUNED_SUITES`) differ where AlgoPerf does:

* each method's learning rate is the one its tuning seed chose (:func:`~.plan.tuned_lr`); the
  other seeds ran at it only, and the sweep shows the tuning seed;
* *good learning rates*: grid points whose tuning-seed selection metric is within
  :data:`GOOD_LR_MARGIN` of the best;
* *time to target*: the training time (evaluations left out) at the step to target, mean over
  seeds;
* *verdict*: paired over seeds (the same seed gives both methods the same initialisation and
  minibatches): the per-seed differences AM minus best baseline on the report metric decide
  ``won`` or ``lost`` when their mean lies beyond a two-sided paired t-test at 5% and beyond 1%
  of the baseline's mean; else ``tied``. With a single seed only the 1% margin decides.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .methods import Method
from .plan import TUNING_SEED, method_runs, tuned_lr
from .tasks import TUNED_SUITES, Config, Task

Record = dict[str, Any]
RELATIVE_TIE = 0.01
GOOD_LR_MARGIN = 0.05  # in a tuned suite, a learning rate within 5% of the best is good
# Two-sided 5% quantiles of Student's t by degrees of freedom; beyond the table the last entry
# is used, which is conservative (the quantile falls with the degrees of freedom).
T_CRITICAL = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)


@dataclass(frozen=True)
class Stats:
    """Mean, sample standard deviation, smallest and largest value over seeds; ``mean`` is
    ``inf`` if any seed diverged.

    >>> Stats.of([1.0, 3.0, None]).mean
    inf
    >>> Stats.of([1.0, 3.0])
    Stats(mean=2.0, std=1.4142135623730951, n=2, diverged=0, low=1.0, high=3.0)
    """

    mean: float
    std: float
    n: int
    diverged: int
    low: float = math.nan
    high: float = math.nan

    @classmethod
    def of(cls, values: list[float | None]) -> Stats:
        """Stats of per-seed values, ``None`` marking a diverged seed."""
        finite = [v for v in values if v is not None]
        diverged = len(values) - len(finite)
        if diverged or not finite:
            return cls(math.inf, math.nan, len(values), diverged)
        std = float(np.std(finite, ddof=1)) if len(finite) > 1 else 0.0
        return cls(float(np.mean(finite)), std, len(values), 0, min(finite), max(finite))

    @property
    def finite(self) -> bool:
        """Whether every seed finished."""
        return math.isfinite(self.mean)


@dataclass
class MethodSummary:
    """One method on one task: its learning-rate sweep and the runs at its best point."""

    method: Method
    grid: list[float]
    by_lr: dict[float, Stats]
    best_lr: float
    runs: list[Record]
    select: Stats
    report: Stats
    extras: dict[str, Stats]
    good_lrs: int
    steps_to_target: int | None = None
    time_to_target: float | None = None  # seconds; tuned suites
    paired: Stats | None = None  # per-seed report metric minus the best baseline's; tuned suites
    verdict: str | None = None

    @property
    def at_edge(self) -> bool:
        """Whether the best learning rate is the smallest or largest of the grid."""
        return len(self.grid) > 2 and self.best_lr in (self.grid[0], self.grid[-1])

    def beta(self, name: str) -> Stats | None:
        """A per-run beta statistic (``mean``, ``frac_zero``, ``frac_cap``) over the seeds at
        the best learning rate; ``None`` for fixed-momentum methods."""
        values = [run["beta"][name] for run in self.runs if run["beta"]]
        return Stats.of(values) if values else None

    def beta_per_tensor(self) -> dict[str, float]:
        """Each tensor's mean beta over the steps, averaged over the seeds at the best learning
        rate (empty for fixed-momentum methods)."""
        tables = [run["beta"]["per_tensor"] for run in self.runs if run["beta"]]
        if not tables:
            return {}
        return {name: sum(t[name] for t in tables) / len(tables) for name in tables[0]}


@dataclass
class FamilySummary:
    """The methods of one family on one task and the best fixed-momentum baseline."""

    family: str
    methods: list[MethodSummary]
    baseline: MethodSummary | None = None
    target: float = math.inf
    complete: bool = True
    """Every planned run of the family is recorded; verdicts are given only then."""


@dataclass
class TaskSummary:
    """Everything the report shows about a task."""

    task: Task
    suite: str
    config: Config
    families: list[FamilySummary] = field(default_factory=list)
    runs: int = 0
    missing: int = 0
    wall_time_s: float = 0.0


def metric_values(runs: list[Record], metric: str) -> list[float | None]:
    """Each run's final ``metric``, ``None`` for a diverged run."""
    return [None if run["diverged"] else run["metrics"].get(metric) for run in runs]


def mean_curve(runs: list[Record], metric: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Steps and seed-mean of a curve over runs that finished; ``None`` if none did."""
    finished = [run for run in runs if not run["diverged"]]
    if not finished:
        return None
    values = np.array([run["curve"][metric] for run in finished], dtype=float)
    return np.array(finished[0]["curve"]["step"]), values.mean(0)


def steps_to_reach(runs: list[Record], metric: str, target: float) -> int | None:
    """The first evaluation step where the seed-mean curve is at most ``target``.

    >>> runs = [{"diverged": False, "curve": {"step": [0, 5, 10], "m": [3.0, 1.0, 0.5]}}]
    >>> steps_to_reach(runs, "m", 1.0), steps_to_reach(runs, "m", 0.1)
    (5, None)
    """
    if any(run["diverged"] for run in runs) or not math.isfinite(target):
        return None
    steps, mean = mean_curve(runs, metric)
    reached = np.nonzero(mean <= target)[0]
    return int(steps[reached[0]]) if len(reached) else None


def time_to_reach(runs: list[Record], step: int | None) -> float | None:
    """The mean over ``runs`` of the training time at evaluation step ``step``; ``None`` when
    ``step`` is, or a run did not record its times.

    >>> runs = [{"curve": {"step": [0, 5]}, "train_time_s": [0.0, t]} for t in (2.0, 4.0)]
    >>> time_to_reach(runs, 5)
    3.0
    """
    if step is None or not all("train_time_s" in run for run in runs):
        return None
    times = [run["train_time_s"][run["curve"]["step"].index(step)] for run in runs]
    return float(np.mean(times))


def paired_differences(am: list[Record], baseline: list[Record], metric: str) -> Stats:
    """The per-seed differences ``am - baseline`` of the final ``metric`` over the seeds both
    have; a seed where either run diverged counts as diverged.

    >>> run = lambda seed, value: {"seed": seed, "diverged": False, "metrics": {"m": value}}
    >>> paired_differences([run(0, 1.0), run(1, 3.0)], [run(0, 2.0), run(1, 2.0)], "m").mean
    0.0
    """
    by_seed = {run["seed"]: run for run in baseline}
    pairs = [(run, by_seed[run["seed"]]) for run in am if run["seed"] in by_seed]
    differences = []
    for ours, theirs in pairs:
        values = metric_values([ours, theirs], metric)
        differences.append(None if None in values else values[0] - values[1])
    return Stats.of(differences)


def paired_verdict(differences: Stats, am: Stats, baseline: Stats) -> str:
    """``won``, ``tied`` or ``lost`` for AM against the baseline from per-seed differences of
    the report metric (see the module docstring); ``am`` and ``baseline`` are each method's
    own report statistics, which decide when a seed diverged.

    >>> baseline = Stats(2.0, 0.1, 3, 0)
    >>> paired_verdict(Stats(-0.1, 0.01, 3, 0), Stats(1.9, 0.1, 3, 0), baseline)
    'won'
    >>> paired_verdict(Stats(-0.1, 0.1, 3, 0), Stats(1.9, 0.1, 3, 0), baseline)
    'tied'
    """
    if not (differences.finite and am.finite and baseline.finite):
        return verdict(am, baseline)
    margin = RELATIVE_TIE * abs(baseline.mean)
    if differences.n > 1:
        t = T_CRITICAL[min(differences.n - 1, len(T_CRITICAL)) - 1]
        margin = max(margin, t * differences.std / math.sqrt(differences.n))
    if abs(differences.mean) <= margin:
        return "tied"
    return "won" if differences.mean < 0 else "lost"


def verdict(am: Stats, baseline: Stats) -> str:
    """``won``, ``tied`` or ``lost`` for AM against the baseline (see the module docstring).

    >>> verdict(Stats(1.0, 0.1, 3, 0), Stats(2.0, 0.1, 3, 0))
    'won'
    >>> verdict(Stats(1.0, 0.5, 3, 0), Stats(1.5, 0.5, 3, 0))
    'tied'
    """
    if not (am.finite and baseline.finite):
        return "tied" if am.finite == baseline.finite else ("won" if am.finite else "lost")
    delta = am.mean - baseline.mean
    standard_error = math.sqrt(am.std**2 / am.n + baseline.std**2 / baseline.n)
    if abs(delta) <= max(2 * standard_error, RELATIVE_TIE * abs(baseline.mean)):
        return "tied"
    return "won" if delta < 0 else "lost"


def summarize_method(
    task: Task, method: Method, grid: list[float], runs: list[Record], tuned: bool
) -> MethodSummary:
    """Pick the best learning rate of ``method`` from its ``runs`` over ``grid``: on the mean
    over seeds, or, ``tuned``, as its tuning seed chose."""
    by_lr_runs: dict[float, list[Record]] = defaultdict(list)
    for run in runs:
        if not tuned or run["seed"] == TUNING_SEED:
            by_lr_runs[run["lr"]].append(run)
    present = [lr for lr in grid if by_lr_runs[lr]]
    by_lr = {lr: Stats.of(metric_values(by_lr_runs[lr], task.select)) for lr in present}
    best_lr = tuned_lr(task, grid, runs) if tuned else None
    if best_lr is None:  # the small suites, or tuning runs still missing
        best_lr = min(present, key=lambda lr: by_lr[lr].mean)
    best = by_lr[best_lr]
    margin = GOOD_LR_MARGIN if tuned else 1.0
    good = sum(1 for s in by_lr.values() if s.mean <= best.mean + margin * abs(best.mean))
    best_runs = sorted((run for run in runs if run["lr"] == best_lr), key=lambda run: run["seed"])
    return MethodSummary(
        method=method,
        grid=grid,
        by_lr=by_lr,
        best_lr=best_lr,
        runs=best_runs,
        select=Stats.of(metric_values(best_runs, task.select)),
        report=Stats.of(metric_values(best_runs, task.report)),
        extras={name: Stats.of(metric_values(best_runs, name)) for name in task.extras},
        good_lrs=good if best.finite else 0,
    )


def summarize_family(
    task: Task, suite: str, family: str, config: Config, records: list[Record], seeds: int
) -> FamilySummary:
    """The methods of ``family`` on ``task`` in ``suite`` (``seeds`` planned), the best
    baseline, steps (and, in a tuned suite, time) to target, and, once every planned run of
    the family is recorded, verdicts."""
    tuned = suite in TUNED_SUITES
    grid = task.lr_grid(family, config)
    summaries, recorded, planned = [], 0, 0
    for method in task.methods(suite):
        if method.family != family:
            continue
        runs = [r for r in records if r["method"] == method.name]
        recorded += len(runs)
        planned += method_runs(suite, len(grid), seeds)
        if runs:
            summaries.append(summarize_method(task, method, grid, runs, tuned))
    result = FamilySummary(family, summaries, complete=recorded >= planned)
    fixed = [s for s in summaries if not s.method.adaptive]
    if not fixed:
        return result
    base = result.baseline = min(fixed, key=lambda s: s.select.mean)
    result.target = base.select.mean
    for summary in summaries:
        summary.steps_to_target = steps_to_reach(summary.runs, task.select, result.target)
        if tuned:
            summary.time_to_target = time_to_reach(summary.runs, summary.steps_to_target)
        if not summary.method.adaptive or not result.complete:
            continue
        if tuned:
            summary.paired = paired_differences(summary.runs, base.runs, task.report)
            summary.verdict = paired_verdict(summary.paired, summary.report, base.report)
        else:
            summary.verdict = verdict(summary.report, base.report)
    return result


def summarize(
    task: Task, suite: str, config: Config, records: list[Record], expected: int, seeds: int
) -> TaskSummary:
    """Summaries of every family of ``task`` in ``suite`` from its ``records`` (``expected``
    planned, with ``seeds`` seeds)."""
    summary = TaskSummary(task, suite, config, runs=len(records), missing=expected - len(records))
    summary.wall_time_s = sum(record["wall_time_s"] for record in records)
    for family in task.lr_ranges:
        result = summarize_family(task, suite, family, config, records, seeds)
        if result.methods:
            summary.families.append(result)
    return summary
