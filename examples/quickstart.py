"""AM next to torch's fixed momentum on one small problem, with torch alone.

A small MLP fits a noisy random teacher network from minibatches. torch's AdamW and AMAdamW
train it from the same initial weights on the same batches, then torch's SGD with momentum 0.9
and AMSGD (at the same steady-state step size). For each pair the script prints the training
loss, the held-out loss, and how AM's beta, solved at every step for every parameter tensor,
spreads over tensors and steps. The learning rates are common starting points, not tuned.

Run: python examples/quickstart.py
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch.nn.functional import mse_loss
from torch.optim import Optimizer

import adamem

STEPS, WINDOW, BATCH = 600, 100, 64
QUANTILES = (0.1, 0.5, 0.9)

Data = tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
OptimizerFactory = Callable[[Iterable[torch.nn.Parameter]], Optimizer]


def make_data(samples: int = 2048, features: int = 20, held_out: int = 512) -> Data:
    """Training and held-out (inputs, targets) of a random one-hidden-layer teacher plus noise.

    The features have scales from 0.1 to 10, so the fit is ill-conditioned: the kind of problem
    where momentum matters."""
    generator = torch.Generator().manual_seed(0)
    scales = torch.logspace(-1, 1, features)
    inputs = torch.randn(samples, features, generator=generator) * scales
    hidden = torch.randn(features, 16, generator=generator) / (4 * scales.unsqueeze(1))
    output = torch.randn(16, 1, generator=generator)
    noise = 0.1 * torch.randn(samples, 1, generator=generator)
    targets = torch.tanh(inputs @ hidden) @ output + noise
    split = samples - held_out
    return (inputs[:split], targets[:split]), (inputs[split:], targets[split:])


@dataclass
class Run:
    """What one training run printed comes from."""

    losses: list[float]  # training loss of each step's minibatch
    held_out: float
    betas: torch.Tensor | None  # AM's beta[step, tensor] from the second step on; None for torch's
    cap: float | None


def beta_cap(optimizer: Optimizer) -> float | None:
    """AM's cap on beta, ``None`` for an optimizer without one."""
    group = optimizer.param_groups[0]
    if isinstance(optimizer, adamem.AMSGD):
        return group["beta_max"]
    return group["betas"][0] if isinstance(optimizer, adamem.AMAdamW) else None


def train(make_optimizer: OptimizerFactory, data: Data) -> Run:
    """``STEPS`` steps on minibatches of ``BATCH``, then the loss on the held-out data."""
    (train_x, train_y), (test_x, test_y) = data
    torch.manual_seed(0)  # the same initial weights for every optimizer
    features = train_x.shape[1]
    model = torch.nn.Sequential(
        torch.nn.Linear(features, 64), torch.nn.Tanh(), torch.nn.Linear(64, 1)
    )
    optimizer = make_optimizer(model.parameters())
    cap = beta_cap(optimizer)
    batches = torch.Generator().manual_seed(1)  # and the same minibatches
    losses, betas = [], []
    for step in range(STEPS):
        rows = torch.randint(len(train_x), (BATCH,), generator=batches)
        optimizer.zero_grad()
        loss = mse_loss(model(train_x[rows]), train_y[rows])
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if cap is not None and step > 0:  # the first step's beta is a fixed rule
            betas.append(torch.stack([optimizer.state[p]["beta"] for p in model.parameters()]))
    with torch.no_grad():
        held_out = mse_loss(model(test_x), test_y).item()
    return Run(losses, held_out, torch.stack(betas) if betas else None, cap)


def compare(
    fixed: tuple[str, OptimizerFactory], am: tuple[str, OptimizerFactory], data: Data
) -> None:
    """Train both and print them side by side, ``WINDOW`` steps per line."""
    (fixed_name, make_fixed), (am_name, make_am) = fixed, am
    fixed_run, am_run = train(make_fixed, data), train(make_am, data)
    short = [name.partition("(")[0] for name in (fixed_name, am_name)]
    print(f"\n{fixed_name} against {am_name}: the same initial weights and minibatches")
    print(f"{'':9}  {'training loss':^19}  AM's beta over (step, tensor) pairs")
    quantiles = "".join(f"{q:>6.0%}" for q in QUANTILES)
    print(f"{'steps':>9}  {short[0]:>9} {short[1]:>9}  {quantiles}  at cap  at 0")
    for start in range(0, STEPS, WINDOW):
        window = slice(start, start + WINDOW)
        losses = "".join(
            f"{sum(run.losses[window]) / WINDOW:>10.4f}" for run in (fixed_run, am_run)
        )
        betas = am_run.betas[max(start - 1, 0) : start + WINDOW - 1].flatten().float()
        spread = "".join(f"{b:>6.2f}" for b in torch.quantile(betas, torch.tensor(QUANTILES)))
        at_cap = (betas >= am_run.cap * (1 - 1e-6)).float().mean()
        at_zero = (betas <= 0).float().mean()
        print(
            f"{start + 1:>4}-{start + WINDOW:<4} {losses}  {spread}  {at_cap:>6.0%} {at_zero:>5.0%}"
        )
    held_out = (f"{name} {run.held_out:.4f}" for name, run in zip(short, (fixed_run, am_run)))
    print(f"held-out loss: {', '.join(held_out)}")


if __name__ == "__main__":
    data = make_data()
    compare(
        ("AdamW(lr=3e-3)", lambda params: torch.optim.AdamW(params, lr=3e-3)),
        ("AMAdamW(lr=3e-3)", lambda params: adamem.AMAdamW(params, lr=3e-3)),
        data,
    )
    # AMSGD's lr is in EMA units: SGD(lr=0.03, momentum=0.9) takes the same steady-state step.
    compare(
        ("SGD(lr=0.03, momentum=0.9)", lambda params: torch.optim.SGD(params, 0.03, 0.9)),
        ("AMSGD(lr=0.3)", lambda params: adamem.AMSGD(params, lr=0.3)),
        data,
    )
