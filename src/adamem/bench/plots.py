"""PNG figures of a task: loss curves with seed bands, beta traces and learning-rate sweeps.

matplotlib is used through :class:`matplotlib.figure.Figure` (no pyplot, no global state).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .analysis import FamilySummary, MethodSummary, TaskSummary

DPI = 100


def _new_figure(panels: int) -> tuple[Any, list[Any]]:
    from matplotlib.figure import Figure

    width, height = 5.2 * panels, 3.9
    figure = Figure(figsize=(width, height), dpi=DPI)
    # fixed margins in inches: a layout engine would draw every figure twice
    figure.subplots_adjust(
        left=0.75 / width,
        right=1 - 0.15 / width,
        bottom=0.55 / height,
        top=1 - 0.35 / height,
        wspace=0.3,
    )
    axes = figure.subplots(1, panels, squeeze=False)[0]
    return figure, list(axes)


def _save(figure: Any, path: Path) -> Path:
    temporary = path.with_suffix(".tmp.png")
    figure.savefig(temporary)
    os.replace(temporary, path)
    return path


def _style(summary: MethodSummary, index: int) -> dict[str, Any]:
    if summary.method.adaptive:
        return {"color": f"C{index % 2}", "linewidth": 2.2, "zorder": 3}
    from matplotlib import colormaps

    return {"color": colormaps["viridis"](0.2 + 0.12 * index), "linewidth": 1.1, "alpha": 0.9}


def _positive(values: np.ndarray) -> np.ndarray:
    return np.where(values > 0, values, np.nan)


def _label(summary: MethodSummary) -> str:
    return f"{summary.method.name} (lr {summary.best_lr:.3g})"


def plot_curves(task: TaskSummary, path: Path) -> Path:
    """Selection metric against steps at each method's best learning rate: seed mean, with the
    band between the best and worst seed."""
    figure, axes = _new_figure(len(task.families))
    metric = task.task.select
    for axis, family in zip(axes, task.families):
        for index, summary in enumerate(family.methods):
            finished = [run for run in summary.runs if not run["diverged"]]
            if not finished:
                continue
            steps = np.array(finished[0]["curve"]["step"])
            values = _positive(np.array([run["curve"][metric] for run in finished], dtype=float))
            style = _style(summary, index)
            axis.plot(steps, np.nanmean(values, 0), label=_label(summary), **style)
            axis.fill_between(
                steps, values.min(0), values.max(0), color=style["color"], alpha=0.15, linewidth=0
            )
        axis.set(
            yscale="log", xlabel="step", ylabel=metric, title=f"{task.task.name}: {family.family}"
        )
        axis.legend(fontsize=7)
    return _save(figure, path)


def plot_betas(task: TaskSummary, path: Path) -> Path | None:
    """AM's beta at the best learning rate: seed mean of the mean over tensors, with the band
    between the (seed-mean) smallest and largest tensor beta; the dashed line is the cap."""
    adaptive = [s for family in task.families for s in family.methods if s.method.adaptive]
    adaptive = [s for s in adaptive if any(run["beta"] for run in s.runs)]
    if not adaptive:
        return None
    figure, axes = _new_figure(len(adaptive))
    for axis, summary in zip(axes, adaptive):
        traces = [run["beta"]["trace"] for run in summary.runs if run["beta"]]
        length = min(len(trace["step"]) for trace in traces)
        steps = traces[0]["step"][:length]
        keys = ("mean", "min", "max")
        mean = {key: np.mean([t[key][:length] for t in traces], 0) for key in keys}
        axis.fill_between(steps, mean["min"], mean["max"], alpha=0.25, label="min-max over tensors")
        axis.plot(steps, mean["mean"], linewidth=1.5, label="mean over tensors")
        axis.axhline(summary.method.beta_cap, color="k", linestyle="--", linewidth=0.8)
        axis.set(ylim=(-0.02, 1.0), xlabel="step", ylabel="beta_t", title=_label(summary))
        axis.legend(fontsize=7, loc="lower right")
    return _save(figure, path)


def plot_lr_sweep(task: TaskSummary, path: Path) -> Path:
    """Mean final selection metric against the learning rate, bars one standard deviation;
    points where a seed diverged are left out."""
    figure, axes = _new_figure(len(task.families))
    for axis, family in zip(axes, task.families):
        _plot_family_sweep(axis, family)
        axis.set(
            xscale="log",
            yscale="log",
            xlabel="learning rate",
            ylabel=f"final {task.task.select}",
            title=f"{task.task.name}: {family.family}",
        )
        axis.legend(fontsize=7)
    return _save(figure, path)


def _plot_family_sweep(axis: Any, family: FamilySummary) -> None:
    for index, summary in enumerate(family.methods):
        points = [(lr, s) for lr, s in summary.by_lr.items() if s.finite and s.mean > 0]
        if not points:
            continue
        lrs = [lr for lr, _ in points]
        means = np.array([s.mean for _, s in points])
        stds = np.array([s.std for _, s in points])
        style = _style(summary, index)
        axis.errorbar(
            lrs,
            means,
            yerr=stds,
            marker="o",
            markersize=3,
            capsize=2,
            label=summary.method.name,
            **style,
        )


def plot_task(task: TaskSummary, directory: Path) -> dict[str, Path]:
    """All figures of ``task`` in ``directory``, by kind (``curves``, ``betas``, ``lr``)."""
    directory.mkdir(parents=True, exist_ok=True)
    name = task.task.name
    figures = {
        "curves": plot_curves(task, directory / f"{name}-curves.png"),
        "betas": plot_betas(task, directory / f"{name}-betas.png"),
        "lr": plot_lr_sweep(task, directory / f"{name}-lr.png"),
    }
    return {kind: path for kind, path in figures.items() if path is not None}
