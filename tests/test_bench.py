"""End-to-end tests of ``adamem bench``: the smoke suite, determinism and resuming."""

import dataclasses
import json
import multiprocessing
import os
import re
import signal

import pytest
import torch

for _module in ("sklearn", "mnist1d", "matplotlib", "tqdm"):
    pytest.importorskip(_module)

from adamem.bench import data  # noqa: E402
from adamem.bench.benchmark import RESULTS, run_benchmark  # noqa: E402
from adamem.bench.plan import plan  # noqa: E402
from adamem.bench.runner import run  # noqa: E402
from adamem.bench.store import ResultStore  # noqa: E402
from adamem.bench.tasks import TASKS, suite_tasks, warmup_steps  # noqa: E402
from adamem.cli import main  # noqa: E402

SMOKE_SEEDS = 2


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """The whole smoke suite through the command line, with two worker processes."""
    out = tmp_path_factory.mktemp("smoke")
    assert main(["bench", "--suite", "smoke", "--out", str(out), "--jobs", "2"]) == 0
    return out


def test_smoke_suite_writes_results_report_and_plots(smoke):
    records = _lines(smoke / RESULTS)
    expected = plan("smoke", suite_tasks("smoke"), SMOKE_SEEDS, "cpu")
    assert sorted(r["key"] for r in records) == sorted(spec.key for spec in expected)
    report = (smoke / "report.md").read_text()
    for name in suite_tasks("smoke"):
        assert f"## {name}" in report
        for kind in ("curves", "lr"):
            assert (smoke / "plots" / f"{name}-{kind}.png").stat().st_size > 1000
    am_records = [r for r in records if r["method"].startswith("am")]
    assert am_records and all(r["beta"]["trace"]["mean"] for r in am_records)
    assert all(r["beta"] is None for r in records if not r["method"].startswith("am"))
    assert all(
        r["versions"]["torch"] == torch.__version__.split("+")[0] or r["versions"]["torch"]
        for r in records
    )


def test_smoke_report_says_it_is_no_evidence_and_gives_no_verdicts(smoke):
    for name in ("report.md", "summary.md"):
        text = (smoke / name).read_text()
        title, notice = text.split("\n\n")[:2]
        assert title.startswith("# ") and "not evidence" in notice
        assert not re.search(r"\b(won|tied|lost)\b|Verdicts", text)


def test_smoke_warmup_runs_differ_from_constant_rate_runs(smoke):
    records = [r for r in _lines(smoke / RESULTS) if r["task"] == "gpt-warmup"]
    by_run = {(r["method"], r["lr"], r["seed"]): r["metrics"] for r in records}
    pairs = [(key, (key[0] + "+warmup", *key[1:])) for key in by_run if "+" not in key[0]]
    assert pairs and all(by_run[plain] != by_run[warm] for plain, warm in pairs)
    config = TASKS["gpt-warmup"].config("smoke", "cpu")
    label = f"linear warmup over the first {warmup_steps(config)} of {config['steps']} steps"
    assert label in (smoke / "report.md").read_text()


def test_adamem_report_rewrites_the_files_adamem_bench_wrote(smoke, tmp_path):
    results = str(smoke / RESULTS)
    assert main(["report", results, "--check"]) == 0
    assert main(["report", results, "--out", str(tmp_path)]) == 0
    for name in ("report.md", "summary.md", "plots/gpt-curves.png"):
        assert (tmp_path / name).read_bytes() == (smoke / name).read_bytes()


def test_same_seed_gives_the_same_numbers_in_and_out_of_worker_processes(smoke):
    """Rerunning a few runs of the smoke suite in this process reproduces them exactly."""
    saved = {r["key"]: r for r in _lines(smoke / RESULTS)}
    specs = plan("smoke", suite_tasks("smoke"), SMOKE_SEEDS, "cpu")
    chosen = {}
    for spec in specs:  # one AM and one baseline run of every task, seed 1
        kind = spec.method.startswith("am")
        if spec.seed == 1 and (spec.task, kind) not in chosen:
            chosen[spec.task, kind] = spec
    for spec in chosen.values():
        again = run(spec)
        for field in ("metrics", "curve", "beta", "diverged", "steps_done"):
            assert again[field] == saved[spec.key][field], (spec.key, field)


def test_different_seeds_give_different_numbers(smoke):
    records = [r for r in _lines(smoke / RESULTS) if r["task"] == "digits-mlp"]
    by_seed = {r["seed"]: r["metrics"] for r in records if r["method"] == "hb-0.9"}
    assert by_seed[0] != by_seed[1]


def test_resume_after_interrupt_recomputes_nothing(tmp_path):
    tasks = ["quadratic", "gpt-warmup"]
    total = len(plan("smoke", tasks, 1, "cpu"))
    seen = []

    def interrupt_after_five(record):
        seen.append(record["key"])
        if len(seen) == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_benchmark("smoke", tasks, 1, "cpu", tmp_path, jobs=2, on_record=interrupt_after_five)
    results = tmp_path / RESULTS
    assert [r["key"] for r in _lines(results)] == seen
    with results.open("a") as file:  # a crash in the middle of writing a record
        file.write('{"key": "quadratic|hb-0.9|0.3|0|trunc')

    with pytest.raises(FileExistsError):
        run_benchmark("smoke", tasks, 1, "cpu", tmp_path)
    finished = []
    report = run_benchmark(
        "smoke",
        tasks,
        1,
        "cpu",
        tmp_path,
        resume=True,
        on_record=lambda r: finished.append(r["key"]),
    )
    assert not set(finished) & set(seen)
    keys = [r["key"] for r in _lines(results)]
    assert len(keys) == len(set(keys)) == total
    assert keys[:5] == seen
    assert report.exists()

    rerun = []
    run_benchmark("smoke", tasks, 1, "cpu", tmp_path, resume=True, on_record=rerun.append)
    assert rerun == []


def test_cli_refuses_to_overwrite_and_unknown_devices(tmp_path, capsys):
    (tmp_path / RESULTS).write_text('{"key": "x"}\n')
    assert main(["bench", "--suite", "smoke", "--tasks", "quadratic", "--out", str(tmp_path)]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["bench", "--device", "tpu", "--out", str(tmp_path)]) == 2
    if not torch.cuda.is_available():
        assert main(["bench", "--device", "cuda", "--out", str(tmp_path)]) == 2


def test_cli_reports_a_corrupt_results_file_in_one_line_and_can_set_it_aside(tmp_path, capsys):
    results = tmp_path / RESULTS
    results.write_text("garbage\n{}\n")
    args = ["bench", "--suite", "smoke", "--tasks", "quadratic", "--seeds", "1", "--jobs", "1"]
    assert main([*args, "--out", str(tmp_path), "--resume"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and f"{results}:1: expected a JSON object" in error
    assert "--set-aside-corrupt" in error and f"{results}.corrupt" in error

    assert main([*args, "--out", str(tmp_path), "--set-aside-corrupt"]) == 0
    assert (tmp_path / f"{RESULTS}.corrupt").read_text() == "garbage\n{}\n"
    assert len(_lines(results)) == len(plan("smoke", ["quadratic"], 1, "cpu"))


def test_mnist1d_is_generated_locally_without_network(monkeypatch):
    import requests

    def no_network(*args, **kwargs):
        raise AssertionError("mnist1d tried the network")

    monkeypatch.setattr(requests, "get", no_network)
    data.mnist1d.cache_clear()
    split = data.mnist1d()
    assert (len(split.y_train), len(split.y_val), len(split.y_test)) == (3600, 400, 1000)
    assert split.x_train.shape[1] == 40


def test_gpt_sizes_match_the_issue():
    from adamem.bench.gpt import GPT

    for device in ("cpu", "cuda"):
        config = TASKS["gpt"].config("full", device)
        model = GPT(config["width"], config["layers"], config["heads"], config["context"])
        parameters = sum(p.numel() for p in model.parameters())
        assert 1e6 <= parameters <= 3e6 and config["context"] >= 128
    assert TASKS["gpt"].config("quick", "cpu")["context"] >= 128


def test_a_diverging_run_is_stopped_and_saved_as_valid_json(tmp_path):
    spec = next(s for s in plan("smoke", ["quadratic"], 1, "cpu") if s.method == "hb-0")
    record = run(dataclasses.replace(spec, lr=1e6))
    assert record["diverged"] and record["metrics"] == {}
    assert record["steps_done"] < spec.config["steps"]
    ResultStore(tmp_path / RESULTS).append(record)  # no NaN/inf reaches the file
    assert ResultStore(tmp_path / RESULTS).load()[0]["diverged"]


def test_warmup_changes_the_run_only_when_configured():
    spec = plan("smoke", ["gpt-warmup"], 1, "cpu")[0]
    results = {}
    for fraction in (0.0, 0.5):
        config = {**spec.config, "warmup": fraction}
        for name in ("adamw-0.9", "adamw-0.9+warmup"):
            record = run(dataclasses.replace(spec, method=name, config=config))
            results[fraction, name] = record["metrics"]
    assert results[0.0, "adamw-0.9"] == results[0.0, "adamw-0.9+warmup"]
    assert results[0.5, "adamw-0.9"] != results[0.5, "adamw-0.9+warmup"]


def test_runs_of_a_killed_worker_are_redone_by_a_fresh_pool(tmp_path):
    tasks = ["quadratic"]
    killed = []

    def kill_a_worker(record):
        if not killed:
            victim = multiprocessing.active_children()[0]
            os.kill(victim.pid, signal.SIGKILL)
            killed.append(victim.pid)

    run_benchmark("smoke", tasks, 1, "cpu", tmp_path, jobs=2, on_record=kill_a_worker)
    keys = [r["key"] for r in _lines(tmp_path / RESULTS)]
    assert killed and len(keys) == len(set(keys)) == len(plan("smoke", tasks, 1, "cpu"))
