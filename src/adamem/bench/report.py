"""The Markdown report: verdicts, per-task tables and plots, full sweeps, closing note."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import analysis
from .analysis import FamilySummary, MethodSummary, Stats, TaskSummary
from .plan import plan
from .plots import plot_task
from .runner import DIVERGENCE_FACTOR
from .tasks import TASKS

PLOTS = "plots"
REPORT = "report.md"


def number(value: float) -> str:
    """Four significant digits.

    >>> number(0.000123456), number(2.0)
    ('0.0001235', '2')
    """
    return f"{value:.4g}"


def stats(value: Stats | None) -> str:
    """``mean ± std``, or how many seeds diverged."""
    if value is None:
        return ""
    if value.diverged:
        return f"diverged ({value.diverged}/{value.n})"
    return f"{number(value.mean)} ± {number(value.std)}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _method_row(task: TaskSummary, family: FamilySummary, summary: MethodSummary) -> list[str]:
    steps = task.config["steps"]
    name = summary.method.name
    if summary is family.baseline:
        name += " (best baseline)"
    if summary.verdict:
        name += f" **{summary.verdict}**"
    reached = summary.steps_to_target
    beta = [stats(summary.beta(key)) for key in ("mean", "frac_zero", "frac_cap")]
    best_lr = number(summary.best_lr) + (" (grid edge)" if summary.at_edge else "")
    return [
        name,
        best_lr,
        stats(summary.report),
        *(stats(summary.extras[extra]) for extra in task.task.extras),
        stats(summary.select),
        f"{reached}/{steps}" if reached is not None else "not reached",
        f"{summary.good_lrs}/{len(summary.grid)}",
        *beta,
    ]


def _family_section(task: TaskSummary, family: FamilySummary) -> list[str]:
    t = task.task
    grid = ", ".join(number(lr) for lr in t.lr_grid(family.family, task.config))
    header = [
        "method",
        "best lr",
        f"{t.report} (report)",
        *t.extras,
        f"{t.select} (selection)",
        "steps to target",
        "good lrs",
        "mean beta",
        "beta at 0",
        "beta at cap",
    ]
    rows = [_method_row(task, family, summary) for summary in family.methods]
    target = number(family.target) if family.baseline else "n/a"
    lines = [
        f"**Family `{family.family}`**, learning-rate grid: {grid}. Target for *steps to "
        f"target*: {target} ({t.select} of the best baseline).",
        "",
        *_table(header, rows),
        "",
    ]
    sweep_header = ["method", *(number(lr) for lr in t.lr_grid(family.family, task.config))]
    sweep_rows = []
    for summary in family.methods:
        cells = [stats(summary.by_lr.get(lr)) for lr in summary.grid]
        sweep_rows.append([summary.method.name, *cells])
    lines += [
        f"<details><summary>Full sweep: mean ± std of final {t.select} per learning rate</summary>",
        "",
        *_table(sweep_header, sweep_rows),
        "",
        "</details>",
        "",
    ]
    return lines


def _task_section(task: TaskSummary, figures: dict[str, Path], out: Path) -> list[str]:
    t = task.task
    lines = [
        f"## {t.name}",
        "",
        f"{t.summary}.",
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
        lines += _family_section(task, family)
    captions = {
        "curves": f"{t.select} at each method's best lr (seed mean; band: best to worst seed)",
        "betas": "AM's beta_t at the best lr (seed mean of the mean over tensors; band: smallest "
        "to largest tensor; dashed: cap)",
        "lr": f"final {t.select} against the learning rate (seed mean; bars: best to worst "
        "seed; points where a seed diverged are left out)",
    }
    for kind, path in figures.items():
        link = path.relative_to(out).as_posix()
        lines += [f"![{captions[kind]}]({link})", "", f"*{captions[kind]}.*", ""]
    return lines


def _verdict_rows(tasks: list[TaskSummary]) -> list[list[str]]:
    rows = []
    for task in tasks:
        for family in task.families:
            base = family.baseline
            for summary in family.methods:
                if base is None or not summary.method.adaptive:
                    continue
                rows.append(
                    [
                        task.task.name,
                        task.task.report,
                        f"{summary.method.name} (lr {number(summary.best_lr)})",
                        stats(summary.report),
                        f"{base.method.name} (lr {number(base.best_lr)})",
                        stats(base.report),
                        f"**{summary.verdict}**",
                    ]
                )
    return rows


def _closing_note(tasks: list[TaskSummary]) -> list[str]:
    lines = ["## Closing note: where AM won, tied or lost", ""]
    for task in tasks:
        parts = []
        for family in task.families:
            if family.baseline is None:
                continue
            base = family.baseline
            for summary in family.methods:
                if summary.method.adaptive:
                    parts.append(
                        f"{summary.method.name} **{summary.verdict}** against {base.method.name} "
                        f"({number(summary.report.mean)} vs {number(base.report.mean)})"
                    )
        lines.append(f"- **{task.task.name}** ({task.task.report}): " + "; ".join(parts) + ".")
    lines += [
        "",
        "Verdicts compare each AM variant at its own best learning rate with the best tuned "
        "fixed-momentum baseline of its family at that baseline's best learning rate, on the "
        f"report metric; differences within two standard errors or {analysis.RELATIVE_TIE:.0%} "
        "count as ties. They describe this suite's sizes and seeds only.",
        "",
    ]
    return lines


def _command(suite: str, tasks: list[str], seeds: int, device: str) -> str:
    chosen = "" if tasks == list(TASKS) else " --tasks " + " ".join(tasks)
    return f"adamem bench --suite {suite}{chosen} --seeds {seeds} --device {device}"


def _header(records: list[dict[str, Any]], command: str) -> list[str]:
    versions = records[0]["versions"] if records else {}
    wall = sum(record["wall_time_s"] for record in records)
    cpu = sum(record.get("cpu_time_s", 0.0) for record in records)
    return [
        f"# adamem benchmark: `{command}`",
        "",
        f"Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by `{command}` from "
        f"{len(records)} run records "
        f"(summed over runs: {wall / 60:.1f} min wall time, {cpu / 60:.1f} min CPU time). "
        "Versions: " + ", ".join(f"{key} {value}" for key, value in versions.items()) + ".",
        "",
        "## Protocol",
        "",
        "* Methods: `amsgd-tensor` and `amsgd-global` (AMSGD, scope tensor/global) against heavy "
        "ball in EMA form `hb-<beta>` and `torch.optim.SGD(momentum=0.9)` (`sgd-0.9`); "
        "`amadamw-tensor` and `amadamw-global` against `torch.optim.AdamW` with beta1 = "
        "`adamw-<beta1>`. SGD-family learning rates are in EMA units (steady-state step "
        "lr*g; `sgd-0.9` runs at lr*(1-0.9)). AM keeps its defaults (lambd 0.1, caps 0.9 / "
        "0.89); only the learning rate is tuned, for every method alike. Learning rates are "
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


def write_report(
    records: list[dict[str, Any]], suite: str, tasks: list[str], seeds: int, device: str, out: Path
) -> Path:
    """Write ``out/report.md`` and ``out/plots/*.png`` from ``records`` and return the report."""
    out.mkdir(parents=True, exist_ok=True)
    summaries, sections = [], []
    for name in tasks:
        task = TASKS[name]
        config = task.config(suite, device)
        runs = [record for record in records if record["task"] == name]
        if not runs:
            continue
        expected = len(plan(suite, [name], seeds, device))
        summary = analysis.summarize(task, config, runs, expected)
        summaries.append(summary)
        sections += _task_section(summary, plot_task(summary, out / PLOTS), out)
    header = ["task", "metric", "AM method", "AM", "best fixed baseline", "baseline", "AM"]
    lines = _header(records, _command(suite, tasks, seeds, device))
    lines += ["## Verdicts", "", *_table(header, _verdict_rows(summaries)), "", *sections]
    lines += _closing_note(summaries)
    path = out / REPORT
    temporary = path.with_suffix(".tmp")
    temporary.write_text("\n".join(lines))
    os.replace(temporary, path)
    return path
