"""The results file: JSON Lines, one complete record per finished run.

A record holds ``key``, ``task``, ``method``, ``family``, ``lr``, ``seed``, ``suite``,
``device``, ``config_hash``, ``diverged``, ``steps_done``, final ``metrics``, the ``curve`` of
the selection metric and of the training loss, AM's ``beta`` summaries (or ``None``),
``wall_time_s``, ``cpu_time_s``, ``finished_at`` and ``versions``.

Records are appended whole and synced to disk, so an interruption loses at most the line being
written; such a truncated last line is ignored when reading and cut off before appending.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


class ResultStore:
    """Append-only access to a JSONL results file at ``path``.

    >>> import tempfile
    >>> store = ResultStore(Path(tempfile.mkdtemp()) / "results.jsonl")
    >>> store.append({"key": "a"})
    >>> _ = store.path.open("a").write('{"key": "b"')  # a crash mid-write
    >>> [r["key"] for r in store.load()]
    ['a']
    >>> store.append({"key": "c"})
    >>> [r["key"] for r in store.load()]
    ['a', 'c']
    """

    def __init__(self, path: Path):
        self.path = Path(path)

    def load(self) -> list[dict[str, Any]]:
        """Every complete record; a final line without its newline is ignored."""
        if not self.path.exists():
            return []
        lines = self.path.read_bytes().split(b"\n")
        records = []
        for number, line in enumerate(lines[:-1], start=1):  # lines[-1]: partial or empty
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise ValueError(f"{self.path}:{number}: corrupt record: {error}") from None
        return records

    def keys(self) -> set[str]:
        """The keys of the complete records."""
        return {record["key"] for record in self.load()}

    def append(self, record: dict[str, Any]) -> None:
        """Write ``record`` as one line and sync it to disk, first cutting off any partial
        last line."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = (json.dumps(record, allow_nan=False) + "\n").encode()
        with self.path.open("ab") as file:
            size = file.seek(0, os.SEEK_END)
            if size:
                self._drop_partial_line(file, size)
            file.write(line)
            file.flush()
            os.fsync(file.fileno())

    def _drop_partial_line(self, file: Any, size: int) -> None:
        with self.path.open("rb") as reader:
            reader.seek(max(0, size - 1))
            if reader.read(1) == b"\n":
                return
            reader.seek(0)
            content = reader.read()
        file.truncate(content.rfind(b"\n") + 1)
