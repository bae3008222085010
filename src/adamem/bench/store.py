"""The results file: JSON Lines, one complete record per finished run.

A record holds ``key``, ``task``, ``method``, ``family``, ``lr``, ``seed``, ``suite``,
``device``, ``config_hash``, ``diverged``, ``steps_done``, final ``metrics``, the ``curve`` of
the selection metric and of the training loss, ``train_time_s`` (the training time, evaluations
left out, at each point of the curve), AM's ``beta`` summaries (or ``None``), ``data`` (the
fingerprint of machine-dependent data, or ``None``), ``wall_time_s``, ``cpu_time_s``,
``finished_at`` and ``versions``. Records written before ``train_time_s`` and ``data`` existed
lack them.

Records are appended whole and synced to disk, so an interruption loses at most the line being
written; such a truncated last line is ignored when reading and cut off before appending. Any
other line that is not a JSON object with a ``"key"`` (a damaged disk, a hand edit) stops
reading with :class:`CorruptRecord`; :meth:`ResultStore.set_aside_corrupt` moves such lines,
unchanged, to a side file next to the results file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

EXCERPT = 40  # characters of a corrupt line quoted in the error


class CorruptRecord(ValueError):
    """A complete line of the results file that is not a record."""

    def __init__(self, path: Path, number: int, found: str):
        self.path, self.number = path, number
        super().__init__(
            f'{path}:{number}: expected a JSON object with a "key" on every line, found {found}'
        )


def _excerpt(line: bytes) -> str:
    text = line.decode(errors="replace")
    return repr(text if len(text) <= EXCERPT else text[:EXCERPT] + "...")


def _parse(path: Path, number: int, line: bytes) -> dict[str, Any]:
    """The record on line ``number`` of ``path``; :class:`CorruptRecord` if it is none."""
    try:
        record = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CorruptRecord(path, number, f"{_excerpt(line)} (not JSON: {error})") from None
    if not isinstance(record, dict) or not isinstance(record.get("key"), str):
        raise CorruptRecord(path, number, f'{_excerpt(line)} (no "key")')
    return record


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
        """Every complete record; a final line without its newline is ignored.

        Raises :class:`CorruptRecord` at the first other line that is not a record.
        """
        complete, _ = self._lines()
        return [_parse(self.path, number, line) for number, line in complete]

    @property
    def corrupt_path(self) -> Path:
        """The side file that :meth:`set_aside_corrupt` appends corrupt lines to."""
        return self.path.with_name(self.path.name + ".corrupt")

    def set_aside_corrupt(self) -> int:
        """Move every complete line that is not a record to :attr:`corrupt_path` (appended,
        unchanged) and keep the others in order; return the number of lines moved.

        The side file is synced before the results file is replaced, so an interruption can
        leave a line in both files, never in none.

        >>> import tempfile
        >>> store = ResultStore(Path(tempfile.mkdtemp()) / "results.jsonl")
        >>> _ = store.path.write_text('{"key": "a"}\\ngarbage\\n{}\\n{"key": "b"}\\n')
        >>> store.set_aside_corrupt(), [r["key"] for r in store.load()]
        (2, ['a', 'b'])
        >>> store.corrupt_path.read_text()
        'garbage\\n{}\\n'
        """
        complete, partial = self._lines()
        kept, corrupt = [], []
        for number, line in complete:
            try:
                _parse(self.path, number, line)
            except CorruptRecord:
                corrupt.append(line)
            else:
                kept.append(line)
        if not corrupt:
            return 0
        _write_synced(self.corrupt_path, b"".join(line + b"\n" for line in corrupt), "ab")
        replacement = self.path.with_name(self.path.name + ".tmp")
        _write_synced(replacement, b"".join(line + b"\n" for line in kept) + partial, "wb")
        os.replace(replacement, self.path)
        return len(corrupt)

    def _lines(self) -> tuple[list[tuple[int, bytes]], bytes]:
        """The complete non-blank lines with their 1-based numbers, and the partial last line
        (``b""`` when the file ends with a newline)."""
        if not self.path.exists():
            return [], b""
        *complete, partial = self.path.read_bytes().split(b"\n")
        numbered = [(number, line) for number, line in enumerate(complete, 1) if line.strip()]
        return numbered, partial

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


def _write_synced(path: Path, content: bytes, mode: str) -> None:
    with path.open(mode) as file:
        file.write(content)
        file.flush()
        os.fsync(file.fileno())
