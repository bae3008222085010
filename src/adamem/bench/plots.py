"""PNG figures of a task: loss curves with seed bands, beta traces and learning-rate sweeps.

matplotlib is used through :class:`matplotlib.figure.Figure` (no pyplot, no global state).
Values that are not positive (an optimality gap below round-off) are left out of the
logarithmic axes.

AM methods and fixed-momentum baselines are drawn from two palettes (warm and cool), AM
heavier; within each, every method also has its own dash pattern and marker, so that curves
that coincide (AM's tensor and global scopes often do) stay visible.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .analysis import MethodSummary, TaskSummary

DPI = 100
PANEL = (5.4, 3.9)  # inches per panel
MARGINS = {"left": 0.95, "right": 0.15, "bottom": 0.55, "top": 0.35}  # inches
KEYS = ("mean", "low", "high")


@dataclass(frozen=True)
class Look:
    """How one kind of method is drawn: its palette, line width, layer and band opacity."""

    colours: tuple[str, ...]
    linewidth: float
    zorder: int
    band_alpha: float


LOOKS = {  # by Method.adaptive
    True: Look(("tab:red", "tab:orange", "tab:brown", "tab:pink"), 2.0, 3, 0.18),
    False: Look(
        (
            "tab:blue",
            "tab:green",
            "tab:purple",
            "tab:cyan",
            "tab:olive",
            "tab:gray",
            "black",
            "navy",
            "darkgreen",
            "slateblue",
            "darkcyan",
        ),
        1.2,
        2,
        0.07,
    ),
}
# gaps wide enough for a coinciding line drawn earlier to show through
DASHES = (
    "-",
    (0, (4, 3)),
    (0, (1, 2)),
    (0, (6, 2, 1, 2)),
    (0, (3, 2, 1, 2, 1, 2)),
    (0, (8, 3)),
    (0, (2, 2, 6, 2)),
    (0, (1, 1)),
    (0, (5, 1, 1, 1)),
    (0, (10, 2, 2, 2)),
    (0, (2, 4)),
)
MARKERS = ("o", "s", "^", "v", "D", "P", "X", "*", "<", ">", "h")
MARKER_FILLS = ("full", "none")  # alternating, so that markers at the same point stay visible
MARKS_PER_LINE = 8  # on curves with more evaluation points, markers are spread out


def _new_figure(rows: int, columns: int) -> tuple[Any, np.ndarray]:
    from matplotlib.figure import Figure

    width, height = PANEL[0] * columns, PANEL[1] * rows
    figure = Figure(figsize=(width, height), dpi=DPI)
    # fixed margins: a layout engine would draw every figure twice
    figure.subplots_adjust(
        left=MARGINS["left"] / width,
        right=1 - MARGINS["right"] / width,
        bottom=MARGINS["bottom"] / height,
        top=1 - MARGINS["top"] / height,
        wspace=0.35,
        hspace=0.4,
    )
    return figure, figure.subplots(rows, columns, squeeze=False)


def _save(figure: Any, path: Path) -> Path:
    temporary = path.with_suffix(".tmp.png")
    figure.savefig(temporary)
    os.replace(temporary, path)
    return path


def _styles(methods: list[MethodSummary], points: int = 0) -> dict[str, dict[str, Any]]:
    """Line style by method name: the n-th AM method (or the n-th baseline) takes the n-th
    colour of its kind's palette, dash pattern, marker and marker fill. With ``points`` > 0,
    markers are spread over the curve's points and staggered between methods."""
    every = max(1, -(-points // MARKS_PER_LINE))
    styles = {}
    for adaptive, look in LOOKS.items():
        names = [summary.method.name for summary in methods if summary.method.adaptive == adaptive]
        for rank, name in enumerate(names):
            styles[name] = {
                "color": look.colours[rank % len(look.colours)],
                "linestyle": DASHES[rank % len(DASHES)],
                "marker": MARKERS[rank % len(MARKERS)],
                "markersize": 4,
                "fillstyle": MARKER_FILLS[rank % len(MARKER_FILLS)],
                "linewidth": look.linewidth,
                "zorder": look.zorder,
                **({"markevery": (rank % every, every)} if points else {}),
            }
    return styles


def _positive(values: np.ndarray) -> np.ndarray:
    return np.where(values > 0, values, np.nan)


def _label(summary: MethodSummary) -> str:
    return f"{summary.method.name} (lr {summary.best_lr:.3g})"


def plot_curves(task: TaskSummary, path: Path) -> Path:
    """Selection metric against steps at each method's best learning rate: seed mean, with the
    band between the best and worst seed."""
    figure, axes = _new_figure(1, len(task.families))
    metric = task.task.select
    for axis, family in zip(axes[0], task.families):
        points = max(len(run["curve"]["step"]) for s in family.methods for run in s.runs)
        styles = _styles(family.methods, points)
        for summary in family.methods:
            finished = [run for run in summary.runs if not run["diverged"]]
            if not finished:
                continue
            steps = np.array(finished[0]["curve"]["step"])
            values = _positive(np.array([run["curve"][metric] for run in finished], dtype=float))
            style = styles[summary.method.name]
            with warnings.catch_warnings():  # steps where every seed is at round-off
                warnings.simplefilter("ignore", RuntimeWarning)
                mean, low, high = (
                    reduce(values, 0) for reduce in (np.nanmean, np.nanmin, np.nanmax)
                )
            axis.plot(steps, mean, label=_label(summary), **style)
            band_alpha = LOOKS[summary.method.adaptive].band_alpha
            axis.fill_between(steps, low, high, color=style["color"], alpha=band_alpha, linewidth=0)
        axis.set(yscale="log", xlabel="step", ylabel=metric)
        axis.set_title(f"{task.task.name}: {family.family} family")
        axis.legend(fontsize=7)
    return _save(figure, path)


def plot_betas(task: TaskSummary, path: Path) -> Path | None:
    """AM's beta at the best learning rate, one row per family: seed mean of the mean over
    tensors, with the band between the (seed-mean) smallest and largest tensor beta; the
    dashed line is the cap."""
    rows = [
        [s for s in family.methods if s.method.adaptive and any(run["beta"] for run in s.runs)]
        for family in task.families
    ]
    rows = [row for row in rows if row]
    if not rows:
        return None
    figure, axes = _new_figure(len(rows), max(len(row) for row in rows))
    for axis in axes.flat:
        axis.set_visible(False)
    for axis_row, row in zip(axes, rows):
        for axis, summary in zip(axis_row, row):
            axis.set_visible(True)
            traces = [run["beta"]["trace"] for run in summary.runs if run["beta"]]
            length = min(len(trace["step"]) for trace in traces)
            steps = traces[0]["step"][:length]
            keys = ("mean", "min", "max")
            mean = {key: np.mean([t[key][:length] for t in traces], 0) for key in keys}
            axis.fill_between(steps, mean["min"], mean["max"], alpha=0.25, label="tensor min-max")
            axis.plot(steps, mean["mean"], linewidth=1.5, label="mean over tensors")
            axis.axhline(summary.method.beta_cap, color="k", linestyle="--", linewidth=0.8)
            axis.set(ylim=(-0.02, 1.0), xlabel="step", ylabel="beta_t", title=_label(summary))
            axis.legend(fontsize=7, loc="lower right")
    return _save(figure, path)


def plot_lr_sweep(task: TaskSummary, path: Path) -> Path:
    """Mean final selection metric against the learning rate, bars from the best to the worst
    seed; points where a seed diverged are left out."""
    figure, axes = _new_figure(1, len(task.families))
    for axis, family in zip(axes[0], task.families):
        styles = _styles(family.methods)
        for summary in family.methods:
            points = sorted((lr, s) for lr, s in summary.by_lr.items() if s.finite and s.mean > 0)
            if not points:
                continue
            lrs = [lr for lr, _ in points]
            means, lows, highs = (np.array([getattr(s, k) for _, s in points]) for k in KEYS)
            bars = np.nan_to_num([means - _positive(lows), highs - means])
            style = styles[summary.method.name]
            axis.errorbar(lrs, means, yerr=bars, label=summary.method.name, capsize=2, **style)
        axis.set(xscale="log", yscale="log", xlabel="learning rate")
        axis.set(ylabel=f"final {task.task.select}", title=f"{task.task.name}: {family.family}")
        axis.legend(fontsize=7)
    return _save(figure, path)


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
