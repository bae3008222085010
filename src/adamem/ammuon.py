r"""AM-Muon: Muon whose momentum coefficient is solved at every step (docs/variants.md).

Muon keeps a momentum of the gradients of each weight matrix and steps along its orthogonal
factor. AM-Muon keeps AM-SGD's memory and solves its :math:`\beta_t` from AM-SGD's two-plane
model, in the Euclidean geometry where the memory lives: with gradient :math:`g_t`, memory
:math:`d_t`, learning rate :math:`\eta_t` and the previous one :math:`\eta_{t-1}`, each block
(a matrix, a group or all matrices, per ``scope``) computes

.. math::

    a &= \textstyle\sum \eta_{t-1}\langle g_t, d_t\rangle
          - \frac{\eta_t}{1+\lambda}\langle d_t - g_t,\; g_t + \lambda d_t\rangle, \qquad
    b = \textstyle\sum \frac{\eta_t}{1+\lambda}\,\|d_t - g_t\|^2, \\
    \beta_t &= \mathrm{select}(a, b, \beta_{\max}), \qquad
    d_{t+1} = d_t + w_t\,(g_t - d_t), \quad w_t = \frac{1-\beta_t}{1+\lambda},

and then takes Muon's step from the new memory (or, with ``nesterov``, from the look-ahead
:math:`u_t = d_{t+1} + w_t\,(g_t - d_{t+1})`):

.. math::

    x_{t+1} = (1 - \eta_t\mu)\,x_t - \eta_t\,s(m, n)\;\mathrm{NS}_k(u_t),

where :math:`\mathrm{NS}_k` is ``ns_steps`` Newton-Schulz iterations towards the orthogonal
factor :math:`UV^\top` of :math:`u_t = U\Sigma V^\top`, :math:`\mu` is the decoupled weight
decay and :math:`s(m, n)` the shape factor of ``adjust_lr_fn``. The first step of a matrix
takes :math:`d_1 = g_0`, as Muon's does up to a scale that the orthogonalisation removes.

The gap :math:`\eta_{t-1}\langle g_t, d_t\rangle` is the model's own estimate of
:math:`f(x_{t-1}) - f(x_t)` for a step of :math:`-\eta_{t-1}d_t` (ALGORITHMS.md §4), not the
orthogonalised step taken: a, b and so :math:`\beta_t` then keep the units of the gradient,
and :math:`\beta_t`, like Muon's step, does not change when the loss is multiplied by a
constant. docs/variants.md derives this choice and compares it with the alternatives.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from . import amsgd
from ._core import tensor_ops as ops
from ._core.batch import LearningRate, ParamBatch, compute_dtype
from ._core.checks import check_choice, check_flag, check_learning_rate, check_number
from ._core.distributed import is_dtensor
from .amsgd import EMAMemory, amsgd_memory_step, amsgd_memory_steps
from .beta import Scope

__all__ = ["AMMuon", "muon_lr_factor", "orthogonalize"]

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
"""Muon's quintic Newton-Schulz coefficients (those of ``torch.optim.Muon``)."""

ADJUST_LR_FNS = ("original", "match_rms_adamw")


def orthogonalize(
    matrices: Tensor,
    coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
    steps: int = 5,
    eps: float = 1e-7,
) -> Tensor:
    r"""Approximate the orthogonal factor :math:`UV^\top` of a matrix (shape ``(m, n)``) or
    of each of a stack of them (``(k, m, n)``) by ``steps`` Newton-Schulz iterations, in
    ``matrices``' dtype. A single matrix takes the same operations as ``torch.optim.Muon``.

    Each matrix is divided by its Frobenius norm (at least ``eps``), which puts every singular
    value in ``[0, 1]``; then, on the wide orientation, :math:`X \leftarrow aX + (bA + cA^2)X`
    with :math:`A = XX^\top`. Muon's coefficients push singular values into roughly
    ``[0.7, 1.2]`` in 5 steps rather than converge to 1 (they favour speed);
    ``(15/8, -10/8, 3/8)`` converges to :math:`UV^\top`.
    """
    a, b, c = coefficients
    tall = matrices.size(-2) > matrices.size(-1)
    x = matrices.mT if tall else matrices
    x = x / torch.linalg.matrix_norm(x, keepdim=True).clamp(min=eps)
    multiply_add = torch.addmm if x.dim() == 2 else torch.baddbmm
    for _ in range(steps):
        gram = x @ x.mT
        x = multiply_add(x, multiply_add(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.mT if tall else x


def muon_lr_factor(shape: torch.Size | tuple[int, ...], adjust_lr_fn: str | None) -> float:
    """The factor ``s(m, n)`` on a ``(m, n)`` matrix's step: ``sqrt(max(1, m/n))`` for
    ``None``/``"original"``, ``0.2 sqrt(max(m, n))`` for ``"match_rms_adamw"`` (an update with
    AdamW's RMS, so AdamW's lr and weight decay carry over), as in ``torch.optim.Muon``."""
    rows, cols = shape[:2]
    if adjust_lr_fn == "match_rms_adamw":
        return 0.2 * math.sqrt(max(rows, cols))
    return math.sqrt(max(1.0, rows / cols))


class AMMuon(EMAMemory):
    r"""Adaptive-Memory Muon: Muon for 2-D weight matrices with a closed-form momentum per step.

    Use it for the hidden weight matrices of a network and :class:`adamem.AMAdamW` for the
    rest (embeddings, the output head, norms, biases): :func:`adamem.muon_param_groups`
    splits a model so.

    Args:
        params: 2-D parameters or parameter groups of them.
        lr: learning rate :math:`\eta` (float or one-element Tensor), as ``torch.optim.Muon``'s.
        weight_decay: decoupled weight decay :math:`\mu`: each step multiplies the matrix by
            :math:`1 - \eta\mu`.
        beta_max: cap on :math:`\beta_t`, in ``[0, 1)``; it takes the place of Muon's
            ``momentum`` (default 0.95 as there).
        lambd: pull :math:`\lambda \ge 0` towards the old direction; the effective momentum is
            :math:`(\beta+\lambda)/(1+\lambda)`.
        scope: ``"tensor"`` (one beta per matrix), ``"group"`` or ``"global"``.
        nesterov: orthogonalise the Nesterov look-ahead instead of the memory (default, as in
            ``torch.optim.Muon``).
        ns_coefficients: the Newton-Schulz coefficients ``(a, b, c)`` (:func:`orthogonalize`).
        eps: lower bound on the norm a matrix is divided by before the iterations.
        ns_steps: Newton-Schulz iterations, 1 to 99.
        adjust_lr_fn: ``None``/``"original"`` or ``"match_rms_adamw"``
            (:func:`muon_lr_factor`).
        ns_dtype: dtype of the iterations. ``None`` (default): bf16, as ``torch.optim.Muon``
            (its matrix products are the fastest on GPUs and on CPUs with bf16 instructions),
            and fp64 for fp64 matrices. ``torch.float32`` orthogonalises more accurately, at
            about twice the cost.
        maximize: maximise the objective instead (``p.grad`` is left untouched).
        foreach: memories by multi-tensor ops and, on CUDA, one batched orthogonalisation per
            matrix shape; ``None`` picks it when all matrices are on CUDA.

    After a step, ``optimizer.state[p]["beta"]`` holds the beta of ``p``'s block (0 before
    the second step). Under FSDP2/DTensor each sharded matrix is gathered for its
    orthogonalisation (docs/distributed.md). To continue a ``torch.optim.Muon`` run, see
    :meth:`load_muon_state_dict`.

    Example:
        >>> import torch, adamem
        >>> torch.manual_seed(0) and None
        >>> layer = torch.nn.Linear(4, 3, bias=False)
        >>> opt = adamem.AMMuon(layer.parameters(), lr=0.02)
        >>> for _ in range(3):
        ...     opt.zero_grad()
        ...     layer(torch.randn(8, 4)).pow(2).mean().backward()
        ...     opt.step()
        >>> 0.0 <= float(opt.state[layer.weight]["beta"]) <= 0.95
        True
    """

    kernels = None  # no fused kernels: the orthogonalisation's matrix products dominate
    _group_defaults = {"scope": "tensor", "maximize": False, "foreach": None, "ns_dtype": None}

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: LearningRate = 1e-3,
        *,
        weight_decay: float = 0.1,
        beta_max: float = 0.95,
        lambd: float = 0.1,
        scope: Scope = "tensor",
        nesterov: bool = True,
        ns_coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
        eps: float = 1e-7,
        ns_steps: int = 5,
        adjust_lr_fn: str | None = None,
        ns_dtype: torch.dtype | None = None,
        maximize: bool = False,
        foreach: bool | None = None,
    ) -> None:
        defaults = dict(
            lr=lr,
            weight_decay=weight_decay,
            beta_max=beta_max,
            lambd=lambd,
            scope=scope,
            nesterov=nesterov,
            ns_coefficients=ns_coefficients,
            eps=eps,
            ns_steps=ns_steps,
            adjust_lr_fn=adjust_lr_fn,
            ns_dtype=ns_dtype,
            maximize=maximize,
            foreach=foreach,
        )
        super().__init__(params, defaults)

    def _validate_group(self, group: dict[str, Any]) -> None:
        check_learning_rate(group["lr"])
        check_number("weight_decay", group["weight_decay"], 0.0, float("inf"), high_open=True)
        check_number("beta_max", group["beta_max"], 0.0, 1.0, high_open=True)
        check_number("lambd", group["lambd"], 0.0, float("inf"), high_open=True)
        check_flag("nesterov", group["nesterov"])
        coefficients = group["ns_coefficients"]
        if not (isinstance(coefficients, (tuple, list)) and len(coefficients) == 3):
            raise ValueError(
                f"ns_coefficients must be three numbers (a, b, c), got {coefficients!r}"
            )
        for name, value in zip("abc", coefficients):
            check_number(
                f"ns_coefficients[{name!r}]",
                value,
                -math.inf,
                math.inf,
                low_open=True,
                high_open=True,
            )
        check_number("eps", group["eps"], 0.0, float("inf"), low_open=True, high_open=True)
        steps = group["ns_steps"]
        if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps < 100:
            raise ValueError(f"ns_steps must be an int in [1, 99], got {steps!r}")
        if group["adjust_lr_fn"] is not None:
            check_choice("adjust_lr_fn", group["adjust_lr_fn"], ADJUST_LR_FNS)
        ns_dtype = group["ns_dtype"]
        if ns_dtype is not None and not (
            isinstance(ns_dtype, torch.dtype) and ns_dtype.is_floating_point
        ):
            raise TypeError(f"ns_dtype must be None or a floating point dtype, got {ns_dtype!r}")
        for param in group["params"]:
            if param.is_complex():
                raise TypeError("AMMuon does not support complex parameters")
            if param.ndim != 2:
                raise ValueError(
                    f"AMMuon optimises 2-D weight matrices, got a parameter of shape "
                    f"{tuple(param.shape)}; give the others to AMAdamW "
                    "(adamem.muon_param_groups splits a model so)"
                )

    def load_muon_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Continue a ``torch.optim.Muon`` run: load its ``state_dict``.

        Muon's buffer ``B <- lerp(B, g, 1 - momentum)`` is a memory in AM's units already, so
        it becomes the memory as it is; the last lr becomes the next gap's ``prev_lr``. The
        learning rate (and a scheduler's ``initial_lr``), ``weight_decay``, ``nesterov``,
        ``ns_coefficients``, ``eps``, ``ns_steps`` and ``adjust_lr_fn`` carry over; this
        optimizer keeps its own ``beta_max``, ``lambd``, ``scope``, ``ns_dtype``, ``maximize``
        and ``foreach``.

        Example:
            >>> import torch, adamem
            >>> layer = torch.nn.Linear(3, 2, bias=False)
            >>> muon = torch.optim.Muon(layer.parameters(), lr=0.02)
            >>> layer(torch.ones(4, 3)).sum().backward()
            >>> muon.step()
            >>> optimizer = adamem.AMMuon(layer.parameters())
            >>> optimizer.load_muon_state_dict(muon.state_dict())
            >>> optimizer.param_groups[0]["lr"]
            0.02
        """
        carried = ("lr", "initial_lr", "weight_decay", "nesterov", "ns_coefficients", "eps")
        carried += ("ns_steps", "adjust_lr_fn")

        def group_settings(saved: dict[str, Any]) -> dict[str, Any]:
            return {key: saved[key] for key in carried if key in saved}

        def tensor_state(saved: dict[str, Any], group: dict[str, Any]) -> dict[str, Any]:
            buffer = saved.get("momentum_buffer")
            if buffer is None:
                return {}
            return {
                "momentum_buffer": buffer,
                "prev_lr": torch.tensor(float(group["lr"]), dtype=torch.float64),
                "beta": torch.tensor(0.0),
            }

        self._load_converted(state_dict, group_settings, tensor_state)

    def _conversion_hint(self) -> str:
        return "; to continue a torch.optim.Muon run, use load_muon_state_dict"

    def _torch_step(self, batch: ParamBatch, foreach: bool) -> _TorchStep:
        return _TorchStep(batch, foreach)


class _TorchStep(amsgd._TorchStep):
    """AM-SGD's memory and sums (Muon's decay is decoupled: no L2 term), then Muon's step."""

    def __init__(self, batch: ParamBatch, foreach: bool) -> None:
        super().__init__(batch, foreach, coupled_weight_decay=0.0)

    def apply(self, betas: Tensor | None) -> None:
        batch, group = self.batch, self.batch.group
        memories = batch.state_list("momentum_buffer")
        new_memories, directions = ammuon_memories(
            self.grads,
            memories,
            betas,
            first_steps=batch.first_steps,
            lambd=group["lambd"],
            nesterov=group["nesterov"],
            foreach=self.foreach,
        )
        ops.write_back(memories, new_memories)
        full = [_gather(direction, state) for direction, state in zip(directions, batch.states)]
        orthogonal = orthogonalize_all(
            full,
            coefficients=tuple(group["ns_coefficients"]),
            steps=group["ns_steps"],
            eps=group["eps"],
            dtype=group["ns_dtype"],
            # Stacking saves kernel launches on GPUs; on the CPU, batched products are slower
            # than one matrix at a time (which also matches torch's Muon bit for bit).
            batched=self.foreach and full[0].is_cuda,
        )
        local = [_local_part(o, state) for o, state in zip(orthogonal, batch.states)]
        muon_update(
            batch.params,
            local,
            lr=group["lr"],
            weight_decay=group["weight_decay"],
            factors=[muon_lr_factor(o.shape, group["adjust_lr_fn"]) for o in full],
        )
        self.record(betas)


def ammuon_memories(
    grads: list[Tensor],
    momentum_buffers: list[Tensor],
    betas: Tensor | None,
    *,
    first_steps: int,
    lambd: float,
    nesterov: bool,
    foreach: bool,
) -> tuple[list[Tensor], list[Tensor]]:
    """The new memories and the directions to orthogonalise (AM-SGD's, in the compute dtype);
    the first ``first_steps`` tensors take ``d = g``."""
    memories = ops.in_dtype(momentum_buffers, [g.dtype for g in grads])
    new_memories, directions = list(grads[:first_steps]), list(grads[:first_steps])
    seen_grads, seen_memories = grads[first_steps:], memories[first_steps:]
    if not seen_grads:
        return new_memories, directions
    betas = betas.to(seen_grads[0].device)
    if foreach:
        weights = list(((1 - betas) / (1 + lambd)).unbind())
        seen = amsgd_memory_steps(seen_grads, seen_memories, weights, nesterov=nesterov)
        return new_memories + seen[0], directions + seen[1]
    for grad, memory, beta in zip(seen_grads, seen_memories, betas.unbind()):
        new_memory, direction = amsgd_memory_step(
            grad, memory, beta, lambd=lambd, nesterov=nesterov
        )
        new_memories.append(new_memory)
        directions.append(direction)
    return new_memories, directions


def iteration_dtype(ns_dtype: torch.dtype | None, matrix_dtype: torch.dtype) -> torch.dtype:
    """The dtype the orthogonalisation of a ``matrix_dtype`` matrix runs in: ``ns_dtype``, or
    by default bf16 (fp64 for fp64 matrices)."""
    if ns_dtype is not None:
        return ns_dtype
    return torch.float64 if matrix_dtype == torch.float64 else torch.bfloat16


def orthogonalize_all(
    matrices: list[Tensor],
    *,
    coefficients: tuple[float, float, float],
    steps: int,
    eps: float,
    dtype: torch.dtype | None,
    batched: bool,
) -> list[Tensor]:
    """:func:`orthogonalize` each matrix in :func:`iteration_dtype`, returned in its own dtype;
    ``batched`` stacks the matrices of one shape, dtype and device into one call."""
    if not batched:
        return [
            orthogonalize(m.to(iteration_dtype(dtype, m.dtype)), coefficients, steps, eps).to(
                m.dtype
            )
            for m in matrices
        ]
    by_kind: dict[tuple, list[int]] = {}
    for index, matrix in enumerate(matrices):
        by_kind.setdefault((matrix.shape, matrix.dtype, matrix.device), []).append(index)
    result: list[Tensor] = list(matrices)  # each entry replaced below
    for (_, matrix_dtype, _), indices in by_kind.items():
        stacked = torch.stack([matrices[i] for i in indices])
        stacked = stacked.to(iteration_dtype(dtype, matrix_dtype))
        for index, o in zip(indices, orthogonalize(stacked, coefficients, steps, eps)):
            result[index] = o.to(matrix_dtype)
    return result


def muon_update(
    params: list[Tensor],
    orthogonal: list[Tensor],
    *,
    lr: LearningRate,
    weight_decay: float,
    factors: list[float],
) -> None:
    """``x <- (1 - lr weight_decay) x - lr factor O`` for each matrix, in the compute dtype
    (in place: on the parameters when they are in it; ``orthogonal`` is scaled in place)."""
    xs = ops.in_dtype(params, [compute_dtype(p) for p in params])
    if weight_decay != 0:
        torch._foreach_mul_(xs, 1 - lr * weight_decay)
    for o, factor in zip(orthogonal, factors):
        o.mul_(lr * factor)
    torch._foreach_sub_(xs, orthogonal)
    ops.write_back(params, xs)


def _gather(direction: Tensor, state: dict[str, Any]) -> Tensor:
    """The whole matrix of a sharded direction (one all-gather), else ``direction`` itself.

    The memory in ``state`` is a DTensor exactly when the parameter is one, and has its
    layout."""
    memory = state["momentum_buffer"]
    if not is_dtensor(memory):
        return direction
    from torch.distributed.tensor import DTensor

    return DTensor.from_local(
        direction,
        memory.device_mesh,
        memory.placements,
        run_check=False,
        shape=memory.shape,
        stride=memory.stride(),
    ).full_tensor()


def _local_part(matrix: Tensor, state: dict[str, Any]) -> Tensor:
    """This rank's part of a whole matrix laid out like the memory in ``state`` (no
    communication: every rank holds the whole matrix)."""
    memory = state["momentum_buffer"]
    if not is_dtensor(memory):
        return matrix
    from torch.distributed.tensor import DTensor, Replicate

    mesh = memory.device_mesh
    replicated = DTensor.from_local(matrix, mesh, [Replicate()] * mesh.ndim, run_check=False)
    return replicated.redistribute(mesh, memory.placements).to_local()
