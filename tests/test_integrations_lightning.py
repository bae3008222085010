"""examples/lightning_module.py: configure_optimizers returns AM-AdamW, beta reaches the logger."""

import importlib
from pathlib import Path

import pytest

pytest.importorskip("lightning")

EXAMPLES = Path(__file__).parents[1] / "examples"


def test_lightning_logs_beta_and_loss_decreases(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    example = importlib.import_module("lightning_module")
    result = example.train(tmp_path, max_steps=30, log_every=5)

    assert len(result.losses) == 6
    assert result.losses[-1] < result.losses[0]
    assert [int(row["step"]) for row in result.beta_rows] == [5, 10, 15, 20, 25, 30]
    for row in result.beta_rows:
        assert 0.0 <= float(row["am/beta_min"]) <= float(row["am/beta_mean"])
        assert float(row["am/beta_mean"]) <= float(row["am/beta_max"]) <= 0.89 + 1e-6
        assert row["am/beta/net.0.weight"]
