"""examples/hf_trainer.py: AM-AdamW inside transformers.Trainer, beta logged to TensorBoard."""

import importlib
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("transformers")
pytest.importorskip("accelerate")
pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

EXAMPLES = Path(__file__).parents[1] / "examples"


def test_trainer_logs_beta_and_loss_decreases(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    example = importlib.import_module("hf_trainer")
    result = example.train(tmp_path, max_steps=30, logging_steps=10)

    assert len(result.losses) == 3
    assert result.losses[-1] < result.losses[0]
    events = EventAccumulator(str(result.beta_log_dir))
    events.Reload()
    beta_means = events.Scalars("am/beta_mean")
    assert [event.step for event in beta_means] == [10, 20, 30]
    assert all(0.0 <= event.value <= 0.89 + 1e-6 for event in beta_means)
    tags = events.Tags()["scalars"]
    assert "am/momentum_min" in tags and "am/beta/transformer.h.0.attn.c_attn.weight" in tags
