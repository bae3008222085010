"""What a benchmark task builds for one run: parameters, a training loss per step, metrics."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import Tensor, nn


class Problem(ABC):
    """One seeded instance of a task.

    ``module`` holds the parameters to optimise. ``loss(step)`` returns the training loss of
    step ``step`` (with its graph) and ``evaluate(final)`` returns metrics at the current
    parameters: the task's selection metric always, test metrics too when ``final``. ``data``
    identifies data that depends on the machine (text read from the installed Python), so
    that runs on different data can be told apart; ``None`` for data fixed by the code.
    """

    module: nn.Module
    data: dict[str, Any] | None = None

    @abstractmethod
    def loss(self, step: int) -> Tensor:
        """The training loss of step ``step`` (its minibatch, its noise)."""

    @abstractmethod
    def evaluate(self, final: bool) -> dict[str, float]:
        """Metrics at the current parameters, computed without gradients."""


class Minibatches:
    """Indices of ``size`` samples at a time out of ``count``, reshuffled every epoch with
    ``generator``; ``size >= count`` gives the full batch every step.

    >>> batches = Minibatches(5, 2, torch.Generator().manual_seed(0))
    >>> sorted(torch.cat([batches.next() for _ in range(2)]).tolist() + batches.next().tolist())
    [0, 1, 2, 3, 4]
    """

    def __init__(self, count: int, size: int, generator: torch.Generator):
        self.count = count
        self.size = min(size, count)
        self.generator = generator
        self.order = torch.arange(count)
        self.position = count if self.size < count else 0

    def next(self) -> Tensor:
        """The next minibatch; the last one of an epoch may be smaller."""
        if self.size == self.count:
            return self.order
        if self.position >= self.count:
            self.order = torch.randperm(self.count, generator=self.generator)
            self.position = 0
        batch = self.order[self.position : self.position + self.size]
        self.position += self.size
        return batch
