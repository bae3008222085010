"""AM optimizers under DistributedDataParallel need nothing special: a check on CPU processes.

DDP averages the gradients across processes before ``optimizer.step()``, so every process
computes the same beta from the same gradients and state, and the replicas stay identical. This
script trains one model on 2 processes (``gloo`` backend, each with half of every batch) and
checks that the replicas agree with each other and with one process training on whole batches::

    python examples/ddp.py

``tests/test_integrations_ddp.py`` runs it.
"""

from __future__ import annotations

import os
import tempfile

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel

import adamem

WORLD_SIZE = 2
STEPS = 20
BATCH_SIZE = 32


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.LayerNorm(16), nn.Tanh(), nn.Linear(16, 1))


def make_optimizers(model: nn.Module) -> list[torch.optim.Optimizer]:
    """AMAdamW (a beta per tensor) for the first Linear and the LayerNorm, AMSGD with one global
    beta for the output layer."""
    params = list(model.parameters())
    return [adamem.AMAdamW(params[:4], lr=1e-2), adamem.AMSGD(params[4:], lr=0.1, scope="global")]


def batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    inputs = torch.randn(STEPS, BATCH_SIZE, 6, generator=generator)
    return [(x, x.sum(dim=1, keepdim=True).sin()) for x in inputs]


def train(model: nn.Module, rank: int = 0, world_size: int = 1) -> torch.Tensor:
    """Train on this process's share of every batch; returns the flattened parameters."""
    optimizers = make_optimizers(model)
    share = BATCH_SIZE // world_size
    for inputs, targets in batches():
        rows = slice(rank * share, (rank + 1) * share)
        for optimizer in optimizers:
            optimizer.zero_grad()
        nn.functional.mse_loss(model(inputs[rows]), targets[rows]).backward()
        for optimizer in optimizers:
            optimizer.step()
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def worker(rank: int, init_file: str, results: str) -> None:
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD_SIZE
    )
    try:
        model = DistributedDataParallel(make_model())
        params = train(model, rank, WORLD_SIZE)
        torch.save(params, os.path.join(results, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def main() -> None:
    with tempfile.TemporaryDirectory() as results:
        init_file = os.path.join(results, "rendezvous")
        mp.spawn(worker, args=(init_file, results), nprocs=WORLD_SIZE)
        replicas = [torch.load(os.path.join(results, f"rank{r}.pt")) for r in range(WORLD_SIZE)]
    single_process = train(make_model())
    replica_gap = max((r - replicas[0]).abs().max().item() for r in replicas)
    single_gap = (replicas[0] - single_process).abs().max().item()
    print(f"max difference between replicas: {replica_gap:.3g}")
    print(f"max difference from one process on whole batches: {single_gap:.3g}")
    assert replica_gap == 0.0, "replicas diverged"
    assert single_gap < 1e-4, "DDP run differs from the single-process run"
    print("OK")


if __name__ == "__main__":
    main()
