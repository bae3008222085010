"""The optimizers under comparison, by name: AM and the fixed-momentum baselines.

Two families share a learning-rate grid within a task:

* ``sgd``: ``amsgd-tensor``, ``amsgd-global``, heavy ball in EMA form ``hb-<beta>`` and
  ``torch.optim.SGD(momentum=0.9)`` as ``sgd-0.9``. Learning rates are in EMA units
  (steady-state step ``lr*g``); ``sgd-0.9`` gets ``lr*(1-0.9)``, the same steady-state step.
* ``adam``: ``amadamw-tensor``, ``amadamw-global`` and ``torch.optim.AdamW`` as
  ``adamw-<beta1>``, all with ``beta2 = 0.999`` and ``eps = 1e-8``.

AM keeps its defaults (``lambd = 0.1``, ``beta_max = 0.9`` / ``beta1_max = 0.89``). A ``+warmup``
suffix adds a linear learning-rate warmup (see :func:`warmup_factor`). Every optimizer that has
one uses its multi-tensor (``foreach``) implementation, also on the CPU, where it is faster for
these many-small-tensor models; the results agree with the single-tensor paths to round-off.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.optim import Optimizer

import adamem

from .heavy_ball import HeavyBall

FIXED_BETAS = (0.0, 0.5, 0.9, 0.95, 0.99)
TORCH_SGD_MOMENTUM = 0.9
WARMUP_SUFFIX = "+warmup"


@dataclass(frozen=True)
class Method:
    """An optimizer configuration; ``build`` makes it for given parameters and learning rate."""

    name: str
    family: str  # "sgd" or "adam"
    adaptive: bool  # True for AM methods
    warmup: bool = False

    @property
    def base(self) -> str:
        """The name without the ``+warmup`` suffix."""
        return self.name.removesuffix(WARMUP_SUFFIX)

    @property
    def beta_cap(self) -> float | None:
        """AM's cap on beta (its default), ``None`` for a fixed-momentum method."""
        if not self.adaptive:
            return None
        return 0.9 if self.family == "sgd" else 0.89

    def build(self, params: Iterable[Tensor], lr: float, weight_decay: float) -> Optimizer:
        """The optimizer; ``weight_decay`` is decoupled for the adam family and unused for sgd."""
        kind, _, arg = self.base.partition("-")
        if kind == "amsgd":
            return adamem.AMSGD(params, lr=lr, scope=arg, foreach=True)
        if kind == "hb":
            return HeavyBall(params, lr=lr, beta=float(arg))
        if kind == "sgd":
            momentum = float(arg)
            return torch.optim.SGD(params, lr=lr * (1 - momentum), momentum=momentum, foreach=True)
        if kind == "amadamw":
            return adamem.AMAdamW(params, lr=lr, weight_decay=weight_decay, scope=arg, foreach=True)
        if kind == "adamw":
            betas = (float(arg), 0.999)
            return torch.optim.AdamW(
                params, lr=lr, betas=betas, eps=1e-8, weight_decay=weight_decay, foreach=True
            )
        raise ValueError(f"unknown method {self.name!r}")


def family_methods(family: str) -> list[Method]:
    """Every method of a family: the two AM scopes, then the fixed-momentum baselines.

    >>> [m.name for m in family_methods("adam")][:3]
    ['amadamw-tensor', 'amadamw-global', 'adamw-0']
    """
    if family == "sgd":
        names = ["amsgd-tensor", "amsgd-global", *(f"hb-{b:g}" for b in FIXED_BETAS)]
        names.append(f"sgd-{TORCH_SGD_MOMENTUM:g}")
    elif family == "adam":
        names = ["amadamw-tensor", "amadamw-global", *(f"adamw-{b:g}" for b in FIXED_BETAS)]
    else:
        raise ValueError(f"unknown family {family!r}")
    return [method(name) for name in names]


def method(name: str) -> Method:
    """The method called ``name``, e.g. ``"hb-0.9"`` or ``"amadamw-tensor+warmup"``.

    >>> method("amadamw-tensor+warmup")
    Method(name='amadamw-tensor+warmup', family='adam', adaptive=True, warmup=True)
    """
    base = name.removesuffix(WARMUP_SUFFIX)
    kind = base.partition("-")[0]
    families = {"amsgd": "sgd", "hb": "sgd", "sgd": "sgd", "amadamw": "adam", "adamw": "adam"}
    if kind not in families:
        raise ValueError(f"unknown method {name!r}")
    return Method(name, families[kind], kind.startswith("am"), warmup=base != name)


def warmup_factor(step: int, warmup_steps: int) -> float:
    """Linear warmup: the learning rate of step ``step`` (0-based) is ``lr * (step+1)/W``.

    >>> [warmup_factor(s, 4) for s in range(5)]
    [0.25, 0.5, 0.75, 1.0, 1.0]
    """
    return min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0
