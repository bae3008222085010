r"""AM-SGD: heavy-ball momentum whose coefficient is solved at every step (ALGORITHMS.md §3).

With gradient :math:`g_t` (plus ``weight_decay`` :math:`\cdot x_t`, coupled L2), memory
:math:`d_t`, learning rate :math:`\eta_t` and the previous one :math:`\eta_{t-1}`, each block
(a tensor, a group or all parameters, per ``scope``) computes

.. math::

    a &= \textstyle\sum \eta_{t-1}\langle g_t, d_t\rangle
          - \frac{\eta_t}{1+\lambda}\langle d_t - g_t,\; g_t + \lambda d_t\rangle, \qquad
    b = \textstyle\sum \frac{\eta_t}{1+\lambda}\,\|d_t - g_t\|^2, \\
    \beta_t &= \mathrm{select}(a, b, \beta_{\max})
          \quad(= \mathrm{clip}(a/b, 0, \beta_{\max}) \text{ when } b > 0), \\
    d_{t+1} &= d_t + w_t\,(g_t - d_t), \quad w_t = \frac{1-\beta_t}{1+\lambda}, \qquad
    x_{t+1} = x_t - \eta_t\, d_{t+1},

and the first step of a tensor takes :math:`d_1 = g_0`. :math:`\beta_t` is the optimal weight
of the memory plane in the proximal two-plane model of §2 (``a`` and ``b`` are :math:`\eta_t`
times its num and den, so blocks with different :math:`\lambda` add up exactly); the weight of
the old direction in the new one is :math:`(\beta_t+\lambda)/(1+\lambda) \in [0.091, 0.909]`
at the defaults.

**Nesterov** (``nesterov=True``): the same :math:`\beta_t` and memory, and the step looks
ahead by mixing the new memory with the gradient once more, as ``torch.optim.SGD`` does in
EMA form: :math:`x_{t+1} = x_t - \eta_t\,(d_{t+1} + w_t\,(g_t - d_{t+1}))`.

**Noise averaging** (``noise_averaging=rho``): each block solves the running average of its
recent models, each scaled to unit size, instead of its current one
(:func:`adamem.beta.averaged_select`, docs/variants.md).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim.optimizer import required

from ._core import tensor_ops as ops
from ._core.batch import LearningRate, ParamBatch, scalar_state
from ._core.checks import check_flag, check_learning_rate, check_number
from ._core.optimizer import AMOptimizer
from ._kernels.contract import Kernels
from ._kernels.fused import validate_fused
from .beta import Scope

__all__ = [
    "AMSGD",
    "amsgd_block_sums",
    "amsgd_memory_step",
    "amsgd_memory_steps",
    "amsgd_tensor_step",
    "amsgd_terms",
    "amsgd_terms_from_dots",
    "amsgd_update",
]


def _kernel_terms(dots: Tensor, group: dict[str, Any]) -> tuple[Tensor, Tensor]:
    gap, pull, curvature = dots
    return amsgd_terms_from_dots(gap, pull, curvature, lr=group["lr"], lambd=group["lambd"])


KERNELS = Kernels(
    name="sgd",
    memory_key="momentum_buffer",
    second_moment_key=None,
    scalar_keys=frozenset({"beta", "prev_lr"}),
    hyper=lambda group: {
        "lr": group["lr"],
        "cap": group["beta_max"],
        "weight_decay": group["weight_decay"],
        "lambd": group["lambd"],
        "nesterov": float(group["nesterov"]),
    },
    dots=3,
    terms_from_dots=_kernel_terms,
)
"""AM-SGD's fused kernels: the gap ``prev_lr <g, d>``, ``<d-g, g+lambd d>``, ``||d-g||^2``."""


class EMAMemory(AMOptimizer):
    """What AM-SGD and the optimizers built on its memory share: the memory
    (``momentum_buffer``, in EMA form), the last learning rate for the next gap, beta capped by
    ``beta_max``, and the effective momentum ``(beta + lambd) / (1 + lambd)``."""

    _statistic_keys = frozenset({"beta", "prev_lr"})
    _state_keys = frozenset({"momentum_buffer", "beta", "prev_lr"})

    def _beta_cap(self, group: dict[str, Any]) -> float:
        return float(group["beta_max"])

    def effective_momentum(self, beta: Tensor, group: dict[str, Any]) -> Tensor:
        lambd = group["lambd"]
        return (beta + lambd) / (1.0 + lambd)

    def _init_state(self, state: dict[str, Any], param: Tensor, group: dict[str, Any]) -> None:
        state["momentum_buffer"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        state["prev_lr"] = scalar_state(group["lr"], param)
        state["beta"] = scalar_state(0.0, param)


class AMSGD(EMAMemory):
    r"""Adaptive-Memory SGD: heavy ball in EMA form with a closed-form momentum per step.

    Args:
        params: parameters or parameter groups, as for any ``torch.optim`` optimizer.
        lr: learning rate :math:`\eta` in EMA units (float or one-element Tensor). At steady
            state the step is ``lr * g``, whereas ``torch.optim.SGD(momentum=m)`` steps
            ``lr * g / (1 - m)``: ``AMSGD(lr=0.1)`` moves like ``SGD(lr=0.01, momentum=0.9)``.
            Required, here or in every parameter group.
        beta_max: cap on :math:`\beta_t`, in ``[0, 1)``.
        lambd: pull :math:`\lambda \ge 0` towards the old direction; the effective momentum is
            :math:`(\beta+\lambda)/(1+\lambda)`.
        scope: ``"tensor"`` (one beta per parameter tensor), ``"group"`` (one per parameter
            group) or ``"global"`` (one for every group whose scope is ``"global"``).
        weight_decay: coupled L2 penalty: the model is built for the loss plus
            ``weight_decay/2 * ||x||^2``.
        nesterov: take a Nesterov look-ahead step with the same beta (module docstring).
        noise_averaging: ``None`` (default) solves each step's model, as the paper does; a
            factor ``rho`` in ``[0, 1)`` solves the average of the block's recent models
            instead, each scaled to unit size, with weights ``rho**age`` (docs/variants.md).
            For minibatch training where beta jumps with the gradient noise; 0.9 is the
            tested value.
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

    To continue a ``torch.optim.SGD`` run from its checkpoint, see :meth:`load_sgd_state_dict`.

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

    kernels = KERNELS
    _statistic_keys = EMAMemory._statistic_keys | frozenset(AMOptimizer.AVERAGE_KEYS)
    _group_defaults = {
        "scope": "tensor",
        "maximize": False,
        "foreach": None,
        "weight_decay": 0.0,
        "fused": None,
        "nesterov": False,
        "noise_averaging": None,
    }

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: LearningRate = required,
        *,
        beta_max: float = 0.9,
        lambd: float = 0.1,
        scope: Scope = "tensor",
        weight_decay: float = 0.0,
        nesterov: bool = False,
        noise_averaging: float | None = None,
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
            nesterov=nesterov,
            noise_averaging=noise_averaging,
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
        check_flag("nesterov", group["nesterov"])
        if group["noise_averaging"] is not None:
            check_number("noise_averaging", group["noise_averaging"], 0.0, 1.0, high_open=True)
        check_flag("maximize", group["maximize"])
        validate_fused(group)

    def load_sgd_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Continue a ``torch.optim.SGD`` run with momentum: load its ``state_dict``.

        ``SGD(lr, momentum=m, dampening=t)`` keeps ``b <- m b + (1-t) g`` and steps ``lr b``;
        AM-SGD keeps the memory in gradient units. So the momentum buffer becomes the memory
        ``d = b (1-m) / (1-t)`` and the learning rate (also a scheduler's ``initial_lr`` in
        the group) becomes ``lr (1-t) / (1-m)``: the last step ``lr b`` is the same
        displacement, which the next beta's gap uses. ``weight_decay`` (coupled, as in SGD),
        ``nesterov`` and ``maximize`` carry over; this optimizer keeps its own ``beta_max``,
        ``lambd``, ``scope``, ``foreach`` and ``fused``. A tensor without a momentum buffer
        (``momentum=0``, or no step yet) starts afresh. A learning-rate scheduler resumed
        from its own checkpoint still holds SGD's units: build it anew for this optimizer.

        Example:
            >>> import torch, adamem
            >>> model = torch.nn.Linear(3, 1)
            >>> sgd = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
            >>> model(torch.ones(4, 3)).sum().backward()
            >>> sgd.step()
            >>> optimizer = adamem.AMSGD(model.parameters(), lr=0.1)
            >>> optimizer.load_sgd_state_dict(sgd.state_dict())
            >>> round(optimizer.param_groups[0]["lr"], 12)
            0.1
        """

        def units(group: dict[str, Any]) -> float:
            momentum = group["momentum"]
            return (1 - group["dampening"]) / (1 - momentum) if momentum else 1.0

        def group_settings(saved: dict[str, Any]) -> dict[str, Any]:
            settings = {key: saved[key] for key in ("weight_decay", "nesterov", "maximize")}
            for key in ("lr", "initial_lr"):
                if key in saved:
                    settings[key] = saved[key] * units(saved)
            return settings

        def tensor_state(saved: dict[str, Any], group: dict[str, Any]) -> dict[str, Any]:
            buffer = saved.get("momentum_buffer")
            if buffer is None:
                return {}
            lr = group["lr"] * units(group)
            return {
                "momentum_buffer": buffer / units(group),
                "prev_lr": torch.tensor(float(lr), dtype=torch.float64),
                "beta": torch.tensor(0.0),
            }

        self._load_converted(state_dict, group_settings, tensor_state)

    def _conversion_hint(self) -> str:
        return "; to continue a torch.optim.SGD run, use load_sgd_state_dict"

    def _init_state(self, state: dict[str, Any], param: Tensor, group: dict[str, Any]) -> None:
        super()._init_state(state, param, group)
        if group["noise_averaging"] is not None:
            for key in self.AVERAGE_KEYS:
                state[key] = scalar_state(0.0, param)

    def _torch_step(self, batch: ParamBatch, foreach: bool) -> _TorchStep:
        return _TorchStep(batch, foreach, batch.group["weight_decay"])


class _TorchStep:
    """AM-SGD's step on torch ops: the multi-tensor path (``foreach``) or the reference.

    AM-Muon keeps the same memory and sums and replaces :meth:`apply`."""

    solved: Tensor | None = None  # the core solves the betas (StepPlan.solved)

    def __init__(self, batch: ParamBatch, foreach: bool, coupled_weight_decay: float) -> None:
        self.batch = batch
        self.foreach = foreach
        self.grads = batch.compute_grads()
        if coupled_weight_decay != 0:  # L2: the model is built for the regularised loss
            params = ops.in_dtype(batch.params, [g.dtype for g in self.grads])
            self.grads = torch._foreach_add(self.grads, params, alpha=coupled_weight_decay)

    def block_sums(self) -> tuple[Tensor, Tensor] | None:
        batch = self.batch
        if len(batch) == batch.first_steps:
            return None
        seen = slice(batch.first_steps, None)
        return amsgd_block_sums(
            self.grads[seen],
            batch.state_list("momentum_buffer", batch.first_steps),
            batch.state_list("prev_lr", batch.first_steps),
            lr=batch.group["lr"],
            lambd=batch.group["lambd"],
            foreach=self.foreach,
        )

    def apply(self, betas: Tensor | None) -> None:
        batch = self.batch
        amsgd_update(
            batch.params,
            self.grads,
            batch.state_list("momentum_buffer"),
            betas,
            first_steps=batch.first_steps,
            lr=batch.group["lr"],
            lambd=batch.group["lambd"],
            nesterov=batch.group["nesterov"],
            foreach=self.foreach,
        )
        self.record(betas)

    def record(self, betas: Tensor | None) -> None:
        """Keep the solved betas and this step's lr (the next gap's ``prev_lr``) in the state."""
        batch = self.batch
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
    memory_dots, pulls, curvatures = [], [], []
    # A bucket at a time: the temporaries stay a bucket's size, not the group's.
    for bucket in ops.buckets(grads):
        g, d = grads[bucket], memories[bucket]
        differences = torch._foreach_sub(d, g)
        pulled = torch._foreach_add(g, d, alpha=lambd)
        memory_dots += ops.foreach_dot(g, d)
        pulls += ops.foreach_dot(differences, pulled)
        curvatures += ops.foreach_dot(differences, differences)
    gaps = ops.stack_on(prev_lrs, like) * ops.stack_on(memory_dots, like)
    pull, curvature = ops.stack_on(pulls, like), ops.stack_on(curvatures, like)
    return amsgd_terms_from_dots(gaps, pull, curvature, lr=lr, lambd=lambd)


def amsgd_terms(
    grad: Tensor, memory: Tensor, *, gap: Tensor, lr: LearningRate, lambd: float
) -> tuple[Tensor, Tensor]:
    """One tensor's ``(a, b)``: ``gap - lr <d-g, g+lambd d> / (1+lambd)`` and
    ``lr ||d-g||^2 / (1+lambd)`` (§2 with ``P = I``).

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
    ``curvature = ||d-g||^2``.

    These are the model's ``lr * num`` and ``lr * den`` (§2 with ``P = I``), not the §3 form
    multiplied through by ``1 + lambd``: the ratio is the same, but only this form adds up
    over blocks with different ``lambd`` (a ``scope="global"`` block of several groups)."""
    scale = lr / (1 + lambd)
    return gap - scale * pull, scale * curvature


def amsgd_tensor_step(
    param: Tensor,
    grad: Tensor,
    memory: Tensor,
    beta: Tensor,
    *,
    lr: LearningRate,
    lambd: float,
    nesterov: bool = False,
) -> tuple[Tensor, Tensor]:
    """One tensor's new ``(x, d)``: ``d' = lerp(d, g, w)``, ``w = (1-beta) / (1+lambd)``
    (that is ``((beta+lambd) d + (1-beta) g) / (1+lambd)``), ``x' = x - lr d'``, or with
    ``nesterov`` ``x' = x - lr lerp(d', g, w)``."""
    new_memory, direction = amsgd_memory_step(grad, memory, beta, lambd=lambd, nesterov=nesterov)
    return param - lr * direction, new_memory


def amsgd_memory_step(
    grad: Tensor, memory: Tensor, beta: Tensor, *, lambd: float, nesterov: bool = False
) -> tuple[Tensor, Tensor]:
    """One tensor's new memory ``d' = lerp(d, g, w)``, ``w = (1-beta) / (1+lambd)``, and its
    step direction: ``d'``, or with ``nesterov`` the look-ahead ``lerp(d', g, w)``."""
    weight = (1 - beta) / (1 + lambd)
    new_memory = torch.lerp(memory, grad, weight)
    direction = torch.lerp(new_memory, grad, weight) if nesterov else new_memory
    return new_memory, direction


def amsgd_memory_steps(
    grads: list[Tensor], memories: list[Tensor], weights: list[Tensor], *, nesterov: bool
) -> tuple[list[Tensor], list[Tensor]]:
    """:func:`amsgd_memory_step` for a list of tensors, given each one's ``w``."""
    new_memories = list(torch._foreach_lerp(memories, grads, weights))
    if nesterov:
        return new_memories, list(torch._foreach_lerp(new_memories, grads, weights))
    return new_memories, new_memories


def amsgd_update(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffers: list[Tensor],
    betas: Tensor | None,
    *,
    first_steps: int,
    lr: LearningRate,
    lambd: float,
    nesterov: bool = False,
    foreach: bool,
) -> None:
    """Update memories and parameters in place; the first ``first_steps`` take ``d = g``.

    ``betas`` holds one beta per remaining tensor (``None`` if there is none).
    """
    if betas is not None:
        betas = betas.to(grads[first_steps].device)
    if not foreach:
        for index, (param, grad, buffer) in enumerate(zip(params, grads, momentum_buffers)):
            x = param.to(grad.dtype)
            if index < first_steps:
                new_x, new_memory = x - lr * grad, grad
            else:
                beta = betas[index - first_steps]
                new_x, new_memory = amsgd_tensor_step(
                    x, grad, buffer.to(grad.dtype), beta, lr=lr, lambd=lambd, nesterov=nesterov
                )
            # Two writes: under torch.compile one copy into both let the parameter's
            # new value read the memory already overwritten.
            ops.write_back([buffer], [new_memory])
            ops.write_back([param], [new_x])
        return
    weights = None if betas is None else list(((1 - betas) / (1 + lambd)).unbind())
    for bucket in ops.buckets(grads):
        firsts = slice(bucket.start, max(min(first_steps, bucket.stop), bucket.start))
        seen = slice(firsts.stop, bucket.stop)
        g = grads[seen]
        memories = ops.in_dtype(momentum_buffers[seen], [grad.dtype for grad in g])
        new_memories = list(grads[firsts])
        directions = list(grads[firsts])
        if g:
            seen_weights = weights[seen.start - first_steps : seen.stop - first_steps]
            seen_memories, seen_directions = amsgd_memory_steps(
                g, memories, seen_weights, nesterov=nesterov
            )
            new_memories += seen_memories
            directions += seen_directions
        ops.write_back(momentum_buffers[bucket], new_memories)
        xs = ops.in_dtype(params[bucket], [grad.dtype for grad in grads[bucket]])
        new_params = torch._foreach_sub(xs, ops.scale(directions, lr))
        ops.write_back(params[bucket], new_params)
