"""Running many runs: in this process, or in a pool of single-threaded worker processes.

Workers are spawned (not forked, which is unsafe once torch has started its thread pools),
share tqdm's lock, and each draws its step progress bar on its own line.
"""

from __future__ import annotations

import multiprocessing
import signal
from collections.abc import Iterator
from typing import Any

from .plan import RunSpec
from .runner import run

_position = 1  # the progress-bar line of this process's step bar


def _init_worker(lock: Any, counter: Any) -> None:
    from tqdm import tqdm

    global _position
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and terminates us
    tqdm.set_lock(lock)
    with counter.get_lock():
        counter.value += 1
        _position = counter.value


def _run_here(spec: RunSpec) -> dict[str, Any]:
    return run(spec, position=_position)


def execute(specs: list[RunSpec], jobs: int) -> Iterator[dict[str, Any]]:
    """Yield the record of every run in ``specs`` as it finishes (in any order with
    ``jobs > 1``). Closing the iterator early, e.g. on ``KeyboardInterrupt``, terminates the
    workers; runs in flight are lost, finished ones were already yielded."""
    if jobs <= 1 or len(specs) <= 1:
        for spec in specs:
            yield _run_here(spec)
        return
    from tqdm import tqdm

    context = multiprocessing.get_context("spawn")
    lock, counter = context.RLock(), context.Value("i", 0)
    tqdm.set_lock(lock)
    with context.Pool(min(jobs, len(specs)), _init_worker, (lock, counter)) as pool:
        yield from pool.imap_unordered(_run_here, specs)
