"""The CPU backend of the fused path: parallel C loops (``c/``, built by
:mod:`adamem._kernels.build`) called through ctypes on raw data pointers.

A group's kernels get one record per tensor (the contract's ``RECORD``: array addresses, size,
state scalar addresses) and the hyperparameters as a float64 array. The C side makes each pass
one OpenMP loop over fixed-size chunks of all the group's tensors; sums are combined in a fixed
order, so results do not depend on the thread count (docs/speed.md).
"""

from __future__ import annotations

from array import array
from typing import Any

import torch
from torch import Tensor

from .._core.batch import ParamBatch
from . import build
from .contract import RECORD, Kernels, hyper_values, kernel_hyper

__all__ = ["FusedStep", "records", "set_gradient_addresses", "step"]

RECORD_FIELDS = len(RECORD)
_GRADIENT = RECORD.index("g")

_SUFFIXES = {torch.float32: "f32", torch.float64: "f64"}
_COMPLEX = {torch.float32: torch.complex64, torch.float64: torch.complex128}


class FusedStep:
    """One group's step on the kernels, as a :class:`~adamem._core.optimizer.StepPlan`.

    With ``per_tensor`` (every tensor is its own block, and no sum is completed across ranks),
    :meth:`block_sums` runs the whole step: for runs of tensors small enough to stay in cache,
    the sums pass, each tensor's beta (solved in C by ``select_beta``'s rules) and the update
    pass, back to back. It leaves the betas in :attr:`solved` and :meth:`apply` has nothing
    left to do. Otherwise the update waits for :meth:`apply`'s betas.
    """

    solved: Tensor | None = None

    def __init__(
        self,
        kernels: Kernels,
        entry_points: dict[str, Any],
        records: array,
        batch: ParamBatch,
        hyper: array,
        per_tensor: bool,
    ) -> None:
        self._kernels = kernels
        self._per_tensor = per_tensor
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
        """Take the first steps, then return the ``(a, b)`` of the other tensors (float64),
        or, with ``per_tensor``, step them and return ``None``."""
        if self._first_steps:
            self._call("first", 0)
        seen = self._count - self._first_steps
        if not seen:
            return None
        if self._per_tensor:
            self.solved = torch.empty(seen, dtype=torch.float64)
            self._call("steps", self._first_steps, self.solved.data_ptr())
            return None
        dots = torch.empty(seen, self._kernels.dots, dtype=torch.float64)
        self._call("sums", self._first_steps, dots.data_ptr())
        return self._kernels.terms_from_dots(dots.T, self._group)

    def apply(self, betas: Tensor | None) -> None:
        """The second pass, with one beta per tensor past its first step (done already by
        :meth:`block_sums` with ``per_tensor``)."""
        if betas is not None and not self._per_tensor:
            betas = betas.to(torch.float64).contiguous()
            self._call("update", self._first_steps, betas.data_ptr())


def step(batch: ParamBatch, kind: Kernels, records: array, per_tensor: bool) -> FusedStep | None:
    """The group's fused CPU step on ``records`` (see :class:`FusedStep` for ``per_tensor``);
    ``None`` (after one warning) if the kernels could not be built."""
    library = build.library()
    if library is None:
        return None  # build has warned
    suffix = _SUFFIXES[batch.grads[0].dtype]
    entry_points = {
        phase: build.kernel(library, kind.name, phase, suffix)
        for phase in ("first", "sums", "update", "steps")
    }
    # Only here is a tensor lr read on the host: its group's tensors are all on the CPU.
    hyper = array("d", map(float, hyper_values(kernel_hyper(kind, batch.group))))
    return FusedStep(kind, entry_points, records, batch, hyper, per_tensor)


def set_gradient_addresses(records: array, batch: ParamBatch) -> None:
    """Write the addresses of ``batch``'s gradients into its cached ``records``."""
    records[_GRADIENT::RECORD_FIELDS] = array("q", map(Tensor.data_ptr, batch.grads))


def records(batch: ParamBatch, kind: Kernels) -> array | str:
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
