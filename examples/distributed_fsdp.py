"""Train an MLP with FSDP2 and AMAdamW, checkpoint it with torch.distributed.checkpoint, and
check that the result equals a single-process run.

Run (CPU, gloo; with one GPU per rank it uses NCCL):

    torchrun --nproc_per_node=2 examples/distributed_fsdp.py

Each rank holds a shard of every parameter and of the optimizer state (DTensors). AM's beta
needs inner products over whole tensors: the optimizer adds the ranks' partial sums with one
all_reduce per step, so every rank solves the same beta as a single process would.
"""

import os
import tempfile

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import (
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard

import adamem

STEPS, CHECKPOINT_AT, BATCH = 200, 100, 64


def make_model() -> torch.nn.Module:
    torch.manual_seed(0)  # the same initial weights on every rank and in the reference
    return torch.nn.Sequential(
        torch.nn.Linear(10, 64), torch.nn.Tanh(), torch.nn.Linear(64, 64), torch.nn.Tanh(),
        torch.nn.Linear(64, 1),
    )  # fmt: skip


def make_optimizer(model: torch.nn.Module) -> adamem.AMAdamW:
    return adamem.AMAdamW(model.parameters(), lr=1e-2, scope="global")


def batch(step: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(step)
    inputs = torch.randn(BATCH, 10, generator=generator)
    targets = torch.sin(inputs @ torch.linspace(-1, 1, 10).unsqueeze(1))
    return inputs.to(device), targets.to(device)


def train(model, optimizer, steps: range, device, rank=0, world=1, verbose=True) -> None:
    """Each rank takes its slice of every batch; FSDP averages the gradients."""
    per_rank = BATCH // world
    for step in steps:
        inputs, targets = batch(step, device)
        rows = slice(rank * per_rank, (rank + 1) * per_rank)
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(inputs[rows]), targets[rows])
        loss.backward()
        optimizer.step()
        if verbose and (step % 50 == 0 or step == steps.stop - 1):
            loss = loss.detach()
            if world > 1:
                dist.all_reduce(loss)
                loss /= world
            beta = adamem.beta_summary(optimizer)["beta_mean"]
            if rank == 0:
                print(f"step {step:4d}  loss {float(loss):.5f}  beta {float(beta):.3f}")


def state_dicts(model, optimizer) -> dict:
    return {
        "model": get_model_state_dict(model),
        "optim": get_optimizer_state_dict(model, optimizer),
    }


def main() -> None:
    use_cuda = torch.cuda.is_available() and torch.cuda.device_count() >= int(
        os.environ.get("LOCAL_WORLD_SIZE", "1")
    )
    dist.init_process_group("nccl" if use_cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    device = (
        torch.device("cuda", int(os.environ["LOCAL_RANK"])) if use_cuda else torch.device("cpu")
    )
    if use_cuda:
        torch.cuda.set_device(device)
    mesh = init_device_mesh(device.type, (world,))

    model = make_model().to(device)
    for layer in model:
        if isinstance(layer, torch.nn.Linear):
            fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    optimizer = make_optimizer(model)
    if rank == 0:
        shard, whole = model[0].weight.to_local().shape, model[0].weight.shape
        print(f"{world} ranks ({device.type}); rank 0 holds {tuple(shard)} of {tuple(whole)}")

    train(model, optimizer, range(CHECKPOINT_AT), device, rank, world)

    # Checkpoint mid-run: each rank writes its shards; the optimizer state is DTensors too.
    with tempfile.TemporaryDirectory() as scratch:
        checkpoint = [os.path.join(scratch, "checkpoint")]
        dist.broadcast_object_list(checkpoint)  # rank 0's directory (one machine here)
        dcp.save(state_dicts(model, optimizer), checkpoint_id=checkpoint[0])
        # Resume into a fresh model and optimizer (with other initial weights).
        model = make_model().to(device)
        torch.nn.init.zeros_(model[0].weight)
        for layer in model:
            if isinstance(layer, torch.nn.Linear):
                fully_shard(layer, mesh=mesh)
        fully_shard(model, mesh=mesh)
        optimizer = make_optimizer(model)
        state = state_dicts(model, optimizer)
        dcp.load(state, checkpoint_id=checkpoint[0])
        set_model_state_dict(model, state["model"])
        set_optimizer_state_dict(model, optimizer, state["optim"])
        dist.barrier()  # all ranks have read the checkpoint before rank 0 deletes it
    if rank == 0:
        print(f"saved and resumed from a distributed checkpoint at step {CHECKPOINT_AT}")

    train(model, optimizer, range(CHECKPOINT_AT, STEPS), device, rank, world)

    # The same training in this one process, on whole batches.
    full = {name: p.detach().full_tensor() for name, p in model.named_parameters()}
    if rank == 0:
        reference = make_model().to(device)
        train(reference, make_optimizer(reference), range(STEPS), device, verbose=False)
        difference = max(
            float((full[name] - p.detach()).abs().max()) for name, p in reference.named_parameters()
        )
        print(f"max |FSDP2 - single process| over all parameters: {difference:.2e}")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
