"""The ``adamem`` command line: ``adamem bench`` runs the benchmark suite; ``adamem report``
rewrites (or checks) a benchmark's report from its run records.

Parsing and checking the arguments needs only torch; the ``bench`` extra is imported once a
benchmark or a report is about to run, so ``--help`` and argument errors work on a core install.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import textwrap
from collections.abc import Iterable
from pathlib import Path

BENCH_MODULES = ("numpy", "sklearn", "mnist1d", "matplotlib", "tqdm")
SUITE_HELP = """suites:
  smoke   every small task at a tiny size: a test of the set-up, not evidence
  quick   the small tasks, every seed at every learning rate (the committed report)
  medium  tasks trained to real quality on the CPU (a GPT on Python code, ResNets on
          MNIST-1D and digits); each method's learning rate is tuned on one seed, the other
          seeds run at it; hours on two cores: run it in the background with --resume, e.g.
          nohup adamem bench --suite medium --out medium --resume > medium.log 2>&1 &
  full    the small tasks trained much longer, every seed at every learning rate: about
          three times the runs of quick, over twenty times the steps and a larger GPT, so of
          the order of a day or more on two cores; never run for the committed evidence
  gpu     a GPT of about 85M parameters on the medium suite's code corpus, tuned like
          medium; needs --device cuda"""
BENCH_EXTRA = (
    'the benchmark needs the "bench" extra: pip install -e ".[bench]" in a checkout of adamem, '
    'or pip install "adamem[bench]" where adamem comes from a package index'
)


def _at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _device(text: str) -> str:
    if text not in ("cpu", "cuda") and not text.startswith("cuda:"):
        raise argparse.ArgumentTypeError(f"unknown device {text!r}; use cpu, cuda or cuda:N")
    if text.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(f"{text}, but torch sees no CUDA device")
    return text


def _output_directory(text: str) -> Path:
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{path} exists and is not a directory")
    return path


def _tasks_by_suite() -> str:
    """A paragraph per group of suites that run the same tasks."""
    from .bench.tasks import SUITES, suite_tasks

    groups: dict[tuple[str, ...], list[str]] = {}
    for suite in SUITES:
        groups.setdefault(tuple(suite_tasks(suite)), []).append(suite)
    paragraphs = [
        textwrap.fill(
            f"{', '.join(suites)}: {', '.join(tasks)}",
            width=88,
            initial_indent="  ",
            subsequent_indent="    ",
            break_on_hyphens=False,
        )
        for tasks, suites in groups.items()
    ]
    return "\n".join(paragraphs)


def _parser() -> argparse.ArgumentParser:
    from .bench.benchmark import RESULTS
    from .bench.plan import DEFAULT_SEEDS
    from .bench.store import ResultStore
    from .bench.tasks import SUITES, TASKS

    parser = argparse.ArgumentParser(prog="adamem", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    bench = commands.add_parser(
        "bench",
        help="benchmark AM against tuned fixed momentum",
        description=textwrap.fill(
            "Benchmark AMSGD, AMAdamW and AMMuon against tuned fixed-momentum baselines; write "
            f"{RESULTS}, report.md and plots/ to --out. Running it needs the bench extra.",
            width=88,
        ),
        epilog=SUITE_HELP + "\n\ntasks by suite:\n" + _tasks_by_suite(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bench.add_argument("--suite", choices=SUITES, default="quick", help="sizes (default: quick)")
    _add_plan_arguments(
        bench,
        TASKS,
        tasks_help="tasks to run (default: all of the suite's, listed below)",
        seeds_help="seeds per configuration; in medium and gpu, seeds at each method's chosen "
        "learning rate, the tuning seed included (default: "
        + ", ".join(f"{suite} {n}" for suite, n in DEFAULT_SEEDS.items())
        + ")",
    )
    bench.add_argument(
        "--device", type=_device, default="cpu", help="cpu, cuda or cuda:N (default: cpu)"
    )
    bench.add_argument(
        "--out",
        type=_output_directory,
        default="bench-results",  # a string, so that argparse checks it with the type too
        help="output directory (default: bench-results)",
    )
    bench.add_argument("--resume", action="store_true", help="continue the results in --out")
    bench.add_argument(
        "--set-aside-corrupt",
        action="store_true",
        help=f"move the lines of --out's {RESULTS} that are not records, unchanged, to "
        f"{ResultStore(Path(RESULTS)).corrupt_path} next to it, then continue (implies --resume)",
    )
    bench.add_argument(
        "--jobs",
        type=_at_least_one,
        default=None,
        help="worker processes running at once, one thread each (default: the usable cores; 1 "
        "for the gpu suite, whose runs each fill the GPU)",
    )
    report = commands.add_parser(
        "report",
        help="rewrite a benchmark's report from its run records, without running anything",
        description="Write report.md, summary.md and plots/ from the run records in RESULTS, "
        "exactly as adamem bench does after its runs.",
    )
    report.add_argument(
        "results", type=Path, help="results.jsonl written by adamem bench, or a gzipped copy"
    )
    report.add_argument(
        "--out", type=Path, help="output directory (default: the directory of RESULTS)"
    )
    _add_plan_arguments(
        report,
        TASKS,
        tasks_help="the tasks the benchmark was run for (default: those in the records); give "
        "them to report an unfinished benchmark's missing runs",
        seeds_help="the seeds the benchmark was run with (default: read off the records)",
    )
    report.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit with status 1 if report.md or summary.md in --out differ from "
        "what the records give (plots are not redrawn)",
    )
    return parser


def _add_plan_arguments(
    parser: argparse.ArgumentParser, tasks: Iterable[str], *, tasks_help: str, seeds_help: str
) -> None:
    """``--tasks`` and ``--seeds``: which runs a benchmark plans, for ``bench`` and ``report``."""
    parser.add_argument(
        "--tasks", nargs="+", choices=list(tasks), default=None, metavar="TASK", help=tasks_help
    )
    parser.add_argument("--seeds", type=_at_least_one, default=None, help=seeds_help)


def _report(args: argparse.Namespace) -> int:
    from .bench.report import Results, stale_files, write_report

    try:
        results = Results.load(args.results, args.tasks, args.seeds)
    except (OSError, ValueError) as error:
        print(f"adamem: {error}", file=sys.stderr)
        return 2
    out = args.out if args.out is not None else args.results.parent
    if not args.check:
        print(f"report: {write_report(results, out)}")
        return 0
    stale = stale_files(results, out)
    for name in stale:
        print(f"adamem: {out / name} does not match {args.results}", file=sys.stderr)
    return 1 if stale else 0


def _missing_bench_modules() -> list[str]:
    missing = []
    for name in BENCH_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    return missing


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status (2 for a usage error)."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exit_request:  # --help, or an argument error already printed
        return int(exit_request.code or 0)
    missing = _missing_bench_modules()
    if missing:
        print(f"adamem: {BENCH_EXTRA} (missing: {', '.join(missing)})", file=sys.stderr)
        return 2
    from .bench.benchmark import default_jobs, run_benchmark
    from .bench.plan import DEFAULT_SEEDS, check_arguments
    from .bench.store import CorruptRecord, ResultStore
    from .bench.tasks import CUDA_SUITES, suite_tasks

    if args.command == "report":
        return _report(args)
    seeds = args.seeds if args.seeds is not None else DEFAULT_SEEDS[args.suite]
    tasks = args.tasks if args.tasks is not None else suite_tasks(args.suite)
    jobs = (
        args.jobs if args.jobs is not None else 1 if args.suite in CUDA_SUITES else default_jobs()
    )
    try:
        check_arguments(args.suite, tasks, args.device)
    except ValueError as error:
        print(f"adamem: {error}", file=sys.stderr)
        return 2
    try:
        report = run_benchmark(
            args.suite,
            tasks,
            seeds,
            args.device,
            args.out,
            args.resume or args.set_aside_corrupt,
            jobs,
            set_aside_corrupt=args.set_aside_corrupt,
        )
    except FileExistsError as error:
        print(f"adamem: {error}", file=sys.stderr)
        return 2
    except CorruptRecord as error:
        side_file = ResultStore(error.path).corrupt_path
        print(
            f"adamem: {error}; to move such lines to {side_file} and continue, rerun with "
            "--set-aside-corrupt",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print(
            "\nadamem: interrupted; finished runs are saved; rerun with --resume", file=sys.stderr
        )
        return 130
    print(f"report: {report}")
    return 0
