"""``adamem bench``: plan the runs, skip finished ones, run the rest, write the report."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .executor import execute
from .plan import expected_runs, plan
from .store import ResultStore

RESULTS = "results.jsonl"


def default_jobs() -> int:
    """The number of CPU cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def run_benchmark(
    suite: str,
    tasks: list[str],
    seeds: int,
    device: str,
    out: Path,
    resume: bool = False,
    jobs: int = 1,
    on_record: Callable[[dict[str, Any]], None] | None = None,
    set_aside_corrupt: bool = False,
) -> Path:
    """Run every planned run missing from ``out/results.jsonl`` (in a tuned suite, also the
    runs that the tuning runs' results add to the plan), then write ``out/report.md`` (and
    ``out/summary.md`` for the small suites) and the plots from the records of the plan; return
    the report's path.

    Without ``resume`` an existing results file with records is an error. ``jobs`` worker
    processes run at once (on CUDA they share the device). ``on_record`` sees each new record
    after it is saved. A line of the results file that is not a record raises
    :class:`~.store.CorruptRecord`, unless ``set_aside_corrupt`` first moves such lines to a side
    file (:meth:`~.store.ResultStore.set_aside_corrupt`).
    """
    from tqdm import tqdm

    from .report import Results, write_report

    store = ResultStore(Path(out) / RESULTS)
    if set_aside_corrupt and (moved := store.set_aside_corrupt()):
        tqdm.write(
            f"adamem bench: moved {moved} corrupt line(s) of {store.path} to {store.corrupt_path}"
        )
    if store.keys() and not resume:
        raise FileExistsError(f"{store.path} already has results; pass --resume to continue it")
    total = sum(expected_runs(suite, name, seeds, device) for name in tasks)
    # A tuned suite plans the runs at each method's chosen learning rate once its tuning runs
    # are saved, so the runs go in rounds until the plan has nothing left.
    while True:
        finished = store.keys()
        pending = [
            s for s in plan(suite, tasks, seeds, device, store.load()) if s.key not in finished
        ]
        if not pending:
            break
        tqdm.write(
            f"adamem bench: {total} runs in suite {suite!r}, {len(finished)} already in "
            f"{store.path}, {len(pending)} to run now"
        )
        with tqdm(total=len(pending), desc="runs", position=0, disable=None, unit="run") as bar:
            for record in execute(pending, jobs):
                store.append(record)
                bar.update()
                if on_record is not None:
                    on_record(record)
    return write_report(Results.of(store.load(), suite, tasks, seeds, device), Path(out))
