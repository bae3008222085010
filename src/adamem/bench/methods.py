"""The optimizers under comparison, by name: AM and the fixed-momentum baselines.

Two families share a learning-rate grid within a task:

* ``sgd``: ``amsgd-tensor``, ``amsgd-global``, ``amsgd-nesterov-tensor`` (``nesterov=True``),
  ``amsgd-na-tensor`` (``noise_averaging=0.9``), heavy ball in EMA form ``hb-<beta>``,
  ``torch.optim.SGD(momentum=0.9)`` as ``sgd-0.9`` and
  ``torch.optim.SGD(momentum=m, nesterov=True)`` as ``sgd-nesterov-<m>``. Learning rates are
  in EMA units (steady-state step ``lr*g``); torch's SGD gets ``lr*(1-m)``, the same
  steady-state step.
* ``adam``: ``amadamw-tensor``, ``amadamw-global``, ``amadamw-nesterov-tensor``,
  ``amadamw-si-tensor`` (``scale_invariant=True``), ``torch.optim.AdamW`` as
  ``adamw-<beta1>`` and ``torch.optim.NAdam(decoupled_weight_decay=True)`` (its default
  momentum schedule) as ``nadamw-<beta1>``, all with ``beta2 = 0.999`` and ``eps = 1e-8``.
* ``muon``: Muon on the hidden weight matrices (:func:`adamem.muon_param_groups`) and an
  Adam-family optimizer on the rest, at one learning rate (Muon's step is scaled to AdamW's
  RMS, ``adjust_lr_fn="match_rms_adamw"``, so AdamW's learning rate and decoupled weight
  decay serve both): ``ammuon-tensor`` (``AMMuon`` with ``AMAdamW``) and ``muon-<momentum>``
  (``torch.optim.Muon`` with Nesterov, and ``torch.optim.AdamW(betas=(0.9, 0.999))``).

A method is named ``<prefix>-<argument>`` (an AM scope, a fixed beta); each prefix is one
:class:`Kind` in :data:`KINDS`, the only place that knows how to build it. AM keeps its defaults
(``lambd = 0.1``; the cap ``beta_max = 0.9``, ``beta1_max = 0.89``, AM-Muon's 0.95). A
``+warmup`` suffix adds a linear learning-rate warmup (see :func:`warmup_factor`). Every
optimizer that has one uses its multi-tensor (``foreach``) implementation, also on the CPU,
where it is faster for these many-small-tensor models; the results agree with the
single-tensor paths to round-off.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

import adamem

from .heavy_ball import HeavyBall

AM_SCOPES = ("tensor", "global")
FIXED_BETAS = ("0", "0.5", "0.9", "0.95", "0.99")
NESTEROV_BETAS = FIXED_BETAS[1:]  # Nesterov needs momentum (torch's SGD refuses 0)
WARMUP_SUFFIX = "+warmup"
MUON_MOMENTA = ("0.9", "0.95", "0.98")

# (model, lr, weight_decay, argument) -> the optimizer; weight_decay is 0 for the sgd family.
Builder = Callable[[nn.Module, float, float, str], Optimizer]


@dataclass(frozen=True)
class Kind:
    """The methods named ``<prefix>-<argument>``: ``build`` makes one for its argument, ``grid``
    holds the arguments that :func:`family_methods` compares, in report order."""

    prefix: str
    family: str  # "sgd", "adam" or "muon"
    build: Builder
    grid: tuple[str, ...]
    beta_cap: float | None = None  # AM's cap on beta (its default); None for fixed momentum

    @property
    def adaptive(self) -> bool:
        """True for AM methods: those with a cap on their solved beta."""
        return self.beta_cap is not None


# The AM builders take a variant's options (nesterov=True, ...) bound with functools.partial,
# which, unlike a closure, pickles into the spawned workers.
def _amsgd(
    model: nn.Module, lr: float, weight_decay: float, scope: str, **options: Any
) -> Optimizer:
    return adamem.AMSGD(model.parameters(), lr=lr, scope=scope, foreach=True, **options)


def _heavy_ball(model: nn.Module, lr: float, weight_decay: float, beta: str) -> Optimizer:
    return HeavyBall(model.parameters(), lr=lr, beta=float(beta))


def _torch_sgd(model: nn.Module, lr: float, weight_decay: float, beta: str) -> Optimizer:
    momentum = float(beta)
    return torch.optim.SGD(
        model.parameters(), lr=lr * (1 - momentum), momentum=momentum, foreach=True
    )


def _torch_sgd_nesterov(model: nn.Module, lr: float, weight_decay: float, beta: str) -> Optimizer:
    momentum = float(beta)
    return torch.optim.SGD(
        model.parameters(), lr=lr * (1 - momentum), momentum=momentum, nesterov=True, foreach=True
    )


def _amadamw(
    model: nn.Module | Iterable[Tensor],
    lr: float,
    weight_decay: float,
    scope: str,
    **options: Any,
) -> Optimizer:
    params = model.parameters() if isinstance(model, nn.Module) else model
    return adamem.AMAdamW(
        params, lr=lr, weight_decay=weight_decay, scope=scope, foreach=True, **options
    )


def _torch_nadamw(model: nn.Module, lr: float, weight_decay: float, beta: str) -> Optimizer:
    return torch.optim.NAdam(
        model.parameters(),
        lr=lr,
        betas=(float(beta), 0.999),
        eps=1e-8,
        weight_decay=weight_decay,
        decoupled_weight_decay=True,
        foreach=True,
    )


def _torch_adamw(
    model: nn.Module | Iterable[Tensor], lr: float, weight_decay: float, beta: str
) -> Optimizer:
    params = model.parameters() if isinstance(model, nn.Module) else model
    betas = (float(beta), 0.999)
    return torch.optim.AdamW(
        params, lr=lr, betas=betas, eps=1e-8, weight_decay=weight_decay, foreach=True
    )


class OptimizerPair:
    """Two optimizers stepped as one (Muon on the matrices, Adam on the rest): their
    ``param_groups`` in one list (a schedule that sets each group's lr reaches both) and
    their ``state`` in one mapping."""

    def __init__(self, first: Optimizer, second: Optimizer) -> None:
        self.optimizers = (first, second)
        self.param_groups = first.param_groups + second.param_groups
        self.state = _PairState(first.state, second.state)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for optimizer in self.optimizers:
            optimizer.step()


class _PairState(Mapping):
    """Each tensor's state in whichever optimizer holds it (their ``state`` are
    ``defaultdict``s, which a ``ChainMap`` lookup would fill with empty entries)."""

    def __init__(self, *states: dict) -> None:
        self.states = states

    def __getitem__(self, param: Tensor) -> dict:
        for state in self.states:
            if param in state:
                return state[param]
        raise KeyError(param)

    def __iter__(self) -> Iterator[Tensor]:
        return (param for state in self.states for param in state)

    def __len__(self) -> int:
        return sum(len(state) for state in self.states)


def _ammuon(model: nn.Module, lr: float, weight_decay: float, scope: str) -> OptimizerPair:
    matrices, rest = adamem.muon_param_groups(model, weight_decay)
    muon = adamem.AMMuon(
        matrices,
        lr=lr,
        weight_decay=weight_decay,
        scope=scope,
        adjust_lr_fn="match_rms_adamw",
        foreach=True,
    )
    return OptimizerPair(muon, _amadamw(rest, lr, weight_decay, scope))


def _torch_muon(model: nn.Module, lr: float, weight_decay: float, beta: str) -> OptimizerPair:
    matrices, rest = adamem.muon_param_groups(model, weight_decay)
    muon = torch.optim.Muon(
        matrices,
        lr=lr,
        weight_decay=weight_decay,
        momentum=float(beta),
        nesterov=True,
        adjust_lr_fn="match_rms_adamw",
    )
    return OptimizerPair(muon, _torch_adamw(rest, lr, weight_decay, "0.9"))


# A family's methods come in this order: AM first, then the fixed-momentum baselines.
KINDS = (
    Kind("amsgd", "sgd", _amsgd, AM_SCOPES, beta_cap=0.9),
    Kind("amsgd-nesterov", "sgd", partial(_amsgd, nesterov=True), ("tensor",), beta_cap=0.9),
    Kind("amsgd-na", "sgd", partial(_amsgd, noise_averaging=0.9), ("tensor",), beta_cap=0.9),
    Kind("hb", "sgd", _heavy_ball, FIXED_BETAS),
    Kind("sgd", "sgd", _torch_sgd, ("0.9",)),
    Kind("sgd-nesterov", "sgd", _torch_sgd_nesterov, NESTEROV_BETAS),
    Kind("amadamw", "adam", _amadamw, AM_SCOPES, beta_cap=0.89),
    Kind("amadamw-nesterov", "adam", partial(_amadamw, nesterov=True), ("tensor",), beta_cap=0.89),
    Kind("amadamw-si", "adam", partial(_amadamw, scale_invariant=True), ("tensor",), beta_cap=0.89),
    Kind("adamw", "adam", _torch_adamw, FIXED_BETAS),
    Kind("nadamw", "adam", _torch_nadamw, NESTEROV_BETAS),
    Kind("ammuon", "muon", _ammuon, ("tensor",), beta_cap=0.95),
    Kind("muon", "muon", _torch_muon, MUON_MOMENTA),
)


@dataclass(frozen=True)
class Method:
    """An optimizer configuration; ``build`` makes it for given parameters and learning rate."""

    name: str
    kind: Kind = field(repr=False)
    warmup: bool = False

    @property
    def base(self) -> str:
        """The name without the ``+warmup`` suffix."""
        return self.name.removesuffix(WARMUP_SUFFIX)

    @property
    def family(self) -> str:
        return self.kind.family

    @property
    def adaptive(self) -> bool:
        """True for AM methods."""
        return self.kind.adaptive

    @property
    def beta_cap(self) -> float | None:
        """AM's cap on beta (its default), ``None`` for a fixed-momentum method."""
        return self.kind.beta_cap

    def build(self, model: nn.Module, lr: float, weight_decay: float) -> Optimizer:
        """The optimizer of ``model``'s parameters; ``weight_decay`` is decoupled for the adam
        and muon families and unused for sgd."""
        argument = self.base.removeprefix(f"{self.kind.prefix}-")
        return self.kind.build(model, lr, weight_decay, argument)


def family_methods(family: str) -> list[Method]:
    """Every method of a family: the AM methods, then the fixed-momentum baselines.

    >>> [m.name for m in family_methods("adam")][:5]
    ['amadamw-tensor', 'amadamw-global', 'amadamw-nesterov-tensor', 'amadamw-si-tensor', 'adamw-0']
    """
    kinds = [kind for kind in KINDS if kind.family == family]
    if not kinds:
        raise ValueError(f"unknown family {family!r}")
    return [Method(f"{kind.prefix}-{argument}", kind) for kind in kinds for argument in kind.grid]


def method(name: str) -> Method:
    """The method called ``name``, e.g. ``"hb-0.9"`` or ``"amadamw-tensor+warmup"``; of the
    kinds whose prefix it starts with, the longest prefix wins (``amsgd-nesterov-tensor`` would
    not be an ``amsgd`` method).

    >>> chosen = method("amadamw-tensor+warmup")
    >>> chosen
    Method(name='amadamw-tensor+warmup', warmup=True)
    >>> chosen.family, chosen.adaptive, chosen.beta_cap
    ('adam', True, 0.89)
    """
    base = name.removesuffix(WARMUP_SUFFIX)
    kinds = [kind for kind in KINDS if base.startswith(f"{kind.prefix}-")]
    if not kinds:
        raise ValueError(f"unknown method {name!r}")
    kind = max(kinds, key=lambda candidate: len(candidate.prefix))
    return Method(name, kind, warmup=base != name)


def warmup_factor(step: int, warmup_steps: int) -> float:
    """Linear warmup: the learning rate of step ``step`` (0-based) is ``lr * (step+1)/W``.

    >>> [warmup_factor(s, 4) for s in range(5)]
    [0.25, 0.5, 0.75, 1.0, 1.0]
    """
    return min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0
