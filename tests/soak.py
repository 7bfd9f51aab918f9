"""
Soak a small co2 network at a steady rate for a given time:

    .venv/bin/python tests/soak.py --seconds 600 --rate 500

starts a ``co2-relay`` and two ``co2-satellite`` processes, A and B, both
linked to the relay over AMP on loopback, each loading a small generated
plugin (``soak``).  For ``--seconds``:

- A's plugin sends ``--rate`` messages a second (``LoopingCall.withCount``
  keeps the pace even when a turn of the reactor comes late); B's plugin
  counts each one, distinct or duplicate;
- client threads call ``co2.get_method_names`` and ``system.listMethods``
  on the relay, ``--call-rate`` calls a second in all, each thread on one
  kept-alive connection;
- a thread calls ``notify`` on B, ``--notify-rate`` times a second; those
  messages reach B's plugin and, through the relay, A's, and both count
  them.

The load starts with a warm-up of ``--warmup`` seconds, which by default
lasts until every node's de-duplication memory is full (see below), plus
10 s.  The resident memory (VmRSS) and open descriptors of every node are
then sampled, every ~10 s for ``--seconds``, and at the end: what is
measured is the steady state, where every bounded structure is as large
as it gets.  Then every message must have arrived once and a table is
printed per node.  The exit status is 1 if a message was lost or
duplicated, a call failed, a node exited or logged an error, or, for a run
of at least 5 minutes, RSS or descriptors grew by 10% or more between the
first sample and the last (a shorter run reports growth without judging
it); 0 otherwise.

Each node remembers the ids of the last ``seen_limit`` messages (100,000
by default) to recognise duplicates, so its memory grows until that many
have passed: at the default rates, 192 s.  The report says so when the
first sample came before that (a ``--warmup`` too short).
``--seen-limit N`` sets ``seen_limit`` on every node.

Every process is ended, and the working directory removed, however the
run ends; SIGINT or SIGTERM ends it early, with status 130 and no
verdict.  This is not part of the test suite: it runs for as long as it
is given.
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import xmlrpc.client
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from co2.testing import AMP_LISTENING, SERVING, end_process, rss_bytes, start_command, timeout_proxy

BIN_DIR = Path(sys.executable).parent
LOCAL = "tcp:port=0:interface=127.0.0.1"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
CALL_TIMEOUT = 30.0
DRAIN_TIMEOUT = 60.0
SAMPLE_EVERY = 10.0
JUDGED_FROM = 300.0
"""Runs at least this long (seconds) have their growth judged."""
GROWTH_LIMIT = 10.0
"""Growth (percent) of RSS or descriptors that fails a judged run."""
LINK_UP = re.compile(r"link node:\S+ up: ")
ERROR_LINE = re.compile(r"#(error|critical)\]|Traceback|Unhandled")
DEFAULT_SEEN_LIMIT = 100_000
"""co2's default seen_limit: how many message ids each node remembers."""

PLUGIN = '''
from twisted.internet.task import LoopingCall

from co2 import Co2Plugin

TICK = 0.01


class X_Soak(Co2Plugin):
    """Sends numbered messages at a steady rate; counts those it receives."""

    def __init__(self, var_dict):
        Co2Plugin.__init__(self, var_dict)
        self.sent = 0
        self.total = 0
        self.rate = 0
        self.ticks = 0
        self.loop = None
        self.seen = {}
        self.received = {}
        self.duplicates = {}
        self.unexpected = 0

    def x_expect(self, kind: str, count: int) -> bool:
        """Get ready to count messages of ``kind`` numbered 0 to count - 1."""
        self.seen[kind] = bytearray(count)
        self.received[kind] = 0
        self.duplicates[kind] = 0
        return True

    def x_start(self, rate: int, seconds: float) -> int:
        """Send rate messages a second for seconds; return how many will be sent."""
        self.total, self.rate, self.ticks = int(rate * seconds), rate, 0
        self.loop = LoopingCall.withCount(self._tick)
        self.loop.start(TICK, now=False)
        return self.total

    def _tick(self, count):
        # count: the ticks since the last call, more than 1 when one came late.
        self.ticks += count
        due = min(self.total, int(self.ticks * TICK * self.rate))
        while self.sent < due:
            self.send({"kind": "pace", "seq": self.sent})
            self.sent += 1
        if self.sent >= self.total:
            self.loop.stop()

    def x_status(self) -> dict:
        """What was sent, and what was received of each kind, distinct and again."""
        running = self.loop is not None and self.loop.running
        return {"sent": self.sent, "running": running, "received": self.received,
                "duplicates": self.duplicates, "unexpected": self.unexpected}

    def receive(self, data_dict):
        data = data_dict["data"]
        seen = self.seen.get(data.get("kind")) if isinstance(data, dict) else None
        seq = data.get("seq") if seen is not None else None
        if not isinstance(seq, int) or not 0 <= seq < len(seen):
            self.unexpected += 1
        elif seen[seq]:
            self.duplicates[data["kind"]] += 1
        else:
            seen[seq] = 1
            self.received[data["kind"]] += 1

    def __exit__(self):
        if self.loop is not None and self.loop.running:
            self.loop.stop()
'''


class SoakError(Exception):
    """Something the run needed did not happen."""


# --------------------------------------------------------------------------
# Nodes


@dataclass
class Sample:
    """One reading of a process: seconds since the load began, RSS in bytes, open descriptors."""

    at: float
    rss: int
    fds: int


@dataclass
class Node:
    """A started co2 node: its process, log file, XML-RPC URL and AMP port."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    log_file: IO[bytes]
    url: str = ""
    amp_port: int = 0
    samples: list[Sample] = field(default_factory=list)

    @property
    def pid(self) -> int:
        """The node's process id."""
        return self.popen.pid

    def log(self) -> str:
        """What the node logged so far."""
        return self.log_path.read_text(errors="replace")

    def call(self, method: str, *args: Any) -> Any:
        """Call ``method`` once, on a new connection."""
        with proxy(self.url) as server:
            return getattr(server, method)(*args)


def proxy(url: str) -> xmlrpc.client.ServerProxy:
    """An XML-RPC client for ``url`` whose calls give up after CALL_TIMEOUT seconds."""
    return timeout_proxy(url, CALL_TIMEOUT)


def write_config(work: Path, name: str, **settings: object) -> Path:
    """Write ``<work>/<name>.py`` with one ``key = repr(value)`` line per setting."""
    path = work / f"{name}.py"
    path.write_text("".join(f"{key} = {value!r}\n" for key, value in settings.items()))
    return path


def spawn(work: Path, name: str, program: str, **settings: object) -> Node:
    """Start ``program`` (co2-relay or co2-satellite) on a config of ``settings``, logging to a file."""
    config = write_config(work, name, listen=LOCAL, **settings)
    log_path = work / f"{name}.log"
    log_file = log_path.open("wb")
    popen = start_command(
        [BIN_DIR / program, "--config", config], work, stdout=log_file, stderr=subprocess.STDOUT
    )
    return Node(name, popen, log_path, log_file)


def wait_log(node: Node, pattern: re.Pattern[str], timeout: float = START_TIMEOUT) -> re.Match[str]:
    """Wait until ``node``'s log matches ``pattern``; its match."""
    deadline = time.monotonic() + timeout
    while True:
        match = pattern.search(node.log())
        if match:
            return match
        if node.popen.poll() is not None or time.monotonic() > deadline:
            raise SoakError(f"{node.name}: no line matching {pattern.pattern!r}\n{node.log()[-3000:]}")
        time.sleep(0.05)


def wait_serving(node: Node, amp: bool = False) -> Node:
    """Wait until ``node`` serves XML-RPC (and, with ``amp``, listens for AMP links)."""
    node.url = wait_log(node, SERVING).group(1)
    if amp:
        node.amp_port = int(wait_log(node, AMP_LISTENING).group(1))
    return node


def stop(node: Node) -> None:
    """End ``node``: SIGTERM, a bounded wait, then SIGKILL; close its log."""
    end_process(node.popen, STOP_TIMEOUT)
    node.log_file.close()


def linked(relay: Node) -> bool:
    """Whether the relay has two links up and knows the soak plugin's methods."""
    return len(LINK_UP.findall(relay.log())) >= 2 and "soak.soak.status" in relay.call("co2.get_method_names")


def start_network(work: Path, nodes: list[Node], **settings: object) -> tuple[Node, Node, Node]:
    """
    Start the relay, then A and B linked to it, each appended to ``nodes``
    and configured with ``settings`` too; wait for the links.
    """
    plugin_dir = work / "plugins"
    package = plugin_dir / "soak"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text('"""Steady sending and counting."""\n__all__ = ["soak"]\n')
    (package / "soak.py").write_text(textwrap.dedent(PLUGIN))
    relay = spawn(work, "relay", "co2-relay", amp_listen=LOCAL, **settings)
    nodes.append(relay)
    wait_serving(relay, amp=True)
    peers = [f"tcp:host=127.0.0.1:port={relay.amp_port}"]
    for name in ("A", "B"):
        nodes.append(spawn(work, name, "co2-satellite", plugin_dir=str(plugin_dir),
                           plugin_list=["soak"], peers=peers, **settings))
    a, b = (wait_serving(node) for node in nodes[1:])
    deadline = time.monotonic() + START_TIMEOUT
    while not linked(relay):
        if time.monotonic() > deadline:
            raise SoakError(f"A and B not linked within {START_TIMEOUT:g}s\n{relay.log()[-3000:]}")
        time.sleep(0.1)
    return relay, a, b


# --------------------------------------------------------------------------
# Measuring


def sample(nodes: list[Node], at: float) -> None:
    """Read the RSS and open descriptors of every node, at ``at`` seconds into the load."""
    for node in nodes:
        node.samples.append(Sample(at, rss_bytes(node.pid), len(os.listdir(f"/proc/{node.pid}/fd"))))


def growth(start: float, end: float) -> float:
    """Growth from ``start`` to ``end``, in percent."""
    return (end - start) / start * 100.0 if start else 0.0


# --------------------------------------------------------------------------
# Load from client threads


@dataclass
class Tally:
    """Calls answered and failed per node, and notifies accepted, shared by the client threads."""

    answered: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    first_failure: dict[str, str] = field(default_factory=dict)
    notified: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, node: str, call: Callable[[], Any]) -> Any:
        """Make ``call`` (to ``node``) and count it answered or failed; None when it failed."""
        try:
            result = call()
        except Exception as e:
            with self.lock:
                self.failed[node] += 1
                self.first_failure.setdefault(node, f"{type(e).__name__}: {e}")
            return None
        with self.lock:
            self.answered[node] += 1
        return result


def paced(rate: float, stopping: threading.Event, step: Callable[[int], None]) -> None:
    """Run ``step(n)`` for n = 0, 1, ... ``rate`` times a second until ``stopping`` is set."""
    interval, n = 1.0 / rate, 0
    due = time.monotonic()
    while not stopping.is_set():
        step(n)
        n += 1
        due += interval
        late = time.monotonic() - due
        if late > 1.0:  # fell behind: keep the pace from now rather than burst
            due += late
        elif late < 0:
            stopping.wait(-late)


def relay_caller(url: str, rate: float, stopping: threading.Event, tally: Tally) -> None:
    """Call co2.get_method_names and system.listMethods on the relay, alternately, on one connection."""
    with proxy(url) as server:
        calls = (server.co2.get_method_names, server.system.listMethods)
        paced(rate, stopping, lambda n: tally.record("relay", calls[n % 2]))


def notifier(node: Node, rate: float, stopping: threading.Event, tally: Tally) -> None:
    """Call notify on ``node`` with numbered messages from 127.0.0.1, on one connection."""
    host_id = f"{secrets.randbits(64)}@127.0.0.1:9"

    def step(n: int) -> None:
        message = {"data": {"kind": "notify", "seq": n}, "host_id": host_id}
        if tally.record(node.name, lambda: server.notify(message)) is True:
            with tally.lock:
                tally.notified = n + 1

    with proxy(node.url) as server:
        paced(rate, stopping, step)


def start_load(
    relay: Node, b: Node, args: argparse.Namespace, stopping: threading.Event, tally: Tally
) -> list[threading.Thread]:
    """Start the relay callers and B's notifier; return their threads."""
    per_thread = args.call_rate / args.callers
    threads = [
        threading.Thread(target=relay_caller, args=(relay.url, per_thread, stopping, tally))
        for _ in range(args.callers)
    ]
    threads.append(threading.Thread(target=notifier, args=(b, args.notify_rate, stopping, tally)))
    for thread in threads:
        thread.start()
    return threads


# --------------------------------------------------------------------------
# The run


@dataclass
class Counts:
    """What the plugins of A and B report."""

    a: dict[str, Any]
    b: dict[str, Any]


def status(node: Node, tally: Tally) -> dict[str, Any]:
    """The soak plugin's status on ``node`` (a counted call)."""
    result = tally.record(node.name, lambda: node.call("soak.soak.status"))
    if result is None:
        raise SoakError(f"{node.name}: soak.soak.status failed: {tally.first_failure.get(node.name)}")
    return dict(result)


def expect(node: Node, tally: Tally, kind: str, count: int) -> None:
    """Have ``node``'s soak plugin count messages of ``kind`` numbered 0 to ``count`` - 1."""
    if tally.record(node.name, functools.partial(node.call, "soak.soak.expect", kind, count)) is not True:
        raise SoakError(f"{node.name}: soak.soak.expect failed: {tally.first_failure.get(node.name)}")


def run_load(
    nodes: list[Node], relay: Node, a: Node, b: Node, args: argparse.Namespace, tally: Tally
) -> tuple[int, int]:
    """
    Run the load for ``args.seconds``, sampling the nodes.  Returns the
    number of messages A sends, and how many messages (A's and notified)
    had entered the network by the first sample.
    """
    warm_up = warm_up_of(args)
    duration = warm_up + args.seconds
    notify_room = int(args.notify_rate * (duration + DRAIN_TIMEOUT) * 2) + 100
    total = int(args.rate * duration)
    for node in (a, b):
        expect(node, tally, "pace", total)
        expect(node, tally, "notify", notify_room)
    stopping = threading.Event()
    threads = start_load(relay, b, args, stopping, tally)
    try:
        started = time.monotonic()
        will_send = tally.record(a.name, lambda: a.call("soak.soak.start", args.rate, duration))
        if will_send != total:
            raise SoakError(f"A's soak.soak.start answered {will_send!r}, not {total}")
        times = [warm_up + n * SAMPLE_EVERY for n in range(int(args.seconds // SAMPLE_EVERY))]
        entered = 0
        for at in [*times, duration]:
            time.sleep(max(0.0, started + at - time.monotonic()))
            if any(node.popen.poll() is not None for node in nodes):
                raise SoakError("a node exited during the run")
            sample(nodes, time.monotonic() - started)
            sent = progress(nodes, a, b, tally)
            entered = entered or sent + tally.notified
    finally:
        stopping.set()
        for thread in threads:
            thread.join(CALL_TIMEOUT + 5)
    return total, entered


def warm_up_of(args: argparse.Namespace) -> float:
    """Seconds of load before the first sample: ``--warmup``, or until the seen ids are full, plus 10 s."""
    if args.warmup is not None:
        return float(args.warmup)
    seen_limit = args.seen_limit or DEFAULT_SEEN_LIMIT
    return float(int(seen_limit / (args.rate + args.notify_rate)) + 10)


def progress(nodes: list[Node], a: Node, b: Node, tally: Tally) -> int:
    """Print one line: seconds in, each node's last sample, A's sent and B's received count; A's sent."""
    sent = status(a, tally)["sent"]
    received = status(b, tally)["received"]["pace"]
    readings = "  ".join(
        f"{node.name} {node.samples[-1].rss / 2**20:.1f} MiB {node.samples[-1].fds} fds" for node in nodes
    )
    print(f"[{nodes[0].samples[-1].at:6.1f}s] {readings}  sent {sent} received {received}", flush=True)
    return int(sent)


def drain(a: Node, b: Node, total: int, tally: Tally) -> Counts:
    """Wait until B has every message of A and both have every notify (or DRAIN_TIMEOUT); final counts."""
    deadline = time.monotonic() + DRAIN_TIMEOUT
    while True:
        counts = Counts(status(a, tally), status(b, tally))
        done = (
            counts.a["sent"] == total and counts.b["received"]["pace"] >= total
            and counts.a["received"]["notify"] >= tally.notified
            and counts.b["received"]["notify"] >= tally.notified
        )
        if done or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    time.sleep(1.0)  # anything arriving late, such as a duplicate, is counted too
    return Counts(status(a, tally), status(b, tally))


# --------------------------------------------------------------------------
# Report


def problems(nodes: list[Node], counts: Counts, total: int, tally: Tally, judged: bool) -> list[str]:
    """Every broken promise of the run, as lines; empty when it passed."""
    found = []
    expected = {"A": {"notify": tally.notified}, "B": {"pace": total, "notify": tally.notified}}
    if counts.a["sent"] != total:
        found.append(f"A sent {counts.a['sent']} messages, not {total}")
    for name, status_ in (("A", counts.a), ("B", counts.b)):
        for kind, count in expected[name].items():
            if status_["received"][kind] != count:
                got = status_["received"][kind]
                found.append(f"{name} received {got} distinct {kind} messages of {count}")
            if status_["duplicates"][kind]:
                found.append(f"{name} received {status_['duplicates'][kind]} duplicate {kind} messages")
        if status_["unexpected"]:
            found.append(f"{name} received {status_['unexpected']} messages it did not expect")
    for name, failed in sorted(tally.failed.items()):
        found.append(f"{failed} call(s) to {name} failed, first: {tally.first_failure[name]}")
    for node in nodes:
        errors = [line for line in node.log().splitlines() if ERROR_LINE.search(line)]
        if errors:
            found.append(f"{node.name} logged {len(errors)} error line(s), first: {errors[0]}")
        if node.popen.poll() is not None:
            found.append(f"{node.name} exited with status {node.popen.returncode} during the run")
        first, last = node.samples[0], node.samples[-1]
        for what, start, end in (("RSS", first.rss, last.rss), ("open fds", first.fds, last.fds)):
            if judged and growth(start, end) >= GROWTH_LIMIT:
                found.append(f"{node.name}: {what} grew {growth(start, end):+.1f}% ({start} -> {end})")
    return found


def table(nodes: list[Node], counts: Counts, tally: Tally) -> str:
    """The per-node table: RSS and descriptors at start and end, messages and calls."""
    sent = {"relay": "-", "A": str(counts.a["sent"]), "B": f"{tally.notified} (notify)"}
    received = {
        "relay": "-",
        "A": str(counts.a["received"]["notify"]),
        "B": str(counts.b["received"]["pace"] + counts.b["received"]["notify"]),
    }
    duplicates = {"relay": "-", "A": str(sum(counts.a["duplicates"].values())),
                  "B": str(sum(counts.b["duplicates"].values()))}
    header = ("node", "RSS start", "RSS end", "growth", "fds start", "fds end", "growth",
              "sent", "received", "duplicates", "calls answered")
    rows = [header]
    for node in nodes:
        first, last = node.samples[0], node.samples[-1]
        rows.append((
            node.name, f"{first.rss / 2**20:.1f} MiB", f"{last.rss / 2**20:.1f} MiB",
            f"{growth(first.rss, last.rss):+.1f}%", str(first.fds), str(last.fds),
            f"{growth(first.fds, last.fds):+.1f}%", sent[node.name], received[node.name],
            duplicates[node.name], str(tally.answered[node.name]),
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
                     for row in rows)


def report(
    nodes: list[Node], counts: Counts, total: int, entered: int, tally: Tally, args: argparse.Namespace
) -> int:
    """Print the table and the verdict; the exit status."""
    judged = args.seconds >= JUDGED_FROM
    first, last = nodes[0].samples[0].at, nodes[0].samples[-1].at
    print(f"\nsoak: {warm_up_of(args):g}s of warm-up, then {args.seconds:g}s measured, at {args.rate} "
          f"msg/s from A, {args.call_rate:g} calls/s on the relay ({args.callers} threads), "
          f"{args.notify_rate:g} notify/s on B; samples from {first:.1f}s to {last:.1f}s")
    print(table(nodes, counts, tally))
    found = problems(nodes, counts, total, tally, judged)
    if not judged:
        print(f"(growth is reported, not judged: the run is shorter than {JUDGED_FROM:g}s)")
    seen_limit = args.seen_limit or DEFAULT_SEEN_LIMIT
    if entered < seen_limit:
        print(f"(note: {entered} messages had entered the network by the first sample, fewer than "
              f"seen_limit = {seen_limit}: the nodes' de-duplication memory was still filling)")
    for line in found:
        print(f"FAIL: {line}")
    print("soak: FAILED" if found else "soak: passed")
    return 1 if found else 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description="Soak a relay and two satellites at a steady rate.")
    parser.add_argument("--seconds", type=float, default=60.0,
                        help="how long the load is measured, after the warm-up (default 60)")
    parser.add_argument("--warmup", type=float, default=None,
                        help="seconds of load before the first sample (default: until the nodes' "
                             "seen ids are full, plus 10)")
    parser.add_argument("--rate", type=int, default=200, help="messages a second sent by A (default 200)")
    parser.add_argument("--call-rate", type=float, default=100.0,
                        help="XML-RPC calls a second on the relay, in all (default 100)")
    parser.add_argument("--callers", type=int, default=3, help="client threads calling the relay (default 3)")
    parser.add_argument("--notify-rate", type=float, default=20.0,
                        help="notify calls a second on B (default 20)")
    parser.add_argument("--seen-limit", type=int, default=None,
                        help=f"seen_limit of every node (default: co2's, {DEFAULT_SEEN_LIMIT})")
    args = parser.parse_args(argv)
    if args.seconds < 10 or args.rate < 1 or args.call_rate <= 0 or args.callers < 1 or args.notify_rate <= 0:
        parser.error("--seconds must be at least 10, and the rates and --callers positive")
    if args.seen_limit is not None and args.seen_limit < 1:
        parser.error("--seen-limit must be positive")
    if args.warmup is not None and args.warmup < 0:
        parser.error("--warmup must be 0 or more")
    return args


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    """Run the soak; the exit status.  SIGINT and SIGTERM end it early, nodes and all."""
    args = parse_args(argv)
    # Also when started in the background, where SIGINT comes in ignored.
    signal.signal(signal.SIGINT, _interrupted)
    signal.signal(signal.SIGTERM, _interrupted)
    nodes: list[Node] = []
    with tempfile.TemporaryDirectory(prefix="co2-soak-") as work:
        try:
            settings = {"seen_limit": args.seen_limit} if args.seen_limit else {}
            relay, a, b = start_network(Path(work), nodes, **settings)
            tally = Tally()
            total, entered = run_load(nodes, relay, a, b, args, tally)
            counts = drain(a, b, total, tally)
            return report(nodes, counts, total, entered, tally, args)
        except SoakError as e:
            print(f"soak: {e}", file=sys.stderr)
            return 1
        except KeyboardInterrupt as e:
            print(f"soak: interrupted ({e}); nothing judged", file=sys.stderr)
            return 130
        finally:
            # Ending the nodes is not to be interrupted in turn.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            for node in reversed(nodes):
                stop(node)


if __name__ == "__main__":
    sys.exit(main())
