r"""Log AM's beta while training: statistics gather on the device, one host sync per log.

:class:`BetaLogger` hooks into an AM optimizer's ``step`` and, every ``every`` steps, calls a
``log_fn(scalars, step)`` with Python floats (the only point where it waits for the device).
Between logs it only queues a few small device operations per step. Any callable with that
signature works: :func:`tensorboard_log_fn` adapts a ``torch.utils.tensorboard.SummaryWriter``,
Lightning's ``trainer.logger.log_metrics`` already has it, and so does
``lambda scalars, step: print(step, scalars)``.

Scalars reported, each under ``prefix`` (default ``"am/"``):

==============================  ==============================================================
key                             value
==============================  ==============================================================
``beta_mean``                   mean over the interval's steps of the mean over blocks
``beta_min``, ``beta_max``      extremes over the interval's steps and blocks
``momentum_mean/_min/_max``     the same for the effective momentum
                                ``optimizer.effective_momentum(beta, group)``: AM-SGD's
                                :math:`(\beta+\lambda)/(1+\lambda)`; AM-AdamW's beta itself
``beta/<name>``                 with ``per_layer=True``: the interval mean of one tensor's beta
==============================  ==============================================================

A *block* is what shares one beta (ALGORITHMS.md §6): with ``scope="tensor"`` each tensor is a
block, so the statistics are over tensors; with ``"group"`` each parameter group counts once;
with ``"global"`` each parameter group of the global block counts once (they share beta, but may
differ in ``lambd`` and hence in effective momentum).

Only betas solved in a step enter the statistics, as the optimizer records them
(:meth:`~adamem._core.optimizer.AMOptimizer.solved_betas`). A tensor is left out in its first step
(AM-SGD solves no beta there and AM-AdamW applies the fixed rule
:math:`\beta = \beta_{1,\max}`, §7) and in steps where it has no gradient (its stored beta
is then stale).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

__all__ = ["BetaLogger", "LogFn", "ParamNames", "tensorboard_log_fn"]

LogFn = Callable[[dict[str, float], int], Any]
"""Receives ``(scalars, step)``: a dict of Python floats and the optimizer step count."""

ParamNames = nn.Module | Mapping[str, Tensor] | Iterable[tuple[str, Tensor]]
"""A module (its ``named_parameters()``), a ``{name: parameter}`` mapping or ``(name, parameter)``
pairs such as ``model.named_parameters()``."""

_STATISTICS = ("mean", "min", "max")
_QUANTITIES = ("beta", "momentum")


class BetaLogger:
    r"""Report statistics of AM's beta to ``log_fn`` every ``every`` optimizer steps.

    The logger registers a step post-hook on ``optimizer`` (``close()`` removes it), so it
    needs no call from the training loop and works inside trainers that own the loop. After
    each step it reduces the betas just solved to a few numbers on the device; every ``every``
    steps it reads them in one transfer and calls ``log_fn(scalars, step)``, where ``step`` is
    the number of optimizer steps counted so far (set :attr:`steps` to resume a count; steps
    that ``torch.amp.GradScaler`` skips are not optimizer steps). An interval in which no
    beta was solved (e.g. AM-SGD's first step with ``every=1``) logs nothing. See the module
    docstring for the keys reported.

    Args:
        optimizer: an AM optimizer (``AMSGD``, ``AMAdamW``).
        log_fn: called as ``log_fn(scalars, step)`` with ``scalars`` a ``dict[str, float]``.
        every: log every this many optimizer steps (``>= 1``).
        per_layer: also report each tensor's beta as ``beta/<name>``.
        names: parameter names for ``per_layer``: a module, a ``{name: parameter}`` mapping or
            ``(name, parameter)`` pairs. Otherwise the group's ``param_names`` are used (when
            the optimizer was built from ``named_parameters()``), else ``group<i>.<j>``.
        prefix: prepended to every key.

    Example:
        >>> import torch, adamem
        >>> model = torch.nn.Linear(3, 1)
        >>> opt = adamem.AMSGD(model.parameters(), lr=0.1)
        >>> records = []
        >>> logger = adamem.BetaLogger(opt, lambda s, step: records.append((step, s)), every=2)
        >>> for _ in range(4):
        ...     opt.zero_grad()
        ...     model(torch.ones(8, 3)).pow(2).mean().backward()
        ...     opt.step()
        >>> [step for step, _ in records]
        [2, 4]
        >>> sorted(records[-1][1])  # doctest: +NORMALIZE_WHITESPACE
        ['am/beta_max', 'am/beta_mean', 'am/beta_min',
         'am/momentum_max', 'am/momentum_mean', 'am/momentum_min']
        >>> logger.close()
    """

    def __init__(
        self,
        optimizer: Optimizer,
        log_fn: LogFn,
        *,
        every: int = 100,
        per_layer: bool = False,
        names: ParamNames | None = None,
        prefix: str = "am/",
    ) -> None:
        if not hasattr(optimizer, "solved_betas"):
            raise TypeError(f"expected an AM optimizer, got {type(optimizer).__name__}")
        if not callable(log_fn):
            raise TypeError(f"log_fn must be callable, got {type(log_fn).__name__}")
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be an int >= 1, got {every!r}")
        self.optimizer = optimizer
        self.log_fn = log_fn
        self.every = every
        self.per_layer = per_layer
        self.prefix = prefix
        self.steps = 0
        """Optimizer steps counted so far; the ``step`` passed to ``log_fn``."""
        self._names = _names_by_id(names) if names is not None else {}
        self._reset_interval()
        self._handle = optimizer.register_step_post_hook(self._after_step)

    def close(self) -> None:
        """Detach from the optimizer; the partial interval since the last log is dropped."""
        self._handle.remove()

    # ------------------------------------------------------------------------- per step
    def _reset_interval(self) -> None:
        self._solved_steps = 0
        # Rows: sum over steps of the block mean, running min, running max; columns: _QUANTITIES.
        self._totals: Tensor | None = None
        self._layer_sums: dict[str, Tensor] = {}
        self._layer_counts: dict[str, int] = {}

    def _after_step(self, optimizer: Optimizer, args: Any, kwargs: Any) -> None:
        self.steps += 1
        self._accumulate()
        if self.steps % self.every == 0 and self._totals is not None:
            self._emit(self._totals)

    def _accumulate(self) -> None:
        """Add this step's solved betas to the interval totals, on the device, without a sync."""
        block_betas, block_momenta, layer_betas = [], [], {}
        groups = self.optimizer.param_groups
        for group_index, (group, solved) in enumerate(zip(groups, self.optimizer.solved_betas())):
            if solved is None:
                continue
            params, betas = solved
            betas = betas.float()
            if self.per_layer:
                names = self._names_in(group_index, group)
                for param, beta in zip(params, betas.unbind()):
                    layer_betas[names[id(param)]] = beta
            if group["scope"] != "tensor":
                betas = betas[:1]  # every solved tensor of a shared block holds the same beta
            block_betas.append(betas)
            block_momenta.append(self.optimizer.effective_momentum(betas, group))
        if not block_betas:
            return
        device = block_betas[0].device
        values = torch.stack(
            [torch.cat([v.to(device) for v in blocks]) for blocks in (block_betas, block_momenta)]
        )
        step_stats = torch.stack([values.mean(dim=1), values.amin(dim=1), values.amax(dim=1)])
        if self._totals is None:
            self._totals = step_stats
        else:
            self._totals[0] += step_stats[0]
            torch.minimum(self._totals[1], step_stats[1], out=self._totals[1])
            torch.maximum(self._totals[2], step_stats[2], out=self._totals[2])
        self._solved_steps += 1
        if layer_betas:
            self._add_layer_betas(layer_betas, device)

    def _names_in(self, group_index: int, group: dict[str, Any]) -> dict[int, str]:
        """Each tensor's name by ``id``: from ``names``, else the group's ``param_names``,
        else ``group<i>.<j>``."""
        names = {}
        for position, param in enumerate(group["params"]):
            if id(param) in self._names:
                names[id(param)] = self._names[id(param)]
            elif "param_names" in group:
                names[id(param)] = group["param_names"][position]
            else:
                names[id(param)] = f"group{group_index}.{position}"
        return names

    def _add_layer_betas(self, layer_betas: dict[str, Tensor], device: torch.device) -> None:
        for name in layer_betas:
            if name not in self._layer_sums:
                self._layer_sums[name] = torch.zeros((), device=device)
                self._layer_counts[name] = 0
            self._layer_counts[name] += 1
        sums = [self._layer_sums[name] for name in layer_betas]
        betas = [beta.to(device, torch.float32) for beta in layer_betas.values()]
        torch._foreach_add_(sums, betas)

    # ------------------------------------------------------------------------- per log
    def _emit(self, interval_totals: Tensor) -> None:
        """Read the interval's totals in one device-to-host transfer and call ``log_fn``."""
        layer_names = list(self._layer_sums)
        layer_sums = [self._layer_sums[name].to(interval_totals.device) for name in layer_names]
        flat = torch.cat([interval_totals.reshape(-1), *(s.reshape(1) for s in layer_sums)])
        values = flat.tolist()
        totals, layer_totals = values[: interval_totals.numel()], values[interval_totals.numel() :]
        scalars = {}
        for column, quantity in enumerate(_QUANTITIES):
            for row, statistic in enumerate(_STATISTICS):
                value = totals[row * len(_QUANTITIES) + column]
                if statistic == "mean":
                    value /= self._solved_steps
                scalars[f"{self.prefix}{quantity}_{statistic}"] = value
        for name, total in zip(layer_names, layer_totals):
            scalars[f"{self.prefix}beta/{name}"] = total / self._layer_counts[name]
        self._reset_interval()
        self.log_fn(scalars, self.steps)


class ScalarWriter(Protocol):
    """What :func:`tensorboard_log_fn` needs: ``SummaryWriter.add_scalar``'s signature."""

    def add_scalar(self, tag: str, scalar_value: float, global_step: int) -> Any: ...


def tensorboard_log_fn(writer: ScalarWriter) -> LogFn:
    """A ``log_fn`` writing each scalar with ``writer.add_scalar(tag, value, step)``.

    ``writer`` is typically a ``torch.utils.tensorboard.SummaryWriter``; this module does not
    import TensorBoard, so anything with ``add_scalar`` works.

    Example:
        >>> class PrintWriter:
        ...     def add_scalar(self, tag, scalar_value, global_step):
        ...         print(tag, scalar_value, global_step)
        >>> tensorboard_log_fn(PrintWriter())({"am/beta_mean": 0.5}, 100)
        am/beta_mean 0.5 100
    """

    def log(scalars: dict[str, float], step: int) -> None:
        for tag, value in scalars.items():
            writer.add_scalar(tag, value, step)

    return log


def _names_by_id(names: ParamNames) -> dict[int, str]:
    if isinstance(names, nn.Module):
        pairs: Iterable[tuple[str, Tensor]] = names.named_parameters()
    elif isinstance(names, Mapping):
        pairs = names.items()
    else:
        pairs = names
    return {id(param): name for name, param in pairs}
