"""The step has no host sync: torch.compile captures it whole, once, and matches eager."""

import pytest
import torch
from torch._dynamo.utils import counters

import adamem

FACTORIES = {
    "amsgd": lambda params, lr: adamem.AMSGD(params, lr=lr, scope="global"),
    "amadamw": lambda params, lr: adamem.AMAdamW(params, lr=lr),
}


def train(name, compiled: bool, steps: int = 6):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    lr = torch.tensor(0.05)
    optimizer = FACTORIES[name](model.parameters(), lr)

    def step():
        optimizer.step()

    run_step = torch.compile(step, fullgraph=True) if compiled else step
    data = torch.randn(steps, 4, 8, generator=torch.Generator().manual_seed(1))
    for index in range(steps):
        optimizer.param_groups[0]["lr"].fill_(0.05 / (1 + index))  # a schedule, in place
        optimizer.zero_grad()
        model(data[index]).pow(2).mean().backward()
        run_step()
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.slow
@pytest.mark.parametrize("name", FACTORIES)
def test_step_compiles_without_graph_breaks_or_recompiles(name):
    torch._dynamo.reset()
    counters.clear()
    compiled = train(name, compiled=True)
    assert not counters["graph_break"]
    # One graph for the first step (state is created there), one for every later step.
    assert counters["stats"]["unique_graphs"] == 2
    for a, b in zip(compiled, train(name, compiled=False)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
