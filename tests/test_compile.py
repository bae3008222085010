"""The step has no host sync: torch.compile captures it whole, once, and matches eager."""

import pytest
import torch
from helpers import BASE_CASES, OPTION_CASES, parametrize_cases
from torch._dynamo.utils import counters


def train(case, scope, compiled: bool, steps: int = 6):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    lr = torch.tensor(0.05)
    params = [p for p in model.parameters() if case.takes(p)]
    optimizer = case.make(params, lr=lr, scope=scope, **case.family.fp32_options)

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
@pytest.mark.parametrize("scope", ["tensor", "global"])
@parametrize_cases(BASE_CASES + OPTION_CASES)
def test_step_compiles_without_graph_breaks_or_recompiles(case, scope):
    torch._dynamo.reset()
    counters.clear()
    compiled = train(case, scope, compiled=True)
    assert not counters["graph_break"]
    # One graph for the first step (state is created there), one for every later step.
    assert counters["stats"]["unique_graphs"] == 2
    for a, b in zip(compiled, train(case, scope, compiled=False)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
