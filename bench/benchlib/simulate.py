"""
``bash bench/simulate``: networks of co2 nodes built in memory (no
socket), of a given size and topology, and what they cost: per message,
per node, and to heal a partition.  See ``docs/scale.md``.

Each network is built and measured in a process of its own (forked), so
that its wall time and peak RSS are its own.  Exit status: 0 when every
network ran and every message reached every satellite exactly once and
every partition healed; 1 otherwise; 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import report
from .sim_figures import (
    Memory,
    Message,
    Partition,
    directories_whole,
    node_memory,
    partition,
    run_for,
    send_message,
    send_messages,
)
from .sim_network import TOPOLOGIES, build, layout, stop, write_plugin

DEFAULT_NODES = (100, 1000)
QUICK_NODES = (30,)
DEFAULT_MESSAGES = 20
QUICK_MESSAGES = 5
WARM_UP = 30.0
"""
Simulated seconds between the build and the first message: a node whose
map of the network changed less than ``relay._tree.SETTLE`` (10 s) ago
floods, and the figures are those of a network at rest.
"""
MIB = 1024 * 1024
PACKAGES = ("co2", "relay", "satellites", "plugin")


@dataclass
class Run:
    """One network, built and measured."""

    topology: str
    nodes: int
    relays: int
    satellites: int
    links: int
    seed: int
    build_seconds: float = 0.0
    build_rounds: int = 0
    build_bytes: int = 0
    whole_after_build: bool = False
    messages: list[Message] = field(default_factory=list)
    memory: Memory | None = None
    interval_seconds: float = 0.0
    """The directory's announce interval (simulated)."""
    interval_bytes: int = 0
    """Bytes the links carried while the clock moved on by one announce interval."""
    interval_wall: float = 0.0
    partition: Partition | None = None
    after_heal: Message | None = None
    wall_seconds: float = 0.0
    rss_start: int = 0
    rss_peak: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.topology} {self.nodes:,}"


def simulate(
    topology: str,
    nodes: int,
    messages: int,
    seed: int,
    plugin_dir: Path,
    warm_up: float = WARM_UP,
    say: Callable[[str], None] = lambda text: None,
) -> Run:
    """
    Build a ``topology`` network of about ``nodes`` nodes (drawn with
    ``seed``), send ``messages`` from random satellites, measure its
    nodes' memory, run it for one announce interval, partition it and heal
    it; then stop it.  Failed checks are listed in the run's ``failures``.
    """
    started = time.perf_counter()
    rng = random.Random(seed)
    drawn = layout(topology, nodes, rng)
    run = Run(topology, len(drawn.nodes), len(drawn.relays), len(drawn.satellites), len(drawn.links), seed)
    say(f"building {len(drawn.relays)} relays, {len(drawn.satellites)} satellites, {len(drawn.links)} links")
    built = build(drawn, plugin_dir, say)
    run.build_seconds = time.perf_counter() - started
    run.build_rounds, run.build_bytes = built.build_rounds, built.network.carried
    run.whole_after_build = directories_whole(built)
    say(f"built in {run.build_seconds:.1f} s; sending {messages} messages")
    run_for(built, warm_up)
    run.messages = send_messages(built, messages, rng)
    say("measuring the nodes' memory")
    run.memory = node_memory(built, rng)
    interval = built.relays()[0].directory.interval
    say(f"running for one announce interval ({interval:g} s simulated)")
    run.interval_seconds = interval
    carried, wall = built.network.carried, time.perf_counter()
    run_for(built, interval)
    run.interval_bytes, run.interval_wall = built.network.carried - carried, time.perf_counter() - wall
    # What the other side announced is forgotten three intervals after it was last heard.
    hold = 3 * interval + 1
    say(f"cutting {len(drawn.cut)} link(s), {hold:g} s simulated, then healing")
    run.partition = partition(built, hold, bound=3 * interval)
    run.after_heal = send_message(built, messages, rng.choice(drawn.satellites))
    stop(built)
    run.wall_seconds = time.perf_counter() - started
    run.failures = _failures(run)
    return run


def _failures(run: Run) -> list[str]:
    failures = [
        f"message {i} from {message.sender} did not reach every satellite exactly once"
        for i, message in enumerate(run.messages) if not message.exactly_once
    ]
    if run.after_heal is not None and not run.after_heal.exactly_once:
        failures.append("the message after the heal did not reach every satellite exactly once")
    if run.partition is not None and not run.partition.healed:
        failures.append("after the partition, some directory never knew every node again")
    return [f"{run.name}: {failure}" for failure in failures]


# Each network in a process of its own


def _rss(field_name: str) -> int:
    """``VmRSS`` or ``VmHWM`` (the peak) of this process, in bytes."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _child(connection: Any, arguments: tuple[Any, ...]) -> None:
    rss_start = _rss("VmRSS")
    answer: tuple[str, Any] | None = None
    try:
        run = simulate(*arguments)
        run.rss_start, run.rss_peak = rss_start, _rss("VmHWM")
        answer = ("done", run)
    except MemoryError:
        pass  # said below, once the network is let go of: saying it takes memory too
    except BaseException:
        answer = ("failed", traceback.format_exc())
    if answer is None:
        answer = ("failed", f"MemoryError: out of memory, at a peak RSS of {_rss('VmHWM') / MIB:,.0f} MiB")
    connection.send(answer)


def simulate_apart(
    topology: str, nodes: int, messages: int, seed: int, plugin_dir: Path, warm_up: float,
    say: Callable[[str], None],
) -> Run:
    """
    :func:`simulate` in a forked process; a crash or a process that died
    is a run with a failure.  The process is ended if this one is
    interrupted (Ctrl-C, SIGTERM) while waiting for it.
    """
    context = multiprocessing.get_context("fork")
    ours, theirs = context.Pipe(duplex=False)
    started = time.perf_counter()

    def told(text: str) -> None:
        say(f"{text} ({time.perf_counter() - started:,.0f} s, RSS {_rss('VmRSS') / MIB:,.0f} MiB)")

    process = context.Process(
        target=_child, args=(theirs, (topology, nodes, messages, seed, plugin_dir, warm_up, told)),
    )
    process.start()
    theirs.close()
    kind, answer = "failed", None
    try:
        kind, answer = ours.recv()
    except EOFError:
        pass
    finally:
        if kind == "failed" and process.is_alive():  # interrupted, or SIGTERM: it goes too
            process.terminate()
        process.join()
    if kind == "done":
        assert isinstance(answer, Run)
        return answer
    if answer is None:
        answer = f"the process died (exit code {process.exitcode})"
    run = Run(topology, nodes, 0, 0, 0, seed)
    run.failures = [f"{run.name}: {answer.strip().splitlines()[-1]}"]
    say(answer)
    return run


# What is printed


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _bytes(value: float) -> str:
    if value >= MIB:
        return report.number(value / MIB, "MiB")
    if value >= 1024:
        return report.number(value / 1024, "KiB")
    return report.number(round(value), "B")


def rows(run: Run) -> list[tuple[str, str]]:
    """The figures of ``run``, named, as the tables show them."""
    if run.memory is None or run.partition is None or run.after_heal is None:
        return [("nodes", f"{run.nodes:,}"), ("failed", "; ".join(run.failures))]
    messages, memory, cut, after = run.messages, run.memory, run.partition, run.after_heal
    once = sum(message.exactly_once for message in messages)
    transmissions = [message.transmissions for message in messages]
    return [
        ("nodes: relays + satellites", f"{run.nodes:,}: {run.relays:,} + {run.satellites:,}"),
        ("links", f"{run.links:,}"),
        ("build: wall time", report.number(run.build_seconds, "s")),
        ("build: rounds / bytes over links", f"{run.build_rounds:,} / {_bytes(run.build_bytes)}"),
        ("build: every directory knows every node", "yes" if run.whole_after_build else "no"),
        ("per message: link transmissions",
         f"{report.number(_mean(transmissions))} (min {min(transmissions):,}, max {max(transmissions):,})"),
        ("per message: duplicate arrivals", report.number(_mean([m.duplicates for m in messages]))),
        ("per message: rounds until every satellite got it",
         f"{report.number(_mean([m.rounds_to_deliver for m in messages]))} "
         f"(max {max(m.rounds_to_deliver for m in messages)})"),
        ("per message: rounds until quiet", report.number(_mean([m.rounds_to_quiet for m in messages]))),
        ("every satellite got each message exactly once", f"{'yes' if once == len(messages) else 'NO'} "
                                                          f"({once}/{len(messages)})"),
        ("per node: seen ids / their memory",
         f"{report.number(memory.seen_ids)} / {_bytes(memory.seen_bytes)} "
         f"({_bytes(memory.seen_bytes / max(memory.seen_ids, 1))} per id)"),
        (f"per node: seen ids at seen_limit ({memory.seen_limit:,})",
         f"{_bytes(memory.seen_bytes_full)} ({_bytes(memory.seen_bytes_full / memory.seen_limit)} per id)"),
        ("per node: directory entries", f"{report.number(memory.directory_entries)} "
                                        f"(min {memory.directory_entries_min:,})"),
        ("per node: directory memory", f"{_bytes(memory.directory_bytes)} "
                                       f"(max {_bytes(memory.directory_bytes_max)}, "
                                       f"{memory.sampled} nodes sampled)"),
        (f"one announce interval ({run.interval_seconds:g} s): bytes over links / wall time",
         f"{_bytes(run.interval_bytes)} / {report.number(run.interval_wall, 's')}"),
        ("partition: sides / links cut", f"{cut.sides[0]:,} + {cut.sides[1]:,} / {cut.links_cut}"),
        (f"partition: directory entries after {cut.held_seconds:g} s apart",
         f"{report.number(cut.entries_while_cut)} "
         f"({cut.strangers_while_cut} nodes still list the other side)"),
        ("heal: rounds / simulated time until every directory is whole",
         f"{cut.heal_rounds:,} / {report.number(cut.heal_seconds, 's')}"
         + ("" if cut.healed else " (NOT healed)")),
        ("heal: bytes over links / wall time",
         f"{_bytes(cut.heal_bytes)} / {report.number(cut.heal_wall, 's')}"),
        ("after the heal, one message: transmissions / duplicates / exactly once",
         f"{after.transmissions:,} / {after.duplicates:,} / {'yes' if after.exactly_once else 'NO'}"),
        ("wall time, all of the above", report.number(run.wall_seconds, "s")),
        ("peak RSS (at the start)", f"{_bytes(run.rss_peak)} ({_bytes(run.rss_start)})"),
    ]


def table(run: Run) -> str:
    """One network's figures as a Markdown table."""
    lines = ["| figure | value |", "| --- | --- |"]
    lines += [f"| {name} | {value} |" for name, value in rows(run)]
    return "\n".join(lines)


def summary(runs: list[Run]) -> str:
    """Every network's figures side by side, as a Markdown table."""
    names = [name for name, _ in rows(runs[0])] if runs else []
    by_run = [dict(rows(run)) for run in runs]
    lines = ["| figure | " + " | ".join(run.name for run in runs) + " |",
             "| --- |" + " --- |" * len(runs)]
    lines += [f"| {name} | " + " | ".join(values.get(name, "") for values in by_run) + " |" for name in names]
    return "\n".join(lines)


def uncommitted() -> list[str]:
    """The files of co2's packages that differ from the commit (the figures are of what is on disk)."""
    try:
        out = subprocess.run(
            ["git", "-C", str(report.REPO), "status", "--porcelain", "--", *PACKAGES],
            capture_output=True, text=True, timeout=10,
        )
    except OSError:
        return []
    return [line[3:] for line in out.stdout.splitlines()]


def machine_line(described: dict[str, Any]) -> str:
    """Which machine the wall times and RSS are of, and which code."""
    memory = described.get("memory_bytes")
    changed = described.get("uncommitted", [])
    return (
        f"Machine: {described['cpu']}, {described['cores']} cores, "
        f"{_bytes(memory) if memory else 'unknown'} of memory, Python {described['python']}, "
        f"Twisted {described['twisted']}. Code: co2 commit {described['co2_commit'][:10] or 'unknown'}"
        + (f", with {len(changed)} file(s) of co2, relay and satellites changed since." if changed else ".")
    )


# The command


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/simulate",
        description="Build networks of co2 nodes in memory and measure what they cost (docs/scale.md).",
    )
    parser.add_argument("--nodes", type=int, action="append", metavar="N",
                        help=f"about N nodes, one in ten a relay; may be repeated (default: "
                             f"{', '.join(map(str, DEFAULT_NODES))}; {QUICK_NODES[0]} with --quick)")
    parser.add_argument("--topology", choices=TOPOLOGIES, action="append",
                        help="tree or mesh; may be repeated (default: both)")
    parser.add_argument("--messages", type=int, metavar="M",
                        help=f"messages sent per network (default: {DEFAULT_MESSAGES}; "
                             f"{QUICK_MESSAGES} with --quick)")
    parser.add_argument("--seed", type=int, default=1, help="draws the mesh and the senders (default: 1)")
    parser.add_argument("--warm-up", type=float, default=WARM_UP, metavar="SECONDS",
                        help="simulated seconds between the build and the first message "
                             f"(default: {WARM_UP:g})")
    parser.add_argument("--quick", action="store_true", help="tiny networks: check that the command runs")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write every figure to PATH as JSON")
    args = parser.parse_args(argv)
    args.nodes = args.nodes or list(QUICK_NODES if args.quick else DEFAULT_NODES)
    args.topology = args.topology or list(TOPOLOGIES)
    if args.messages is None:
        args.messages = QUICK_MESSAGES if args.quick else DEFAULT_MESSAGES
    for count in args.nodes:
        if count < 4:
            parser.error(f"--nodes {count}: at least 4 (three relays and a satellite)")
    if args.messages < 1:
        parser.error("--messages: at least 1")
    return args


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    described = {**report.machine(), "uncommitted": uncommitted()}
    print(machine_line(described) + "\n")
    runs: list[Run] = []
    plugin_dir = Path(tempfile.mkdtemp(prefix="co2-simulate-"))
    try:
        write_plugin(plugin_dir)
        for nodes in args.nodes:
            for topology in args.topology:
                name = f"{topology} {nodes:,}"
                run = simulate_apart(topology, nodes, args.messages, args.seed, plugin_dir, args.warm_up,
                                     lambda text, name=name: say(f"[{name}] {text}"))
                runs.append(run)
                print(f"### {run.name} nodes, seed {run.seed}\n\n{table(run)}\n", flush=True)
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    finally:
        shutil.rmtree(plugin_dir, ignore_errors=True)
    if len(runs) > 1:
        print(f"### All networks\n\n{summary(runs)}\n")
    failures = [failure for run in runs for failure in run.failures]
    if failures:
        print("FAILED:\n" + "\n".join(f"- {failure}" for failure in failures))
    if args.json is not None:
        record = {
            "command": "bash bench/simulate " + " ".join(sys.argv[1:] if argv is None else argv),
            "machine": described,
            "runs": [asdict(run) for run in runs],
            "failures": failures,
        }
        report.write_json(args.json, record)
        say(f"wrote {args.json}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
