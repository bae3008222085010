"""The layout that the fused kernels (C and Triton) and their Python callers share.

A fused step hands the kernels one record per tensor (``RECORD``: addresses of its arrays, its
element count, addresses of its 0-d state scalars) and the group's hyperparameters
(``HYPER``), both as flat 64-bit arrays. This module is the only place that fixes the order of
their fields: :mod:`adamem._kernels.build` passes it to the C compiler as ``-DR_<FIELD>=i`` and
``-DH_<FIELD>=i`` definitions, and :mod:`adamem._kernels.cuda` reads it to name its constants, so
the two backends cannot disagree.

Each optimizer declares what its kernels read and return in a :class:`Kernels`: the kernels
return each tensor's inner products, and the optimizer forms the model's ``(a, b)`` from
them in Python (its ``terms_from_dots``), once for every path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import Tensor

RECORD: tuple[str, ...] = (
    "x",  # parameter (real view)
    "g",  # gradient as stored (its own dtype, maximize not applied: see grad_sign)
    "d",  # memory: momentum_buffer or exp_avg
    "v",  # second moment (exp_avg_sq), or d again when the optimizer has none
    "numel",  # element count of the real view
    # 0-d state scalars in the compute dtype (address 0 where the optimizer has no such key)
    "step",
    "beta",
    "beta_product",
    "prev_bias_correction1",
    "prev_lr",
)
STATE_SCALARS: tuple[str, ...] = RECORD[RECORD.index("step") :]
"""The record's state scalars: their field names are the state keys."""

HYPER: tuple[str, ...] = (
    "lr",
    "cap",
    "beta2",
    "eps",
    "weight_decay",
    "lambd",
    "compat_gap",  # 1.0 for AM-AdamW's gap_estimate="compat"
    "nesterov",  # 1.0 for a Nesterov look-ahead step
    "scale_invariant",  # 1.0 for AM-AdamW's pull in the metric P (pull weight lambd, not lambd P)
    "grad_sign",  # -1.0 for maximize: the kernels negate the stored gradient as they read it
)
"""The group's hyperparameters, as float64 (0.0 where an optimizer has no such setting)."""

MAX_DOTS = 4
"""The most inner products per tensor that a kernel's sums pass returns."""


def c_definitions() -> list[str]:
    """The contract as C compiler flags: ``-DR_X=0``, ..., ``-DR_FIELDS=10``, ``-DH_LR=0``,
    ..., ``-DH_FIELDS=10``, ``-DMAX_DOTS=4``."""
    flags = [f"-DR_{name.upper()}={index}" for index, name in enumerate(RECORD)]
    flags.append(f"-DR_FIELDS={len(RECORD)}")
    flags += [f"-DH_{name.upper()}={index}" for index, name in enumerate(HYPER)]
    flags.append(f"-DH_FIELDS={len(HYPER)}")
    flags.append(f"-DMAX_DOTS={MAX_DOTS}")
    return flags


def hyper_values(values: dict[str, Any]) -> list[Any]:
    """``values`` (a subset of :data:`HYPER`) in the contract's order, 0.0 for the others."""
    unknown = values.keys() - set(HYPER)
    if unknown:
        raise KeyError(f"not hyperparameters of the kernel contract: {sorted(unknown)}")
    return [values.get(name, 0.0) for name in HYPER]


@dataclass(frozen=True)
class Kernels:
    """An optimizer's interface to the fused kernels: what they read and what they return.

    The record and hyperparameter layouts are this module's; this says which of their fields
    the optimizer fills, and how its model's ``(a, b)`` come from the kernels' dots.
    """

    name: str
    """The kernels' name: C entry points ``am_<name>_<phase>_<dtype>``, Triton's step
    ``adamem._kernels.cuda.STEPS[name]``."""
    memory_key: str
    second_moment_key: str | None
    scalar_keys: frozenset[str]
    """The contract's state scalars (``STATE_SCALARS``) that the optimizer keeps."""
    hyper: Callable[[dict[str, Any]], dict[str, float | Tensor]]
    """The group's hyperparameters by contract name (those not given are 0)."""
    dots: int
    """Inner products per tensor that the sums pass returns."""
    terms_from_dots: Callable[[Tensor, dict[str, Any]], tuple[Tensor, Tensor]]
    """The model's ``(a, b)`` from the dots (``dots x tensors``) and the group."""

    def scalars(self, state: dict[str, Any]) -> list[Tensor | None]:
        """The state scalars in the record's order, ``None`` where the optimizer has none."""
        return [state[key] if key in self.scalar_keys else None for key in STATE_SCALARS]


def kernel_hyper(kind: Kernels, group: dict[str, Any]) -> dict[str, float | Tensor]:
    """The kernels' hyperparameters of ``group``: the optimizer's, and the gradient's sign."""
    return {**kind.hyper(group), "grad_sign": -1.0 if group["maximize"] else 1.0}
