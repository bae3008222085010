"""Convex problems in float64, measured by the optimality gap ``f(x) - f*`` of the objective."""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import data
from .problem import Minibatches, Problem

PROBLEM_SEED = 0


@functools.cache
def quadratic_matrix(dim: int, condition: float) -> Tensor:
    """``Q diag(lambda) Q^T`` with eigenvalues log-spaced in ``[1/condition, 1]`` and a random
    rotation ``Q`` (fixed seed), float64."""
    generator = torch.Generator().manual_seed(PROBLEM_SEED)
    rotation, _ = torch.linalg.qr(torch.randn(dim, dim, generator=generator, dtype=torch.float64))
    eigenvalues = torch.logspace(-math.log10(condition), 0, dim, dtype=torch.float64)
    return rotation @ torch.diag(eigenvalues) @ rotation.T


class Quadratic(Problem):
    """``f(x) = x^T A x / 2`` (``f* = 0``) over ``x`` split in two tensors, from ``x0 ~ N(0, I)``.

    With ``noise > 0`` the gradient is ``A x + noise * xi``, ``xi ~ N(0, I)`` fresh each step.
    The metric ``gap`` is ``f(x)``.
    """

    def __init__(self, dim: int, condition: float, noise: float, split: int, seed: int):
        self.matrix = quadratic_matrix(dim, condition)
        self.noise = noise
        self.generator = torch.Generator().manual_seed(seed)
        x0 = torch.randn(dim, generator=self.generator, dtype=torch.float64)
        self.module = nn.ParameterDict(
            {"head": nn.Parameter(x0[:split].clone()), "tail": nn.Parameter(x0[split:].clone())}
        )

    def _x(self) -> Tensor:
        return torch.cat([self.module["head"], self.module["tail"]])

    def loss(self, step: int) -> Tensor:
        x = self._x()
        value = x @ self.matrix @ x / 2
        if self.noise:
            xi = torch.randn(len(x), generator=self.generator, dtype=x.dtype)
            value = value + self.noise * xi.to(x.device) @ x
        return value

    @torch.no_grad()
    def evaluate(self, final: bool) -> dict[str, float]:
        x = self._x()
        return {"gap": float(x @ self.matrix.to(x.device) @ x / 2)}


def logistic_objective(weight: Tensor, bias: Tensor, x: Tensor, y: Tensor, l2: float) -> Tensor:
    """Mean binary cross-entropy plus ``l2/2 * ||weight||^2`` (the bias is not penalised)."""
    logits = x @ weight + bias
    return F.binary_cross_entropy_with_logits(logits, y.to(x.dtype)) + l2 / 2 * weight @ weight


@functools.cache
def logistic_optimum(l2: float) -> float:
    """``f*`` of the breast_cancer objective, by Newton's method in float64."""
    split = data.breast_cancer()
    x, y = split.x_train, split.y_train.double()
    features = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)
    penalty = torch.full((features.shape[1],), l2, dtype=x.dtype)
    penalty[-1] = 0.0  # the bias is not penalised
    theta = torch.zeros(features.shape[1], dtype=x.dtype)
    for _ in range(30):
        p = torch.sigmoid(features @ theta)
        gradient = features.T @ (p - y) / len(y) + penalty * theta
        hessian = features.T @ (features * (p * (1 - p))[:, None]) / len(y) + torch.diag(penalty)
        theta = theta - torch.linalg.solve(hessian, gradient)
    return float(logistic_objective(theta[:-1], theta[-1], x, y, l2))


class LogisticRegression(Problem):
    """L2-regularised logistic regression on breast_cancer, tensors ``weight`` (30) and ``bias``
    (1), from ``weight ~ N(0, 1/30)``; ``batch_size`` 0 means full batch. Metrics: ``gap`` (on
    the training objective) and, when final, ``test_acc``."""

    def __init__(self, batch_size: int, l2: float, seed: int):
        self.split = data.breast_cancer()
        self.l2 = l2
        self.optimum = logistic_optimum(l2)
        features = self.split.x_train.shape[1]
        generator = torch.Generator().manual_seed(seed)
        weight = torch.randn(features, generator=generator, dtype=torch.float64) / features**0.5
        self.module = nn.ParameterDict(
            {
                "weight": nn.Parameter(weight),
                "bias": nn.Parameter(torch.zeros(1, dtype=torch.float64)),
            }
        )
        count = len(self.split.y_train)
        self.batches = Minibatches(count, batch_size or count, generator)

    def _objective(self, x: Tensor, y: Tensor) -> Tensor:
        weight, bias = self.module["weight"], self.module["bias"]
        return logistic_objective(weight, bias, x.to(weight.device), y.to(weight.device), self.l2)

    def loss(self, step: int) -> Tensor:
        index = self.batches.next()
        return self._objective(self.split.x_train[index], self.split.y_train[index])

    @torch.no_grad()
    def evaluate(self, final: bool) -> dict[str, float]:
        metrics = {"gap": float(self._objective(self.split.x_train, self.split.y_train))}
        metrics["gap"] -= self.optimum
        if final:
            weight, bias = self.module["weight"], self.module["bias"]
            x_test = self.split.x_test.to(weight.device)
            predictions = (x_test @ weight + bias > 0).long().cpu()
            metrics["test_acc"] = float((predictions == self.split.y_test).double().mean())
        return metrics
