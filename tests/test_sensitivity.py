"""benchmarks/sensitivity.py --quick runs, writes its outputs, and its numbers are finite."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "sensitivity.py"


def test_sensitivity_quick(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(SCRIPT.parents[1] / "src")}
    command = [sys.executable, str(SCRIPT), "--quick", "--workers", "1", "--out", str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    payload = json.loads((tmp_path / "results.json").read_text())
    studies = payload["studies"]
    assert {s["study"] for s in studies} == {"amsgd-logreg-minibatch", "amadamw-digits-mlp"}
    for study in studies:
        assert (tmp_path / f"{study['study']}.png").stat().st_size > 0
        default = [c for c in study["cells"] if c["vs_default"] == "tied" and c["ratio"] == 1.0]
        assert default, study["study"]
        for cell in study["cells"]:
            assert math.isfinite(cell["mean"]) and math.isfinite(cell["ratio"]), cell
            assert 0.0 <= cell["beta_mean"] <= cell["cap"], cell
    assert "| **0.1** | **0.9** |" in (tmp_path / "table.md").read_text()
    lines = (tmp_path / "runs.jsonl").read_text().splitlines()
    resumed = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "already done" in resumed.stdout
    assert (tmp_path / "runs.jsonl").read_text().splitlines() == lines
