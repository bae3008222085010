"""benchmarks/noise_study.py --quick runs, writes its outputs, and its numbers are finite."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("sklearn")
pytest.importorskip("scipy")
pytest.importorskip("matplotlib")

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "noise_study.py"


def test_noise_study_quick(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(SCRIPT.parents[1] / "src")}
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    outputs = ("results.json", "traces.npz", "table.md", "mechanism.md")
    outputs += ("beta_vs_noise.png", "beta_hist.png", "loss_vs_noise.png", "decomposition.png")
    for name in outputs:
        assert (tmp_path / name).stat().st_size > 0, name
    payload = json.loads((tmp_path / "results.json").read_text())
    assert payload["check_max_beta_difference"] < 1e-9
    records = payload["results"]
    assert {r["problem"] for r in records} == {"quadratic", "softmax"}
    for record in records:
        assert math.isfinite(record["score"]), record
        for value in record.get("stats", {}).values():
            assert math.isfinite(value), record
    am = [r for r in records if r["method"] in ("AMSGD", "AMAdamW")]
    assert am and all(0.0 <= r["stats"]["beta_mean"] <= 0.9 for r in am)
    assert {v["method"] for v in payload["verdicts"]} >= {"AMSGD ema0.9", "AMAdamW nc"}

    (tmp_path / "table.md").unlink()
    replot = subprocess.run(
        [sys.executable, str(SCRIPT), "--replot", "--no-plots", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert replot.returncode == 0, replot.stderr
    assert (tmp_path / "table.md").stat().st_size > 0
