"""Byte-level language modelling, measured in bits per byte on held-out text."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .data import Corpus
from .problem import Problem

EVAL_CHUNK = 64  # windows per forward pass when evaluating


def windows(stream: Tensor, starts: Tensor, length: int) -> Tensor:
    """The ``length``-byte windows of ``stream`` beginning at ``starts``, as int64 rows."""
    return stream[starts[:, None] + torch.arange(length)].long()


class LanguageModel(Problem):
    """Next-byte prediction with ``module`` (context ``context``) on random training windows
    (positions drawn from ``seed``); metrics ``val_bpb`` on ``eval_windows`` evenly spaced
    validation windows and, when final, ``test_bpb`` on as many test windows. With ``bf16``
    the module runs under bfloat16 autocast (the loss is taken in float32)."""

    def __init__(
        self,
        module: nn.Module,
        corpus: Corpus,
        context: int,
        batch_size: int,
        eval_windows: int,
        seed: int,
        device: str,
        bf16: bool = False,
    ):
        self.module = module.to(device)
        self.bf16 = bf16
        self.corpus = corpus
        self.data = corpus.fingerprint
        self.context = context
        self.batch_size = batch_size
        self.eval_windows = eval_windows
        self.device = device
        self.generator = torch.Generator().manual_seed(seed)

    def _cross_entropy(self, rows: Tensor) -> Tensor:
        rows = rows.to(self.device)
        device_type = torch.device(self.device).type
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=self.bf16):
            logits = self.module(rows[:, :-1])
        return F.cross_entropy(logits.float().flatten(0, 1), rows[:, 1:].flatten())

    def loss(self, step: int) -> Tensor:
        high = len(self.corpus.train) - self.context - 1
        starts = torch.randint(0, high, (self.batch_size,), generator=self.generator)
        return self._cross_entropy(windows(self.corpus.train, starts, self.context + 1))

    @torch.no_grad()
    def _bits_per_byte(self, stream: Tensor) -> float:
        starts = torch.linspace(0, len(stream) - self.context - 1, self.eval_windows).long()
        rows = windows(stream, starts, self.context + 1)
        chunks = rows.split(EVAL_CHUNK)
        nats = sum(float(self._cross_entropy(chunk)) * len(chunk) for chunk in chunks) / len(rows)
        return nats / math.log(2)

    def evaluate(self, final: bool) -> dict[str, float]:
        metrics = {"val_bpb": self._bits_per_byte(self.corpus.val)}
        if final:
            metrics["test_bpb"] = self._bits_per_byte(self.corpus.test)
        return metrics
