"""The Muon recipe on a small GPT: AM-Muon for the hidden matrices, AMAdamW for the rest.

The benchmark's byte-level GPT (``adamem.bench.gpt``: pre-norm blocks, read-out tied to the
byte embedding) learns Python's own help texts (``pydoc_data/topics.py``, which ships with
Python). ``adamem.muon_param_groups`` splits the model: the attention and MLP weight matrices go
to Muon, the embedding, position table, norms and biases to AdamW. The script trains it twice
from the same initial weights on the same batches, with torch's Muon + AdamW and with
``AMMuon`` + ``AMAdamW``, all at one learning rate (``adjust_lr_fn="match_rms_adamw"`` scales
Muon's step to AdamW's RMS). It prints the training loss in bits per byte and, for AM, the mean
beta of each hidden matrix. The learning rate is a common starting point, not tuned.

Run: python examples/muon_gpt.py
"""

import pydoc_data
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

import adamem
from adamem.bench.gpt import GPT

STEPS, WINDOW, BATCH, CONTEXT = 150, 50, 16, 64
LR, WEIGHT_DECAY = 3e-3, 0.1


def batches(steps: int) -> list[torch.Tensor]:
    """``steps`` batches of ``CONTEXT + 1`` bytes at random offsets of the help texts."""
    text = (Path(pydoc_data.__file__).parent / "topics.py").read_bytes()
    data = torch.tensor(list(text), dtype=torch.long)
    generator = torch.Generator().manual_seed(0)
    starts = torch.randint(0, len(data) - CONTEXT - 1, (steps, BATCH), generator=generator)
    return [torch.stack([data[s : s + CONTEXT + 1] for s in row]) for row in starts]


Optimizers = Callable[[nn.Module], list[torch.optim.Optimizer]]


def torch_muon(model: nn.Module) -> list[torch.optim.Optimizer]:
    matrices, rest = adamem.muon_param_groups(model, weight_decay=WEIGHT_DECAY)
    muon = torch.optim.Muon(
        matrices, lr=LR, weight_decay=WEIGHT_DECAY, adjust_lr_fn="match_rms_adamw"
    )
    return [muon, torch.optim.AdamW(rest, lr=LR)]


def am_muon(model: nn.Module) -> list[torch.optim.Optimizer]:
    matrices, rest = adamem.muon_param_groups(model, weight_decay=WEIGHT_DECAY)
    muon = adamem.AMMuon(matrices, lr=LR, weight_decay=WEIGHT_DECAY, adjust_lr_fn="match_rms_adamw")
    return [muon, adamem.AMAdamW(rest, lr=LR)]


def train(
    make_optimizers: Optimizers, data: list[torch.Tensor]
) -> tuple[list[float], nn.Module, list]:
    torch.manual_seed(0)
    model = GPT(width=64, layers=2, heads=4, context=CONTEXT)
    optimizers = make_optimizers(model)
    losses, betas = [], []
    for tokens in data:
        logits = model(tokens[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten())
        for optimizer in optimizers:
            optimizer.zero_grad()
        loss.backward()
        for optimizer in optimizers:
            optimizer.step()
        losses.append(loss.item() / torch.log(torch.tensor(2.0)).item())  # bits per byte
        muon = optimizers[0]
        if isinstance(muon, adamem.AMMuon):
            betas.append([float(muon.state[p]["beta"]) for p in muon.param_groups[0]["params"]])
    return losses, model, betas


def main() -> None:
    torch.set_num_threads(1)  # the same numbers on any machine
    data = batches(STEPS)
    fixed, model, _ = train(torch_muon, data)
    adaptive, am_model, betas = train(am_muon, data)
    matrices, _ = adamem.muon_param_groups(model)
    print(
        f"GPT with {sum(p.numel() for p in model.parameters()):,} parameters, "
        f"{len(matrices)} hidden matrices for Muon; lr {LR} for both optimizers\n"
    )
    print("training loss, bits per byte (mean over the window)")
    print(f"{'steps':>9} {'Muon(0.95)':>11} {'AMMuon':>8}")
    for start in range(0, STEPS, WINDOW):
        window = [sum(losses[start : start + WINDOW]) / WINDOW for losses in (fixed, adaptive)]
        print(f"{start:>4}-{start + WINDOW:<4} {window[0]:>11.3f} {window[1]:>8.3f}")
    names = {id(p): name for name, p in am_model.named_parameters()}
    am_matrices, _ = adamem.muon_param_groups(am_model)
    solved = torch.tensor(betas[1:])  # the first step solves no beta
    print("\nAMMuon's beta per hidden matrix, mean over steps (cap 0.95)")
    for param, column in zip(am_matrices, solved.T):
        print(f"  {names[id(param)]:<22} {column.mean():.3f}")


if __name__ == "__main__":
    main()
