"""What every AM optimizer shares: the three-phase step, scopes, validation, state dtypes.

An AM step cannot update any element of a block before it knows the block's beta, and beta
needs sums over the whole block (for ``scope="global"``, over every parameter). So a step runs
in three phases, and each optimizer supplies the first and the last:

1. ``_prepare`` collects the tensors of a group and ``_block_sums`` computes their per-tensor
   ``(a, b)`` (ALGORITHMS.md §4), updating any statistic that does not depend on beta;
2. :func:`adamem.beta.block_betas` turns the sums into one beta per tensor, per ``scope``;
3. ``_apply`` updates parameters and state with those betas.

Inside a group, tensors seen for the first time come first (``ParamBatch.first_steps`` of
them): their step follows a fixed rule and they stay out of the model's sums.

DTensor parameters (FSDP2, tensor parallel) are optimised through their local shards: phases 1
and 3 see only local tensors, and between phases 1 and 2 one ``all_reduce`` completes the
partial sums of every sharded tensor (:mod:`adamem._distributed`, docs/distributed.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from ._distributed import (
    Sharding,
    all_reduce_block_sums,
    all_reduce_partition_sums,
    local,
    localize,
)
from .beta import SCOPES, block_betas

LearningRate = float | Tensor


@dataclass
class ParamBatch:
    """The tensors of one parameter group that take part in a step.

    ``params`` are the stored tensors (real views of complex ones, local shards of DTensors)
    and ``states`` their state dicts; ``grads`` are the gradients the algorithm sees, in the
    compute dtype, with ``maximize`` applied. The first ``first_steps`` entries are tensors
    seen for the first time. ``shardings`` says, per tensor, how a DTensor is split across
    ranks (``None`` for a plain tensor).
    """

    group: dict[str, Any]
    positions: list[int] = field(default_factory=list)
    """Each tensor's index in ``group["params"]``."""
    params: list[Tensor] = field(default_factory=list)
    grads: list[Tensor] = field(default_factory=list)
    states: list[dict[str, Any]] = field(default_factory=list)
    first_steps: int = 0
    scratch: dict[str, Any] = field(default_factory=dict)
    shardings: list[Sharding | None] = field(default_factory=list)
    plain: bool = True
    """No parameter is complex or a DTensor: stored tensors need no views (a faster
    :meth:`state_list`)."""

    def __len__(self) -> int:
        return len(self.params)

    def state_list(self, key: str, start: int = 0) -> list[Tensor]:
        """State entry ``key`` of each tensor from ``start`` on (real views of complex ones,
        local shards of DTensors)."""
        if self.plain:
            return [state[key] for state in self.states[start:]]
        return [real_view(local(state[key])) for state in self.states[start:]]


def compute_dtype(tensor: Tensor) -> torch.dtype:
    """The dtype in which a tensor's AM arithmetic runs: float64 for double, else float32."""
    return torch.float64 if tensor.dtype in (torch.float64, torch.complex128) else torch.float32


def real_view(tensor: Tensor) -> Tensor:
    """Complex tensors are optimised as pairs of reals: ``<g, d>`` becomes ``Re <g, d>``."""
    return torch.view_as_real(tensor) if tensor.is_complex() else tensor


def scalar_state(value: LearningRate | float, like: Tensor) -> Tensor:
    """A 0-d statistic on ``like``'s device in its compute dtype (made on the device: copying
    a host scalar to a GPU would wait for it)."""
    dtype = compute_dtype(like)
    if isinstance(value, Tensor):
        return value.detach().to(like.device, dtype, copy=True).reshape(())
    return torch.full((), value, dtype=dtype, device=like.device)


def use_foreach(group: dict[str, Any], params: list[Tensor]) -> bool:
    """``foreach=None`` picks the multi-tensor path when every tensor is on CUDA, like torch."""
    if group["foreach"] is not None:
        return group["foreach"]
    return bool(params) and all(p.device.type == "cuda" for p in params)


def check_learning_rate(lr: Any) -> None:
    if isinstance(lr, Tensor):
        if lr.numel() != 1:
            raise ValueError(f"lr as a Tensor must have one element, got shape {tuple(lr.shape)}")
        if lr.is_complex() or not lr.is_floating_point():
            raise TypeError(f"lr as a Tensor must be real floating point, got {lr.dtype}")
        value = float(lr)
    elif isinstance(lr, (int, float)) and not isinstance(lr, bool):
        value = float(lr)
    else:
        raise TypeError(f"lr must be a float or a one-element Tensor, got {type(lr).__name__}")
    if not (value >= 0.0 and math.isfinite(value)):
        raise ValueError(f"lr must be finite and >= 0, got {value}")


def check_number(name: str, value: Any, low: float, high: float, *, high_open: bool) -> None:
    """Require ``low <= value <= high`` (``< high`` if ``high_open``) for a real number."""
    if isinstance(value, Tensor) and value.numel() == 1 and value.is_floating_point():
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    above_low = value >= low
    below_high = value < high if high_open else value <= high
    if not (above_low and below_high and not math.isnan(value)):
        bracket = ")" if high_open else "]"
        raise ValueError(f"{name} must lie in [{low}, {high}{bracket}, got {value}")


def check_flag(name: str, value: Any, *, allow_none: bool = False) -> None:
    if isinstance(value, bool) or (allow_none and value is None):
        return
    expected = "a bool or None" if allow_none else "a bool"
    raise TypeError(f"{name} must be {expected}, got {value!r}")


def check_choice(name: str, value: Any, choices: Iterable[str]) -> None:
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


class AMOptimizer(Optimizer):
    """Base class of the AM optimizers; see the module docstring for the step's phases.

    Subclasses define ``_prepare``, ``_block_sums``, ``_apply``, ``_validate_group``,
    ``_beta_cap`` (the cap on beta in a group), ``effective_momentum``, ``_state_keys`` (the
    state of a tensor that has taken a step), ``_statistic_keys`` (those kept in the compute
    dtype whatever the parameter dtype) and ``_group_defaults`` (group settings that older
    checkpoints may lack).
    """

    _statistic_keys: frozenset[str] = frozenset()
    _state_keys: frozenset[str] = frozenset()
    _group_defaults: dict[str, Any] = {}

    def __init__(self, params: Any, defaults: dict[str, Any]) -> None:
        self._flat_partition_group: Any = None  # set_flat_partition_group
        self._kernel_layouts: dict[int, tuple[tuple, Any]] = {}  # adamem._fused.plan's cache
        self._solved: list[tuple[list[int], Tensor] | None] = []  # solved_betas
        super().__init__(params, defaults)

    # ----------------------------------------------------------------- parameter groups
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        try:
            self._validate_group(group)
            if isinstance(group["lr"], Tensor):
                # A 0-d lr keeps per-tensor scalars 0-d; schedulers update it in place.
                group["lr"] = group["lr"].reshape(())
            check_choice("scope", group["scope"], SCOPES)
            check_flag("maximize", group["maximize"])
            check_flag("foreach", group["foreach"], allow_none=True)
            self._check_global_caps()
        except (TypeError, ValueError):
            self.param_groups.pop()
            raise

    def _check_global_caps(self) -> None:
        caps = {self._beta_cap(g) for g in self.param_groups if g["scope"] == "global"}
        if len(caps) > 1:
            raise ValueError(
                "parameter groups with scope='global' form one block and must share the same "
                f"beta cap, got {sorted(caps)}"
            )

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.__dict__.setdefault("_flat_partition_group", None)
        self.__dict__.setdefault("_kernel_layouts", {})
        self.__dict__.setdefault("_solved", [])
        for group in self.param_groups:
            for key, value in self._group_defaults.items():
                group.setdefault(key, value)

    # ----------------------------------------------------------------------------- step
    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Take one step; ``closure``, if given, re-evaluates the model and returns the loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        batches = [self._prepare(group) for group in self.param_groups]
        sums = [self._block_sums(batch) if len(batch) else None for batch in batches]
        shardings = [batch.shardings[batch.first_steps :] for batch in batches]
        partition_group = self._flat_partition_group
        if partition_group is None:
            sums = all_reduce_block_sums(sums, shardings)
        else:
            self._check_partition_scopes()
            sums = all_reduce_partition_sums(sums, shardings, partition_group)
        betas = block_betas(
            sums,
            [group["scope"] for group in self.param_groups],
            [self._beta_cap(group) for group in self.param_groups],
        )
        for batch, beta in zip(batches, betas):
            if len(batch):
                self._apply(batch, beta)
        self._solved = [
            None if beta is None else (batch.positions[batch.first_steps :], beta)
            for batch, beta in zip(batches, betas)
        ]
        return loss

    def solved_betas(self) -> list[tuple[list[Tensor], Tensor] | None]:
        """The betas that the last step solved: per parameter group, the tensors whose beta
        the model gave and those betas (a 1-D tensor on the device, in the group's order),
        or ``None`` if it solved none in that group.

        Tensors without a gradient in that step are not among them (their stored beta is
        older), nor are tensors in their first step (AM-SGD solves no beta there; AM-AdamW
        takes the fixed first-step rule). Reading the betas is a host sync; this call is not.
        """
        solved: list[tuple[list[Tensor], Tensor] | None] = []
        for group, record in zip(self.param_groups, self._solved):
            if record is None:
                solved.append(None)
            else:
                positions, betas = record
                solved.append(([group["params"][i] for i in positions], betas))
        return solved

    # ---------------------------------------------------------------------- distributed
    def set_flat_partition_group(self, process_group: Any) -> None:
        """Declare this optimizer's tensors to be flat partitions split over ``process_group``.

        DeepSpeed ZeRO-1/2 replace each parameter group's tensors by one flat slice per rank of
        the group's concatenated parameters. Each rank's sums are then a part of the group's
        sums, and after this call every step adds them over ``process_group`` (one
        ``all_reduce``), which makes ``scope="group"`` and ``scope="global"`` exact. Per-tensor
        blocks do not survive the flattening, so ``scope="tensor"`` raises. Pass ``None`` to
        undo. Not for DTensor parameters, which carry their own layout (docs/distributed.md).
        """
        if process_group is not None:
            self._check_partition_scopes()
        self._flat_partition_group = process_group

    def _check_partition_scopes(self) -> None:
        if any(group["scope"] == "tensor" for group in self.param_groups):
            raise ValueError(
                "with a flat partition group (DeepSpeed ZeRO) each tensor is a rank's slice of "
                "a whole parameter group, so scope='tensor' cannot be exact; use scope='group' "
                "or scope='global'"
            )

    def _collect(self, group: dict[str, Any], init_state: Callable[..., None]) -> ParamBatch:
        """Gather the tensors with a gradient, creating state on first sight (first in order)."""
        plain = True
        fresh: list[tuple[int, Tensor, Tensor, dict[str, Any], Sharding | None]] = []
        seen: list[tuple[int, Tensor, Tensor, dict[str, Any], Sharding | None]] = []
        for position, param in enumerate(group["params"]):
            if param.grad is None:
                continue
            grad = param.grad
            if grad.is_sparse:
                raise TypeError(
                    f"{type(self).__name__} does not support sparse gradients; "
                    "use a dense gradient (e.g. nn.Embedding(sparse=False))"
                )
            is_complex = param.is_complex()
            if not is_complex and not param.is_floating_point():
                raise TypeError(
                    f"{type(self).__name__} optimises floating point tensors, got {param.dtype}"
                )
            local_param, grad, sharding = localize(param, grad, type(self).__name__)
            plain = plain and local_param is param and not is_complex
            state = self.state[param]
            dtype = compute_dtype(param)
            if not is_complex and grad.dtype != dtype:
                grad = grad.to(dtype)  # .to is not free even when the dtype already matches
            if group["maximize"]:
                grad = -grad
            if not state:
                init_state(state, param)  # a DTensor parameter gets DTensor buffers
                fresh.append((position, local_param, grad, state, sharding))
            else:
                seen.append((position, local_param, grad, state, sharding))
        batch = ParamBatch(group, first_steps=len(fresh), plain=plain)
        for position, param, grad, state, sharding in chain(fresh, seen):
            batch.positions.append(position)
            batch.params.append(param if plain else real_view(param))
            batch.grads.append(grad if plain else real_view(grad))
            batch.states.append(state)
            batch.shardings.append(sharding)
        return batch

    # --------------------------------------------------------------------- state dtypes
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load state like :class:`torch.optim.Optimizer`, but keep statistics in fp32/fp64.

        ``torch.optim`` casts every floating state tensor to its parameter's dtype. The
        statistics named in ``_statistic_keys`` (beta, products of betas, past learning
        rates, step counts) must not be rounded to bf16/fp16 or made complex, so they are
        taken from ``state_dict`` again and cast to the compute dtype instead.
        """
        saved_groups = state_dict["param_groups"]
        saved_state = state_dict["state"]
        self._check_loadable(saved_groups, saved_state)
        super().load_state_dict(state_dict)
        saved_ids = chain.from_iterable(group["params"] for group in saved_groups)
        params = chain.from_iterable(group["params"] for group in self.param_groups)
        for saved_id, param in zip(saved_ids, params):
            for key, value in saved_state.get(saved_id, {}).items():
                dtype = self._state_dtype(param, key)
                if dtype is None:
                    continue
                if isinstance(value, Tensor):
                    value = value.to(device=param.device, dtype=dtype, copy=True)
                else:  # a plain number (older or hand-made checkpoints), as torch.optim loads it
                    value = torch.tensor(value, dtype=dtype, device=param.device)
                self.state[param][key] = value

    def _check_loadable(self, saved_groups: list[dict[str, Any]], saved_state: dict) -> None:
        """Refuse, before anything changes, a state that this optimizer could not step from
        (another optimizer's, or a damaged one), naming what is missing."""
        name = type(self).__name__
        required = set(self.defaults) - set(self._group_defaults) - {"params"}
        for index, group in enumerate(saved_groups):
            missing = sorted(required - group.keys())
            if missing:
                raise ValueError(
                    f"{name}.load_state_dict: parameter group {index} has no {missing}: this is "
                    f"not a {name} state{self._conversion_hint()}"
                )
        for param_id, state in saved_state.items():
            missing = sorted(self._state_keys - state.keys()) if state else []
            if missing:
                raise ValueError(
                    f"{name}.load_state_dict: the state of parameter {param_id} has no "
                    f"{missing}: this is not a {name} state{self._conversion_hint()}"
                )

    def _conversion_hint(self) -> str:
        """How to load the state of the torch optimizer this one replaces, if any."""
        return ""

    def _load_converted(
        self,
        state_dict: dict[str, Any],
        group_settings: Callable[[dict[str, Any]], dict[str, Any]],
        tensor_state: Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]],
    ) -> None:
        """Load another optimizer's ``state_dict``, converted group by group and tensor by
        tensor: ``group_settings(saved_group)`` gives the settings the running job had (the
        others, AM's own, stay this optimizer's), ``tensor_state(saved_state, saved_group)``
        a tensor's AM state (``{}`` to start that tensor afresh)."""
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"the state has {len(saved_groups)} parameter groups, this optimizer "
                f"{len(self.param_groups)}: build it with the same groups"
            )
        groups, states = [], {}
        for saved, current in zip(saved_groups, self.param_groups):
            group = {key: value for key, value in current.items() if key != "params"}
            group.update(group_settings(saved))
            group["params"] = saved["params"]
            groups.append(group)
            for param_id in saved["params"]:
                saved_state = state_dict["state"].get(param_id)
                if saved_state:
                    states[param_id] = tensor_state(saved_state, saved)
        self.load_state_dict({"state": states, "param_groups": groups})

    def _state_dtype(self, param: Tensor, key: str) -> torch.dtype | None:
        """The dtype a state entry must have, or ``None`` for torch's default (param dtype)."""
        return compute_dtype(param) if key in self._statistic_keys else None

    # ------------------------------------------------------------------ subclass hooks
    def _validate_group(self, group: dict[str, Any]) -> None:
        raise NotImplementedError

    def _beta_cap(self, group: dict[str, Any]) -> float:
        raise NotImplementedError

    def _prepare(self, group: dict[str, Any]) -> ParamBatch:
        raise NotImplementedError

    def _block_sums(self, batch: ParamBatch) -> tuple[Tensor, Tensor] | None:
        """Per-tensor ``(a, b)`` of the tensors past their first step, or ``None`` if none."""
        raise NotImplementedError

    def _apply(self, batch: ParamBatch, betas: Tensor | None) -> None:
        raise NotImplementedError

    def effective_momentum(self, beta: Tensor, group: dict[str, Any]) -> Tensor:
        """The weight of the old direction in the new one, given the beta of a block."""
        raise NotImplementedError
