"""The ``adamem`` command line: ``adamem bench`` runs the benchmark suite; ``adamem report``
rewrites (or checks) a benchmark's report from its run records."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

BENCH_EXTRA = 'the benchmark needs the "bench" extra: pip install "adamem[bench]"'


def _parser() -> argparse.ArgumentParser:
    from .bench.benchmark import default_jobs
    from .bench.plan import DEFAULT_SEEDS
    from .bench.tasks import SUITES, TASKS

    parser = argparse.ArgumentParser(prog="adamem", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    bench = commands.add_parser(
        "bench",
        help="benchmark AM against tuned fixed momentum",
        description="Benchmark AMSGD and AMAdamW against tuned fixed-momentum baselines; "
        "write results.jsonl, report.md and plots/ to --out.",
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
        type=int,
        default=None,
        help="seeds per configuration (default: "
        + ", ".join(f"{suite} {n}" for suite, n in DEFAULT_SEEDS.items())
        + ")",
    )
    bench.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    bench.add_argument("--out", type=Path, default=Path("bench-results"), help="output directory")
    bench.add_argument("--resume", action="store_true", help="continue the results in --out")
    bench.add_argument(
        "--jobs",
        type=int,
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


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    try:
        import matplotlib  # noqa: F401
        import mnist1d  # noqa: F401
        import sklearn  # noqa: F401
        import tqdm  # noqa: F401
    except ImportError as error:
        print(f"adamem: {BENCH_EXTRA} ({error})", file=sys.stderr)
        return 2
    from .bench.benchmark import run_benchmark
    from .bench.plan import DEFAULT_SEEDS

    args = _parser().parse_args(argv)
    if args.command == "report":
        return _report(args)
    if args.device not in ("cpu", "cuda") and not args.device.startswith("cuda:"):
        print(f"adamem: unknown device {args.device!r}", file=sys.stderr)
        return 2
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            print("adamem: --device cuda, but torch sees no CUDA device", file=sys.stderr)
            return 2
    seeds = args.seeds if args.seeds is not None else DEFAULT_SEEDS[args.suite]
    if seeds < 1:
        print("adamem: --seeds must be at least 1", file=sys.stderr)
        return 2
    try:
        report = run_benchmark(
            args.suite, args.tasks, seeds, args.device, args.out, args.resume, args.jobs
        )
    except FileExistsError as error:
        print(f"adamem: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "\nadamem: interrupted; finished runs are saved; rerun with --resume", file=sys.stderr
        )
        return 130
    print(f"report: {report}")
    return 0
