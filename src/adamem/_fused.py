"""The fused CPU path: each AM pass is one parallel C loop over all of a group's tensors.

The torch paths make a dozen passes over memory per step and allocate full-size temporaries;
the kernels in ``_kernels/`` (built by :mod:`adamem._jit`) make the two passes the model needs,
reading ``g, d, v, x`` and writing in place (ALGORITHMS.md §4):

1. ``sums`` advances ``v`` and returns each tensor's ``(a, b)``;
2. :func:`adamem.beta.select_beta` / :func:`adamem.beta.block_betas` solve beta from them, in
   Python: the kernels never compute beta;
3. ``update`` applies beta to ``d`` and ``x``.

A tensor's first step is a single pass (``first``). With ``scope="tensor"`` each tensor is its
own block, so :class:`FusedStep` runs the three phases on runs of consecutive tensors whose
arrays fit in cache (:data:`BUNDLE_BYTES`): the second pass then reads from cache instead of
memory. Other scopes need every sum of the block first, so the second pass waits for all.

A group takes this path when every tensor with a gradient is a dense, contiguous fp32 or fp64
(or complex) CPU tensor, the kernels could be built, and the step is not being traced by
``torch.compile``; see :func:`plan`.
"""

from __future__ import annotations

from array import array
from typing import Any

import torch
from torch import Tensor

from . import _jit
from ._optimizer import ParamBatch, check_flag
from .beta import select_beta

__all__ = ["BUNDLE_BYTES", "FusedStep", "plan", "validate_fused"]

# Layouts shared with am_kernels.c (its R_* and H_* enums).
RECORD_FIELDS = 10
_RECORD_BYTES = RECORD_FIELDS * 8
_HYPER_KEYS = ("lr", "cap", "beta2", "eps", "weight_decay", "lambd", "compat_gap")

BUNDLE_BYTES = 4 << 20
"""Bytes of the arrays that one run of ``sums`` and ``update`` touches under scope "tensor"."""

_SUFFIXES = {torch.float32: "f32", torch.float64: "f64"}
_COMPLEX = {torch.float32: torch.complex64, torch.float64: torch.complex128}


def validate_fused(group: dict[str, Any]) -> None:
    """``fused`` is a bool or ``None``, and cannot be combined with ``foreach=True``."""
    check_flag("fused", group["fused"], allow_none=True)
    if group["fused"] and group["foreach"]:
        raise ValueError("fused=True and foreach=True are exclusive; set one of them")


class FusedStep:
    """One group's step on the kernels; its phases are the optimizer's ``_block_sums`` and
    ``_apply``."""

    def __init__(
        self,
        kernels: dict[str, Any],
        records: array,
        first_steps: int,
        hyper: array,
        tensor_scope: bool,
        bytes_per_element: list[int],
    ) -> None:
        self._kernels = kernels
        self._records = records
        self._count = len(records) // RECORD_FIELDS
        self._first_steps = first_steps
        self._hyper = hyper
        self._tensor_scope = tensor_scope
        self._bytes = bytes_per_element
        self._threads = torch.get_num_threads()

    def _record(self, index: int) -> int:
        return self._records.buffer_info()[0] + index * _RECORD_BYTES

    def _call(self, phase: str, start: int, stop: int, *outputs: int) -> None:
        hyper = self._hyper.buffer_info()[0]
        count = stop - start
        status = self._kernels[phase](self._record(start), count, hyper, *outputs, self._threads)
        if status != 0:
            raise MemoryError(f"adamem fused kernel '{phase}' could not allocate its work list")

    def block_sums(self) -> tuple[Tensor, Tensor] | None:
        """Take the first steps, then return the ``(a, b)`` of the other tensors (float64).

        Under scope "tensor" the other tensors are stepped too, with the betas that
        :func:`block_betas` will find again from the same sums; :meth:`apply` has nothing
        left to do.
        """
        if self._first_steps:
            self._call("first", 0, self._first_steps)
        seen = self._count - self._first_steps
        if not seen:
            return None
        sums = torch.empty(2, seen, dtype=torch.float64)
        a, b = sums.unbind()
        address = sums.data_ptr()
        for start, stop in self._runs():
            offset = (start - self._first_steps) * 8
            self._call("sums", start, stop, address + offset, address + seen * 8 + offset)
            if self._tensor_scope:
                run = slice(start - self._first_steps, stop - self._first_steps)
                betas = select_beta(a[run], b[run], self._hyper[1])
                self._call("update", start, stop, betas.data_ptr())
        return a, b

    def apply(self, betas: Tensor | None) -> None:
        """The second pass, for scopes whose betas needed every tensor's sums."""
        if self._tensor_scope or betas is None:
            return
        betas = betas.to(torch.float64).contiguous()
        self._call("update", self._first_steps, self._count, betas.data_ptr())

    def _runs(self) -> list[tuple[int, int]]:
        """Consecutive tensors past their first step: each on its own is a block under scope
        "tensor", so runs are cut to keep their arrays in cache; otherwise one run."""
        if not self._tensor_scope:
            return [(self._first_steps, self._count)]
        runs, start, size = [], self._first_steps, 0
        for index in range(self._first_steps, self._count):
            if size and size + self._bytes[index] > BUNDLE_BYTES:
                runs.append((start, index))
                start, size = index, 0
            size += self._bytes[index]
        runs.append((start, self._count))
        return runs


def plan(
    batch: ParamBatch,
    kind: str,
    memory_key: str,
    second_moment_key: str | None,
    hyper: dict[str, float],
) -> FusedStep | None:
    """A :class:`FusedStep` for ``batch``, or ``None`` to take the torch path.

    ``kind`` is ``"sgd"`` or ``"adamw"``; ``hyper`` holds the keys of ``_HYPER_KEYS`` (``lr``
    already a float). ``fused=True`` warns once when the group cannot take the fused path.
    """
    group = batch.group
    if group["fused"] is False or (group["fused"] is None and group["foreach"] is not None):
        return None
    if not len(batch) or torch.compiler.is_compiling():
        return None
    reason = _records(batch, memory_key, second_moment_key)
    if isinstance(reason, str):
        if group["fused"]:
            _jit.warn_once(f"adamem: fused=True, but {reason}; using the torch path")
        return None
    records, dtype, bytes_per_element = reason
    library = _jit.library()
    if library is None:
        return None
    suffix = _SUFFIXES[dtype]
    kernels = {
        phase: getattr(library, f"am_{kind}_{phase}_{suffix}")
        for phase in ("first", "sums", "update")
    }
    return FusedStep(
        kernels,
        records,
        batch.first_steps,
        array("d", [float(hyper[key]) for key in _HYPER_KEYS]),
        group["scope"] == "tensor",
        bytes_per_element,
    )


def _records(
    batch: ParamBatch, memory_key: str, second_moment_key: str | None
) -> tuple[array, torch.dtype, list[int]] | str:
    """The kernels' records of ``batch`` (the R_* layout of am_kernels.c), or why it has none.

    Every array the kernels touch must be a contiguous CPU tensor of the group's dtype (or
    its complex counterpart) with the parameter's element count: the kernels trust them.
    """
    dtype = batch.grads[0].dtype
    if dtype not in _SUFFIXES:
        return f"the gradients are {dtype}, not float32/float64"
    complex_dtype = _COMPLEX[dtype]
    records = array("q")
    sizes = []
    arrays = 4 if second_moment_key else 3
    for x, g, state in zip(batch.params, batch.grads, batch.states):
        d = state[memory_key]
        v = state[second_moment_key] if second_moment_key else d
        numel = x.numel()
        for tensor in (x, g, d, v):
            if not (
                tensor.is_cpu
                and tensor.is_contiguous()
                and (tensor.dtype is dtype or tensor.dtype is complex_dtype)
            ):
                return (
                    "every parameter, gradient and state buffer must be a contiguous "
                    f"{dtype} CPU tensor, got a {'' if tensor.is_contiguous() else 'non-'}"
                    f"contiguous {tensor.dtype} {tensor.device} tensor"
                )
        if g.numel() != numel or d.numel() * d.element_size() != numel * x.element_size():
            return "a state buffer does not match its parameter's size"
        if v.numel() * v.element_size() != numel * x.element_size():
            return "a state buffer does not match its parameter's size"
        records.extend(
            (
                x.data_ptr(),
                g.data_ptr(),
                d.data_ptr(),
                v.data_ptr() if second_moment_key else 0,
                numel,
                *(
                    state[key].data_ptr() if key in state else 0
                    for key in ("step", "beta", "beta_product", "prev_bias_correction1", "prev_lr")
                ),
            )
        )
        sizes.append(numel * x.element_size() * arrays)
    return records, dtype, sizes
