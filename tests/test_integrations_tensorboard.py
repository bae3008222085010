"""tensorboard_log_fn with a real torch.utils.tensorboard.SummaryWriter."""

import pytest
import torch

import adamem

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402
from torch.utils.tensorboard import SummaryWriter  # noqa: E402


def test_beta_statistics_reach_event_files(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 1))
    optimizer = adamem.AMSGD(model.parameters(), lr=0.1, scope="global")
    with SummaryWriter(log_dir=str(tmp_path)) as writer:
        logger = adamem.BetaLogger(optimizer, adamem.tensorboard_log_fn(writer), every=3)
        for _ in range(9):
            optimizer.zero_grad()
            model(torch.randn(8, 3)).pow(2).mean().backward()
            optimizer.step()
        logger.close()
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    for tag in ("am/beta_mean", "am/beta_min", "am/momentum_max"):
        assert [event.step for event in events.Scalars(tag)] == [3, 6, 9]
    lambd = optimizer.param_groups[0]["lambd"]
    last_beta = float(optimizer.state[model[0].weight]["beta"])
    last_momentum = events.Scalars("am/momentum_max")[-1].value
    assert last_momentum >= (last_beta + lambd) / (1 + lambd) - 1e-6
