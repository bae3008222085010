"""Exact AM on sharded parameters: DTensors (FSDP2, HSDP, tensor parallel). See docs/distributed.md.

A DTensor parameter's ``(a, b)`` are inner products over the whole tensor, but each rank holds
only its local shard. The optimizer therefore

1. runs all of its arithmetic on local tensors (:func:`localize`, :func:`local`), so no DTensor
   operator can issue a hidden collective, and records where each tensor is split
   (a :class:`Sharding`);
2. after every group's local ``(a, b)`` are known, sums the partial sums of every sharded tensor
   of every group with **one** ``all_reduce`` (:func:`all_reduce_block_sums`);
3. solves beta from the full sums as in a single process; every rank gets the same betas.

Only mesh dimensions over which some tensor is split (``Shard``) are reduced: a ``Replicate``
dimension (HSDP's replicate dimension, a tensor parallel dimension of a replicated norm weight)
holds copies, and summing copies would count them twice. When one collective must cover
dimensions over which some tensor is replicated, only the copy at coordinate 0 of those
dimensions contributes its sums (the others contribute 0), which keeps the sums exact.

Plain tensors (not DTensors) are taken to be whole and identical on every rank (DDP, or
parameters outside FSDP) and are not reduced. ``Partial`` parameters are not supported; a
gradient whose placements differ from its parameter's (e.g. an unreduced ``Partial`` gradient of
a tensor parallel parameter) is first redistributed to the parameter's placements by DTensor.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = ["Sharding", "all_reduce_block_sums", "all_reduce_partition_sums", "local", "localize"]


_PLAIN_TYPES = (Tensor, torch.nn.Parameter)


def is_dtensor(tensor: Any) -> bool:
    if type(tensor) in _PLAIN_TYPES:  # the common case, without the lookups below
        return False
    # No import: a DTensor can only exist once its module is loaded (importing
    # torch.distributed.tensor would add seconds to ``import adamem``).
    module = sys.modules.get("torch.distributed.tensor")
    dtensor = getattr(module, "DTensor", None)
    return dtensor is not None and isinstance(tensor, dtensor)


def local(tensor: Tensor) -> Tensor:
    """The local shard of a DTensor (a view sharing its storage), or the tensor itself."""
    return tensor.to_local() if is_dtensor(tensor) else tensor


@dataclass(frozen=True)
class Sharding:
    """Where a DTensor's local sums must be added up: ``mesh`` and the dims that split it.

    ``split_dims`` are the mesh dimensions with a ``Shard``-like placement; on every other mesh
    dimension the tensor is replicated.
    """

    mesh: Any  # torch.distributed.device_mesh.DeviceMesh
    split_dims: tuple[int, ...]


def _is_split(placement: Any) -> bool:
    """``Shard(d)`` and FSDP2's ``_StridedShard`` (not a ``Shard`` subclass in every torch)."""
    return placement.is_shard() or type(placement).__name__ == "_StridedShard"


_FSDP1_MESSAGE = (
    "{name} does not support FSDP1 (FullyShardedDataParallel): it hands the optimizer "
    "flattened shards, from which the per-tensor sums of AM cannot be formed. Use FSDP2 "
    "(torch.distributed.fsdp.fully_shard) or DDP; see docs/distributed.md"
)


def localize(param: Tensor, grad: Tensor, name: str) -> tuple[Tensor, Tensor, Sharding | None]:
    """``(local param, local grad, sharding)``; ``sharding`` is ``None`` for plain tensors.

    Raises for layouts whose sums cannot be completed exactly: ``Partial`` parameters, a
    DTensor parameter with a plain gradient (or the reverse), and meshes that differ between
    a parameter and its gradient. ``name`` is the optimizer's name, for the messages.
    """
    if type(grad) is Tensor and type(param) in _PLAIN_TYPES:  # the common case, quickly
        if getattr(param, "_fsdp_flattened", False):
            raise NotImplementedError(_FSDP1_MESSAGE.format(name=name))
        return param, grad, None
    if not is_dtensor(param):
        if is_dtensor(grad):
            raise TypeError(f"{name}: the parameter is a plain tensor but its gradient a DTensor")
        if getattr(param, "_fsdp_flattened", False):
            raise NotImplementedError(_FSDP1_MESSAGE.format(name=name))
        return param, grad, None
    if not is_dtensor(grad):
        raise TypeError(
            f"{name}: the parameter is a DTensor but its gradient a plain tensor; assign a "
            "DTensor gradient with the parameter's mesh and placements"
        )
    mesh, placements = param.device_mesh, tuple(param.placements)
    split_dims = []
    for dim, placement in enumerate(placements):
        if _is_split(placement):
            split_dims.append(dim)
        elif not placement.is_replicate():
            raise NotImplementedError(
                f"{name} supports DTensor parameters with Shard or Replicate placements; got "
                f"{placement} on mesh dimension {dim} (placements {placements})"
            )
    if grad.device_mesh != mesh:
        raise ValueError(
            f"{name}: a DTensor gradient lives on mesh {grad.device_mesh}, its parameter on {mesh}"
        )
    if tuple(grad.placements) != placements:
        # E.g. a Partial (unreduced) gradient of a replicated tensor parallel weight. DTensor
        # reduces it, as torch.optim's optimizers implicitly do (extra collectives).
        grad = grad.redistribute(mesh, placements)
    return param.to_local(), grad.to_local(), Sharding(mesh, tuple(split_dims))


def all_reduce_block_sums(
    sums: Sequence[tuple[Tensor, Tensor] | None],
    shardings: Sequence[Sequence[Sharding | None]],
) -> list[tuple[Tensor, Tensor] | None]:
    """Complete the per-tensor ``(a, b)`` of sharded tensors with a single ``all_reduce``.

    Args:
        sums: per group, the local ``(a, b)`` (1-D, one entry per tensor) or ``None``.
        shardings: per group, the :class:`Sharding` of each entry (``None`` for a whole tensor).

    Returns ``sums`` with the entries of split tensors replaced by their totals over the mesh
    (new tensors; ``sums`` itself is returned when nothing is split, with no collective).
    Every rank must call this with the same structure, which holds when all ranks step the same
    parameters (as FSDP2 ensures).
    """
    members: dict[int, list[int]] = {}  # group index -> entries of split tensors
    placed = []  # per split tensor, in that order: (root mesh, split dims on the root mesh)
    for group_index, (group_sums, group_shardings) in enumerate(zip(sums, shardings)):
        if group_sums is None:
            continue
        for entry, sharding in enumerate(group_shardings):
            if sharding is not None and sharding.split_dims:
                members.setdefault(group_index, []).append(entry)
                placed.append(_on_root_mesh(sharding))
    if not members:
        return list(sums)

    mesh = placed[0][0]
    if any(other != mesh for other, _ in placed[1:]):
        raise NotImplementedError(
            "AM needs all sharded parameters of one optimizer on one device mesh (or on "
            "sub-meshes of one mesh with named dimensions); got meshes of ranks "
            f"{sorted({_describe(other) for other, _ in placed})}"
        )
    reduced_dims = sorted({dim for _, split_dims in placed for dim in split_dims})

    # Gather the split tensors' (a, b) into one buffer: [a of each, b of each].
    first_a = sums[next(iter(members))][0]
    device, dtype = first_a.device, first_a.dtype
    for group_index in members:
        dtype = torch.promote_types(dtype, sums[group_index][0].dtype)
    selections = {
        group_index: _selection(entries, len(sums[group_index][0]), sums[group_index][0].device)
        for group_index, entries in members.items()
    }
    parts = [
        [
            _select(sums[group_index][which], index).to(device, dtype)
            for group_index, index in selections.items()
        ]
        for which in (0, 1)
    ]
    buffer = torch.cat(parts[0] + parts[1])

    # A copy at a nonzero coordinate of a reduced dimension over which its tensor is
    # replicated adds 0, so that every shard is counted once.
    coordinate = mesh.get_coordinate()
    contributes = [
        all(coordinate[dim] == 0 for dim in reduced_dims if dim not in split_dims)
        for _, split_dims in placed
    ]
    if not all(contributes):
        keep = torch.tensor(contributes * 2, device=device)
        buffer = torch.where(keep, buffer, torch.zeros((), dtype=dtype, device=device))

    torch.distributed.all_reduce(buffer, group=_process_group(mesh, reduced_dims))

    totals = list(sums)
    reduced_a, reduced_b = buffer.split(len(placed))
    offset = 0
    for group_index, index in selections.items():
        count = len(members[group_index])
        a, b = sums[group_index]
        totals[group_index] = (
            _replace(a, index, reduced_a[offset : offset + count]),
            _replace(b, index, reduced_b[offset : offset + count]),
        )
        offset += count
    return totals


def all_reduce_partition_sums(
    sums: Sequence[tuple[Tensor, Tensor] | None],
    shardings: Sequence[Sequence[Sharding | None]],
    process_group: Any,
) -> list[tuple[Tensor, Tensor] | None]:
    """Flat partitions (DeepSpeed ZeRO-1/2): add every entry's ``(a, b)`` over ``process_group``.

    Each rank's tensors are its slices of flat buffers split over ``process_group``, so only
    the sums of whole slices-of-everything are meaningful: the caller allows scope ``"group"``
    and ``"global"`` only. One ``all_reduce``; none if no group has sums.
    """
    if any(sharding is not None for group in shardings for sharding in group):
        raise ValueError(
            "a flat partition group is set, but some parameters are DTensors; DTensors carry "
            "their own layout, so do not set a flat partition group for them"
        )
    present = [index for index, pair in enumerate(sums) if pair is not None]
    if not present:
        return list(sums)
    device, dtype = sums[present[0]][0].device, sums[present[0]][0].dtype
    for index in present:
        dtype = torch.promote_types(dtype, sums[index][0].dtype)
    buffer = torch.cat(
        [sums[index][which].to(device, dtype) for which in (0, 1) for index in present]
    )
    torch.distributed.all_reduce(buffer, group=process_group)
    totals = list(sums)
    lengths = [len(sums[index][0]) for index in present]
    reduced_a, reduced_b = buffer.split(sum(lengths))
    for index, a, b in zip(present, reduced_a.split(lengths), reduced_b.split(lengths)):
        like = sums[index][0]
        totals[index] = (a.to(like.device, like.dtype), b.to(like.device, like.dtype))
    return totals


def _selection(entries: list[int], length: int, device: torch.device) -> Tensor | None:
    """Index tensor of ``entries`` in a 1-D tensor of ``length``; ``None`` for all of it."""
    if entries == list(range(length)):
        return None
    return torch.tensor(entries, device=device)


def _select(values: Tensor, index: Tensor | None) -> Tensor:
    return values if index is None else values.index_select(0, index)


def _replace(values: Tensor, index: Tensor | None, new: Tensor) -> Tensor:
    new = new.to(values.device, values.dtype)
    return new if index is None else values.index_copy(0, index, new)


def _describe(mesh: Any) -> str:
    return f"{mesh.mesh.tolist()} (dims {mesh.mesh_dim_names})"


def _on_root_mesh(sharding: Sharding) -> tuple[Any, tuple[int, ...]]:
    """Express a sub-mesh's split dims on its root mesh (by dimension name), when possible.

    FSDP2 puts a parameter that is not tensor parallel on the data parallel sub-mesh of the
    (dp, tp) mesh of the tensor parallel ones; on the root mesh it is replicated over tp.
    """
    mesh = sharding.mesh
    root = mesh._get_root_mesh() if hasattr(mesh, "_get_root_mesh") else mesh
    names, root_names = mesh.mesh_dim_names, root.mesh_dim_names
    if root is mesh or not names or not root_names or not set(names) <= set(root_names):
        return mesh, sharding.split_dims
    return root, tuple(root_names.index(names[dim]) for dim in sharding.split_dims)


def _process_group(mesh: Any, dims: Sequence[int]) -> Any:
    """The process group of the ranks that differ only along mesh dimensions ``dims``."""
    if len(dims) == 1:
        return mesh.get_group(dims[0])
    names = mesh.mesh_dim_names
    if not names:
        raise NotImplementedError(
            "AM must reduce over several dimensions of a device mesh without dimension names; "
            "create the mesh with mesh_dim_names (init_device_mesh(..., mesh_dim_names=...))"
        )
    # A 1-D mesh over those dimensions; DeviceMesh caches it, so groups are created once.
    return mesh[tuple(names[dim] for dim in dims)]._flatten().get_group()
