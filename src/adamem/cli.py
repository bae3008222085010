"""The ``adamem`` command line: ``adamem bench`` runs the benchmark suite; ``adamem report``
rewrites (or checks) a benchmark's report from its run records.

Parsing and checking the arguments needs only torch; the ``bench`` extra is imported once a
benchmark or a report is about to run, so ``--help`` and argument errors work on a core install.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

BENCH_MODULES = ("numpy", "sklearn", "mnist1d", "matplotlib", "tqdm")
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


def _parser() -> argparse.ArgumentParser:
    from .bench.benchmark import RESULTS, default_jobs
    from .bench.plan import DEFAULT_SEEDS
    from .bench.store import ResultStore
    from .bench.tasks import SUITES, TASKS

    parser = argparse.ArgumentParser(prog="adamem", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    bench = commands.add_parser(
        "bench",
        help="benchmark AM against tuned fixed momentum",
        description="Benchmark AMSGD and AMAdamW against tuned fixed-momentum baselines; "
        f"write {RESULTS}, report.md and plots/ to --out. Running it needs the bench extra.",
    )
    bench.add_argument("--suite", choices=SUITES, default="quick", help="sizes (default: quick)")
    bench.add_argument(
        "--tasks",
        nargs="+",
        choices=list(TASKS),
        default=list(TASKS),
        metavar="TASK",
        help=f"tasks to run (default: all): {', '.join(TASKS)}",
    )
    bench.add_argument(
        "--seeds",
        type=_at_least_one,
        default=None,
        help="seeds per configuration (default: "
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
        default=default_jobs(),
        help="worker processes running at once, one thread each (default: the usable cores)",
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
    report.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit with status 1 if report.md or summary.md in --out differ from "
        "what the records give (plots are not redrawn)",
    )
    return parser


def _report(args: argparse.Namespace) -> int:
    from .bench.report import Results, stale_files, write_report

    try:
        results = Results.load(args.results)
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
    from .bench.benchmark import run_benchmark
    from .bench.plan import DEFAULT_SEEDS
    from .bench.store import CorruptRecord, ResultStore

    if args.command == "report":
        return _report(args)
    seeds = args.seeds if args.seeds is not None else DEFAULT_SEEDS[args.suite]
    try:
        report = run_benchmark(
            args.suite,
            args.tasks,
            seeds,
            args.device,
            args.out,
            args.resume or args.set_aside_corrupt,
            args.jobs,
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
