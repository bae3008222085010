r"""AM-AdamW: AdamW whose first-moment coefficient is solved at every step (ALGORITHMS.md §5).

Per tensor, with step count :math:`k`, gradient :math:`g`, memory :math:`d` (``exp_avg``,
:math:`d_0 = 0`), second moment :math:`v`, and :math:`\Pi` the product of the tensor's past
betas (:math:`\Pi_0 = 1`):

.. math::

    v &\leftarrow \beta_2 v + (1-\beta_2)\, g^2, \qquad
    P = \big(1 - \beta_{1,\max}\Pi\big)\Big(\sqrt{v / (1-\beta_2^{k})} + \varepsilon\Big), \\
    \Gamma &= \langle g,\; x_{t-1} - x_t\rangle
          = \frac{\eta_{t-1}}{1-\mu\eta_{t-1}}\,\langle g,\; d / P_{t-1} + \mu x\rangle
          \quad\text{(the "displacement" gap)}, \\
    a &= \textstyle\sum \Gamma - \eta\big(\mu\langle x, d-g\rangle
          + \langle d-g,\; M(g + \lambda P d)\rangle\big), \qquad
    b = \textstyle\sum \eta\,\langle d-g,\; M(d-g)\rangle, \qquad M = \frac{1}{P(1+\lambda P)}, \\
    \beta &= \mathrm{select}(a, b, \beta_{1,\max})
          \quad(\beta = \beta_{1,\max} \text{ at } k = 1), \\
    d &\leftarrow d + w\,(g - d), \quad w = \frac{1-\beta}{1 + \lambda P}, \qquad
    x \leftarrow (1 - \mu\eta)\,x - \eta\, d / P, \qquad \Pi \leftarrow \Pi\beta,

with sums over each block of ``scope``. :math:`P` is Adam's bias-corrected denominator, with
the bias of the time-varying EMA approximated by :math:`\beta_{1,\max}` in place of the unknown
current beta; with :math:`\lambda = 0` the first step is Adam's. :math:`P_{t-1}` is rebuilt
from the previous :math:`v` and bias factor, so no extra buffer is stored. With
:math:`\lambda = 0` the term :math:`\lambda P` is 0 even where :math:`P` overflows.

**Nesterov** (``nesterov=True``), in the manner of NAdam with decoupled weight decay: the same
:math:`\beta` and memory, and the step mixes the bias-corrected new memory with the gradient
once more, :math:`x \leftarrow (1 - \mu\eta)\,x - \eta\,\big(d + w\,(b_1 g - d)\big)/P` with
:math:`b_1 = 1 - \beta_{1,\max}\Pi` the bias factor in :math:`P` (so that the gradient enters
unscaled: with :math:`\lambda = 0` the first step is still Adam's).

**Scale-invariant** (``scale_invariant=True``): the pull towards the old direction is measured
in the metric :math:`P` of the proximal term instead of :math:`P^2` (docs/variants.md), which
replaces :math:`\lambda P` by :math:`\lambda` everywhere above: :math:`M = 1/(P(1+\lambda))`,
the pull term is :math:`\langle d-g, M(g + \lambda d)\rangle` and :math:`w = (1-\beta)/(1+\lambda)`.
Then :math:`\beta` and the step do not change when the loss is multiplied by a constant
(with :math:`\varepsilon` scaled alike), as AdamW's do not.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from ._core import tensor_ops as ops
from ._core.batch import LearningRate, ParamBatch, scalar_state
from ._core.checks import check_choice, check_flag, check_learning_rate, check_number
from ._core.optimizer import AMOptimizer
from ._kernels.contract import Kernels
from ._kernels.fused import validate_fused
from .beta import Scope

__all__ = [
    "GAP_ESTIMATES",
    "AMAdamW",
    "amadamw_block_sums",
    "amadamw_preconditioner",
    "amadamw_tensor_step",
    "amadamw_terms",
    "amadamw_terms_from_dots",
    "amadamw_update",
    "compat_gap",
    "displacement_gap",
    "gap_scale",
    "pull_weight",
]

GapEstimate = Literal["displacement", "compat"]
GAP_ESTIMATES: tuple[str, ...] = ("displacement", "compat")


def _kernel_terms(dots: Tensor, group: dict[str, Any]) -> tuple[Tensor, Tensor]:
    gap, decay, pull, curvature = dots
    return amadamw_terms_from_dots(
        gap, decay, pull, curvature, lr=group["lr"], weight_decay=group["weight_decay"]
    )


KERNELS = Kernels(
    name="adamw",
    memory_key="exp_avg",
    second_moment_key="exp_avg_sq",
    scalar_keys=frozenset({"step", "beta", "beta_product", "prev_bias_correction1", "prev_lr"}),
    hyper=lambda group: {
        "lr": group["lr"],
        "cap": group["betas"][0],
        "beta2": group["betas"][1],
        "eps": group["eps"],
        "weight_decay": group["weight_decay"],
        "lambd": group["lambd"],
        "compat_gap": float(group["gap_estimate"] == "compat"),
        "nesterov": float(group["nesterov"]),
        "scale_invariant": float(group["scale_invariant"]),
    },
    dots=4,
    terms_from_dots=_kernel_terms,
)
"""AM-AdamW's fused kernels: the gap (scaled by :func:`gap_scale`), ``<x, d-g>``,
``<M (d-g), g + pull d>``, ``<d-g, M (d-g)>`` (``pull``: :func:`pull_weight`)."""


class AMAdamW(AMOptimizer):
    r"""Adaptive-Memory AdamW: decoupled weight decay, first moment with a solved coefficient.

    Args:
        params: parameters or parameter groups, as for any ``torch.optim`` optimizer.
        lr: learning rate :math:`\eta` (float or one-element Tensor), in AdamW's units.
        betas: ``(beta1_max, beta2)``: the cap on :math:`\beta_t` and the second-moment
            coefficient, both in ``[0, 1)``.
        eps: added to the root of the second moment, ``> 0``.
        weight_decay: decoupled decay :math:`\mu \ge 0` (``lr * weight_decay < 1``).
        lambd: pull :math:`\lambda \ge 0` towards the old direction.
        nesterov: take a NAdam-style look-ahead step with the same beta (module docstring).
        scale_invariant: measure the pull in the metric of the proximal term, so that beta and
            the step do not change when the loss is multiplied by a constant (module
            docstring, docs/variants.md). ``False`` (default) is the paper's model.
        scope: ``"tensor"`` (one beta per parameter tensor), ``"group"`` (one per parameter
            group) or ``"global"`` (one for every group whose scope is ``"global"``).
        gap_estimate: how the function gap :math:`\Gamma \approx f(x_{t-1}) - f(x_t)` is
            estimated: ``"displacement"`` (exact displacement, the spec's default) or
            ``"compat"`` (the public re-implementation's :math:`(1+\mu\eta_t)\eta_{t-1}
            \langle g, d/P_t + \mu x\rangle`).
        maximize: maximise the objective instead (``p.grad`` is left untouched).
        foreach: use the multi-tensor path; ``None`` picks it when all parameters are on CUDA.
        fused: run the step's two passes each as one kernel over all of the group's
            tensors (docs/speed.md): parallel C loops on the CPU, Triton kernels on CUDA.
            ``None`` (default) does so when ``foreach`` is ``None`` and the group allows it
            (contiguous tensors of one device; fp32/fp64 on the CPU with a C compiler;
            fp32/fp64/bf16/fp16 on CUDA with Triton; not under ``torch.compile``), ``True``
            also warns once when it cannot, ``False`` never does.

    The displacement gap rebuilds :math:`x_{t-1} - x_t` from the previous learning rate (kept
    per tensor) and the group's current ``betas``, ``eps`` and ``weight_decay``: if those
    change between two steps, that one step's gap is approximate. With ``nesterov`` it is
    the displacement along the memory (the look-ahead part of the last step is not stored).

    To continue a ``torch.optim.AdamW`` run from its checkpoint, see
    :meth:`load_adamw_state_dict`.

    Example:
        >>> import torch, adamem
        >>> model = torch.nn.Linear(3, 1)
        >>> opt = adamem.AMAdamW(model.parameters(), lr=1e-2)
        >>> for _ in range(3):
        ...     opt.zero_grad()
        ...     model(torch.ones(4, 3)).pow(2).mean().backward()
        ...     opt.step()
        >>> sorted(opt.state[model.weight])[:3]
        ['beta', 'beta_product', 'exp_avg']
    """

    kernels = KERNELS
    _statistic_keys = frozenset(
        {"beta", "beta_product", "prev_bias_correction1", "prev_lr", "step"}
    )
    _state_keys = _statistic_keys | {"exp_avg", "exp_avg_sq"}
    _group_defaults = {
        "scope": "tensor",
        "maximize": False,
        "foreach": None,
        "gap_estimate": "displacement",
        "fused": None,
        "nesterov": False,
        "scale_invariant": False,
    }

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: LearningRate = 1e-3,
        betas: tuple[float, float] = (0.89, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        *,
        lambd: float = 0.1,
        scope: Scope = "tensor",
        gap_estimate: GapEstimate = "displacement",
        nesterov: bool = False,
        scale_invariant: bool = False,
        maximize: bool = False,
        foreach: bool | None = None,
        fused: bool | None = None,
    ) -> None:
        defaults = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            lambd=lambd,
            scope=scope,
            gap_estimate=gap_estimate,
            nesterov=nesterov,
            scale_invariant=scale_invariant,
            maximize=maximize,
            foreach=foreach,
            fused=fused,
        )
        super().__init__(params, defaults)

    def _validate_group(self, group: dict[str, Any]) -> None:
        check_learning_rate(group["lr"])
        betas = group["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"betas must be a pair (beta1_max, beta2), got {betas!r}")
        check_number("betas[0] (beta1_max)", betas[0], 0.0, 1.0, high_open=True)
        check_number("betas[1] (beta2)", betas[1], 0.0, 1.0, high_open=True)
        check_number("eps", group["eps"], 0.0, float("inf"), low_open=True, high_open=True)
        check_number("weight_decay", group["weight_decay"], 0.0, float("inf"), high_open=True)
        check_number("lambd", group["lambd"], 0.0, float("inf"), high_open=True)
        check_choice("gap_estimate", group["gap_estimate"], GAP_ESTIMATES)
        check_flag("nesterov", group["nesterov"])
        check_flag("scale_invariant", group["scale_invariant"])
        validate_fused(group)
        if float(group["lr"]) * group["weight_decay"] >= 1:
            raise ValueError(
                f"lr * weight_decay must be < 1 (the decay factor 1 - lr*weight_decay must stay "
                f"positive), got lr={float(group['lr'])}, weight_decay={group['weight_decay']}"
            )

    def load_adamw_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Continue a ``torch.optim.AdamW`` (or ``Adam``) run: load its ``state_dict``.

        The moments and step counts carry over unchanged, and so do the run's ``lr``,
        ``betas``, ``eps``, ``weight_decay`` and ``maximize`` (``betas[0]`` becomes the cap on
        beta); this optimizer keeps its own ``lambd``, ``scope``, ``gap_estimate``,
        ``nesterov``, ``scale_invariant``, ``foreach`` and ``fused``. The state is set as if
        every past step had taken beta = ``betas[0]``, which is what AdamW did: the product of
        betas and the last bias factor are AdamW's, so the first AM step's bias correction
        continues AdamW's, and its displacement gap is AdamW's last step exactly (taking the
        group's ``lr`` as the last step's). Build this optimizer with the same parameter
        groups; AdamW's ``amsgrad=True`` has no AM counterpart and is refused.

        Example:
            >>> import torch, adamem
            >>> model = torch.nn.Linear(3, 1)
            >>> adamw = torch.optim.AdamW(model.parameters(), lr=1e-2)
            >>> model(torch.ones(4, 3)).sum().backward()
            >>> adamw.step()
            >>> optimizer = adamem.AMAdamW(model.parameters())
            >>> optimizer.load_adamw_state_dict(adamw.state_dict())
            >>> float(optimizer.state[model.weight]["step"]), optimizer.param_groups[0]["lr"]
            (1.0, 0.01)
        """

        def group_settings(saved: dict[str, Any]) -> dict[str, Any]:
            if saved.get("amsgrad"):
                raise ValueError("AdamW with amsgrad=True has no AMAdamW counterpart")
            keys = ("lr", "betas", "eps", "weight_decay", "maximize", "initial_lr")
            return {key: saved[key] for key in keys if key in saved}

        def tensor_state(saved: dict[str, Any], group: dict[str, Any]) -> dict[str, Any]:
            step = float(saved["step"])
            beta1 = float(group["betas"][0])
            return {
                "step": torch.tensor(step),
                "exp_avg": saved["exp_avg"],
                "exp_avg_sq": saved["exp_avg_sq"],
                "beta": torch.tensor(beta1),
                "beta_product": torch.tensor(beta1**step, dtype=torch.float64),
                "prev_bias_correction1": torch.tensor(1 - beta1**step, dtype=torch.float64),
                "prev_lr": torch.tensor(float(group["lr"]), dtype=torch.float64),
            }

        self._load_converted(state_dict, group_settings, tensor_state)

    def _conversion_hint(self) -> str:
        return "; to continue a torch.optim.AdamW run, use load_adamw_state_dict"

    def _beta_cap(self, group: dict[str, Any]) -> float:
        return float(group["betas"][0])

    def effective_momentum(self, beta: Tensor, group: dict[str, Any]) -> Tensor:
        """The weight of the old memory in ``d'``, ``(beta + pull) / (1 + pull)``
        (:func:`pull_weight`). With ``scale_invariant`` it is ``(beta + lambd)/(1 + lambd)``
        for every coordinate; otherwise ``beta`` itself, which the per-coordinate
        ``(beta + lambd*P)/(1 + lambd*P)`` tends to as ``lambd * P -> 0``, the usual regime in
        deep networks (ALGORITHMS.md §5)."""
        if group["scale_invariant"]:
            lambd = group["lambd"]
            return (beta + lambd) / (1.0 + lambd)
        return beta

    def _init_state(self, state: dict[str, Any], param: Tensor, group: dict[str, Any]) -> None:
        state["step"] = scalar_state(0.0, param)
        state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(
            param, memory_format=torch.preserve_format, dtype=self._second_moment_dtype(param)
        )
        state["beta"] = scalar_state(0.0, param)
        state["beta_product"] = scalar_state(1.0, param)
        state["prev_bias_correction1"] = scalar_state(1.0, param)
        state["prev_lr"] = scalar_state(group["lr"], param)

    def _torch_step(self, batch: ParamBatch, foreach: bool) -> _TorchStep:
        return _TorchStep(batch, foreach, self._beta_cap(batch.group))

    @staticmethod
    def _second_moment_dtype(param: Tensor) -> torch.dtype:
        # g*g overflows fp16 for |g| > 256; bf16 has fp32's range.
        return torch.float32 if param.dtype == torch.float16 else param.dtype

    def _state_dtype(self, param: Tensor, key: str) -> torch.dtype | None:
        if key == "exp_avg_sq" and param.dtype == torch.float16:
            return torch.float32
        return super()._state_dtype(param, key)


class _TorchStep:
    """AM-AdamW's step on torch ops: the multi-tensor path (``foreach``) or the reference."""

    solved: Tensor | None = None  # the core solves the betas (StepPlan.solved)

    def __init__(self, batch: ParamBatch, foreach: bool, cap: float) -> None:
        self.batch = batch
        self.foreach = foreach
        self.cap = cap
        self.grads = batch.compute_grads()

    def block_sums(self) -> tuple[Tensor, Tensor] | None:
        batch, group = self.batch, self.batch.group
        return amadamw_block_sums(
            batch.params,
            self.grads,
            *(
                batch.state_list(key)
                for key in (
                    "exp_avg",
                    "exp_avg_sq",
                    "step",
                    "beta_product",
                    "prev_bias_correction1",
                    "prev_lr",
                )
            ),
            first_steps=batch.first_steps,
            lr=group["lr"],
            betas=group["betas"],
            eps=group["eps"],
            weight_decay=group["weight_decay"],
            lambd=group["lambd"],
            scale_invariant=group["scale_invariant"],
            gap_estimate=group["gap_estimate"],
            foreach=self.foreach,
        )

    def apply(self, betas: Tensor | None) -> None:
        batch, group = self.batch, self.batch.group
        like = self.grads[0]
        all_betas = torch.full((batch.first_steps,), self.cap, dtype=like.dtype, device=like.device)
        if betas is not None:
            all_betas = torch.cat([all_betas, betas.to(like.device, like.dtype)])
        amadamw_update(
            batch.params,
            self.grads,
            batch.state_list("exp_avg"),
            batch.state_list("exp_avg_sq"),
            batch.state_list("step"),
            # block_sums set it to this step's bias factor 1 - beta1_max Pi
            batch.state_list("prev_bias_correction1"),
            all_betas,
            lr=group["lr"],
            beta2=group["betas"][1],
            eps=group["eps"],
            weight_decay=group["weight_decay"],
            lambd=group["lambd"],
            nesterov=group["nesterov"],
            scale_invariant=group["scale_invariant"],
            foreach=self.foreach,
        )
        beta_list = list(all_betas.unbind())
        torch._foreach_copy_(batch.state_list("beta"), beta_list)
        torch._foreach_mul_(batch.state_list("beta_product"), beta_list)
        ops.fill(batch.state_list("prev_lr"), group["lr"])


def amadamw_block_sums(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    steps: list[Tensor],
    beta_products: list[Tensor],
    prev_bias_corrections: list[Tensor],
    prev_lrs: list[Tensor],
    *,
    first_steps: int,
    lr: LearningRate,
    betas: tuple[float, float],
    eps: float,
    weight_decay: float,
    lambd: float,
    scale_invariant: bool = False,
    gap_estimate: GapEstimate,
    foreach: bool,
) -> tuple[Tensor, Tensor] | None:
    """Advance ``v`` and the step counts, and return the per-tensor ``(a, b)`` of the tensors
    past their first step (the first ``first_steps`` are not; ``None`` if no tensor is), in
    the compute dtype. Sets ``prev_bias_corrections`` to this step's bias factor, which the
    update reads back (:func:`amadamw_update` recomputes ``P`` from it and the new ``v``)."""
    like = grads[0]
    dtypes = [g.dtype for g in grads]
    inputs = _AdamWInputs(
        xs=ops.in_dtype(params, dtypes),
        grads=grads,
        memories=ops.in_dtype(exp_avgs, dtypes),
        second_moments=exp_avg_sqs,
        step_counts=ops.stack_on(steps, like) + 1,
        bias_corrections1=1 - betas[0] * ops.stack_on(beta_products, like),
        prev_bias_corrections1=ops.stack_on(prev_bias_corrections, like),
        prev_lrs=ops.stack_on(prev_lrs, like),
    )
    hyper = dict(
        lr=lr,
        beta2=betas[1],
        eps=eps,
        mu=weight_decay,
        lambd=lambd,
        scale_invariant=scale_invariant,
        gap_estimate=gap_estimate,
    )
    a_list, b_list = [], []
    if foreach:
        # A bucket at a time: the temporaries stay a few buckets' size, not the group's.
        for bucket in ops.buckets(grads):
            terms = _multi_tensor_block_sums(
                inputs.part(bucket), first_steps=max(first_steps - bucket.start, 0), **hyper
            )
            if terms is not None:
                a_list.append(terms[0])
                b_list.append(terms[1])
    else:
        for index in range(len(grads)):
            terms = _single_tensor_block_sums(inputs, index, first=index < first_steps, **hyper)
            if terms is not None:
                a_list.append(terms[0].reshape(1))
                b_list.append(terms[1].reshape(1))
    torch._foreach_copy_(steps, list(inputs.step_counts.unbind()))
    torch._foreach_copy_(prev_bias_corrections, list(inputs.bias_corrections1.unbind()))
    if not a_list:
        return None
    return torch.cat([a.to(like.device) for a in a_list]), torch.cat(
        [b.to(like.device) for b in b_list]
    )


@dataclass
class _AdamWInputs:
    """One group's tensors (``second_moments``: the stored ``v``, advanced in place; the
    others in the compute dtype), and its per-tensor scalars as 1-D tensors."""

    xs: list[Tensor]
    grads: list[Tensor]
    memories: list[Tensor]
    second_moments: list[Tensor]
    step_counts: Tensor
    bias_corrections1: Tensor
    prev_bias_corrections1: Tensor
    prev_lrs: Tensor

    def part(self, tensors: slice) -> _AdamWInputs:
        """The inputs of the tensors in ``tensors``."""
        return _AdamWInputs(*(field[tensors] for field in vars(self).values()))


def _single_tensor_block_sums(
    inputs: _AdamWInputs,
    index: int,
    *,
    first: bool,
    lr: LearningRate,
    beta2: float,
    eps: float,
    mu: float,
    lambd: float,
    scale_invariant: bool,
    gap_estimate: GapEstimate,
) -> tuple[Tensor, Tensor] | None:
    """The reference: ALGORITHMS.md §4-5 written out for tensor ``index``; advances its
    ``v`` and returns its ``(a, b)``, or ``None`` on its first step."""
    x, g = inputs.xs[index], inputs.grads[index]
    stored_v = inputs.second_moments[index]
    v = stored_v.to(g.dtype)
    k = inputs.step_counts[index]
    new_v, p = amadamw_preconditioner(
        v, g, beta2=beta2, step=k, bias_correction1=inputs.bias_corrections1[index], eps=eps
    )
    terms = None
    if not first:
        d, prev_lr = inputs.memories[index], inputs.prev_lrs[index]
        if gap_estimate == "displacement":
            _, prev_p = amadamw_preconditioner(
                v,
                None,
                beta2=beta2,
                step=k - 1,
                bias_correction1=inputs.prev_bias_corrections1[index],
                eps=eps,
            )
            gap = displacement_gap(x, g, d, prev_p, prev_lr=prev_lr, weight_decay=mu)
        else:
            gap = compat_gap(x, g, d, p, prev_lr=prev_lr, lr=lr, weight_decay=mu)
        terms = amadamw_terms(
            x,
            g,
            d,
            p,
            gap=gap,
            lr=lr,
            weight_decay=mu,
            lambd=lambd,
            scale_invariant=scale_invariant,
        )
    # Only now: v may be the stored tensor itself, and the gap needs the old one.
    ops.write_back([stored_v], [new_v])
    return terms


def amadamw_preconditioner(
    second_moment: Tensor,
    grad: Tensor | None,
    *,
    beta2: float,
    step: Tensor | float,
    bias_correction1: Tensor | float,
    eps: float,
) -> tuple[Tensor, Tensor]:
    """Advance ``v`` with ``grad`` (unless ``None``) and return ``(v, P)`` at step ``k``:
    ``P = (1 - beta1_max Pi) (sqrt(v / (1 - beta2^k)) + eps)``.

    The root is taken before the bias correction, as in torch's AdamW, so that ``v`` near the
    top of the dtype's range does not overflow."""
    v = second_moment if grad is None else beta2 * second_moment + (1 - beta2) * grad * grad
    return v, bias_correction1 * (v.sqrt() / (1 - beta2**step) ** 0.5 + eps)


def displacement_gap(
    x: Tensor,
    grad: Tensor,
    memory: Tensor,
    prev_preconditioner: Tensor,
    *,
    prev_lr: Tensor | float,
    weight_decay: float,
) -> Tensor:
    """``<g, x_{t-1} - x_t>`` with the last step rebuilt from ``P_{t-1}`` (§4, the default)."""
    scale = gap_scale(prev_lr, lr=0.0, weight_decay=weight_decay, gap_estimate="displacement")
    return scale * ops.dot(grad, memory / prev_preconditioner + weight_decay * x)


def compat_gap(
    x: Tensor,
    grad: Tensor,
    memory: Tensor,
    preconditioner: Tensor,
    *,
    prev_lr: Tensor | float,
    lr: LearningRate,
    weight_decay: float,
) -> Tensor:
    """The public re-implementation's gap ``(1 + mu lr) prev_lr <g, d / P_t + mu x>`` (§4)."""
    scale = gap_scale(prev_lr, lr=lr, weight_decay=weight_decay, gap_estimate="compat")
    return scale * ops.dot(grad, memory / preconditioner + weight_decay * x)


def gap_scale(
    prev_lr: Tensor | float,
    *,
    lr: LearningRate,
    weight_decay: float,
    gap_estimate: GapEstimate,
) -> Tensor | float:
    """The factor of ``<g, d / P_last + mu x>`` in the gap: ``prev_lr / (1 - mu prev_lr)``
    for the displacement gap, ``(1 + mu lr) prev_lr`` for the compat gap."""
    mu = weight_decay
    if gap_estimate == "displacement":
        return prev_lr / (1 - mu * prev_lr)
    return (1 + mu * lr) * prev_lr


def amadamw_terms(
    x: Tensor,
    grad: Tensor,
    memory: Tensor,
    preconditioner: Tensor,
    *,
    gap: Tensor | float,
    lr: LearningRate,
    weight_decay: float,
    lambd: float,
    scale_invariant: bool = False,
) -> tuple[Tensor, Tensor]:
    """One tensor's ``(a, b) = (lr num, lr den)`` of §2 with ``Delta = gap``; with
    ``scale_invariant``, of the model whose pull is measured in the metric ``P``."""
    p, difference = preconditioner, memory - grad
    pull = pull_weight(lambd, p, scale_invariant)
    # M (d - g) = (d - g) / P / (1 + pull): dividing twice keeps |g| ~ 1e30 in range.
    metric_difference = difference / p / (1 + pull)
    return amadamw_terms_from_dots(
        gap,
        ops.dot(x, difference),
        ops.dot(metric_difference, grad + pull * memory),
        ops.dot(difference, metric_difference),
        lr=lr,
        weight_decay=weight_decay,
    )


def amadamw_terms_from_dots(
    gap: Tensor,
    decay: Tensor,
    pull: Tensor,
    curvature: Tensor,
    *,
    lr: LearningRate,
    weight_decay: float,
) -> tuple[Tensor, Tensor]:
    """``(a, b)`` from the gap and the inner products ``decay = <x, d-g>``,
    ``pull = <M (d-g), g + pull_weight d>``, ``curvature = <d-g, M (d-g)>``."""
    return gap - lr * (weight_decay * decay + pull), lr * curvature


def pull_weight(
    lambd: float, preconditioner: Tensor, scale_invariant: bool = False
) -> Tensor | float:
    """The pull's weight relative to the proximal term, which every formula of the model
    takes in place of ``lambd P``: ``M = 1 / (P (1 + pull))``, ``w = (1-beta) / (1 + pull)``.

    ``lambd * P`` for the paper's pull, measured in the metric ``P^2``; the scalar ``lambd``
    with ``scale_invariant``, whose pull is measured in ``P`` like the proximal term
    (docs/variants.md). 0 when ``lambd`` is 0, also where ``P`` overflowed to inf: without the
    pull term the model has no ``lambd P`` at all, and ``0 * inf`` would make the step NaN."""
    if lambd == 0 or scale_invariant:
        return float(lambd)
    return lambd * preconditioner


def amadamw_tensor_step(
    x: Tensor,
    grad: Tensor,
    memory: Tensor,
    preconditioner: Tensor,
    beta: Tensor | float,
    *,
    lr: LearningRate,
    weight_decay: float,
    lambd: float,
    nesterov: bool = False,
    scale_invariant: bool = False,
    bias_correction1: Tensor | float = 1.0,
) -> tuple[Tensor, Tensor]:
    """One tensor's new ``(x, d)``: ``d' = lerp(d, g, w)``, ``w = (1-beta) / (1 + pull)``
    (that is ``((1-beta) g + (pull + beta) d) / (1 + pull)``, ``pull`` = :func:`pull_weight`:
    ``lambd P``, or ``lambd`` with ``scale_invariant``),
    ``x' = (1 - weight_decay lr) x - lr d' / P``; with ``nesterov``, ``x'`` takes
    ``lerp(d', bias_correction1 g, w)`` in place of ``d'``."""
    p = preconditioner
    # The lerp form of the update: its weight stays in [0, 1] when P overflows to inf.
    weight = (1 - beta) / (1 + pull_weight(lambd, p, scale_invariant))
    new_memory = torch.lerp(memory, grad, weight)
    direction = torch.lerp(new_memory, bias_correction1 * grad, weight) if nesterov else new_memory
    return (1 - weight_decay * lr) * x - lr * (direction / p), new_memory


def _foreach_preconditioners(
    second_moments: list[Tensor],
    bias_corrections1: Tensor,
    steps: Tensor,
    *,
    beta2: float,
    eps: float,
) -> list[Tensor]:
    """``P`` of each tensor (:func:`amadamw_preconditioner`) with the multi-tensor kernels."""
    roots = ops.foreach_mul_unbound(torch._foreach_sqrt(second_moments), (1 - beta2**steps) ** -0.5)
    torch._foreach_add_(roots, eps)
    return ops.foreach_mul_unbound(roots, bias_corrections1)


def _foreach_pull_weights(
    preconditioners: list[Tensor], lambd: float, scale_invariant: bool
) -> Sequence[Tensor] | float:
    """:func:`pull_weight` of each tensor: ``lambd P`` per tensor, or one float for all of
    them (``lambd`` with ``scale_invariant``, 0 when ``lambd`` is 0)."""
    if lambd == 0 or scale_invariant:
        return float(lambd)
    return torch._foreach_mul(preconditioners, lambd)


def _multi_tensor_block_sums(
    inputs: _AdamWInputs,
    *,
    first_steps: int,
    lr: LearningRate,
    beta2: float,
    eps: float,
    mu: float,
    lambd: float,
    scale_invariant: bool,
    gap_estimate: GapEstimate,
) -> tuple[Tensor, Tensor] | None:
    """The same sums with ``torch._foreach_*`` kernels over the tensors of ``inputs``."""
    like = inputs.grads[0]
    seen = slice(first_steps, None)
    dtypes = [g.dtype for g in inputs.grads]
    old_second_moments = ops.in_dtype(inputs.second_moments, dtypes)
    new_second_moments = torch._foreach_mul(old_second_moments, beta2)
    torch._foreach_addcmul_(new_second_moments, inputs.grads, inputs.grads, value=1 - beta2)
    if first_steps >= len(inputs.grads):
        ops.write_back(inputs.second_moments, new_second_moments)
        return None
    p = _foreach_preconditioners(
        new_second_moments[seen],
        inputs.bias_corrections1[seen],
        inputs.step_counts[seen],
        beta2=beta2,
        eps=eps,
    )

    g, d, x = inputs.grads[seen], inputs.memories[seen], inputs.xs[seen]
    prev_lr = inputs.prev_lrs[seen]
    if gap_estimate == "displacement":
        last_p = _foreach_preconditioners(
            old_second_moments[seen],
            inputs.prev_bias_corrections1[seen],
            inputs.step_counts[seen] - 1,
            beta2=beta2,
            eps=eps,
        )
    else:
        last_p = p
    ops.write_back(inputs.second_moments, new_second_moments)
    del new_second_moments, old_second_moments
    directions = torch._foreach_div(d, last_p)
    del last_p
    if mu != 0:
        torch._foreach_add_(directions, x, alpha=mu)
    scale = gap_scale(prev_lr, lr=lr, weight_decay=mu, gap_estimate=gap_estimate)
    gap = scale * ops.stack_on(ops.foreach_dot(g, directions), like)
    del directions
    differences = torch._foreach_sub(d, g)
    metric_gaps = torch._foreach_div(differences, p)
    pull_weights = _foreach_pull_weights(p, lambd, scale_invariant)
    if not isinstance(pull_weights, float):
        torch._foreach_div_(metric_gaps, torch._foreach_add(pull_weights, 1.0))
        pulled = torch._foreach_add(g, torch._foreach_mul(pull_weights, d))
    elif pull_weights != 0:
        torch._foreach_div_(metric_gaps, 1 + pull_weights)
        pulled = torch._foreach_add(g, torch._foreach_mul(d, pull_weights))
    else:
        pulled = g
    pull = ops.stack_on(ops.foreach_dot(metric_gaps, pulled), like)
    decay = ops.stack_on(ops.foreach_dot(x, differences), like)
    curvature = ops.stack_on(ops.foreach_dot(differences, metric_gaps), like)
    return amadamw_terms_from_dots(gap, decay, pull, curvature, lr=lr, weight_decay=mu)


def amadamw_update(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    steps: list[Tensor],
    bias_corrections1: list[Tensor],
    betas: Tensor,
    *,
    lr: LearningRate,
    beta2: float,
    eps: float,
    weight_decay: float,
    lambd: float,
    nesterov: bool = False,
    scale_invariant: bool = False,
    foreach: bool,
) -> None:
    """``d <- lerp(d, g, w)``, ``w = (1-beta) / (1 + pull)`` (:func:`pull_weight`);
    ``x <- (1-mu lr) x - lr d/P``,
    or with ``nesterov`` ``x <- (1-mu lr) x - lr lerp(d, bc1 g, w) / P``.

    ``P`` is recomputed from the advanced ``v``, the advanced step counts and
    ``bias_corrections1`` (this step's ``1 - beta1_max Pi`` of each tensor), as the kernels do,
    rather than kept from the sums: that would hold a full-size temporary across the phases."""
    like = grads[0]
    dtypes = [g.dtype for g in grads]
    bias_factors = ops.stack_on(bias_corrections1, like)
    step_counts = ops.stack_on(steps, like)
    if not foreach:
        for index, (param, g, d, v) in enumerate(zip(params, grads, exp_avgs, exp_avg_sqs)):
            _, p = amadamw_preconditioner(
                v.to(g.dtype),
                None,
                beta2=beta2,
                step=step_counts[index],
                bias_correction1=bias_factors[index],
                eps=eps,
            )
            new_x, new_memory = amadamw_tensor_step(
                param.to(g.dtype),
                g,
                d.to(g.dtype),
                p,
                betas[index],
                lr=lr,
                weight_decay=weight_decay,
                lambd=lambd,
                nesterov=nesterov,
                scale_invariant=scale_invariant,
                bias_correction1=bias_factors[index],
            )
            # Two writes: under torch.compile one copy into both let the parameter's
            # new value read the memory already overwritten.
            ops.write_back([d], [new_memory])
            ops.write_back([param], [new_x])
        return
    for bucket in ops.buckets(grads):
        g = grads[bucket]
        xs = ops.in_dtype(params[bucket], dtypes[bucket])
        memories = ops.in_dtype(exp_avgs[bucket], dtypes[bucket])
        ps = _foreach_preconditioners(
            ops.in_dtype(exp_avg_sqs[bucket], dtypes[bucket]),
            bias_factors[bucket],
            step_counts[bucket],
            beta2=beta2,
            eps=eps,
        )
        one_minus_betas = 1 - betas[bucket]
        pull_weights = _foreach_pull_weights(ps, lambd, scale_invariant)
        if not isinstance(pull_weights, float):
            weights = torch._foreach_add(pull_weights, 1.0)
            torch._foreach_reciprocal_(weights)
            weights = ops.foreach_mul_unbound(weights, one_minus_betas)
        else:
            weights = list((one_minus_betas / (1 + pull_weights)).unbind())
        new_memories = torch._foreach_lerp(memories, g, weights)
        directions = new_memories
        if nesterov:
            scaled_grads = ops.foreach_mul_unbound(g, bias_factors[bucket])
            directions = torch._foreach_lerp(new_memories, scaled_grads, weights)
            del scaled_grads
        steps_x = ops.scale(torch._foreach_div(directions, ps), lr)
        del directions, ps, weights
        ops.write_back(exp_avgs[bucket], new_memories)
        del new_memories
        new_params = torch._foreach_sub(ops.scale(xs, 1 - weight_decay * lr), steps_x)
        ops.write_back(params[bucket], new_params)
