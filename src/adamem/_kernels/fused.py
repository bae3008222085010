"""The fused path: each AM pass is one kernel over all of a group's tensors.

This module decides whether a group's step takes the kernels and prepares it (:func:`plan`):
parallel C loops on the CPU (:mod:`adamem._kernels.cpu`), Triton kernels on CUDA
(:mod:`adamem._kernels.cuda`), both reading the layout of :mod:`adamem._kernels.contract`.

The torch paths make a dozen passes over memory per step; the kernels make the two passes the
model needs, in place and without temporaries (ALGORITHMS.md §4):

1. ``sums`` advances ``v`` and returns each tensor's inner products, from which the
   optimizer's ``terms_from_dots`` forms its ``(a, b)`` (the plan's ``block_sums``);
2. :func:`adamem.beta.block_betas` solves the betas of every scope from them;
3. ``update`` applies the betas to ``d`` and ``x`` (the plan's ``apply``).

A tensor's first step is a single pass (``first``). On the CPU, when each tensor is a block of
its own and its sums are complete on this rank (:func:`tensor_blocks`: ``scope="tensor"``, no
DTensor), the kernels take a run of tensors through both passes and solve its betas in between
(by ``select_beta``'s rules, from the same ``(a, b)``), so that the second pass reads from
cache, and hand those betas back (the plan's ``solved``) in place of step 2; the other scopes
run every tensor's first pass before any second pass. On CUDA the passes stay two launches,
and for such groups the reduction between them solves the betas (so step 2 launches nothing).

A CPU group takes this path when every tensor with a gradient is a contiguous fp32 or fp64 (or
complex) CPU tensor, the kernels could be built, and the step is not being traced by
``torch.compile``; see :func:`plan`.
"""

from __future__ import annotations

from operator import itemgetter
from typing import Any

import torch
from torch import Tensor

from .._core.batch import ParamBatch
from .._core.checks import check_flag
from . import build, cpu
from .contract import Kernels

__all__ = ["LayoutCache", "fingerprint", "plan", "tensor_blocks", "uses_triton", "validate_fused"]


def validate_fused(group: dict[str, Any]) -> None:
    """``fused`` is a bool or ``None``, and cannot be combined with ``foreach=True``."""
    check_flag("fused", group["fused"], allow_none=True)
    if group["fused"] and group["foreach"]:
        raise ValueError("fused=True and foreach=True are exclusive; set one of them")


class LayoutCache:
    """An optimizer's kernel layouts: each group's last one, and those a CUDA graph replays.

    ``latest`` maps a group (by ``id``) to its last ``(fingerprint, layout)``, reused while
    the fingerprint is unchanged: building and checking a layout costs more than the rest of
    a step's host work. A CUDA graph captured while a layout was built replays its upload and
    reads its table at every replay, so such layouts are also kept in ``captured`` for the
    optimizer's lifetime, whatever replaces them in ``latest``.
    """

    def __init__(self) -> None:
        self.latest: dict[int, tuple[tuple, Any]] = {}
        self.captured: list[Any] = []


def plan(batch: ParamBatch, kind: Kernels | None, layouts: LayoutCache) -> Any:
    """The fused step of ``batch`` (a :class:`~adamem._kernels.cpu.FusedStep` on the CPU, a
    Triton step on CUDA), or ``None`` to take the torch path (also when ``kind`` is ``None``:
    the optimizer has no kernels); ``fused=True`` warns once when the group cannot take it.
    ``layouts`` is the optimizer's :class:`LayoutCache`.
    """
    group = batch.group
    setting = group.get("fused")  # an optimizer without kernels need not take the option
    if setting is False or (setting is None and group["foreach"] is not None):
        return None
    if not len(batch) or torch.compiler.is_compiling():
        return None
    if kind is None:  # an optimizer without kernels (yet)
        if setting:
            build.warn_once("adamem: fused=True, but this optimizer has no fused kernels")
        return None
    on_triton = uses_triton(batch.grads[0].device)
    # A training loop's zero_grad(set_to_none=True) makes fresh gradients every step. The CPU
    # records take their new addresses in place (the grad setter keeps each gradient's dtype,
    # device and shape those of its parameter); rebuilding the records would cost more than
    # the rest of the step's host work. The Triton table lives on the device: rebuilt.
    key = fingerprint(batch, kind, gradient_addresses=on_triton)
    cached = layouts.latest.get(id(group))
    if cached is not None and cached[0] == key:
        layout = cached[1]
        if not on_triton:
            cpu.set_gradient_addresses(layout, batch)
    else:
        layout = _cuda_layout(batch, kind) if on_triton else cpu.records(batch, kind)
        if isinstance(layout, str):
            if setting:
                build.warn_once(f"adamem: fused=True, but {layout}; using the torch path")
            return None
        layouts.latest[id(group)] = (key, layout)
        if on_triton and layout.captured:
            layouts.captured.append(layout)
    if on_triton:
        from . import cuda

        return cuda.STEPS[kind.name](batch, layout, kind, per_tensor=tensor_blocks(batch))
    return cpu.step(batch, kind, layout, per_tensor=tensor_blocks(batch))


def fingerprint(batch: ParamBatch, kind: Kernels, gradient_addresses: bool = True) -> tuple:
    """What a group's kernel layout depends on and can change from step to step: which
    tensors take part, their addresses (state scalars too; gradients' only with
    ``gradient_addresses``) and sizes, and whether the parameters and gradients are
    contiguous. A tensor cannot change dtype or device without new storage, nor a gradient
    those of its parameter, so an unchanged fingerprint means the last layout's checks still
    hold. Every entry is a list of one value per tensor (so that the tuple's length tells
    the tensor count), made by ``map`` over the tensors: this runs at every step."""
    params, grads, states = batch.params, batch.grads, batch.states
    parts: list[Any] = [batch.first_steps]
    parts += map(Tensor.data_ptr, params)
    parts += map(Tensor.data_ptr, batch.state_list(kind.memory_key))
    if kind.second_moment_key:
        parts += map(Tensor.data_ptr, batch.state_list(kind.second_moment_key))
    if gradient_addresses:
        parts += map(Tensor.data_ptr, grads)
    parts += map(Tensor.numel, params)
    parts += map(Tensor.is_contiguous, params)
    parts += map(Tensor.is_contiguous, grads)
    for key in sorted(kind.scalar_keys):
        parts += map(Tensor.data_ptr, map(itemgetter(key), states))
    return tuple(parts)


def tensor_blocks(batch: ParamBatch) -> bool:
    """Whether each of the batch's tensors is a block of its own whose sums are complete on
    this rank (``scope="tensor"``, no DTensor), and its beta is the select of its sums (no
    ``noise_averaging``, whose running average is kept outside the kernels): its beta can be
    solved as soon as its sums are done, before the next tensor's."""
    return (
        batch.group["scope"] == "tensor"
        and batch.group.get("noise_averaging") is None
        and not any(batch.shardings)  # None for a whole tensor
    )


def uses_triton(device: torch.device) -> bool:
    """Whether tensors on ``device`` take the Triton kernels (else the C kernels)."""
    return device.type == "cuda"


def _cuda_layout(batch: ParamBatch, kind: Kernels) -> Any:
    try:
        from . import cuda
    except ImportError:
        return "Triton is not installed"
    try:
        return cuda.layout(batch, kind)
    except cuda.Unsupported as reason:
        return str(reason)
