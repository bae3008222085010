"""The Markdown report and its summary, written from run records alone.

For the small suites, ``report.md`` holds the protocol, the verdicts, per-task tables and
plots, full sweeps and a closing note; ``summary.md`` holds the verdicts, their tally, the
warmup comparison and the sizes. A tuned suite (:data:`~.tasks.TUNED_SUITES`) gets one
``report.md`` that opens with its verdict table (paired over seeds), then the protocol, the
tuning budget, the data and, per task, the tables, the tuning seed's sweep and the plots. Both
are functions of the records (no clock, no machine state), so that :func:`stale_files` can
tell whether committed files still match their records. Reports of a
:data:`~.tasks.MACHINERY_SUITES` suite say so at the top and give no verdicts.
"""

from __future__ import annotations

import gzip
import json
import os
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from . import analysis
from .analysis import FamilySummary, MethodSummary, Record, Stats, TaskSummary
from .plan import TUNING_SEED, expected_runs, plan
from .plots import plot_task
from .runner import DIVERGENCE_FACTOR
from .store import ResultStore
from .tasks import MACHINERY_SUITES, TASKS, TUNED_SUITES, suite_tasks, warmup_steps

PLOTS = "plots"
REPORT = "report.md"
SUMMARY = "summary.md"
Figures = Callable[[TaskSummary], dict[str, Path]]  # a task's plots by kind, under the output
CAPTIONS = {
    "curves": "{select} at each method's best lr (seed mean; band: best to worst seed)",
    "betas": "AM's beta_t at the best lr (seed mean of the mean over tensors; band: smallest "
    "to largest tensor; dashed: cap)",
    "lr": "final {select} against the learning rate (seed mean; bars: best to worst seed; "
    "points where a seed diverged are left out)",
}
TUNED_CAPTIONS = {
    **CAPTIONS,
    "lr": "final {select} of the tuning seed against the learning rate (diverged runs are "
    "left out)",
}


@dataclass(frozen=True)
class Results:
    """The records of one benchmark and the ``adamem bench`` arguments that planned them."""

    records: list[Record]
    suite: str
    tasks: list[str]
    seeds: int
    device: str

    @classmethod
    def of(
        cls, records: list[Record], suite: str, tasks: list[str], seeds: int, device: str
    ) -> Results:
        """The ``records`` of the runs planned for these arguments, the last one of each key;
        records of other configurations are left out. Tasks are kept in the registry's order,
        the order :meth:`load` reads them back in."""
        wanted = {spec.key for spec in plan(suite, tasks, seeds, device, records)}
        latest = {record["key"]: record for record in records if record["key"] in wanted}
        ordered = [name for name in TASKS if name in tasks]
        return cls(list(latest.values()), suite, ordered, seeds, device)

    @classmethod
    def load(cls, path: Path, tasks: list[str] | None = None, seeds: int | None = None) -> Results:
        """The records of a results file written by ``adamem bench`` (or a gzipped copy,
        ``*.gz``), with the suite and device read off the records, and the tasks and number
        of seeds too unless given (an unfinished benchmark's records may lack tasks or
        seeds: given, they count as missing runs)."""
        path = Path(path)
        if path.suffix == ".gz":  # a finished, archived file: every line must be whole
            with gzip.open(path, "rt") as file:
                records = [json.loads(line) for line in file if line.strip()]
        else:
            records = ResultStore(path).load()
        if not records:
            raise ValueError(f"{path} holds no run records")
        found = {}
        for name in ("suite", "device"):
            values = {record[name] for record in records}
            if len(values) > 1:
                raise ValueError(f"{path} mixes {name}s: {', '.join(sorted(values))}")
            found[name] = values.pop()
        if tasks is None:
            tasks = [name for name in TASKS if any(record["task"] == name for record in records)]
        if seeds is None:
            seeds = 1 + max(record["seed"] for record in records)
        return cls.of(records, found["suite"], tasks, seeds, found["device"])

    @property
    def tuned(self) -> bool:
        """Whether the suite tunes on one seed (see :data:`~.tasks.TUNED_SUITES`)."""
        return self.suite in TUNED_SUITES

    @property
    def gives_verdicts(self) -> bool:
        """Whether the suite is sized for verdicts (see :data:`~.tasks.MACHINERY_SUITES`)."""
        return self.suite not in MACHINERY_SUITES

    @property
    def command(self) -> str:
        """The ``adamem bench`` command line that plans these runs."""
        chosen = "" if self.tasks == suite_tasks(self.suite) else " --tasks " + " ".join(self.tasks)
        return (
            f"adamem bench --suite {self.suite}{chosen} --seeds {self.seeds} --device {self.device}"
        )

    def summarize(self) -> list[TaskSummary]:
        """The analysis of every task that has records, in the order of ``tasks``."""
        summaries = []
        for name in self.tasks:
            runs = [record for record in self.records if record["task"] == name]
            if runs:
                task = TASKS[name]
                expected = expected_runs(self.suite, name, self.seeds, self.device)
                config = task.config(self.suite, self.device)
                summaries.append(
                    analysis.summarize(task, self.suite, config, runs, expected, self.seeds)
                )
        return summaries


def number(value: float) -> str:
    """Four significant digits.

    >>> number(0.000123456), number(2.0)
    ('0.0001235', '2')
    """
    return f"{value:.4g}"


def stats(value: Stats | None) -> str:
    """``mean ± std``, the value of a single seed, or how many seeds diverged."""
    if value is None:
        return ""
    if value.diverged:
        return f"diverged ({value.diverged}/{value.n})"
    if value.n == 1:
        return number(value.mean)
    return f"{number(value.mean)} ± {number(value.std)}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _best_lr(summary: MethodSummary) -> str:
    return number(summary.best_lr) + (" (grid edge)" if summary.at_edge else "")


def _to_target(summary: MethodSummary, steps: int) -> str:
    """Steps and, where recorded, training time to the target: ``"1200/3000 (41 s)"``."""
    reached = summary.steps_to_target
    if reached is None:
        return "not reached"
    seconds = summary.time_to_target
    return f"{reached}/{steps}" + (f" ({seconds:.0f} s)" if seconds is not None else "")


def _method_row(
    task: TaskSummary, family: FamilySummary, summary: MethodSummary, verdicts: bool
) -> list[str]:
    name = summary.method.name
    if summary is family.baseline:
        name += " (best baseline)"
    if verdicts and summary.verdict:
        name += f" **{summary.verdict}**"
    beta = [stats(summary.beta(key)) for key in ("mean", "frac_zero", "frac_cap")]
    paired = [stats(summary.paired)] if task.suite in TUNED_SUITES else []
    return [
        name,
        _best_lr(summary),
        stats(summary.report),
        *(stats(summary.extras[extra]) for extra in task.task.extras),
        stats(summary.select),
        _to_target(summary, task.config["steps"]),
        f"{summary.good_lrs}/{len(summary.grid)}",
        *paired,
        *beta,
    ]


def _sweep_table(task: TaskSummary, family: FamilySummary) -> list[str]:
    """Mean ± std of the final selection metric of every method at every learning rate."""
    header = ["method", *(number(lr) for lr in task.task.lr_grid(family.family, task.config))]
    rows = [
        [summary.method.name, *(stats(summary.by_lr.get(lr)) for lr in summary.grid)]
        for summary in family.methods
    ]
    return _table(header, rows)


def _family_section(
    task: TaskSummary, family: FamilySummary, verdicts: bool, seeds: int
) -> list[str]:
    t = task.task
    tuned = task.suite in TUNED_SUITES
    grid = t.lr_grid(family.family, task.config)
    header = [
        "method",
        "best lr",
        f"{t.report} (report)",
        *t.extras,
        f"{t.select} (selection)",
        "steps (time) to target" if tuned else "steps to target",
        "good lrs",
        *(["AM − baseline"] if tuned else []),
        "mean beta",
        "beta at 0",
        "beta at cap",
    ]
    rows = [_method_row(task, family, summary, verdicts) for summary in family.methods]
    target = number(family.target) if family.baseline else "n/a"
    listed = ", ".join(number(lr) for lr in grid)
    if tuned:
        runs = len(grid) + seeds - 1
        intro = (
            f"**Family `{family.family}`**. Tuning budget per method: {len(grid)} learning "
            f"rates ({listed}) with the tuning seed, then the other seeds at the chosen one: "
            f"{runs} runs per method, {runs * len(family.methods)} for the family's "
            f"{len(family.methods)} methods. Target for *steps to target*: {target} "
            f"({t.select} of the best baseline)."
        )
        sweep = [f"Final {t.select} of the tuning seed at each learning rate:", ""]
        sweep += [*_sweep_table(task, family), ""]
    else:
        intro = (
            f"**Family `{family.family}`**, learning-rate grid: {listed}. Target for *steps to "
            f"target*: {target} ({t.select} of the best baseline)."
        )
        sweep = [
            f"<details><summary>Full sweep: mean ± std of final {t.select} per learning rate"
            "</summary>",
            "",
            *_sweep_table(task, family),
            "",
            "</details>",
            "",
        ]
    return [intro, "", *_table(header, rows), "", *sweep, *_beta_per_tensor(family)]


def _beta_per_tensor(family: FamilySummary) -> list[str]:
    """AM's mean beta per tensor, a column per AM method (none without AM traces)."""
    per_tensor = {s.method.name: s.beta_per_tensor() for s in family.methods if s.method.adaptive}
    per_tensor = {name: table for name, table in per_tensor.items() if table}
    if not per_tensor:
        return []
    tensors = list(next(iter(per_tensor.values())))
    rows = [
        [f"`{tensor}`", *(number(t[tensor]) for t in per_tensor.values())] for tensor in tensors
    ]
    return [
        "<details><summary>AM's beta per tensor: mean over steps and seeds at the best "
        "lr</summary>",
        "",
        *_table(["tensor", *per_tensor], rows),
        "",
        "</details>",
        "",
    ]


def _warmup(task: TaskSummary) -> str | None:
    """How long the ``+warmup`` methods of ``task`` warm up; ``None`` if it has none."""
    if not any(s.method.warmup for family in task.families for s in family.methods):
        return None
    steps = task.config["steps"]
    return f"linear warmup over the first {warmup_steps(task.config)} of {steps} steps"


def _schedule(task: TaskSummary) -> str:
    """The learning-rate schedule of the task's configuration, in words."""
    if "cosine" not in task.config:
        return "constant learning rate"
    return f"cosine decay to {number(task.config['cosine'])} of the peak learning rate"


def _task_section(
    results: Results, task: TaskSummary, figures: dict[str, Path], out: Path
) -> list[str]:
    t = task.task
    warmup = _warmup(task)
    schedule = f". Schedule: {_schedule(task)}" if results.tuned else ""
    lines = [
        f"## {t.name}",
        "",
        f"{t.summary}{schedule}" + (f"; `+warmup` methods: {warmup}" if warmup else "") + ".",
        "",
        f"Configuration: `{json.dumps(task.config, sort_keys=True)}`. Runs: {task.runs}"
        + (f" (**{task.missing} missing**)" if task.missing else "")
        + f", {task.wall_time_s / 60:.1f} min of run time.",
        "",
    ]
    if t.anchor:
        reached = [
            f"{family.baseline.method.name} {extra} {stats(family.baseline.extras[extra])}"
            for family in task.families
            if family.baseline is not None
            for extra in t.extras
        ]
        lines += [f"Sanity anchor: {t.anchor}. Best baselines here: {'; '.join(reached)}.", ""]
    for family in task.families:
        lines += _family_section(task, family, results.gives_verdicts, results.seeds)
    captions = TUNED_CAPTIONS if results.tuned else CAPTIONS
    for kind, path in figures.items():
        caption = captions[kind].format(select=t.select)
        link = path.relative_to(out).as_posix()
        lines += [f"![{caption}]({link})", "", f"*{caption}.*", ""]
    return lines


def _judged(
    tasks: list[TaskSummary],
) -> Iterator[tuple[TaskSummary, MethodSummary, MethodSummary]]:
    """Each AM method with a verdict against its family's baseline: ``(task, method,
    baseline)`` (a family with runs still missing has none)."""
    for task in tasks:
        for family in task.families:
            for summary in family.methods:
                if family.baseline is not None and summary.verdict:
                    yield task, summary, family.baseline


def _verdict_rows(tasks: list[TaskSummary]) -> list[list[str]]:
    rows = []
    for task, summary, base in _judged(tasks):
        rows.append(
            [
                task.task.name,
                task.task.report,
                f"{summary.method.name}, lr {_best_lr(summary)}",
                stats(summary.report),
                f"{base.method.name}, lr {_best_lr(base)}",
                stats(base.report),
                f"**{summary.verdict}**",
            ]
        )
    return rows


def _verdict_rule() -> str:
    return (
        "Verdicts compare each AM variant at its own best learning rate with the best tuned "
        "fixed-momentum baseline of its family at that baseline's best learning rate, on the "
        f"report metric; differences within two standard errors or {analysis.RELATIVE_TIE:.0%} "
        "count as ties. They describe this suite's sizes and seeds only."
    )


def _verdict_table(tasks: list[TaskSummary]) -> list[str]:
    header = ["task", "metric", "AM method", "AM", "best fixed baseline", "baseline", "AM"]
    return ["## Verdicts", "", *_table(header, _verdict_rows(tasks)), ""]


def _closing_note(tasks: list[TaskSummary]) -> list[str]:
    lines = ["## Closing note: where AM won, tied or lost", ""]
    for task in tasks:
        parts = []
        for family in task.families:
            if family.baseline is None:
                continue
            base = family.baseline
            for summary in family.methods:
                if summary.verdict:
                    parts.append(
                        f"{summary.method.name} **{summary.verdict}** against {base.method.name} "
                        f"({number(summary.report.mean)} vs {number(base.report.mean)})"
                    )
        lines.append(f"- **{task.task.name}** ({task.task.report}): " + "; ".join(parts) + ".")
    return lines + ["", _verdict_rule(), ""]


def _tally(tasks: list[TaskSummary]) -> list[str]:
    """How often each AM method won, tied and lost, over the tasks."""
    counts: dict[str, Counter[str]] = {}
    for task in tasks:
        for family in task.families:
            for summary in family.methods:
                if summary.verdict:
                    counts.setdefault(summary.method.name, Counter())[summary.verdict] += 1
    verdicts = ("won", "tied", "lost")
    rows = [[name, *(str(count[v]) for v in verdicts)] for name, count in counts.items()]
    return ["## Tally over tasks", "", *_table(["AM method", *verdicts], rows), ""]


def _warmup_sections(tasks: list[TaskSummary]) -> list[str]:
    """Each task with ``+warmup`` methods: the warmup's length and the full sweep."""
    lines = []
    for task in tasks:
        warmup = _warmup(task)
        if warmup is None:
            continue
        lines += [
            f"## Warmup: {task.task.name}",
            "",
            f"`+warmup` methods: {warmup}. Final {task.task.select} (the selection metric), "
            "mean ± std over seeds, at each learning rate:",
            "",
        ]
        for family in task.families:
            lines += [*_sweep_table(task, family), ""]
    return lines


def _sizes(results: Results, tasks: list[TaskSummary]) -> list[str]:
    rows = []
    for task in tasks:
        grids = []
        for family in task.families:
            grid = task.task.lr_grid(family.family, task.config)
            grids.append(f"{family.family} {number(grid[0])}-{number(grid[-1])} ({len(grid)})")
        runs = str(task.runs) + (f" ({task.missing} missing)" if task.missing else "")
        rows.append([task.task.name, str(task.config["steps"]), "; ".join(grids), runs])
    header = ["task", "steps", "learning rates (points)", "runs"]
    return [
        "## Sizes",
        "",
        f"{results.seeds} seeds per learning rate; each task's full configuration is in the "
        f"report and in `src/adamem/bench/tasks.py`.",
        "",
        *_table(header, rows),
        "",
    ]


def _machinery_notice(results: Results) -> list[str]:
    return [
        f"**This is a test of the benchmark's machinery, not evidence.** The `{results.suite}` "
        "suite takes so few steps and learning rates that its comparisons mean nothing, so no "
        "verdicts are given. The `quick` and `full` suites are sized for comparisons.",
        "",
    ]


def _provenance(results: Results) -> str:
    records = results.records
    last = max(datetime.fromisoformat(record["finished_at"]) for record in records)
    wall = sum(record["wall_time_s"] for record in records)
    cpu = sum(record.get("cpu_time_s", 0.0) for record in records)
    versions: dict[str, set[str]] = {}
    for record in records:
        for key, value in record["versions"].items():
            versions.setdefault(key, set()).add(value)
    return (
        f"Generated from {len(records)} run records (the last finished {last:%Y-%m-%d %H:%M} "
        f"UTC; summed over runs: {wall / 60:.1f} min wall time, {cpu / 60:.1f} min CPU time). "
        "Versions: "
        + ", ".join(f"{key} {' / '.join(sorted(values))}" for key, values in versions.items())
        + "."
    )


_AM_DEFAULTS = (
    "AM keeps its defaults (lambd 0.1; caps 0.9 for AM-SGD, 0.89 for AM-AdamW, 0.95 for AM-Muon)"
)


def _protocol() -> list[str]:
    return [
        "## Protocol",
        "",
        "* Methods, in three families (the variants and the baselines of each are listed "
        "in its tables): AMSGD (`amsgd-<scope>`, ...) against heavy ball in EMA form "
        "`hb-<beta>` and `torch.optim.SGD` with momentum and Nesterov; AMAdamW "
        "(`amadamw-<scope>`, ...) against `torch.optim.AdamW` (`adamw-<beta1>`) and NAdam; "
        "AMMuon with AMAdamW on the non-matrix parameters (`ammuon-tensor`) against "
        "`torch.optim.Muon` with AdamW (`muon-<momentum>`). SGD-family learning rates are in "
        f"EMA units (steady-state step lr*g; `sgd-0.9` runs at lr*(1-0.9)). {_AM_DEFAULTS}; "
        "only the learning rate is tuned, for every method alike. Learning rates are "
        "constant unless the method name ends in `+warmup`. Optimizers run their multi-tensor "
        "(foreach) implementations.",
        "* Each method's learning rate is the grid point with the lowest mean *selection* metric "
        "over seeds (validation metrics for learning tasks, the training objective for "
        "optimisation tasks; a point where any seed diverged loses). The *report* metric is "
        "given at that learning rate as mean ± sample std over seeds.",
        "* The best baseline of a family is its fixed-momentum method with the lowest mean "
        "selection metric. *Steps to target*: first evaluation step at which the seed-mean "
        "selection curve reaches the best baseline's final value. *Good lrs*: grid points "
        "whose mean selection metric is within 2x of the method's best. *Beta* columns (AM "
        "only): beta_t averaged over steps and tensors, and the fractions of (step, tensor) "
        "pairs at 0 and at the cap, mean ± std over seeds.",
        "* A run stops as diverged when a metric becomes non-finite or the selection metric "
        f"exceeds {DIVERGENCE_FACTOR:g} times its initial value.",
        "",
    ]


def _tuned_verdict_rows(tasks: list[TaskSummary]) -> list[list[str]]:
    rows = []
    for task, summary, base in _judged(tasks):
        steps = task.config["steps"]
        rows.append(
            [
                f"{task.task.name} ({task.task.report})",
                f"{summary.method.name}, lr {_best_lr(summary)}",
                stats(summary.report),
                f"{base.method.name}, lr {_best_lr(base)}",
                stats(base.report),
                f"{stats(summary.paired)} (n={summary.paired.n})",
                f"{_to_target(summary, steps)} vs {_to_target(base, steps)}",
                f"{summary.good_lrs} vs {base.good_lrs} of {len(summary.grid)}",
                f"**{summary.verdict}**",
            ]
        )
    return rows


def _tuned_verdict_rule() -> str:
    return (
        "Each AM method at the learning rate its tuning seed chose is compared with the best "
        "fixed-momentum baseline of its family (the lowest mean selection metric over seeds) "
        "at that baseline's chosen learning rate, seed by seed: the same seed gives both the "
        "same initialisation and minibatches. *AM − baseline* is the mean ± std over seeds of "
        "the per-seed differences of the report metric (negative where AM did better). The "
        "verdict is **won** or **lost** when that mean lies beyond a two-sided paired t-test "
        f"at 5% and beyond {analysis.RELATIVE_TIE:.0%} of the baseline's mean, else **tied**; "
        f"with one seed, the {analysis.RELATIVE_TIE:.0%} margin alone decides. *To target*: "
        "the first evaluation step (and the training time to it, evaluations left out, mean "
        "over seeds) at which the seed-mean validation curve reaches the best baseline's "
        "final value, for the AM method and for the baseline itself. *Good lrs*: learning "
        "rates of the grid whose tuning run ended within "
        f"{analysis.GOOD_LR_MARGIN:.0%} of the method's best selection metric."
    )


def _tuned_verdict_table(tasks: list[TaskSummary]) -> list[str]:
    header = [
        "task (report metric)",
        "AM method",
        "AM",
        "best baseline",
        "baseline",
        "AM − baseline",
        "to target: AM vs baseline",
        "good lrs",
        "verdict",
    ]
    return [
        "## Verdicts",
        "",
        *_table(header, _tuned_verdict_rows(tasks)),
        "",
        _tuned_verdict_rule(),
        "",
    ]


def _data_lines(records: list[Record]) -> list[str]:
    """The fingerprints of machine-dependent data in ``records``, by task, flagging a task
    whose runs read different data."""
    found: dict[str, set[str]] = {}
    for record in records:
        if record.get("data"):
            fingerprint = json.dumps(record["data"], sort_keys=True)
            found.setdefault(record["task"], set()).add(fingerprint)
    lines = []
    for task, fingerprints in found.items():
        described = "; ".join(_describe_data(json.loads(f)) for f in sorted(fingerprints))
        warning = (
            " **Its runs read different data: they are not comparable.**"
            if len(fingerprints) > 1
            else ""
        )
        lines += [f"* `{task}`: {described}.{warning}"]
    if not lines:
        return []
    intro = (
        "Data read from the installed Python and packages (it differs between versions, so "
        "compare results only across equal fingerprints):"
    )
    return [intro, "", *lines, ""]


def _describe_data(fingerprint: dict[str, int | str]) -> str:
    return (
        f"{fingerprint['files']} files, {fingerprint['bytes']} bytes, SHA-256 "
        f"`{fingerprint['sha256']}`"
    )


def _tuned_protocol(results: Results) -> list[str]:
    return [
        "## Protocol",
        "",
        "* Tuning budget: every method gets the same learning-rate grid (given per task), "
        f"tried once with the tuning seed ({TUNING_SEED}); the learning rate with the lowest "
        "final selection metric (a validation metric) is chosen, and the other seeds run "
        f"there only. Nothing else is tuned: {_AM_DEFAULTS}, the baselines their fixed "
        "momentum.",
        f"* {results.seeds} seed(s) at each method's chosen learning rate, the tuning seed "
        "included; the report metric (a test metric) is given as mean ± sample std over "
        "them.",
        "* Learning-rate schedules are given per task; `+warmup` methods add a linear warm-up "
        "to it. Optimizers run their multi-tensor (foreach) implementations.",
        "* A run stops as diverged when a metric becomes non-finite or the selection metric "
        f"exceeds {DIVERGENCE_FACTOR:g} times its initial value; a diverged tuning run loses.",
        "* Times are the training time of each run on one CPU thread (or on the GPU), "
        "evaluations left out; on a shared machine they carry its load.",
        "",
    ]


def _unfinished_notice(results: Results) -> list[str]:
    """A warning at the top of the report of a benchmark whose runs are not all recorded."""
    expected = {
        name: expected_runs(results.suite, name, results.seeds, results.device)
        for name in results.tasks
    }
    total = sum(expected.values())
    if len(results.records) >= total:
        return []
    recorded = {record["task"] for record in results.records}
    empty = [name for name in results.tasks if name not in recorded]
    return [
        f"**Unfinished: {len(results.records)} of the {total} planned runs are recorded**"
        + (f" (none yet of {', '.join(empty)})" if empty else "")
        + ". Verdicts are given only for families whose runs are all recorded; the other "
        "numbers are provisional: best learning rates and baselines can still change.",
        "",
    ]


def _tuned_report(results: Results, tasks: list[TaskSummary], figures: Figures, out: Path) -> str:
    lines = [
        f"# adamem benchmark: `{results.command}`",
        "",
        *_unfinished_notice(results),
        *_tuned_verdict_table(tasks),
        _provenance(results),
        "",
        *_data_lines(results.records),
        *_tuned_protocol(results),
    ]
    for task in tasks:
        lines += _task_section(results, task, figures(task), out)
    lines += [
        "## Reproduce",
        "",
        "The runs of this report, resumable after an interruption, in the background:",
        "",
        "```bash",
        f"nohup {results.command} --out DIR --resume > bench.log 2>&1 &",
        "```",
        "",
    ]
    return "\n".join(lines)


def _report(results: Results, tasks: list[TaskSummary], figures: Figures, out: Path) -> str:
    lines = [f"# adamem benchmark: `{results.command}`", "", *_unfinished_notice(results)]
    if not results.gives_verdicts:
        lines += _machinery_notice(results)
    lines += [_provenance(results), "", *_protocol()]
    if results.gives_verdicts:
        lines += _verdict_table(tasks)
    for task in tasks:
        lines += _task_section(results, task, figures(task), out)
    if results.gives_verdicts:
        lines += _closing_note(tasks)
    return "\n".join(lines)


def _summary(results: Results, tasks: list[TaskSummary]) -> str:
    lines = [f"# Summary of the adamem benchmark: `{results.command}`", ""]
    if not results.gives_verdicts:
        lines += _machinery_notice(results)
    lines += [
        f"Written with [the full report]({REPORT}) (per-task tables, learning-rate sweeps, "
        "beta statistics and plots) by the same code; `adamem report` rewrites both from the "
        "run records. " + _provenance(results),
        "",
    ]
    if results.gives_verdicts:
        lines += [_verdict_rule(), "", *_verdict_table(tasks), *_tally(tasks)]
        lines += _warmup_sections(tasks)
    lines += _sizes(results, tasks)
    return "\n".join(lines)


def render(results: Results, figures: Figures, out: Path) -> dict[str, str]:
    """The text of ``report.md`` and (small suites) ``summary.md``, by file name, for the
    directory ``out``; ``figures`` gives each task's plots (paths under ``out``)."""
    tasks = results.summarize()
    if results.tuned:
        return {REPORT: _tuned_report(results, tasks, figures, out)}
    return {REPORT: _report(results, tasks, figures, out), SUMMARY: _summary(results, tasks)}


def linked_figures(out: Path) -> Figures:
    """The plots already in ``out/plots``, for rendering without drawing them again."""

    def figures(task: TaskSummary) -> dict[str, Path]:
        paths = {kind: out / PLOTS / f"{task.task.name}-{kind}.png" for kind in CAPTIONS}
        return {kind: path for kind, path in paths.items() if path.exists()}

    return figures


def stale_files(results: Results, out: Path) -> list[str]:
    """The files of ``out`` (``report.md``, ``summary.md``) that differ from what ``results``
    give; plots are linked as found in ``out/plots``, not drawn again."""
    texts = render(results, linked_figures(out), out)
    return [
        name
        for name, text in texts.items()
        if not (out / name).exists() or (out / name).read_text() != text
    ]


def write_report(results: Results, out: Path) -> Path:
    """Draw ``out/plots/*.png``, write ``out/report.md`` and ``out/summary.md`` from
    ``results`` and return the report's path."""
    out.mkdir(parents=True, exist_ok=True)
    texts = render(results, lambda task: plot_task(task, out / PLOTS), out)
    for name, text in texts.items():
        temporary = (out / name).with_suffix(".tmp")
        temporary.write_text(text)
        os.replace(temporary, out / name)
    return out / REPORT
