"""Running many runs: in this process, or in pools of single-threaded worker processes.

Workers are spawned (not forked, which is unsafe once torch has started its thread pools),
share tqdm's lock, and each draws its step progress bar on its own line. Workers ignore
Ctrl-C: the parent handles it and stops them.

If a worker process dies (killed from outside, or crashed), its pool breaks: the runs that
finished are kept and the rest go to a fresh pool. A pool that breaks before finishing any run
stops the benchmark with an error.
"""

from __future__ import annotations

import multiprocessing
import signal
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from .plan import RunSpec
from .runner import run

_position = 1  # the progress-bar line of this process's step bar


def _init_worker(lock: Any, counter: Any) -> None:
    from tqdm import tqdm

    global _position
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    tqdm.set_lock(lock)
    with counter.get_lock():
        counter.value += 1
        _position = counter.value


def _run_here(spec: RunSpec) -> dict[str, Any]:
    return run(spec, position=_position)


def _stop(pool: ProcessPoolExecutor) -> None:
    """Cancel the runs not started and end the workers without waiting for their runs."""
    terminate = getattr(pool, "terminate_workers", None)  # Python >= 3.14
    if terminate is not None:
        terminate()
        return
    workers = list((pool._processes or {}).values())  # CPython 3.10-3.13; shutdown clears it
    pool.shutdown(wait=False, cancel_futures=True)
    for worker in workers:
        worker.terminate()


def _pool_round(specs: list[RunSpec], jobs: int) -> Iterator[dict[str, Any]]:
    """Yield the records of ``specs`` from one pool; stop quietly if the pool breaks."""
    from tqdm import tqdm

    context = multiprocessing.get_context("spawn")
    lock, counter = context.RLock(), context.Value("i", 0)
    tqdm.set_lock(lock)
    pool = ProcessPoolExecutor(min(jobs, len(specs)), context, _init_worker, (lock, counter))
    finished_cleanly = False
    try:
        futures: list[Future] = [pool.submit(_run_here, spec) for spec in specs]
        for future in as_completed(futures):
            if not isinstance(future.exception(), BrokenProcessPool):
                yield future.result()
        finished_cleanly = True
    finally:
        if finished_cleanly:
            pool.shutdown()
        else:  # interrupted, or a run raised
            _stop(pool)


def execute(specs: list[RunSpec], jobs: int) -> Iterator[dict[str, Any]]:
    """Yield the record of every run in ``specs`` as it finishes (in any order with
    ``jobs > 1``). Closing the iterator early, e.g. on ``KeyboardInterrupt``, stops the
    workers; runs in flight are lost, finished ones were already yielded."""
    if jobs <= 1 or len(specs) <= 1:
        for spec in specs:
            yield _run_here(spec)
        return
    remaining = list(specs)
    while remaining:
        finished = set()
        for record in _pool_round(remaining, jobs):
            finished.add(record["key"])
            yield record
        if not finished:
            raise RuntimeError(
                f"worker processes died before finishing any of {len(remaining)} runs"
            )
        remaining = [spec for spec in remaining if spec.key not in finished]
