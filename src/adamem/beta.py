r"""The memory coefficient :math:`\beta_t`: the one place where it is computed.

Every AM optimizer reduces its two-plane proximal model (ALGORITHMS.md §2) to two numbers per
block of coordinates, in the multiplied-through form of §4:

.. math::

    a = \eta_t\,\mathrm{num}_t, \qquad b = \eta_t\,\mathrm{den}_t \;(\ge 0),

and :math:`\beta_t` maximises the concave 1-D dual :math:`a\beta - \tfrac12 b\beta^2` over
:math:`[0, c]`, where :math:`c` is the cap (``beta_max``):

=====================  ==========================================================
situation              :math:`\beta`
=====================  ==========================================================
``a`` or ``b`` is NaN  0 (:math:`\beta` never introduces a NaN)
``b > 0``              ``clip(a / b, 0, c)``; ``±inf`` ratios give ``c`` or 0,
                       ``inf / inf`` gives 0
``b == 0``             ``c`` if ``a > 0`` else 0
=====================  ==========================================================

Both ``a`` and ``b`` are sums over coordinates, so the sums of a block made of several tensors
are the sums of the per-tensor values (§6). This holds also when the tensors of a block use
different learning rates, because each tensor's terms are already multiplied by its own
:math:`\eta`. :func:`block_betas` forms the blocks of a ``scope``, and :func:`select_beta`
solves them, vectorised and on the device of the sums: nothing here reads a tensor's value on
the host.

With ``noise_averaging`` (docs/variants.md) a block solves, instead of its current model, a
running average of its recent models, each scaled to unit size (:func:`averaged_select`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

Scope = Literal["tensor", "group", "global"]
SCOPES: tuple[str, ...] = ("tensor", "group", "global")


def select_beta(a: Tensor, b: Tensor, cap: float) -> Tensor:
    """Return the maximiser of ``a*beta - b*beta**2/2`` over ``[0, cap]``, elementwise.

    ``a`` and ``b`` hold one block each (any shape, same shape); ``b`` must be ``>= 0``.
    Follows the edge-case rules of ALGORITHMS.md §7 (see the module docstring).

    >>> import torch
    >>> a, b = torch.tensor([4.65, -2.1, 1.0, 1.0]), torch.tensor([11.25, 32.0, 0.0, 0.5])
    >>> select_beta(a, b, 0.9)
    tensor([0.4133, 0.0000, 0.9000, 0.9000])
    """
    interior = (a / b).clamp(0.0, cap)
    flat_dual = (a > 0).to(interior.dtype) * cap
    beta = torch.where(b > 0, interior, flat_dual)
    undefined = torch.isnan(beta) | torch.isnan(a) | torch.isnan(b)
    return torch.where(undefined, 0.0, beta)


def averaged_select(
    a: Tensor, b: Tensor, slope: Tensor, curvature: Tensor, factor: float, cap: float
) -> tuple[Tensor, Tensor, Tensor]:
    r"""One step of ``noise_averaging``: return ``(beta, slope', curvature')``, elementwise.

    ``(slope, curvature)`` is the running average of the past models' pairs, each scaled to
    ``|a| + b = 1``; this step's scaled pair enters with weight ``1 - factor``:

    .. math::

        A' = \rho A + (1-\rho)\,\frac{a}{|a|+b}, \qquad
        B' = \rho B + (1-\rho)\,\frac{b}{|a|+b}, \qquad \beta = \mathrm{select}(A', B'),

    so that ``beta`` maximises :math:`\sum_s \rho^{t-s}(a_s\beta - \tfrac12 b_s\beta^2)
    /(|a_s|+b_s)`, the recent models with equal weight whatever their size. A zero pair
    (``a = b = 0``) enters as ``(0, 0)``. A pair that is not finite leaves the average
    unchanged, and its step's beta is ``select_beta(a, b, cap)``. Started from ``(0, 0)``, the
    first beta is the current model's (no bias correction: both averages carry the same
    factor).

    >>> import torch
    >>> zero = torch.zeros(())
    >>> beta, slope, curvature = averaged_select(
    ...     torch.tensor(3.0), torch.tensor(1.0), zero, zero, 0.9, 0.9)
    >>> beta, slope, curvature
    (tensor(0.9000), tensor(0.0750), tensor(0.0250))
    >>> averaged_select(torch.tensor(-1.0), torch.tensor(1.0), slope, curvature, 0.9, 0.9)[0]
    tensor(0.2414)
    """
    # Scaled by the larger of |a| and b first, so that |a| + b cannot overflow.
    largest = torch.maximum(a.abs(), b)
    positive = largest > 0
    safe = torch.where(positive, largest, torch.ones_like(largest))
    a_scaled, b_scaled = a / safe, b / safe
    size = a_scaled.abs() + b_scaled
    unit_a = torch.where(positive, a_scaled / size, torch.zeros_like(a))
    unit_b = torch.where(positive, b_scaled / size, torch.zeros_like(b))
    finite = torch.isfinite(a) & torch.isfinite(b)
    new_slope = torch.where(finite, torch.lerp(unit_a, slope, factor), slope)
    new_curvature = torch.where(finite, torch.lerp(unit_b, curvature, factor), curvature)
    beta = torch.where(finite, select_beta(new_slope, new_curvature, cap), select_beta(a, b, cap))
    return beta, new_slope, new_curvature


@dataclass
class RunningModels:
    """A parameter group's ``noise_averaging`` state, for :func:`block_betas`.

    ``slope`` and ``curvature`` are the averages of the group's blocks before this step: with
    ``scope="tensor"`` 1-D, one entry per tensor of the group's sums; otherwise 0-d, the
    group's (or the global block's) one pair. ``store(slope, curvature)`` keeps the new ones
    (same shapes)."""

    factor: float
    slope: Tensor
    curvature: Tensor
    store: Callable[[Tensor, Tensor], None]


def block_betas(
    sums: Sequence[tuple[Tensor, Tensor] | None],
    scopes: Sequence[str],
    caps: Sequence[float],
    averages: Sequence[RunningModels | None] | None = None,
) -> list[Tensor | None]:
    """Solve every block of an optimizer's step and return one beta per tensor.

    Args:
        sums: per parameter group, ``(a, b)`` as 1-D tensors with one entry per tensor that
            takes part in this step's model, or ``None`` if no tensor of the group does.
        scopes: per group, ``"tensor"`` (each tensor is a block), ``"group"`` (the group is one
            block) or ``"global"`` (all groups whose scope is ``"global"`` form one block).
        caps: per group, the cap on beta. Groups of the global block must share it.
        averages: per group, its running models if it averages them (``noise_averaging``),
            else ``None``; omitted, no group does. The groups of the global block must agree:
            all or none, with one factor; the first member's pair is the block's.

    Returns:
        Per group, a 1-D tensor with the beta of each entry's block (``None`` where ``sums``
        is ``None``), in the dtype and on the device of that group's sums.
    """
    averages = averages if averages is not None else [None] * len(sums)
    betas: list[Tensor | None] = [None] * len(sums)
    global_members: list[int] = []
    for index, (group_sums, scope, cap) in enumerate(zip(sums, scopes, caps)):
        if group_sums is None:
            continue
        a, b = group_sums
        if scope == "tensor":
            betas[index] = _solve(a, b, cap, averages[index])
        elif scope == "group":
            betas[index] = _solve(a.sum(), b.sum(), cap, averages[index]).expand_as(a)
        elif scope == "global":
            global_members.append(index)
        else:
            raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
    if global_members:
        betas_of_global = _solve_global_block(
            [sums[i] for i in global_members],
            {caps[i] for i in global_members},
            [averages[i] for i in global_members],
        )
        for index, beta in zip(global_members, betas_of_global):
            betas[index] = beta
    return betas


def _solve(a: Tensor, b: Tensor, cap: float, average: RunningModels | None) -> Tensor:
    if average is None:
        return select_beta(a, b, cap)
    slope, curvature = (x.to(a.device, a.dtype) for x in (average.slope, average.curvature))
    beta, slope, curvature = averaged_select(a, b, slope, curvature, average.factor, cap)
    average.store(slope, curvature)
    return beta


def _solve_global_block(
    member_sums: list[tuple[Tensor, Tensor]],
    caps: set[float],
    averages: list[RunningModels | None],
) -> list[Tensor]:
    if len(caps) != 1:
        raise ValueError(
            "parameter groups with scope='global' form one block and must share the same "
            f"beta cap, got {sorted(caps)}"
        )
    factors = {None if average is None else average.factor for average in averages}
    if len(factors) != 1:
        raise ValueError(
            "parameter groups with scope='global' form one block and must share the same "
            f"noise_averaging, got {sorted(factors, key=str)}"
        )
    (cap,) = caps
    first_a = member_sums[0][0]
    dtype = first_a.dtype
    for a, _ in member_sums[1:]:
        dtype = torch.promote_types(dtype, a.dtype)
    total_a = sum(a.sum().to(first_a.device, dtype) for a, _ in member_sums)
    total_b = sum(b.sum().to(first_a.device, dtype) for _, b in member_sums)
    first_average = averages[0]
    if first_average is None:
        beta = select_beta(total_a, total_b, cap)
    else:
        block = RunningModels(
            first_average.factor,
            first_average.slope,
            first_average.curvature,
            store=lambda slope, curvature: [m.store(slope, curvature) for m in averages],
        )
        beta = _solve(total_a, total_b, cap, block)
    return [beta.to(a.device, a.dtype).expand_as(a) for a, _ in member_sums]
