"""Small tensor helpers shared by the single-tensor and multi-tensor paths."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

BUCKET_ELEMENTS = 1 << 20
"""Elements the multi-tensor paths work on at a time (4 MiB per fp32 temporary)."""


def dot(x: Tensor, y: Tensor) -> Tensor:
    """The real inner product of two tensors of the same shape, as a 0-d tensor."""
    return torch.dot(x.reshape(-1), y.reshape(-1))


def foreach_dot(xs: Sequence[Tensor], ys: Sequence[Tensor]) -> list[Tensor]:
    """Per-pair inner products; torch has no ``_foreach_dot``, so this launches one per pair."""
    return [dot(x, y) for x, y in zip(xs, ys)]


def stack_on(values: Sequence[Tensor], like: Tensor) -> Tensor:
    """Stack 0-d tensors onto ``like``'s device (a group may span devices)."""
    return torch.stack([v.to(like.device) for v in values])


def scale(tensors: Sequence[Tensor], factor: float | Tensor) -> list[Tensor]:
    """``factor * t`` for each tensor, for a float or a 0-d tensor factor."""
    return torch._foreach_mul(list(tensors), factor)


def in_dtype(tensors: Sequence[Tensor], dtypes: Sequence[torch.dtype]) -> list[Tensor]:
    """Each tensor in its compute dtype (the same object when no cast is needed)."""
    return [t.to(dtype) for t, dtype in zip(tensors, dtypes)]


def write_back(destinations: Sequence[Tensor], values: Sequence[Tensor]) -> None:
    """Copy computed values into stored tensors, casting to their dtype (skips aliases)."""
    pairs = [(dst, src) for dst, src in zip(destinations, values) if dst is not src]
    if pairs:
        torch._foreach_copy_([dst for dst, _ in pairs], [src for _, src in pairs])


def fill(tensors: Sequence[Tensor], value: float | Tensor) -> None:
    """Set every 0-d tensor to ``value`` (a float or a one-element tensor), in one launch or
    two rather than one per tensor."""
    tensors = list(tensors)
    if not tensors:
        return
    if isinstance(value, Tensor):
        torch._foreach_copy_(tensors, [value.reshape(())] * len(tensors))
    else:
        torch._foreach_zero_(tensors)
        torch._foreach_add_(tensors, value)


def foreach_mul_unbound(tensors: Sequence[Tensor], factors: Tensor) -> list[Tensor]:
    """``factors[i] * tensors[i]`` for a 1-D tensor of per-tensor factors."""
    return torch._foreach_mul(list(tensors), list(factors.unbind()))


def buckets(tensors: Sequence[Tensor], limit: int | None = None) -> list[slice]:
    """Consecutive runs of ``tensors`` holding at most ``limit`` (default
    :data:`BUCKET_ELEMENTS`) elements in all; a larger tensor is a run of its own. The
    multi-tensor paths take a run at a time, so that their full-size temporaries never span
    more than a run.

    >>> [(s.start, s.stop) for s in buckets([torch.empty(3), torch.empty(2), torch.empty(9)], 5)]
    [(0, 2), (2, 3)]
    """
    limit = BUCKET_ELEMENTS if limit is None else limit
    runs, start, elements = [], 0, 0
    for index, tensor in enumerate(tensors):
        if index > start and elements + tensor.numel() > limit:
            runs.append(slice(start, index))
            start, elements = index, 0
        elements += tensor.numel()
    if start < len(tensors):
        runs.append(slice(start, len(tensors)))
    return runs
