"""Heavy ball in EMA form, the fixed-momentum baseline of AM-SGD (ALGORITHMS.md §3)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer


class HeavyBall(Optimizer):
    """``d <- beta*d + (1-beta)*g`` (``d = g`` on the first step), then ``x <- x - lr*d``.

    This is AM-SGD with a fixed ``beta`` and ``lambd = 0``: the steady-state step is ``lr*g``,
    so its ``lr`` is in the same (EMA) units as :class:`adamem.AMSGD`'s.

    >>> w = torch.nn.Parameter(torch.tensor([1.0]))
    >>> opt = HeavyBall([w], lr=0.5, beta=0.5)
    >>> for grad in (2.0, 4.0):
    ...     w.grad = torch.tensor([grad])
    ...     opt.step()
    >>> w.item()  # 1 - 0.5*2 - 0.5*(0.5*2 + 0.5*4)
    -1.5
    """

    def __init__(self, params: Iterable[Tensor] | Iterable[dict[str, Any]], lr: float, beta: float):
        if lr < 0:
            raise ValueError(f"lr must be >= 0, got {lr}")
        if not 0 <= beta < 1:
            raise ValueError(f"beta must be in [0, 1), got {beta}")
        super().__init__(params, {"lr": lr, "beta": beta})

    @torch.no_grad()
    def step(self, closure: None = None) -> None:
        """Take one step (closures are not supported)."""
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                state = self.state[param]
                if "direction" not in state:
                    state["direction"] = param.grad.clone()
                else:
                    state["direction"].lerp_(param.grad, 1 - group["beta"])
                param.add_(state["direction"], alpha=-group["lr"])
