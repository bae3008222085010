"""Build adamem's C kernels on first use and load them with ctypes.

The fused CPU path (:mod:`adamem._kernels.cpu`) runs C code shipped as package data in ``c/``.
Installing needs no build step: the first fused step compiles the sources with the system C
compiler (plain C11 with OpenMP, no Python or torch headers: about a second) into a per-user
cache, and later processes load the cached library. The cache key hashes the sources, the
flags, the compiler command and the CPU, since ``-march=native`` code may not run on another
CPU. When no library can be built or loaded, :func:`library` warns once and returns ``None``,
and the optimizers take their torch paths.

Environment: ``ADAMEM_CC`` (else ``CC``, else ``cc``) names the compiler, ``ADAMEM_CACHE_DIR``
(else ``$XDG_CACHE_HOME/adamem``, else ``~/.cache/adamem``) the cache.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shlex
import subprocess
import tempfile
import threading
import warnings
from pathlib import Path

from .contract import c_definitions

__all__ = ["FLAG_SETS", "kernel", "library", "select_beta", "warn_once"]

SOURCE_DIR = Path(__file__).with_name("c")
SOURCES = ("am_kernels.c", "am_kernels_body.h")
# Flags shared by every attempt. -fno-math-errno lets sqrt vectorise; -ffp-contract=off keeps
# each multiply and add separately rounded, as torch's kernels and on every CPU alike.
# The kernel contract (record and hyperparameter fields) comes from contract.py.
BASE_FLAGS = (
    "-O3",
    "-std=c11",
    "-fno-math-errno",
    "-ffp-contract=off",
    "-shared",
    "-fPIC",
    *c_definitions(),
)
# Tried in order: the fastest first; the last needs nothing beyond a C11 compiler.
FLAG_SETS = (("-march=native", "-fopenmp"), ("-fopenmp",), ())
# Every entry point am_<kind>_<phase>_<dtype> takes (records, count, hyper, [output or betas,]
# threads) and returns 0, or -1 when it cannot allocate.
_SIGNATURES = {
    "first": (ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int),
    "sums": (ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int),
    "update": (ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int),
    "steps": (ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int),
}

_lock = threading.Lock()
_library: ctypes.CDLL | None = None
_failed = False
_warned: set[str] = set()


def warn_once(message: str) -> None:
    """Emit ``message`` as a RuntimeWarning the first time this process sees it."""
    if message not in _warned:
        _warned.add(message)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def library() -> ctypes.CDLL | None:
    """The kernels, built or loaded on the first call; ``None`` after one warning if impossible."""
    global _library, _failed
    if _library is not None or _failed:
        return _library
    with _lock:
        if _library is None and not _failed:
            try:
                _library = _load()
            except (OSError, subprocess.SubprocessError, RuntimeError) as error:
                _failed = True
                warn_once(
                    f"adamem: the fused CPU kernels are unavailable ({error}); using the "
                    "reference/foreach path, which is several times slower"
                )
    return _library


def _compiler() -> list[str]:
    return shlex.split(os.environ.get("ADAMEM_CC") or os.environ.get("CC") or "cc")


def _cache_dir() -> Path:
    explicit = os.environ.get("ADAMEM_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "adamem"


def _cpu_signature() -> str:
    """What -march=native depends on: the CPU's model and feature flags."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor()
    keys = ("model name", "flags", "Features", "CPU part")
    return "\n".join(sorted({line for line in lines if line.split(":")[0].strip() in keys}))


def _load() -> ctypes.CDLL:
    compiler = _compiler()
    digest = hashlib.sha256()
    for name in SOURCES:
        digest.update((SOURCE_DIR / name).read_bytes())
    for part in (repr(BASE_FLAGS), repr(FLAG_SETS), repr(compiler), platform.machine()):
        digest.update(part.encode())
    digest.update(_cpu_signature().encode())
    cache = _cache_dir()
    target = cache / f"am_kernels-{digest.hexdigest()[:20]}.so"
    if not target.exists():
        cache.mkdir(parents=True, exist_ok=True)
        _build(compiler, target)
    return ctypes.CDLL(str(target))


def kernel(lib: ctypes.CDLL, kind: str, phase: str, suffix: str) -> ctypes._CFuncPtr:
    """Entry point ``am_<kind>_<phase>_<suffix>`` of ``lib``, with its argument types."""
    function = getattr(lib, f"am_{kind}_{phase}_{suffix}")
    if function.argtypes is None:
        function.argtypes = _SIGNATURES[phase]
        function.restype = ctypes.c_int
    return function


def _build(compiler: list[str], target: Path) -> None:
    """Compile into a temporary file beside ``target``, then rename it: concurrent builders
    never see a partial library."""
    last_error = ""
    handle, temporary = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(handle)
    try:
        for flags in FLAG_SETS:
            command = [*compiler, *BASE_FLAGS, *flags, "-o", temporary]
            command.append(str(SOURCE_DIR / SOURCES[0]))
            result = subprocess.run(command, capture_output=True, text=True, timeout=300)
            if result.returncode == 0:
                if "-fopenmp" not in flags:
                    warn_once(
                        "adamem: the fused CPU kernels were built without OpenMP and use one "
                        f"thread ({' '.join(compiler)} rejected -fopenmp)"
                    )
                os.replace(temporary, target)
                return
            lines = result.stderr.strip().splitlines()
            last_error = lines[-1] if lines else f"exit status {result.returncode}"
        raise RuntimeError(f"{' '.join(compiler)} failed: {last_error}")
    except FileNotFoundError as error:
        raise RuntimeError(f"no C compiler: {error.filename!r} not found") from None
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def select_beta(lib: ctypes.CDLL) -> ctypes._CFuncPtr:
    """The kernels' ``am_select_beta(a, b, cap)``, which the one-pass-per-tensor step uses
    (the tests hold it to :func:`adamem.beta.select_beta`)."""
    function = lib.am_select_beta
    function.argtypes = (ctypes.c_double, ctypes.c_double, ctypes.c_double)
    function.restype = ctypes.c_double
    return function
