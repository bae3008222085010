"""Sensitivity of AM to ``lambd`` and its cap on β (docs/research/sensitivity.md).

Sweeps λ and the cap (``beta_max`` of AMSGD, ``betas[0]`` of AMAdamW) on tasks of the
benchmark suite, with the benchmark's own problems, training loop and metrics
(``adamem.bench``); only the optimizer is built here. Each (λ, cap) pair runs at several
learning rates and seeds; the report takes each pair's best learning rate (mean selection
metric) and compares its report metric with the default pair's and with the best
fixed-momentum baseline of the committed quick benchmark (docs/benchmark/summary.md).

Writes into ``--out``: ``runs.jsonl`` (one record per run; a rerun skips the runs already
there), ``results.json``, ``table.md`` and a heatmap ``<optimizer>-<task>.png`` per study.

Usage::

    python benchmarks/sensitivity.py --out docs/research/sensitivity   # the study (~6 min, 2 cores)
    python benchmarks/sensitivity.py --quick --out /tmp/sens           # a few seconds
"""

from __future__ import annotations

import argparse
import json
import math
import re
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SUMMARY = ROOT / "docs" / "benchmark" / "summary.md"
LAMBDAS = (0.0, 0.01, 0.1, 1.0)
CAPS = (0.8, 0.9, 0.95, 0.99)
DEFAULT_LAMBD = 0.1
SEEDS = (0, 1, 2)


@dataclass(frozen=True)
class Study:
    """One optimizer on one task: its grid of (λ, cap), learning rates and seeds."""

    optimizer: str  # "amsgd" or "amadamw"
    task: str
    lrs: tuple[float, ...] | None  # None: the task's whole grid for the family
    lambdas: tuple[float, ...] = LAMBDAS
    caps: tuple[float, ...] = CAPS
    seeds: tuple[int, ...] = SEEDS

    @property
    def family(self) -> str:
        return self.default_method().family

    @property
    def default_cap(self) -> float:
        return self.default_method().beta_cap

    def default_method(self):
        """The benchmark's method for this optimizer at its defaults (its family and cap)."""
        from adamem.bench.methods import method

        return method(self.base_method)

    @property
    def base_method(self) -> str:
        """The benchmark's method that this optimizer is at its defaults."""
        return f"{self.optimizer}-tensor"

    @property
    def name(self) -> str:
        return f"{self.optimizer}-{self.task}"

    def grid_caps(self) -> tuple[float, ...]:
        return tuple(sorted({*self.caps, self.default_cap}))


STUDIES = (
    Study("amsgd", "logreg-minibatch", None),
    Study("amsgd", "digits-mlp", None),
    Study("amadamw", "digits-mlp", None),
    Study("amadamw", "mnist1d-cnn", (0.01, 0.0316, 0.1)),
)
QUICK_STUDIES = (
    Study("amsgd", "logreg-minibatch", None, (0.0, 0.1), (0.9, 0.99), (0,)),
    Study("amadamw", "digits-mlp", None, (0.0, 0.1), (0.89, 0.99), (0,)),
)


def run_key(study: str, lambd: float, cap: float, lr: float, seed: int) -> str:
    return f"{study}|{lambd:g}|{cap:g}|{lr:.6g}|{seed}"


def one_run(job: tuple[Study, str, float, float, float, int]) -> dict:
    """Train one (λ, cap, lr, seed) with the benchmark's problem and loop; its record."""
    import torch

    import adamem
    from adamem.bench.plan import RunSpec, config_hash
    from adamem.bench.runner import train_and_evaluate
    from adamem.bench.tasks import TASKS

    study, suite, lambd, cap, lr, seed = job
    config = TASKS[study.task].config(suite, "cpu")
    spec = RunSpec(
        study.task,
        study.base_method,
        lr,
        seed,
        suite,
        "cpu",
        config,
        config_hash(study.task, config, "cpu"),
    )

    def make_optimizer(model: torch.nn.Module) -> torch.optim.Optimizer:
        params = model.parameters()
        if study.optimizer == "amsgd":
            return adamem.AMSGD(
                params, lr=lr, beta_max=cap, lambd=lambd, scope="tensor", foreach=True
            )
        return adamem.AMAdamW(
            params,
            lr=lr,
            betas=(cap, 0.999),
            lambd=lambd,
            weight_decay=config.get("weight_decay", 0.0),
            scope="tensor",
            foreach=True,
        )

    outcome = train_and_evaluate(spec, make_optimizer)
    training, metrics, diverged = outcome.training, outcome.metrics, outcome.diverged
    beta_mean = float(torch.stack(training.betas).mean()) if training.betas else None
    return {
        "key": run_key(study.name, lambd, cap, lr, seed),
        "study": study.name,
        "lambd": lambd,
        "cap": cap,
        "lr": lr,
        "seed": seed,
        "suite": suite,
        "diverged": diverged,
        "metrics": metrics,
        "beta_mean": beta_mean,
    }


def study_lrs(study: Study, suite: str) -> list[float]:
    from adamem.bench.tasks import TASKS

    task = TASKS[study.task]
    return list(study.lrs or task.lr_grid(study.family, task.config(suite, "cpu")))


def jobs_of(studies: tuple[Study, ...], suite: str) -> list[tuple]:
    jobs = []
    for study in studies:
        for lr in study_lrs(study, suite):
            for lambd in study.lambdas:
                for cap in study.grid_caps():
                    for seed in study.seeds:
                        jobs.append((study, suite, lambd, cap, lr, seed))
    return jobs


def run_all(studies: tuple[Study, ...], suite: str, out: Path, workers: int) -> list[dict]:
    """Every run, resuming from ``out/runs.jsonl``; returns the records of ``studies``."""
    path = out / "runs.jsonl"
    done = {}
    if path.exists():
        for line in path.read_text().splitlines():
            record = json.loads(line)
            done[record["key"]] = record
    jobs = jobs_of(studies, suite)
    todo = [job for job in jobs if run_key(job[0].name, *job[2:]) not in done]
    print(f"{len(jobs)} runs, {len(jobs) - len(todo)} already done", flush=True)
    with path.open("a") as sink:
        if workers > 1 and len(todo) > 1:
            with ProcessPoolExecutor(workers) as pool:
                results = pool.map(one_run, todo, chunksize=4)
                for i, record in enumerate(results, 1):
                    sink.write(json.dumps(record) + "\n")
                    sink.flush()
                    done[record["key"]] = record
                    if i % 50 == 0:
                        print(f"  {i}/{len(todo)}", flush=True)
        else:
            for job in todo:
                record = one_run(job)
                sink.write(json.dumps(record) + "\n")
                done[record["key"]] = record
    return [done[run_key(job[0].name, *job[2:])] for job in jobs]


def baselines() -> dict[tuple[str, str], dict]:
    """The best fixed baseline per (task, family) from the committed quick summary's verdicts
    (the rows of ``amsgd-tensor`` and ``amadamw-tensor``)."""
    found = {}
    row = re.compile(
        r"^\| (\S+) \| (\S+) \| (amsgd|amadamw)-tensor, lr [^|]+\| [^|]+\| (.+?) \| (.+?) \|"
    )
    for line in SUMMARY.read_text().splitlines():
        match = row.match(line)
        if match:
            task, metric, optimizer, method, value = match.groups()
            mean, std = (float(v) for v in value.split(" ± "))
            found[task, optimizer] = {"method": method, "metric": metric, "mean": mean, "std": std}
    return found


def summarize(study: Study, suite: str, records: list[dict]) -> dict:
    from adamem.bench.analysis import Stats, verdict
    from adamem.bench.tasks import TASKS

    task = TASKS[study.task]
    lrs = study_lrs(study, suite)
    mine = [r for r in records if r["study"] == study.name]

    def stats(lambd: float, cap: float, lr: float, metric: str) -> Stats:
        runs = [r for r in mine if (r["lambd"], r["cap"], r["lr"]) == (lambd, cap, lr)]
        return Stats.of([None if r["diverged"] else r["metrics"][metric] for r in runs])

    cells = []
    for lambd in study.lambdas:
        for cap in study.grid_caps():
            by_lr = {lr: stats(lambd, cap, lr, task.select).mean for lr in lrs}
            best = min(lrs, key=lambda lr: by_lr[lr])
            report = stats(lambd, cap, best, task.report)
            betas = [
                r["beta_mean"]
                for r in mine
                if (r["lambd"], r["cap"], r["lr"]) == (lambd, cap, best) and r["beta_mean"]
            ]
            cells.append(
                {
                    "lambd": lambd,
                    "cap": cap,
                    "best_lr": best,
                    "edge": best in (lrs[0], lrs[-1]) and math.isfinite(by_lr[best]),
                    "mean": report.mean,
                    "std": report.std,
                    "n": report.n,
                    "diverged_all": not math.isfinite(by_lr[best]),
                    "beta_mean": float(np.mean(betas)) if betas else None,
                    "_stats": report,
                }
            )
    # Added after the first results (not in the protocol as fixed): the best learning rate of
    # a pair can flip between neighbours whose mean selection metrics differ by less than the
    # seed noise, so each pair is also compared with the default at one common learning rate,
    # the one most cells select (ties: the smaller).
    chosen = [c["best_lr"] for c in cells]
    common = max(sorted(set(chosen)), key=chosen.count)
    fixed = {
        (c["lambd"], c["cap"]): stats(c["lambd"], c["cap"], common, task.report) for c in cells
    }
    fixed_default = fixed[DEFAULT_LAMBD, study.default_cap]
    for cell in cells:
        here = fixed[cell["lambd"], cell["cap"]]
        ok = math.isfinite(here.mean) and math.isfinite(fixed_default.mean)
        cell["at_common_lr"] = {
            "mean": here.mean,
            "std": here.std,
            "ratio": here.mean / fixed_default.mean if ok else None,
            "vs_default": verdict(here, fixed_default) if ok else "diverged",
        }
    default = next(c for c in cells if (c["lambd"], c["cap"]) == (DEFAULT_LAMBD, study.default_cap))
    for cell in cells:
        ok = math.isfinite(cell["mean"]) and math.isfinite(default["mean"])
        cell["ratio"] = cell["mean"] / default["mean"] if ok and default["mean"] else None
        cell["vs_default"] = verdict(cell["_stats"], default["_stats"]) if ok else "diverged"
    for cell in cells:
        del cell["_stats"]
    return {
        "study": study.name,
        "optimizer": study.optimizer,
        "task": study.task,
        "metric": task.report,
        "select": task.select,
        "lrs": lrs,
        "common_lr": common,
        "seeds": list(study.seeds),
        "default_cap": study.default_cap,
        "cells": cells,
        "baseline": baselines().get((study.task, study.optimizer)),
    }


def _fmt(value: float) -> str:
    return f"{value:.4g}" if math.isfinite(value) else "diverged"


def table(summaries: list[dict]) -> str:
    out = ["# AM sensitivity to λ and the cap", ""]
    out.append(
        "Report metric at each (λ, cap)'s best learning rate, mean ± std over seeds; ratio to "
        "the default pair (**bold**); verdict against the default by the benchmark's rule "
        "(within 2 standard errors or 1%: tie; `won` = lower than the default). "
        "`*`: best learning rate at the edge of the grid. The last three columns compare "
        "every pair with the default at one common learning rate (the one most pairs select)."
    )
    for s in summaries:
        out += ["", f"## {s['optimizer']} on {s['task']} ({s['metric']}, lower is better)", ""]
        base = s["baseline"]
        if base:
            out.append(
                f"Best fixed-momentum baseline of the committed quick benchmark: {base['method']}"
                f", {base['mean']:.4g} ± {base['std']:.3g}."
            )
            out.append("")
        out.append(
            f"Learning rates: {', '.join(f'{lr:g}' for lr in s['lrs'])}; seeds "
            f"{', '.join(map(str, s['seeds']))}."
        )
        out += [
            "",
            f"| λ | cap | best lr | metric | ratio to default | vs default | mean β "
            f"| at lr {s['common_lr']:g} | ratio | vs default |",
        ]
        out.append("|---|---|---|---|---|---|---|---|---|---|")
        for c in s["cells"]:
            is_default = c["lambd"] == DEFAULT_LAMBD and c["cap"] == s["default_cap"]
            pair = (
                f"**{c['lambd']:g}** | **{c['cap']:g}**"
                if is_default
                else (f"{c['lambd']:g} | {c['cap']:g}")
            )
            value = (
                f"{_fmt(c['mean'])} ± {c['std']:.2g}" if math.isfinite(c["mean"]) else "diverged"
            )
            ratio = f"{c['ratio']:.3f}" if c["ratio"] is not None else "–"
            beta = f"{c['beta_mean']:.3f}" if c["beta_mean"] is not None else "–"
            edge = "*" if c["edge"] else ""
            fixed = c["at_common_lr"]
            fixed_ratio = f"{fixed['ratio']:.3f}" if fixed["ratio"] is not None else "–"
            out.append(
                f"| {pair} | {c['best_lr']:g}{edge} | {value} | {ratio} | "
                f"{'default' if is_default else c['vs_default']} | {beta} | "
                f"{_fmt(fixed['mean'])} ± {fixed['std']:.2g} | {fixed_ratio} | "
                f"{'default' if is_default else fixed['vs_default']} |"
            )
    return "\n".join(out) + "\n"


def heatmap(summary: dict, path: Path) -> None:
    """Two panels: the ratio to the default at each pair's best learning rate, and at the
    common learning rate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lambdas = sorted({c["lambd"] for c in summary["cells"]})
    caps = sorted({c["cap"] for c in summary["cells"]})
    panels = [
        ("each pair at its best lr", lambda c: c, True),
        (f"all at lr {summary['common_lr']:g}", lambda c: c["at_common_lr"], False),
    ]
    grids = []
    for _, pick, _ in panels:
        grid = np.full((len(lambdas), len(caps)), np.nan)
        for c in summary["cells"]:
            if pick(c)["ratio"] is not None:
                grid[lambdas.index(c["lambd"]), caps.index(c["cap"])] = pick(c)["ratio"]
        grids.append(grid)
    finite = np.concatenate([g[np.isfinite(g)] for g in grids])
    spread = max(0.05, float(np.max(np.abs(np.log2(finite))))) if finite.size else 1.0
    width = 1.1 * len(caps) + 0.6
    fig, axes = plt.subplots(1, 2, figsize=(2 * width + 1.2, 0.8 * len(lambdas) + 1.8))
    for ax, (title, pick, show_lr), grid in zip(axes, panels, grids):
        image = ax.imshow(
            np.log2(grid), cmap="RdBu_r", vmin=-spread, vmax=spread, origin="lower", aspect="auto"
        )
        for c in summary["cells"]:
            i, j = lambdas.index(c["lambd"]), caps.index(c["cap"])
            cell = pick(c)
            if cell["ratio"] is None:
                text = "div."
            else:
                mark = {"won": "+", "lost": "−"}.get(cell["vs_default"], "")
                text = f"{cell['ratio']:.2f}{mark}"
                if show_lr:
                    text += f"\nlr {c['best_lr']:g}"
            is_default = c["lambd"] == DEFAULT_LAMBD and c["cap"] == summary["default_cap"]
            weight = "bold" if is_default else "normal"
            ax.text(j, i, text, ha="center", va="center", fontsize=7, fontweight=weight)
        ax.set_xticks(range(len(caps)), [f"{cap:g}" for cap in caps])
        ax.set_yticks(range(len(lambdas)), [f"{lam:g}" for lam in lambdas])
        ax.set_xlabel("cap on β")
        ax.set_ylabel("λ")
        ax.set_title(title, fontsize=9)
    fig.suptitle(
        f"{summary['optimizer']} on {summary['task']}: {summary['metric']} / default's "
        "(+ better, − worse beyond 2 s.e.)",
        fontsize=9,
    )
    fig.colorbar(image, ax=axes, label="log2 ratio to default")
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--quick", action="store_true", help="smoke sizes, a tiny grid")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-plots", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    studies, suite = (QUICK_STUDIES, "smoke") if args.quick else (STUDIES, "quick")
    records = run_all(studies, suite, args.out, args.workers)
    summaries = [summarize(study, suite, records) for study in studies]
    payload = {
        "suite": suite,
        "lambdas": list(LAMBDAS),
        "caps": list(CAPS),
        "default_lambd": DEFAULT_LAMBD,
        "studies": summaries,
    }
    (args.out / "results.json").write_text(json.dumps(payload, indent=1) + "\n")
    (args.out / "table.md").write_text(table(summaries))
    if not args.no_plots:
        for summary in summaries:
            heatmap(summary, args.out / f"{summary['study']}.png")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
