"""examples/quickstart.py runs with torch alone and shows AM next to torch's optimizers."""

import re
from pathlib import Path

from helpers import run_with_torch_only

QUICKSTART = Path(__file__).resolve().parents[1] / "examples" / "quickstart.py"
WINDOW_LINE = re.compile(r"^\s*\d+-\d+\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\d+)%\s+(\d+)%$")


def test_quickstart_compares_with_torch_and_shows_beta_moving():
    result = run_with_torch_only(str(QUICKSTART))
    assert result.returncode == 0, result.stderr
    output = result.stdout
    for pair in ("AdamW(lr=3e-3) against AMAdamW(lr=3e-3)", "SGD(lr=0.03, momentum=0.9) against"):
        assert pair in output
    assert output.count("held-out loss: ") == 2
    windows = [WINDOW_LINE.match(line) for line in output.splitlines()]
    windows = [match.groups() for match in windows if match]
    assert len(windows) == 12
    for fixed, am, low, median, high, at_cap, at_zero in windows:
        assert float(fixed) > 0 and float(am) > 0
        assert 0 <= float(low) <= float(median) <= float(high) <= 0.9
        assert int(at_cap) + int(at_zero) <= 100
    # beta is not pinned at the cap: its 10% quantile is well below it in every window
    assert all(float(low) < 0.8 for _, _, low, *_ in windows)
