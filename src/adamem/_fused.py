"""The fused path: each AM pass is one kernel over all of a group's tensors.

This module picks and prepares the fused step of a group (:func:`plan`) and holds the CPU
side: parallel C loops. The CUDA side, Triton kernels with the same passes, is
:mod:`adamem._triton`.

The torch paths make a dozen passes over memory per step and allocate full-size temporaries;
the kernels in ``_kernels/`` (built by :mod:`adamem._jit`) make the two passes the model needs,
in place and without temporaries (ALGORITHMS.md §4):

1. ``sums`` advances ``v`` and returns each tensor's inner products, from which the
   optimizer's ``terms_from_dots`` forms its ``(a, b)``, in ``_block_sums``;
2. :func:`adamem.beta.block_betas` solves the betas of every scope from them, in Python: the
   kernels never compute beta;
3. ``update`` applies the betas to ``d`` and ``x``, in ``_apply``.

A tensor's first step is a single pass (``first``). Every scope runs the second pass after the
first pass of all the group's tensors: cutting scope "tensor" steps into cache-sized runs of
tensors, to read the second pass from cache, did not pay for the extra beta solves and thread
starts it needs (docs/speed.md).

A CPU group takes this path when every tensor with a gradient is a contiguous fp32 or fp64 (or
complex) CPU tensor, the kernels could be built, and the step is not being traced by
``torch.compile``; see :func:`plan`.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from . import _jit
from ._batch import ParamBatch
from ._checks import check_flag
from ._kernel_contract import RECORD, STATE_SCALARS, hyper_values

__all__ = [
    "FusedStep",
    "Kernels",
    "fingerprint",
    "kernel_hyper",
    "plan",
    "uses_triton",
    "validate_fused",
]

RECORD_FIELDS = len(RECORD)

_SUFFIXES = {torch.float32: "f32", torch.float64: "f64"}
_COMPLEX = {torch.float32: torch.complex64, torch.float64: torch.complex128}


def validate_fused(group: dict[str, Any]) -> None:
    """``fused`` is a bool or ``None``, and cannot be combined with ``foreach=True``."""
    check_flag("fused", group["fused"], allow_none=True)
    if group["fused"] and group["foreach"]:
        raise ValueError("fused=True and foreach=True are exclusive; set one of them")


class FusedStep:
    """One group's step on the kernels: :meth:`block_sums` and :meth:`apply` are the
    optimizer's ``_block_sums`` and ``_apply``."""

    def __init__(
        self,
        kernels: Kernels,
        entry_points: dict[str, Any],
        records: array,
        batch: ParamBatch,
        hyper: array,
    ) -> None:
        self._kernels = kernels
        self._entry_points = entry_points
        self._records = records
        self._count = len(records) // RECORD_FIELDS
        self._group = batch.group
        self._first_steps = batch.first_steps
        self._hyper = hyper
        self._threads = torch.get_num_threads()

    def _call(self, phase: str, start: int, *outputs: int) -> None:
        """Run kernel ``phase`` on the tensors from ``start`` to the end (first steps: to
        ``first_steps``)."""
        stop = self._first_steps if phase == "first" else self._count
        records = self._records.buffer_info()[0] + start * RECORD_FIELDS * 8
        hyper = self._hyper.buffer_info()[0]
        status = self._entry_points[phase](records, stop - start, hyper, *outputs, self._threads)
        if status != 0:
            raise MemoryError(f"adamem's fused '{phase}' kernel could not allocate its work list")

    def block_sums(self) -> tuple[Tensor, Tensor] | None:
        """Take the first steps, then return the ``(a, b)`` of the other tensors (float64)."""
        if self._first_steps:
            self._call("first", 0)
        seen = self._count - self._first_steps
        if not seen:
            return None
        dots = torch.empty(seen, self._kernels.dots, dtype=torch.float64)
        self._call("sums", self._first_steps, dots.data_ptr())
        return self._kernels.terms_from_dots(dots.T, self._group)

    def apply(self, betas: Tensor | None) -> None:
        """The second pass, with one beta per tensor past its first step."""
        if betas is not None:
            betas = betas.to(torch.float64).contiguous()
            self._call("update", self._first_steps, betas.data_ptr())


@dataclass(frozen=True)
class Kernels:
    """An optimizer's interface to the fused kernels: what they read and what they return.

    The record and hyperparameter layouts are the kernel contract's
    (:mod:`adamem._kernel_contract`); this says which of their fields the optimizer fills.
    """

    name: str
    """The kernels' name: C entry points ``am_<name>_<phase>_<dtype>``, Triton's step
    ``adamem._triton.STEPS[name]``."""
    memory_key: str
    second_moment_key: str | None
    scalar_keys: frozenset[str]
    """The contract's state scalars (``STATE_SCALARS``) that the optimizer keeps."""
    hyper: Callable[[dict[str, Any]], dict[str, float | Tensor]]
    """The group's hyperparameters by contract name (those not given are 0)."""
    dots: int
    """Inner products per tensor that the sums pass returns."""
    terms_from_dots: Callable[[Tensor, dict[str, Any]], tuple[Tensor, Tensor]]
    """The model's ``(a, b)`` from the dots (``dots x tensors``) and the group."""

    def scalars(self, state: dict[str, Any]) -> list[Tensor | None]:
        """The state scalars in the record's order, ``None`` where the optimizer has none."""
        return [state[key] if key in self.scalar_keys else None for key in STATE_SCALARS]


def kernel_hyper(kind: Kernels, group: dict[str, Any]) -> dict[str, float | Tensor]:
    """The kernels' hyperparameters of ``group``: the optimizer's, and the gradient's sign."""
    return {**kind.hyper(group), "grad_sign": -1.0 if group["maximize"] else 1.0}


def plan(batch: ParamBatch, kind: Kernels, layouts: dict[int, tuple[tuple, Any]]) -> Any:
    """The fused step of ``batch`` (a :class:`FusedStep` on the CPU, a Triton step on CUDA),
    or ``None`` to take the torch path; ``fused=True`` warns once when the group cannot take
    the fused path.

    ``layouts`` is the optimizer's cache of each group's last kernel layout (records and the
    checks behind them), reused while the group's :func:`fingerprint` is unchanged: building
    and checking it costs more than the rest of a step's host work.
    """
    group = batch.group
    if group["fused"] is False or (group["fused"] is None and group["foreach"] is not None):
        return None
    if not len(batch) or torch.compiler.is_compiling():
        return None
    on_triton = uses_triton(batch.grads[0].device)
    key = fingerprint(batch, kind)
    cached = layouts.get(id(group))
    if cached is not None and cached[0] == key:
        layout = cached[1]
    else:
        layout = _triton_layout(batch, kind) if on_triton else _records(batch, kind)
        if isinstance(layout, str):
            if group["fused"]:
                _jit.warn_once(f"adamem: fused=True, but {layout}; using the torch path")
            return None
        layouts[id(group)] = (key, layout)
    if on_triton:
        from . import _triton

        return _triton.STEPS[kind.name](batch, layout, kind)
    return _cpu_step(batch, kind, layout)


def fingerprint(batch: ParamBatch, kind: Kernels) -> tuple:
    """What a group's kernel layout depends on and can change from step to step: which
    tensors take part, their addresses (state scalars too) and sizes, and whether the
    parameters and gradients are contiguous. A tensor cannot change dtype or device without
    new storage, so an unchanged fingerprint means the last layout's checks still hold."""
    memories = batch.state_list(kind.memory_key)
    second_moments = (
        batch.state_list(kind.second_moment_key) if kind.second_moment_key else memories
    )
    scalar_keys = sorted(kind.scalar_keys)
    parts: list[Any] = [batch.first_steps]
    for x, g, d, v, state in zip(batch.params, batch.grads, memories, second_moments, batch.states):
        parts += (x.data_ptr(), g.data_ptr(), d.data_ptr(), v.data_ptr(), x.numel())
        parts += (x.is_contiguous(), g.is_contiguous())
        parts += [state[key].data_ptr() for key in scalar_keys]
    return tuple(parts)


def uses_triton(device: torch.device) -> bool:
    """Whether tensors on ``device`` take the Triton kernels (else the C kernels)."""
    return device.type == "cuda"


def _triton_layout(batch: ParamBatch, kind: Kernels) -> Any:
    try:
        from . import _triton
    except ImportError:
        return "Triton is not installed"
    try:
        return _triton.layout(batch, kind)
    except _triton.Unsupported as reason:
        return str(reason)


def _cpu_step(batch: ParamBatch, kind: Kernels, records: array) -> FusedStep | None:
    library = _jit.library()
    if library is None:
        return None  # _jit has warned
    suffix = _SUFFIXES[batch.grads[0].dtype]
    entry_points = {
        phase: _jit.kernel(library, kind.name, phase, suffix)
        for phase in ("first", "sums", "update")
    }
    # Only here is a tensor lr read on the host: its group's tensors are all on the CPU.
    hyper = array("d", map(float, hyper_values(kernel_hyper(kind, batch.group))))
    return FusedStep(kind, entry_points, records, batch, hyper)


def _records(batch: ParamBatch, kind: Kernels) -> array | str:
    """The kernels' records of ``batch`` (the contract's ``RECORD`` layout), or why the batch
    cannot have them.

    The kernels trust every pointer: each array must be a contiguous CPU tensor of the compute
    dtype (or its complex counterpart) with the parameter's size, each scalar a CPU tensor of
    the compute dtype. The checks are written out in one expression because they run for every
    tensor whenever the group's :func:`fingerprint` changes.
    """
    dtype = batch.grads[0].dtype
    if dtype not in _SUFFIXES:
        return f"the gradients are {dtype}, not float32/float64"
    complex_dtype = _COMPLEX[dtype]
    memory_key, second_key = kind.memory_key, kind.second_moment_key
    rejection = (
        "every parameter, gradient and state tensor must be a contiguous "
        f"{dtype} (or {complex_dtype}) CPU tensor"
    )
    flat: list[int] = []
    memories = batch.state_list(memory_key)
    second_moments = batch.state_list(second_key) if second_key else memories
    for x, g, state, d, v in zip(batch.params, batch.grads, batch.states, memories, second_moments):
        size = x.nbytes
        if not (
            x.dtype is dtype
            and x.is_cpu
            and x.is_contiguous()
            and g.dtype is dtype
            and g.is_contiguous()  # the grad setter gave it the parameter's device and shape
            and (d.dtype is dtype or d.dtype is complex_dtype)
            and d.is_cpu
            and d.is_contiguous()
            and d.nbytes == size
            and (
                v is d
                or (
                    (v.dtype is dtype or v.dtype is complex_dtype)
                    and v.is_cpu
                    and v.is_contiguous()
                    and v.nbytes == size
                )
            )
        ):
            return rejection
        pointers = [x.data_ptr(), g.data_ptr(), d.data_ptr(), v.data_ptr(), x.numel()]
        for scalar in kind.scalars(state):
            if scalar is None:
                pointers.append(0)
                continue
            if scalar.dtype is not dtype or not scalar.is_cpu:
                return rejection
            pointers.append(scalar.data_ptr())
        flat += pointers
    return array("q", flat)
