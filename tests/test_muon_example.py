"""examples/muon_gpt.py runs with torch alone: the Muon recipe trains, and AM's beta is shown."""

import re
from pathlib import Path

from helpers import run_with_torch_only

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "muon_gpt.py"
WINDOW_LINE = re.compile(r"^\s*(\d+)-(\d+)\s+(\S+)\s+(\S+)$")
BETA_LINE = re.compile(r"^\s+(blocks\.\d+\.\w+\.weight)\s+(\S+)$")


def test_muon_example_trains_both_recipes_and_shows_beta_per_matrix():
    result = run_with_torch_only(str(EXAMPLE))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "8 hidden matrices for Muon" in result.stdout
    windows = [match.groups() for match in map(WINDOW_LINE.match, lines) if match]
    assert len(windows) == 3
    for column in (2, 3):  # both recipes learn: bits per byte fall from the first window
        losses = [float(window[column]) for window in windows]
        assert losses[-1] < losses[0] < 8.0
    betas = [match.groups() for match in map(BETA_LINE.match, lines) if match]
    assert [name.split(".")[2] for name, _ in betas] == ["qkv", "proj", "fc", "out"] * 2
    assert all(0.0 <= float(beta) <= 0.95 for _, beta in betas)
