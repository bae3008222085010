"""One parameter group's tensors in a step, and the dtype rules of AM's arithmetic."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from .distributed import Sharding, local

LearningRate = float | Tensor


@dataclass
class ParamBatch:
    """The tensors of one parameter group that take part in a step.

    ``params`` are the stored tensors (real views of complex ones, local shards of DTensors)
    and ``states`` their state dicts; ``grads`` are their gradients as stored (same views),
    before ``maximize`` and in their own dtype: the fused kernels read them so, and the torch
    paths take :meth:`compute_grads`. The first ``first_steps`` entries are tensors seen for
    the first time. ``shardings`` says, per tensor, how a DTensor is split across ranks
    (``None`` for a plain tensor).
    """

    group: dict[str, Any]
    positions: list[int] = field(default_factory=list)
    """Each tensor's index in ``group["params"]``."""
    params: list[Tensor] = field(default_factory=list)
    grads: list[Tensor] = field(default_factory=list)
    states: list[dict[str, Any]] = field(default_factory=list)
    first_steps: int = 0
    shardings: list[Sharding | None] = field(default_factory=list)
    plain: bool = True
    """No parameter is complex or a DTensor: stored tensors need no views (a faster
    :meth:`state_list`)."""

    def __len__(self) -> int:
        return len(self.params)

    def compute_grads(self) -> list[Tensor]:
        """The gradients the algorithm sees: in the compute dtype, negated for ``maximize``."""
        grads = [g.to(compute_dtype(g)) for g in self.grads]
        return torch._foreach_neg(grads) if self.group["maximize"] else grads

    def state_list(self, key: str, start: int = 0) -> list[Tensor]:
        """State entry ``key`` of each tensor from ``start`` on (real views of complex ones,
        local shards of DTensors)."""
        if self.plain:
            return [state[key] for state in self.states[start:]]
        return [real_view(local(state[key])) for state in self.states[start:]]


def compute_dtype(tensor: Tensor) -> torch.dtype:
    """The dtype in which a tensor's AM arithmetic runs: float64 for double, else float32."""
    return torch.float64 if tensor.dtype in (torch.float64, torch.complex128) else torch.float32


def real_view(tensor: Tensor) -> Tensor:
    """Complex tensors are optimised as pairs of reals: ``<g, d>`` becomes ``Re <g, d>``."""
    return torch.view_as_real(tensor) if tensor.is_complex() else tensor


def scalar_state(value: LearningRate | float, like: Tensor) -> Tensor:
    """A 0-d statistic on ``like``'s device in its compute dtype (made on the device: copying
    a host scalar to a GPU would wait for it)."""
    dtype = compute_dtype(like)
    if isinstance(value, Tensor):
        return value.detach().to(like.device, dtype, copy=True).reshape(())
    return torch.full((), value, dtype=dtype, device=like.device)


def use_foreach(group: dict[str, Any], params: list[Tensor]) -> bool:
    """``foreach=None`` picks the multi-tensor path when every tensor is on CUDA, like torch."""
    if group["foreach"] is not None:
        return group["foreach"]
    return bool(params) and all(p.device.type == "cuda" for p in params)


def capturing(device: torch.device) -> bool:
    """Whether work for ``device`` is being captured into a CUDA graph: the step then runs
    only when the graph is replayed, and no host code runs at a replay."""
    return device.type == "cuda" and torch.cuda.is_current_stream_capturing()
