"""Train a small MLP on scikit-learn-free synthetic data with AMAdamW and AMSGD, printing beta.

Run: python examples/quickstart.py
"""

import torch

import adamem


def train(make_optimizer, steps: int = 300) -> None:
    torch.manual_seed(0)
    inputs = torch.randn(512, 10)
    targets = torch.sin(inputs @ torch.randn(10, 1))
    model = torch.nn.Sequential(torch.nn.Linear(10, 64), torch.nn.Tanh(), torch.nn.Linear(64, 1))
    optimizer = make_optimizer(model.parameters())
    for step in range(steps + 1):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(inputs), targets)
        loss.backward()
        optimizer.step()
        if step % 100 == 0:
            summary = {k: round(float(v), 3) for k, v in adamem.beta_summary(optimizer).items()}
            print(f"  step {step:4d}  loss {loss.item():.5f}  {summary}")


if __name__ == "__main__":
    print("AMAdamW(lr=3e-3)")
    train(lambda params: adamem.AMAdamW(params, lr=3e-3))
    print("AMSGD(lr=0.3), the EMA-form counterpart of SGD(lr=0.03, momentum=0.9)")
    train(lambda params: adamem.AMSGD(params, lr=0.3))
