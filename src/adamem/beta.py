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
"""

from __future__ import annotations

from collections.abc import Sequence
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


def block_betas(
    sums: Sequence[tuple[Tensor, Tensor] | None],
    scopes: Sequence[str],
    caps: Sequence[float],
) -> list[Tensor | None]:
    """Solve every block of an optimizer's step and return one beta per tensor.

    Args:
        sums: per parameter group, ``(a, b)`` as 1-D tensors with one entry per tensor that
            takes part in this step's model, or ``None`` if no tensor of the group does.
        scopes: per group, ``"tensor"`` (each tensor is a block), ``"group"`` (the group is one
            block) or ``"global"`` (all groups whose scope is ``"global"`` form one block).
        caps: per group, the cap on beta. Groups of the global block must share it.

    Returns:
        Per group, a 1-D tensor with the beta of each entry's block (``None`` where ``sums``
        is ``None``), in the dtype and on the device of that group's sums.
    """
    betas: list[Tensor | None] = [None] * len(sums)
    global_members: list[int] = []
    for index, (group_sums, scope, cap) in enumerate(zip(sums, scopes, caps)):
        if group_sums is None:
            continue
        a, b = group_sums
        if scope == "tensor":
            betas[index] = select_beta(a, b, cap)
        elif scope == "group":
            betas[index] = select_beta(a.sum(), b.sum(), cap).expand_as(a)
        elif scope == "global":
            global_members.append(index)
        else:
            raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
    if global_members:
        betas_of_global = _solve_global_block(
            [sums[i] for i in global_members], {caps[i] for i in global_members}
        )
        for index, beta in zip(global_members, betas_of_global):
            betas[index] = beta
    return betas


def _solve_global_block(member_sums: list[tuple[Tensor, Tensor]], caps: set[float]) -> list[Tensor]:
    if len(caps) != 1:
        raise ValueError(
            "parameter groups with scope='global' form one block and must share the same "
            f"beta cap, got {sorted(caps)}"
        )
    (cap,) = caps
    first_a = member_sums[0][0]
    dtype = first_a.dtype
    for a, _ in member_sums[1:]:
        dtype = torch.promote_types(dtype, a.dtype)
    total_a = sum(a.sum().to(first_a.device, dtype) for a, _ in member_sums)
    total_b = sum(b.sum().to(first_a.device, dtype) for _, b in member_sums)
    beta = select_beta(total_a, total_b, cap)
    return [beta.to(a.device, a.dtype).expand_as(a) for a, _ in member_sums]
