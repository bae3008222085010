"""Supervised classification with cross-entropy, minibatches and a validation split."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .data import Split
from .problem import Minibatches, Problem


class Classification(Problem):
    """Train ``module`` on ``split`` with minibatches of ``batch_size`` (order from ``seed``).

    Metrics: ``val_loss`` and ``val_acc``; when final also ``test_loss``, ``test_acc`` and
    ``test_error`` (1 - ``test_acc``, a lower-is-better metric to report). Evaluation runs the
    module in eval mode (batch norm uses its running statistics).
    """

    def __init__(self, module: nn.Module, split: Split, batch_size: int, seed: int, device: str):
        self.module = module.to(device)
        self.device = device
        self.split = split
        generator = torch.Generator().manual_seed(seed)
        self.batches = Minibatches(len(split.y_train), batch_size, generator)

    def loss(self, step: int) -> Tensor:
        index = self.batches.next()
        x = self.split.x_train[index].to(self.device)
        return F.cross_entropy(self.module(x), self.split.y_train[index].to(self.device))

    @torch.no_grad()
    def _scores(self, x: Tensor, y: Tensor) -> tuple[float, float]:
        logits = self.module(x.to(self.device))
        y = y.to(self.device)
        loss = F.cross_entropy(logits, y)
        accuracy = (logits.argmax(1) == y).float().mean()
        return float(loss), float(accuracy)

    def evaluate(self, final: bool) -> dict[str, float]:
        self.module.eval()
        scores = self._scores(self.split.x_val, self.split.y_val)
        metrics = dict(zip(("val_loss", "val_acc"), scores))
        if final:
            scores = self._scores(self.split.x_test, self.split.y_test)
            metrics.update(zip(("test_loss", "test_acc"), scores))
            metrics["test_error"] = 1 - metrics["test_acc"]
        self.module.train()
        return metrics
