"""One rank of the distributed tests (tests/test_distributed.py starts two with gloo on CPU).

Run as ``python distributed_worker.py RANK WORLD_SIZE PORT OUT_DIR``. Every rank runs every case
below in the same order (collectives must match) and rank 0 saves the results, gathered to full
tensors, in ``OUT_DIR/results.pt``. The model, data and single-process reference runs are shared
with the test module, which imports this file.
"""

from __future__ import annotations

import datetime
import sys
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from helpers import OPTION_CASES, WEIGHT_DECAY_CASES
from torch import nn

import adamem

STEPS = 6
RESUME_AT = 3
SCOPES = ("tensor", "group", "global")
# Each optimizer class once, with weight decay; results are keyed by the case's name.
OPTIMIZERS = {case.name: case for case in WEIGHT_DECAY_CASES}
FSDP_OPTIMIZERS = OPTIMIZERS | {case.name: case for case in OPTION_CASES}
# DeepSpeed ZeRO's flat partitions are 1-D: for the classes that take vectors.
ZERO_OPTIMIZERS = {name: case for name, case in OPTIMIZERS.items() if case.takes(torch.ones(3))}


class Net(nn.Module):
    """Shapes chosen for uneven shards on 2 ranks: 5 rows split 3/2, 3 rows 2/1, 1 row 1/0."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 5)
        self.fc2 = nn.Linear(5, 3)
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.tanh(self.fc1(x))) * self.scale


def build_model(seed: int = 0) -> Net:
    torch.manual_seed(seed)
    return Net()


def two_groups(case, params: list[torch.Tensor]) -> list[dict[str, Any]]:
    """The tensors of ``params`` that ``case``'s class takes, in two groups with different
    learning rates: the first two (one if only two are taken) and the rest."""
    taken = [p for p in params if case.takes(p)]
    split = 2 if len(taken) > 2 else 1
    return [{"params": taken[:split]}, {"params": taken[split:], "lr": 0.02}]


def param_groups(model: nn.Module, case) -> list[dict[str, Any]]:
    """Weights, and biases with the scale (or, for a class of matrices only, one weight
    per group); the tensors the class does not take stay as they are."""
    ordered = [model.fc1.weight, model.fc2.weight, model.fc1.bias, model.fc2.bias, model.scale]
    return two_groups(case, ordered)


def make_optimizer(
    name: str, model: nn.Module | None, scope: str, foreach: bool | None = None, groups=None
):
    case = FSDP_OPTIMIZERS[name]
    groups = param_groups(model, case) if groups is None else groups
    return case.make(groups, scope=scope, foreach=foreach)


def batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(100 + step)
    return torch.randn(4, 6, generator=generator), torch.randn(4, 3, generator=generator)


def half_loss(model: nn.Module, step: int, half: int) -> torch.Tensor:
    """The mean loss of rows ``2*half, 2*half+1`` of the step's batch."""
    x, y = batch(step)
    rows = slice(2 * half, 2 * half + 2)
    return nn.functional.mse_loss(model(x[rows]), y[rows])


def reference_grads(model: nn.Module, step: int) -> None:
    """The gradient two data parallel ranks average: ``(g_0 + g_1) / 2``, bit for bit (the
    halves are computed as on the ranks and scaling by 1/2 is exact)."""
    model.zero_grad(set_to_none=True)
    for half in (0, 1):
        (0.5 * half_loss(model, step, half)).backward()


def reference_run(name: str, scope: str, steps: int = STEPS) -> tuple[nn.Module, Any]:
    """The single-process run that every data parallel run must reproduce."""
    model = build_model()
    optimizer = make_optimizer(name, model, scope)
    for step in range(steps):
        reference_grads(model, step)
        optimizer.step()
    return model, optimizer


# ------------------------------------------------------------------------------- helpers
def full(tensor: torch.Tensor) -> torch.Tensor:
    from torch.distributed.tensor import DTensor

    value = tensor.full_tensor() if isinstance(tensor, DTensor) else tensor
    return value.detach().clone()


def full_params(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: full(p) for name, p in model.named_parameters()}


def full_state(model: nn.Module, optimizer) -> dict[str, torch.Tensor]:
    out = {}
    for name, p in model.named_parameters():
        for key, value in optimizer.state[p].items():
            out[f"{name}.{key}"] = full(value)
    return out


class CollectiveCounter:
    """Counts, per optimizer step, the calls of ``torch.distributed.all_reduce`` and every
    collective operator dispatched (``c10d`` ops of ``torch.distributed``, DTensor's functional
    collectives), so hidden collectives show up too.

    Use as ``with counter: ... with counter.step(): optimizer.step()``.
    """

    def __init__(self) -> None:
        self.all_reduce: list[int] = []
        self.collectives: list[int] = []
        self.group_sizes: set[int] = set()  # of the process groups all_reduce ran over
        self._in_step = False

    def __enter__(self) -> CollectiveCounter:
        import torch.distributed as dist

        self._original = dist.all_reduce

        def counting_all_reduce(tensor, op=dist.ReduceOp.SUM, group=None, async_op=False):
            if self._in_step:
                self.all_reduce[-1] += 1
                self.group_sizes.add(dist.get_world_size(group))
            return self._original(tensor, op=op, group=group, async_op=async_op)

        dist.all_reduce = counting_all_reduce
        return self

    def __exit__(self, *exc_info) -> None:
        import torch.distributed as dist

        dist.all_reduce = self._original

    @contextmanager
    def step(self):
        from torch.utils._python_dispatch import TorchDispatchMode

        counts = self.collectives

        class CountCollectives(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                name = func.name()
                if func.namespace == "c10d" or (
                    func.namespace == "_c10d_functional"
                    and "wait_tensor" not in name
                    and "wrap_tensor" not in name
                ):
                    counts[-1] += 1
                return func(*args, **(kwargs or {}))

        self.all_reduce.append(0)
        self.collectives.append(0)
        self._in_step = True
        try:
            with CountCollectives():
                yield
        finally:
            self._in_step = False

    def counts(self) -> dict[str, list[int]]:
        return {"all_reduce": self.all_reduce, "collectives": self.collectives}


def train(model, optimizer, rank: int, start: int, stop: int, counter=None):
    """Data parallel steps: rank r takes half r of each batch (the mean loss, averaged by
    DDP/FSDP, gives the single-process gradient)."""
    for step in range(start, stop):
        model.zero_grad(set_to_none=True)
        half_loss(model, step, rank).backward()
        if counter is None:
            optimizer.step()
        else:
            with counter.step():
                optimizer.step()


# --------------------------------------------------------------------------------- cases
def fsdp_model(mesh, seed: int = 0) -> nn.Module:
    from torch.distributed.fsdp import fully_shard

    model = build_model(seed)
    fully_shard(model.fc1, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def case_fsdp(rank: int, mesh, results: dict, out_dir: Path) -> None:
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (
        get_model_state_dict,
        get_optimizer_state_dict,
        set_model_state_dict,
        set_optimizer_state_dict,
    )
    from torch.distributed.tensor import DTensor

    runs = [(name, scope, None) for name in FSDP_OPTIMIZERS for scope in SCOPES]
    runs += [(name, "tensor", True) for name in FSDP_OPTIMIZERS]  # the multi-tensor path
    for name, scope, foreach in runs:
        key = f"fsdp{'-foreach' if foreach else ''}/{name}/{scope}"
        model = fsdp_model(mesh)
        optimizer = make_optimizer(name, model, scope, foreach)
        with CollectiveCounter() as counter:
            train(model, optimizer, rank, 0, STEPS, counter)
        layouts = [
            (
                type(state).__name__,
                tuple(state.placements) == tuple(p.placements)
                if isinstance(state, DTensor)
                else None,
            )
            for p in model.parameters()
            for k, state in optimizer.state[p].items()
            if k in ("momentum_buffer", "exp_avg", "exp_avg_sq")
        ]
        results[key] = {
            "params": full_params(model),
            "state": full_state(model, optimizer),
            "counts": counter.counts(),
            "group_sizes": counter.group_sizes,
            "buffer_layouts": layouts,
        }

    for name in OPTIMIZERS:
        # Resume from a distributed checkpoint after RESUME_AT steps, into a fresh model
        # (other init) and optimizer; the uninterrupted run is fsdp/{name}/global.
        model = fsdp_model(mesh)
        optimizer = make_optimizer(name, model, "global")
        train(model, optimizer, rank, 0, RESUME_AT)
        checkpoint = out_dir / f"dcp-{name}"
        dcp.save(
            {
                "model": get_model_state_dict(model),
                "optim": get_optimizer_state_dict(model, optimizer),
            },
            checkpoint_id=str(checkpoint),
        )
        model = fsdp_model(mesh, seed=1)
        optimizer = make_optimizer(name, model, "global")
        state = {
            "model": get_model_state_dict(model),
            "optim": get_optimizer_state_dict(model, optimizer),
        }
        dcp.load(state, checkpoint_id=str(checkpoint))
        set_model_state_dict(model, state["model"])
        set_optimizer_state_dict(model, optimizer, state["optim"])
        train(model, optimizer, rank, RESUME_AT, STEPS)
        results[f"dcp/{name}"] = {
            "params": full_params(model),
            "state": full_state(model, optimizer),
        }

    # Without the reduction (per-shard sums: the bug this module prevents) the runs differ.
    import adamem._core.optimizer as core

    original = core.all_reduce_block_sums
    core.all_reduce_block_sums = lambda sums, shardings: list(sums)
    try:
        for name in OPTIMIZERS:
            model = fsdp_model(mesh)
            optimizer = make_optimizer(name, model, "tensor")
            train(model, optimizer, rank, 0, STEPS)
            results[f"naive/{name}/tensor"] = {"params": full_params(model)}
    finally:
        core.all_reduce_block_sums = original


def case_hsdp(rank: int, results: dict) -> None:
    """HSDP on (replicate, shard) meshes of shapes (2, 1) and (1, 2)."""
    from torch.distributed.device_mesh import init_device_mesh

    for shape in ((2, 1), (1, 2)):
        mesh = init_device_mesh("cpu", shape, mesh_dim_names=("replicate", "shard"))
        for name in OPTIMIZERS:
            model = fsdp_model(mesh)
            optimizer = make_optimizer(name, model, "global")
            with CollectiveCounter() as counter:
                train(model, optimizer, rank, 0, STEPS, counter)
            results[f"hsdp{shape[0]}x{shape[1]}/{name}/global"] = {
                "params": full_params(model),
                "counts": counter.counts(),
                "group_sizes": counter.group_sizes,
            }


def case_ddp(rank: int, results: dict) -> None:
    from torch.nn.parallel import DistributedDataParallel

    for name in OPTIMIZERS:
        for scope in SCOPES:
            model = build_model()
            ddp = DistributedDataParallel(model)
            optimizer = make_optimizer(name, model, scope)
            with CollectiveCounter() as counter:
                train(ddp, optimizer, rank, 0, STEPS, counter)
            results[f"ddp/{name}/{scope}"] = {
                "params": full_params(model),
                "counts": counter.counts(),
            }


def case_zero(rank: int, world_size: int, results: dict) -> None:
    """DeepSpeed ZeRO-1/2 simulated: each group's parameters flattened, padded and split into
    one flat slice per rank, which is all the optimizer sees; set_flat_partition_group makes
    scope group/global exact."""
    import torch.distributed as dist

    def flat_slice(tensors: list[torch.Tensor]) -> torch.Tensor:
        flat = torch.cat([t.detach().reshape(-1) for t in tensors])
        size = -(-len(flat) // world_size)  # padded with zeros to world_size slices
        flat = torch.cat([flat, flat.new_zeros(size * world_size - len(flat))])
        return flat[rank * size : (rank + 1) * size].clone()

    for name, case in ZERO_OPTIMIZERS.items():
        for scope in ("group", "global"):
            model = build_model()  # whole on every rank: gives the gradients
            groups = param_groups(model, case)
            slices = [nn.Parameter(flat_slice(group["params"])) for group in groups]
            optimizer = make_optimizer(
                name, None, scope, groups=[{**g, "params": [s]} for g, s in zip(groups, slices)]
            )
            optimizer.set_flat_partition_group(dist.group.WORLD)
            with CollectiveCounter() as counter:
                for step in range(STEPS):
                    reference_grads(model, step)
                    for group, flat in zip(groups, slices):
                        flat.grad = flat_slice([p.grad for p in group["params"]])
                    with counter.step():
                        optimizer.step()
                    with torch.no_grad():  # all-gather the slices back into the model
                        for group, flat in zip(groups, slices):
                            parts = [torch.empty_like(flat) for _ in range(world_size)]
                            dist.all_gather(parts, flat.detach())
                            whole = torch.cat(parts)
                            for p in group["params"]:
                                p.copy_(whole[: p.numel()].view_as(p))
                                whole = whole[p.numel() :]
            results[f"zero/{name}/{scope}"] = {
                "params": full_params(model),
                "counts": counter.counts(),
            }
        try:
            optimizer = make_optimizer(name, build_model(), "tensor")
            optimizer.set_flat_partition_group(dist.group.WORLD)
            results[f"zero/{name}/tensor-scope"] = "no error"
        except ValueError as error:
            results[f"zero/{name}/tensor-scope"] = str(error)


TP_SHAPES = [(4, 6), (3, 4), (3,), (1,)]


def tp_placements():
    from torch.distributed.tensor import Replicate, Shard

    # Column- and row-wise splits, a replicated bias, a tensor smaller than the mesh.
    return [[Shard(0)], [Shard(1)], [Replicate()], [Shard(0)]]


def tp_grads(params: list[torch.Tensor], step: int) -> list[torch.Tensor]:
    """Deterministic gradients of a noisy quadratic, from the full parameters."""
    generator = torch.Generator().manual_seed(7 + step)
    return [
        (1.0 + i) * p + 0.3 * torch.randn(p.shape, generator=generator)
        for i, p in enumerate(params)
    ]


def make_tp_optimizer(name: str, params: list[torch.Tensor], scope: str):
    case = OPTIMIZERS[name]
    return case.make(two_groups(case, params), scope=scope)


def tp_reference(name: str, scope: str, partial_bias: bool = False) -> list[torch.Tensor]:
    torch.manual_seed(3)
    params = [nn.Parameter(torch.randn(shape)) for shape in TP_SHAPES]
    optimizer = make_tp_optimizer(name, params, scope)
    for step in range(STEPS):
        for p, g in zip(params, tp_grads([p.detach() for p in params], step)):
            p.grad = g
        optimizer.step()
    return [p.detach().clone() for p in params]


def case_tp(rank: int, mesh, results: dict) -> None:
    """Tensor parallel layouts built by hand: Shard(0), Shard(1), Replicate, an empty shard;
    and a Partial (unreduced) gradient of the replicated tensor."""
    from torch.distributed.tensor import DTensor, Partial, distribute_tensor

    for partial_bias in (False, True):
        for name in OPTIMIZERS:
            for scope in SCOPES:
                if partial_bias and scope != "global":
                    continue
                torch.manual_seed(3)
                full_init = [torch.randn(shape) for shape in TP_SHAPES]
                params = [
                    nn.Parameter(distribute_tensor(t, mesh, pl))
                    for t, pl in zip(full_init, tp_placements())
                ]
                optimizer = make_tp_optimizer(name, params, scope)
                with CollectiveCounter() as counter:
                    for step in range(STEPS):
                        grads = tp_grads([p.detach().full_tensor() for p in params], step)
                        for index, (p, g) in enumerate(zip(params, grads)):
                            if partial_bias and index == 2:
                                p.grad = DTensor.from_local(g / 2, mesh, [Partial()])
                            else:
                                p.grad = distribute_tensor(g, mesh, p.placements)
                        with counter.step():
                            optimizer.step()
                suffix = "/partial-grad" if partial_bias else ""
                results[f"tp/{name}/{scope}{suffix}"] = {
                    "params": [p.full_tensor().detach().clone() for p in params],
                    "counts": counter.counts(),
                }


def case_reduction(rank: int, results: dict) -> None:
    """``all_reduce_block_sums`` on 2-D meshes: replicated copies count once, sub-meshes map to
    their root, plain tensors are not reduced, several meshes raise."""
    from torch.distributed.device_mesh import DeviceMesh, init_device_mesh

    from adamem._core.distributed import Sharding, all_reduce_block_sums

    out = {}
    for shape in ((2, 1), (1, 2)):
        mesh = init_device_mesh("cpu", shape, mesh_dim_names=("a", "b"))
        shardings = [
            Sharding(mesh, (0, 1)),  # split over both dims: each rank holds a different part
            Sharding(mesh, (1,)),  # split over b, replicated over a
            None,  # a whole tensor
            Sharding(mesh["b"], (0,)),  # a sub-mesh: on the root, split over b
        ]
        coordinate = mesh.get_coordinate()
        # Parts: (x, y) = a different value per part; copies of a part hold the same value.
        a = torch.tensor(
            [
                1.0 + rank,
                10.0 * (1 + coordinate[1]),
                7.0,
                100.0 * (1 + coordinate[1]),
            ]
        )
        b = 2 * a
        (sums,) = all_reduce_block_sums([(a, b)], [shardings])
        out[f"{shape[0]}x{shape[1]}"] = (sums[0].clone(), sums[1].clone())
    mesh = init_device_mesh("cpu", (2,))
    other = DeviceMesh("cpu", [1, 0])
    try:
        all_reduce_block_sums(
            [(torch.ones(2), torch.ones(2))], [[Sharding(mesh, (0,)), Sharding(other, (0,))]]
        )
        out["two-meshes"] = "no error"
    except NotImplementedError as error:
        out["two-meshes"] = str(error)
    results["reduction"] = out


def case_errors(rank: int, mesh, results: dict) -> None:
    from torch.distributed.tensor import DTensor, Partial, Replicate, distribute_tensor

    out = {}
    param = nn.Parameter(distribute_tensor(torch.ones(4), mesh, [Replicate()]))
    param.grad = torch.ones(4)  # type: ignore[assignment]
    try:
        adamem.AMSGD([param], lr=0.1).step()
        out["plain-grad"] = "no error"
    except TypeError as error:
        out["plain-grad"] = str(error)
    param = nn.Parameter(DTensor.from_local(torch.ones(4), mesh, [Partial()]))
    param.grad = DTensor.from_local(torch.ones(4), mesh, [Partial()])
    try:
        adamem.AMAdamW([param]).step()
        out["partial-param"] = "no error"
    except NotImplementedError as error:
        out["partial-param"] = str(error)
    from torch.distributed.fsdp import FullyShardedDataParallel

    fsdp1 = FullyShardedDataParallel(
        nn.Linear(3, 2), use_orig_params=True, device_id=torch.device("cpu")
    )
    fsdp1(torch.ones(2, 3)).sum().backward()
    try:
        adamem.AMSGD(fsdp1.parameters(), lr=0.1).step()
        out["fsdp1"] = "no error"
    except NotImplementedError as error:
        out["fsdp1"] = str(error)
    results["errors"] = out


def main(rank: int, world_size: int, port: int, out_dir: Path) -> None:
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh

    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world_size,
        timeout=datetime.timedelta(seconds=120),  # a lost peer ends the run, not CI
    )
    try:
        mesh = init_device_mesh("cpu", (world_size,))
        results: dict[str, Any] = {}
        case_fsdp(rank, mesh, results, out_dir)
        case_hsdp(rank, results)
        case_ddp(rank, results)
        case_tp(rank, mesh, results)
        case_zero(rank, world_size, results)
        case_reduction(rank, results)
        case_errors(rank, mesh, results)
        dist.barrier()
        if rank == 0:
            torch.save(results, out_dir / "results.pt")
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    torch.set_num_threads(1)
    rank_arg, world_arg, port_arg, out_arg = sys.argv[1:5]
    try:
        main(int(rank_arg), int(world_arg), int(port_arg), Path(out_arg))
    except BaseException:
        traceback.print_exc()
        sys.exit(1)
