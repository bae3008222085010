r"""AM-SGD: heavy-ball momentum whose coefficient is solved at every step (ALGORITHMS.md §3).

With gradient :math:`g_t` (plus ``weight_decay`` :math:`\cdot x_t`, coupled L2), memory
:math:`d_t`, learning rate :math:`\eta_t` and the previous one :math:`\eta_{t-1}`, each block
(a tensor, a group or all parameters, per ``scope``) computes

.. math::

    a &= \textstyle\sum (1+\lambda)\,\eta_{t-1}\langle g_t, d_t\rangle
          - \eta_t\langle d_t - g_t,\; g_t + \lambda d_t\rangle, \qquad
    b = \textstyle\sum \eta_t\,\|d_t - g_t\|^2, \\
    \beta_t &= \mathrm{select}(a, b, \beta_{\max})
          \quad(= \mathrm{clip}(a/b, 0, \beta_{\max}) \text{ when } b > 0), \\
    d_{t+1} &= \frac{(\beta_t+\lambda)\,d_t + (1-\beta_t)\,g_t}{1+\lambda}, \qquad
    x_{t+1} = x_t - \eta_t\, d_{t+1},

and the first step of a tensor takes :math:`d_1 = g_0`. :math:`\beta_t` is the optimal weight
of the memory plane in the proximal two-plane model of §2; the weight of the old direction in
the new one is :math:`(\beta_t+\lambda)/(1+\lambda) \in [0.091, 0.909]` at the defaults.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from . import _fused
from . import _tensor_ops as ops
from ._optimizer import (
    AMOptimizer,
    LearningRate,
    ParamBatch,
    check_flag,
    check_learning_rate,
    check_number,
    scalar_state,
    use_foreach,
)
from .beta import Scope

__all__ = [
    "AMSGD",
    "amsgd_block_sums",
    "amsgd_tensor_step",
    "amsgd_terms",
    "amsgd_terms_from_dots",
    "amsgd_update",
]


class AMSGD(AMOptimizer):
    r"""Adaptive-Memory SGD: heavy ball in EMA form with a closed-form momentum per step.

    Args:
        params: parameters or parameter groups, as for any ``torch.optim`` optimizer.
        lr: learning rate :math:`\eta` in EMA units (float or one-element Tensor). At steady
            state the step is ``lr * g``, whereas ``torch.optim.SGD(momentum=m)`` steps
            ``lr * g / (1 - m)``: ``AMSGD(lr=0.1)`` moves like ``SGD(lr=0.01, momentum=0.9)``.
        beta_max: cap on :math:`\beta_t`, in ``[0, 1)``.
        lambd: pull :math:`\lambda \ge 0` towards the old direction; the effective momentum is
            :math:`(\beta+\lambda)/(1+\lambda)`.
        scope: ``"tensor"`` (one beta per parameter tensor), ``"group"`` (one per parameter
            group) or ``"global"`` (one for every group whose scope is ``"global"``).
        weight_decay: coupled L2 penalty: the model is built for the loss plus
            ``weight_decay/2 * ||x||^2``.
        maximize: maximise the objective instead (``p.grad`` is left untouched).
        foreach: use the multi-tensor path; ``None`` picks it when all parameters are on CUDA.
        fused: run the step's two passes each as one kernel over all of the group's
            tensors (docs/speed.md): parallel C loops on the CPU, Triton kernels on CUDA.
            ``None`` (default) does so when ``foreach`` is ``None`` and the group allows it
            (contiguous tensors of one device; fp32/fp64 on the CPU with a C compiler;
            fp32/fp64/bf16/fp16 on CUDA with Triton; not under ``torch.compile``), ``True``
            also warns once when it cannot, ``False`` never does.

    After a step, ``optimizer.state[p]["beta"]`` holds the beta of ``p``'s block (0-d, fp32,
    or fp64 for fp64 parameters; 0 before the second step, where no beta is solved).

    Example:
        >>> import torch, adamem
        >>> torch.manual_seed(0) and None
        >>> model = torch.nn.Linear(3, 1)
        >>> opt = adamem.AMSGD(model.parameters(), lr=0.1)
        >>> for _ in range(3):
        ...     opt.zero_grad()
        ...     model(torch.ones(4, 3)).pow(2).mean().backward()
        ...     opt.step()
        >>> 0.0 <= float(opt.state[model.weight]["beta"]) <= 0.9
        True
    """

    _statistic_keys = frozenset({"beta", "prev_lr"})
    _group_defaults = {
        "scope": "tensor",
        "maximize": False,
        "foreach": None,
        "weight_decay": 0.0,
        "fused": None,
    }

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: LearningRate,
        *,
        beta_max: float = 0.9,
        lambd: float = 0.1,
        scope: Scope = "tensor",
        weight_decay: float = 0.0,
        maximize: bool = False,
        foreach: bool | None = None,
        fused: bool | None = None,
    ) -> None:
        defaults = dict(
            lr=lr,
            beta_max=beta_max,
            lambd=lambd,
            scope=scope,
            weight_decay=weight_decay,
            maximize=maximize,
            foreach=foreach,
            fused=fused,
        )
        super().__init__(params, defaults)

    def _validate_group(self, group: dict[str, Any]) -> None:
        check_learning_rate(group["lr"])
        check_number("beta_max", group["beta_max"], 0.0, 1.0, high_open=True)
        check_number("lambd", group["lambd"], 0.0, float("inf"), high_open=True)
        check_number("weight_decay", group["weight_decay"], 0.0, float("inf"), high_open=True)
        check_flag("maximize", group["maximize"])
        _fused.validate_fused(group)

    def _beta_cap(self, group: dict[str, Any]) -> float:
        return float(group["beta_max"])

    def effective_momentum(self, beta: Tensor, group: dict[str, Any]) -> Tensor:
        lambd = group["lambd"]
        return (beta + lambd) / (1.0 + lambd)

    def _prepare(self, group: dict[str, Any]) -> ParamBatch:
        def init_state(state: dict[str, Any], param: Tensor) -> None:
            state["momentum_buffer"] = torch.zeros_like(param, memory_format=torch.preserve_format)
            state["prev_lr"] = scalar_state(group["lr"], param)
            state["beta"] = scalar_state(0.0, param)

        batch = self._collect(group, init_state)
        # The kernels add weight_decay * x to the gradient themselves, in both passes.
        batch.scratch["fused"] = _fused.plan(batch, _fused.SGD, self._kernel_layouts)
        batch.scratch["foreach"] = use_foreach(group, batch.params)
        if group["weight_decay"] != 0 and len(batch) and batch.scratch["fused"] is None:
            params = ops.in_dtype(batch.params, [g.dtype for g in batch.grads])
            batch.grads = torch._foreach_add(batch.grads, params, alpha=group["weight_decay"])
        return batch

    def _block_sums(self, batch: ParamBatch) -> tuple[Tensor, Tensor] | None:
        if batch.scratch["fused"] is not None:
            return batch.scratch["fused"].block_sums()
        if len(batch) == batch.first_steps:
            return None
        seen = slice(batch.first_steps, None)
        return amsgd_block_sums(
            batch.grads[seen],
            batch.state_list("momentum_buffer", batch.first_steps),
            batch.state_list("prev_lr", batch.first_steps),
            lr=batch.group["lr"],
            lambd=batch.group["lambd"],
            foreach=batch.scratch["foreach"],
        )

    def _apply(self, batch: ParamBatch, betas: Tensor | None) -> None:
        if batch.scratch["fused"] is not None:
            batch.scratch["fused"].apply(betas)
            return
        amsgd_update(
            batch.params,
            batch.grads,
            batch.state_list("momentum_buffer"),
            betas,
            first_steps=batch.first_steps,
            lr=batch.group["lr"],
            lambd=batch.group["lambd"],
            foreach=batch.scratch["foreach"],
        )
        if betas is not None:
            torch._foreach_copy_(batch.state_list("beta", batch.first_steps), list(betas.unbind()))
        ops.fill(batch.state_list("prev_lr"), batch.group["lr"])


def amsgd_block_sums(
    grads: list[Tensor],
    momentum_buffers: list[Tensor],
    prev_lrs: list[Tensor],
    *,
    lr: LearningRate,
    lambd: float,
    foreach: bool,
) -> tuple[Tensor, Tensor]:
    """Per-tensor ``(a, b)`` of AM-SGD (§4, SGD form), stacked; grads are in compute dtype."""
    like = grads[0]
    memories = ops.in_dtype(momentum_buffers, [g.dtype for g in grads])
    if not foreach:
        a_list, b_list = [], []
        for grad, memory, prev_lr in zip(grads, memories, prev_lrs):
            gap = prev_lr * ops.dot(grad, memory)
            a, b = amsgd_terms(grad, memory, gap=gap, lr=lr, lambd=lambd)
            a_list.append(a)
            b_list.append(b)
        return ops.stack_on(a_list, like), ops.stack_on(b_list, like)
    differences = torch._foreach_sub(memories, grads)
    pulled = torch._foreach_add(grads, memories, alpha=lambd)
    gaps = ops.stack_on(prev_lrs, like) * ops.stack_on(ops.foreach_dot(grads, memories), like)
    pull = ops.stack_on(ops.foreach_dot(differences, pulled), like)
    curvature = ops.stack_on(ops.foreach_dot(differences, differences), like)
    return amsgd_terms_from_dots(gaps, pull, curvature, lr=lr, lambd=lambd)


def amsgd_terms(
    grad: Tensor, memory: Tensor, *, gap: Tensor, lr: LearningRate, lambd: float
) -> tuple[Tensor, Tensor]:
    """One tensor's ``(a, b)``: ``(1+lambd) gap - lr <d-g, g+lambd d>`` and ``lr ||d-g||^2``.

    ``gap`` estimates ``f(x_{t-1}) - f(x_t)``; the optimizer uses ``prev_lr * <g, d>`` (§4).
    """
    difference = memory - grad
    return amsgd_terms_from_dots(
        gap,
        ops.dot(difference, grad + lambd * memory),
        ops.dot(difference, difference),
        lr=lr,
        lambd=lambd,
    )


def amsgd_terms_from_dots(
    gap: Tensor, pull: Tensor, curvature: Tensor, *, lr: LearningRate, lambd: float
) -> tuple[Tensor, Tensor]:
    """``(a, b)`` from the gap and the inner products ``pull = <d-g, g+lambd d>`` and
    ``curvature = ||d-g||^2``."""
    return (1 + lambd) * gap - lr * pull, lr * curvature


def amsgd_tensor_step(
    param: Tensor, grad: Tensor, memory: Tensor, beta: Tensor, *, lr: LearningRate, lambd: float
) -> tuple[Tensor, Tensor]:
    """One tensor's new ``(x, d)``: ``d' = ((beta+lambd) d + (1-beta) g) / (1+lambd)``,
    ``x' = x - lr d'``."""
    new_memory = torch.lerp(memory, grad, (1 - beta) / (1 + lambd))
    return param - lr * new_memory, new_memory


def amsgd_update(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffers: list[Tensor],
    betas: Tensor | None,
    *,
    first_steps: int,
    lr: LearningRate,
    lambd: float,
    foreach: bool,
) -> None:
    """Update memories and parameters in place; the first ``first_steps`` take ``d = g``.

    ``betas`` holds one beta per remaining tensor (``None`` if there is none).
    """
    seen = slice(first_steps, None)
    if foreach:
        memories = ops.in_dtype(momentum_buffers[seen], [g.dtype for g in grads[seen]])
        new_memories = list(grads[:first_steps])
        if betas is not None:
            betas = betas.to(grads[first_steps].device)
            weights = list(((1 - betas) / (1 + lambd)).unbind())
            new_memories += torch._foreach_lerp(memories, grads[seen], weights)
        xs = ops.in_dtype(params, [g.dtype for g in grads])
        new_params = torch._foreach_sub(xs, ops.scale(new_memories, lr))
    else:
        new_memories, new_params = [], []
        for index, (param, grad, buffer) in enumerate(zip(params, grads, momentum_buffers)):
            x = param.to(grad.dtype)
            if index < first_steps:
                new_x, new_memory = x - lr * grad, grad
            else:
                beta = betas[index - first_steps].to(grad.device)
                new_x, new_memory = amsgd_tensor_step(
                    x, grad, buffer.to(grad.dtype), beta, lr=lr, lambd=lambd
                )
            new_memories.append(new_memory)
            new_params.append(new_x)
    ops.write_back(momentum_buffers, new_memories)
    ops.write_back(params, new_params)
