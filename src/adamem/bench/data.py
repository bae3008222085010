"""Datasets, all generated or shipped offline; every split is fixed (independent of the run seed).

numpy, scikit-learn and mnist1d are imported inside the loaders, so that importing this module
needs none of them (they come with the ``bench`` extra).
"""

from __future__ import annotations

import functools
import hashlib
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    import numpy as np

SPLIT_SEED = 0


@dataclass(frozen=True)
class Split:
    """Inputs and integer labels of a train/validation/test split (CPU tensors)."""

    x_train: Tensor
    y_train: Tensor
    x_val: Tensor
    y_val: Tensor
    x_test: Tensor
    y_test: Tensor


def _three_way(x: np.ndarray, y: np.ndarray, val: float, test: float) -> tuple[np.ndarray, ...]:
    from sklearn.model_selection import train_test_split

    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=test, stratify=y, random_state=SPLIT_SEED
    )
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=val / (1 - test), stratify=y_rest, random_state=SPLIT_SEED
    )
    return x_train, y_train, x_val, y_val, x_test, y_test


def _to_split(arrays: tuple[np.ndarray, ...], dtype: torch.dtype) -> Split:
    tensors = [
        torch.as_tensor(a, dtype=dtype if i % 2 == 0 else torch.long) for i, a in enumerate(arrays)
    ]
    return Split(*tensors)


@functools.cache
def breast_cancer() -> Split:
    """scikit-learn's breast_cancer, 80/20 train/test (no validation: an optimisation task),
    standardised with training statistics, float64."""
    import numpy as np
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    x, y = load_breast_cancer(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.2, stratify=y, random_state=SPLIT_SEED
    )
    mean, std = x_train.mean(0), x_train.std(0)
    empty = np.zeros((0, x.shape[1]))
    arrays = ((x_train - mean) / std, y_train, empty, y[:0], (x_test - mean) / std, y_test)
    return _to_split(arrays, torch.float64)


@functools.cache
def digits() -> Split:
    """scikit-learn's digits (8x8 images scaled to [0, 1]), stratified 70/15/15."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return _to_split(_three_way(x.reshape(-1, 8, 8) / 16.0, y, 0.15, 0.15), torch.float32)


@functools.cache
def mnist1d(validation: int = 400) -> Split:
    """MNIST-1D generated locally by ``mnist1d.data.make_dataset`` with its default arguments
    (5000 samples, 4000/1000 train/test, seed 42); ``validation`` training samples are held out.

    ``make_dataset`` reseeds numpy's and Python's global generators; runs reseed afterwards.
    """
    import numpy as np
    from mnist1d.data import get_dataset_args, make_dataset

    data = make_dataset(get_dataset_args())
    order = np.random.default_rng(SPLIT_SEED).permutation(len(data["y"]))
    val, train = order[:validation], order[validation:]
    arrays = (
        data["x"][train],
        data["y"][train],
        data["x"][val],
        data["y"][val],
        data["x_test"],
        data["y_test"],
    )
    return _to_split(arrays, torch.float32)


@dataclass(frozen=True)
class Corpus:
    """Byte streams for language modelling, with the number of source files, their total size
    and the SHA-256 of their bytes."""

    train: Tensor
    val: Tensor
    test: Tensor
    sha256: str
    files: int

    @property
    def fingerprint(self) -> dict[str, int | str]:
        """What identifies the text: files, bytes (all splits) and SHA-256."""
        size = len(self.train) + len(self.val) + len(self.test)
        return {"files": self.files, "bytes": size, "sha256": self.sha256}


def corpus_files() -> list[Path]:
    """Text that ships with Python: ``pydoc_data/topics.py`` and the top-level stdlib modules."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    return [stdlib / "pydoc_data" / "topics.py", *sorted(stdlib.glob("*.py"))]


@functools.cache
def python_text(block: int = 16384, period: int = 20) -> Corpus:
    """The bytes of :func:`corpus_files`, cut into ``block``-byte blocks; of every ``period``
    consecutive blocks the second-to-last goes to validation, the last to test, the rest to
    training."""
    raw = b"".join(path.read_bytes() for path in corpus_files())
    data = torch.frombuffer(bytearray(raw), dtype=torch.uint8)
    blocks = torch.arange(len(data)) // block % period
    return Corpus(
        train=data[blocks < period - 2].clone(),
        val=data[blocks == period - 2].clone(),
        test=data[blocks == period - 1].clone(),
        sha256=hashlib.sha256(raw).hexdigest(),
        files=len(corpus_files()),
    )


# The code corpus: Python sources that ship with the interpreter and with torch (whose version the
# benchmark's install pins), so that two machines with the same Python and torch read the same
# text. Directories of tests and of other installs are left out, and so are files over
# CODE_FILE_LIMIT bytes, which are mostly generated tables (pydoc's topics, decimal's pure-Python
# twin) rather than code as people write it.
CODE_PACKAGES = ("torch",)
CODE_SKIPPED_DIRECTORIES = frozenset(
    {"site-packages", "dist-packages", "test", "tests", "testing", "idle_test", "__pycache__"}
)
CODE_FILE_LIMIT = 128 * 1024
CODE_TOTAL_LIMIT = 64 * 1024 * 1024  # loading stays a matter of seconds
CODE_SPLIT_PERIOD = 20  # of 20 hash buckets, one goes to validation and one to test


def code_roots() -> dict[str, Path]:
    """The directories the code corpus is read from, by the name that prefixes their files:
    the standard library and each of :data:`CODE_PACKAGES` where it is installed."""
    import importlib

    roots = {"stdlib": Path(sysconfig.get_paths()["stdlib"])}
    for package in CODE_PACKAGES:
        roots[package] = Path(importlib.import_module(package).__file__).parent
    return roots


def code_files() -> list[tuple[str, Path]]:
    """The ``(name, path)`` of every ``.py`` file of the code corpus, sorted by name; a name is
    the root's name and the path under it (``stdlib/json/decoder.py``), the same on every
    machine with the same versions."""
    files = []
    for root_name, root in code_roots().items():
        for path in root.rglob("*.py"):
            relative = path.relative_to(root)
            if CODE_SKIPPED_DIRECTORIES.isdisjoint(relative.parts[:-1]) and path.is_file():
                files.append((f"{root_name}/{relative.as_posix()}", path))
    return sorted(files)


def held_out_bucket(name: str) -> str:
    """Which split the file called ``name`` belongs to, from the SHA-256 of its name alone:
    ``"val"``, ``"test"`` or ``"train"``.

    >>> held_out_bucket("stdlib/json/decoder.py") in ("train", "val", "test")
    True
    """
    bucket = int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) % CODE_SPLIT_PERIOD
    return {CODE_SPLIT_PERIOD - 2: "val", CODE_SPLIT_PERIOD - 1: "test"}.get(bucket, "train")


def read_code(path: Path) -> bytes | None:
    """The bytes of a source file with Windows line ends made Unix ones; ``None`` for a file
    over :data:`CODE_FILE_LIMIT` or not valid UTF-8."""
    raw = path.read_bytes()
    if len(raw) > CODE_FILE_LIMIT:
        return None
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return raw.replace(b"\r\n", b"\n")


@functools.cache
def code_corpus() -> Corpus:
    """Byte-level (256 symbols) text of :func:`code_files`, split by file: each file goes whole
    to training, validation or test by :func:`held_out_bucket`, so that held-out files are
    unseen code, not unseen stretches of seen files. Files are read in name order until
    :data:`CODE_TOTAL_LIMIT` bytes; each split is its files' bytes, concatenated."""
    splits: dict[str, list[bytes]] = {"train": [], "val": [], "test": []}
    digest, files, total = hashlib.sha256(), 0, 0
    for name, path in code_files():
        raw = read_code(path)
        if raw is None:
            continue
        if total + len(raw) > CODE_TOTAL_LIMIT:
            break
        splits[held_out_bucket(name)].append(raw)
        digest.update(name.encode() + b"\0" + raw)
        files, total = files + 1, total + len(raw)
    streams = {
        split: torch.frombuffer(bytearray(b"".join(parts)), dtype=torch.uint8)
        for split, parts in splits.items()
    }
    return Corpus(**streams, sha256=digest.hexdigest(), files=files)
