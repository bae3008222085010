"""The committed benchmark evidence in docs/benchmark is what its run records give.

report.md and summary.md are regenerated in memory from results.jsonl.gz (a fraction of a
second, no runs, no plots drawn) and compared with the committed files; the hand-written pages
around them state no numbers of their own.
"""

import re
from pathlib import Path

import pytest

from adamem.bench.plan import DEFAULT_SEEDS, plan
from adamem.bench.report import REPORT, SUMMARY, Results, linked_figures, render, stale_files
from adamem.bench.tasks import suite_tasks

ROOT = Path(__file__).parents[1]
DOCS = ROOT / "docs" / "benchmark"
RESULTS = DOCS / "results.jsonl.gz"
REGENERATE = "adamem report docs/benchmark/results.jsonl.gz"
# a number standing alone: not part of a name such as MNIST-1D, 8x8 or adamw-0.9
NUMBER = re.compile(r"(?<![\w.-])\d+(?:\.\d+)?%?(?![\w-])")


@pytest.fixture(scope="module")
def results():
    return Results.load(RESULTS)


def test_the_records_are_the_whole_quick_suite_of_this_code(results):
    """Every record matches a run the current code plans (same configuration hash)."""
    seeds = DEFAULT_SEEDS["quick"]
    assert results.command == f"adamem bench --suite quick --seeds {seeds} --device cpu"
    assert len(results.records) == len(plan("quick", suite_tasks("quick"), seeds, "cpu"))


@pytest.mark.parametrize("name", [SUMMARY, REPORT])
def test_committed_file_matches_its_records(results, name):
    expected = render(results, linked_figures(DOCS), DOCS)[name]
    committed = (DOCS / name).read_text()
    assert committed == expected, f"docs/benchmark/{name} is stale; run: {REGENERATE}"


def test_a_changed_record_makes_the_committed_files_stale(results):
    def doubled(record):
        metrics = {**record["metrics"], "test_loss": 2 * record["metrics"]["test_loss"]}
        return {**record, "metrics": metrics}

    changed = [
        doubled(record)
        if record["task"] == "mnist1d-cnn" and record["method"] == "amadamw-global"
        else record
        for record in results.records
    ]
    again = Results.of(changed, results.suite, results.tasks, results.seeds, results.device)
    assert stale_files(results, DOCS) == []
    assert stale_files(again, DOCS) == [REPORT, SUMMARY]


def test_adamem_report_check_exits_1_on_a_hand_edited_summary(tmp_path, capsys):
    for module in ("sklearn", "mnist1d", "matplotlib", "tqdm"):  # the CLI needs the extra
        pytest.importorskip(module)
    from adamem.cli import main

    assert main(["report", str(RESULTS), "--check"]) == 0
    for name in (REPORT, SUMMARY):
        (tmp_path / name).write_text((DOCS / name).read_text())
    (tmp_path / "plots").symlink_to(DOCS / "plots")
    summary = tmp_path / SUMMARY
    summary.write_text(summary.read_text().replace("**lost**", "**tied**", 1))
    assert main(["report", str(RESULTS), "--out", str(tmp_path), "--check"]) == 1
    assert f"{summary} does not match" in capsys.readouterr().err


def _prose(markdown):
    """``markdown`` without code blocks, code spans and link targets."""
    markdown = re.sub(r"```.*?```", "", markdown, flags=re.DOTALL)
    markdown = re.sub(r"`[^`]*`", "", markdown)
    return re.sub(r"\]\([^)]*\)", "]", markdown)


def test_hand_written_pages_state_no_numbers():
    """Numbers about results live in the generated files only, so they cannot disagree."""
    benchmark_readme = (DOCS / "README.md").read_text()
    readme = (ROOT / "README.md").read_text()
    evidence = readme[readme.index("## Evidence") :].split("\n## ")[0]
    for text in (benchmark_readme, evidence):
        assert NUMBER.findall(_prose(text)) == []


MEDIUM = DOCS / "medium"
MEDIUM_RESULTS = MEDIUM / "results.jsonl.gz"
MEDIUM_SEEDS = DEFAULT_SEEDS["medium"]
REGENERATE_MEDIUM = (
    f"adamem report docs/benchmark/medium/results.jsonl.gz --seeds {MEDIUM_SEEDS} "
    f"--tasks {' '.join(suite_tasks('medium'))}"
)


@pytest.mark.skipif(not MEDIUM_RESULTS.exists(), reason="no committed medium records")
def test_committed_medium_report_matches_its_records_against_the_whole_suite():
    """The medium report is rendered for the whole suite (its missing runs counted as such),
    and every committed record is a run of the suite as the current code plans it."""
    import gzip

    with gzip.open(MEDIUM_RESULTS, "rt") as file:
        lines = [line for line in file if line.strip()]
    results = Results.load(MEDIUM_RESULTS, suite_tasks("medium"), MEDIUM_SEEDS)
    assert results.suite == "medium" and len(results.records) == len(lines)
    expected = render(results, linked_figures(MEDIUM), MEDIUM)[REPORT]
    committed = (MEDIUM / REPORT).read_text()
    assert committed == expected, (
        f"docs/benchmark/medium/{REPORT} is stale; run: {REGENERATE_MEDIUM}"
    )
