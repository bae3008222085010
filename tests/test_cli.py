"""The ``adamem`` command line on a core install: help and argument errors need only torch."""

from pathlib import Path

import pytest
from helpers import run_with_torch_only

from adamem.cli import BENCH_MODULES, main


def adamem_on_core_install(*args: str):
    return run_with_torch_only("-m", "adamem", *args)


def test_help_needs_only_torch():
    result = adamem_on_core_install("--help")
    assert result.returncode == 0, result.stderr
    assert "bench" in result.stdout
    result = adamem_on_core_install("bench", "--help")
    assert result.returncode == 0, result.stderr
    assert "--set-aside-corrupt" in result.stdout and "digits-mlp" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--jobs", "0"], "argument --jobs: must be at least 1, got 0"),
        (["--jobs", "-1"], "argument --jobs: must be at least 1, got -1"),
        (["--jobs", "two"], "argument --jobs: expected an integer, got 'two'"),
        (["--seeds", "0"], "argument --seeds: must be at least 1, got 0"),
        (["--suite", "huge"], "argument --suite: invalid choice: 'huge'"),
        (["--tasks", "mnist"], "argument --tasks: invalid choice: 'mnist'"),
        (["--device", "tpu"], "argument --device: unknown device 'tpu'"),
        (["--verbose"], "unrecognized arguments: --verbose"),
    ],
)
def test_argument_errors_exit_2_with_a_message_and_no_traceback(args, message):
    result = adamem_on_core_install("bench", *args)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_out_that_is_a_file_is_refused_before_any_work(tmp_path):
    not_a_directory = tmp_path / "results"
    not_a_directory.write_text("notes\n")
    result = adamem_on_core_install("bench", "--out", str(not_a_directory))
    assert result.returncode == 2
    assert f"argument --out: {not_a_directory} exists and is not a directory" in result.stderr
    assert not_a_directory.read_text() == "notes\n"


def test_running_without_the_bench_extra_says_how_to_install_it(tmp_path):
    out = tmp_path / "out"
    result = adamem_on_core_install("bench", "--suite", "smoke", "--out", str(out))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert 'pip install -e ".[bench]"' in result.stderr
    assert f"missing: {', '.join(BENCH_MODULES)}" in result.stderr
    assert not out.exists()


def test_the_default_out_is_checked_too(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("bench-results").write_text("notes\n")
    assert main(["bench", "--suite", "smoke"]) == 2
    assert "argument --out: bench-results exists and is not a directory" in capsys.readouterr().err
