"""What every AM optimizer shares: the three-phase step, scopes, validation, state dtypes.

An AM step cannot update any element of a block before it knows the block's beta, and beta
needs sums over the whole block (for ``scope="global"``, over every parameter). So a step runs
in three phases:

1. ``_collect`` gathers the tensors of each group (a :class:`~adamem._core.batch.ParamBatch`) and
   ``_plan``, the one place that chooses how a group's step runs, makes its
   :class:`StepPlan`: the fused kernels when they can take the group
   (:func:`adamem._kernels.fused.plan`: C on the CPU, Triton on CUDA), else the optimizer's torch
   step (multi-tensor or reference, per ``foreach``). ``plan.block_sums()`` returns the
   per-tensor ``(a, b)`` (ALGORITHMS.md §4), updating any statistic that does not depend on
   beta;
2. :func:`adamem.beta.block_betas` turns the sums into one beta per tensor, per ``scope``
   (a plan that solved them itself while taking the whole step hands them back instead:
   ``StepPlan.solved``);
3. ``plan.apply(betas)`` updates parameters and state with those betas.

An optimizer supplies its state (``_init_state``), its torch step (``_torch_step``) and its
kernels' interface (``kernels``, a :class:`adamem._kernels.contract.Kernels`).

Inside a group, tensors seen for the first time come first (``ParamBatch.first_steps`` of
them): their step follows a fixed rule and they stay out of the model's sums.

DTensor parameters (FSDP2, tensor parallel) are optimised through their local shards: phases 1
and 3 see only local tensors, and between phases 1 and 2 one ``all_reduce`` completes the
partial sums of every sharded tensor (:mod:`adamem._core.distributed`, docs/distributed.md).
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import chain
from typing import Any, Protocol

import torch
from torch import Tensor
from torch.optim import Optimizer

from .._kernels import fused
from .._kernels.contract import Kernels
from ..beta import SCOPES, RunningModels, block_betas
from .batch import ParamBatch, capturing, compute_dtype, real_view, scalar_state, use_foreach
from .checks import check_choice, check_flag
from .distributed import (
    Sharding,
    all_reduce_block_sums,
    all_reduce_partition_sums,
    local,
    localize,
)


class StepPlan(Protocol):
    """How one group's step runs: the two phases around the beta solve."""

    solved: Tensor | None
    """The betas of the tensors past their first step if :meth:`block_sums` solved them and
    took the whole step (the fused CPU step does so where each tensor is its own block, with
    :func:`adamem.beta.select_beta`'s rules), else ``None``."""

    def block_sums(self) -> tuple[Tensor, Tensor] | None:
        """First steps, statistics that do not depend on beta, and the ``(a, b)`` of the
        tensors past their first step (``None`` if there is none, or if it took the whole
        step: see :attr:`solved`)."""

    def apply(self, betas: Tensor | None) -> None:
        """The update with one beta per tensor past its first step."""


class AMOptimizer(Optimizer):
    """Base class of the AM optimizers; see the module docstring for the step's phases.

    Subclasses define ``kernels``, ``_init_state``, ``_torch_step``, ``_validate_group``,
    ``_beta_cap`` (the cap on beta in a group), ``effective_momentum``, ``_state_keys`` (the
    state of a tensor that has taken a step), ``_statistic_keys`` (those kept in the compute
    dtype whatever the parameter dtype) and ``_group_defaults`` (group settings that older
    checkpoints may lack).
    """

    kernels: Kernels | None = None  # None: no fused kernels, the torch step always
    _statistic_keys: frozenset[str] = frozenset()
    _state_keys: frozenset[str] = frozenset()
    _group_defaults: dict[str, Any] = {}

    def __init__(self, params: Any, defaults: dict[str, Any]) -> None:
        self._flat_partition_group: Any = None  # set_flat_partition_group
        self._kernel_layouts = fused.LayoutCache()
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
        global_groups = [g for g in self.param_groups if g["scope"] == "global"]
        caps = {self._beta_cap(g) for g in global_groups}
        if len(caps) > 1:
            raise ValueError(
                "parameter groups with scope='global' form one block and must share the same "
                f"beta cap, got {sorted(caps)}"
            )
        factors = {g.get("noise_averaging") for g in global_groups}
        if len(factors) > 1:
            raise ValueError(
                "parameter groups with scope='global' form one block and must share the same "
                f"noise_averaging, got {sorted(factors, key=str)}"
            )

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.__dict__.setdefault("_flat_partition_group", None)
        self.__dict__.setdefault("_kernel_layouts", fused.LayoutCache())
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
        batches = [self._collect(group) for group in self.param_groups]
        plans = [self._plan(batch) if len(batch) else None for batch in batches]
        sums = [None if plan is None else plan.block_sums() for plan in plans]
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
            [
                None if group_sums is None else self._running_models(batch)
                for batch, group_sums in zip(batches, sums)
            ],
        )
        for index, plan in enumerate(plans):
            if plan is not None:
                if plan.solved is None:
                    plan.apply(betas[index])
                else:
                    betas[index] = plan.solved
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
        records = self._solved + [None] * (len(self.param_groups) - len(self._solved))
        for group, record in zip(self.param_groups, records):  # groups added since: None
            if record is None:
                solved.append(None)
            else:
                positions, betas = record
                solved.append(([group["params"][i] for i in positions], betas))
        return solved

    # ------------------------------------------------------------------ noise averaging
    AVERAGE_KEYS = ("averaged_slope", "averaged_curvature")
    """The state of ``noise_averaging``: a block's running average of its scaled models
    (:func:`adamem.beta.averaged_select`), held by each of the block's tensors."""

    def _running_models(self, batch: ParamBatch) -> RunningModels | None:
        """The group's running models if it averages them (``noise_averaging``), else None.

        With ``scope="tensor"`` each tensor holds its own pair. A group's or the global
        block's one pair is held by every tensor of the group that has state, and all of them
        get the new pair, also those without a gradient in this step, so that they stay
        equal and any of them holds the block's pair."""
        group = batch.group
        factor = group.get("noise_averaging")
        if factor is None:
            return None
        slope_key, curvature_key = self.AVERAGE_KEYS
        for param in group["params"]:
            state = self.state.get(param)
            if state and slope_key not in state:  # turned on after the run started
                for key in self.AVERAGE_KEYS:
                    state[key] = scalar_state(0.0, local(param))
        solved = batch.states[batch.first_steps :]
        if group["scope"] == "tensor":
            holders = solved
            slope = torch.stack([state[slope_key] for state in solved])
            curvature = torch.stack([state[curvature_key] for state in solved])
        else:
            holders = [self.state[p] for p in group["params"] if self.state.get(p)]
            slope, curvature = solved[0][slope_key], solved[0][curvature_key]

        def store(new_slope: Tensor, new_curvature: Tensor) -> None:
            for key, values in ((slope_key, new_slope), (curvature_key, new_curvature)):
                targets = [state[key] for state in holders]
                if values.dim():
                    torch._foreach_copy_(targets, list(values.unbind()))
                else:
                    torch._foreach_copy_(targets, [values] * len(targets))

        return RunningModels(float(factor), slope, curvature, store)

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

    def _plan(self, batch: ParamBatch) -> StepPlan:
        """How ``batch``'s step runs: the fused kernels if they take it, else the torch step."""
        fused_step = fused.plan(batch, self.kernels, self._kernel_layouts)
        if fused_step is not None:
            return fused_step
        return self._torch_step(batch, use_foreach(batch.group, batch.params))

    def _collect(self, group: dict[str, Any]) -> ParamBatch:
        """Gather the tensors with a gradient, creating state on first sight (first in order).

        Gradients stay as stored (dtype, sign): the plan decides how to read them. This runs
        for every tensor at every step, so it is written for speed: the fused kernels' whole
        host work is of the same order."""
        name = type(self).__name__
        plain = True
        states = self.state
        fresh: list[tuple[int, Tensor, Tensor, dict[str, Any], Sharding | None]] = []
        seen: list[tuple[int, Tensor, Tensor, dict[str, Any], Sharding | None]] = []
        for position, param in enumerate(group["params"]):
            grad = param.grad
            if grad is None:
                continue
            if grad.is_sparse:
                raise TypeError(
                    f"{name} does not support sparse gradients; "
                    "use a dense gradient (e.g. nn.Embedding(sparse=False))"
                )
            dtype = param.dtype
            if not dtype.is_floating_point:
                if not dtype.is_complex:
                    raise TypeError(f"{name} optimises floating point tensors, got {dtype}")
                plain = False
            local_param, grad, sharding = localize(param, grad, name)
            plain = plain and local_param is param
            state = states[param]
            if not state:
                if capturing(param.device):
                    # Checked before the state exists: state made during a capture would
                    # hold what the graph writes at its first replay, not zeros now.
                    raise RuntimeError(
                        f"{name}.step() is being captured into a CUDA graph, but a parameter "
                        "takes its first step in it: a first step creates the state and follows "
                        "its own rule, which the graph would repeat at every replay. Take an "
                        "eager step first (the usual warm-up steps before a capture)"
                    )
                self._init_state(state, param, group)  # a DTensor gets DTensor buffers
                fresh.append((position, local_param, grad, state, sharding))
            else:
                seen.append((position, local_param, grad, state, sharding))
        batch = ParamBatch(group, first_steps=len(fresh), plain=plain)
        entries = fresh + seen if fresh else seen
        if entries:
            positions, params, grads, batch_states, shardings = map(list, zip(*entries))
            batch.positions, batch.states, batch.shardings = positions, batch_states, shardings
            batch.params = params if plain else [real_view(p) for p in params]
            batch.grads = grads if plain else [real_view(g) for g in grads]
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
                    # Copies: the state of a live optimizer must not become this one's too.
                    converted = tensor_state(saved_state, saved)
                    states[param_id] = {
                        key: value.clone() if isinstance(value, Tensor) else value
                        for key, value in converted.items()
                    }
        self.load_state_dict({"state": states, "param_groups": groups})

    def _state_dtype(self, param: Tensor, key: str) -> torch.dtype | None:
        """The dtype a state entry must have, or ``None`` for torch's default (param dtype)."""
        return compute_dtype(param) if key in self._statistic_keys else None

    # ------------------------------------------------------------------ subclass hooks
    def _validate_group(self, group: dict[str, Any]) -> None:
        raise NotImplementedError

    def _beta_cap(self, group: dict[str, Any]) -> float:
        raise NotImplementedError

    def _init_state(self, state: dict[str, Any], param: Tensor, group: dict[str, Any]) -> None:
        """Fill the state of a tensor seen for the first time."""
        raise NotImplementedError

    def _torch_step(self, batch: ParamBatch, foreach: bool) -> StepPlan:
        """The group's step on torch ops: multi-tensor (``foreach``) or the reference."""
        raise NotImplementedError

    def effective_momentum(self, beta: Tensor, group: dict[str, Any]) -> Tensor:
        """The weight of the old direction in the new one, given the beta of a block."""
        raise NotImplementedError
