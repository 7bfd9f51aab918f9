"""
Chaos: a small co2 network under a steady stream of messages while its
nodes are killed and its links cut, then a check that every message
reached every plugin exactly once.

    .venv/bin/python tests/chaos.py --seconds 300 [--rate 20] [--seed S] [--workdir DIR] [--json PATH]

starts two ``co2-relay`` processes, R1 and R2, and three ``co2-satellite``
processes, S1, S2 and S3, each satellite linked to both relays over AMP,
every node with its own ``spool`` in the work directory, all on 127.0.0.1
with ephemeral ports.  Each of the six links goes through a TCP proxy run
by this command, so that it can be cut.  Each satellite loads the
``chaos`` plugin package (``tests/chaos_plugins``): two plugins that keep,
in ``self.state``, how many times they received each message.

For ``--seconds``:

- one client thread per satellite calls ``chaos.a.emit`` and
  ``chaos.b.emit`` in turn, ``--rate`` calls a second over the three, each
  with a unique id.  A call that was answered counts as sent; one cut off
  by a kill counts as *uncertain* (it may or may not have been sent);
- every ``--kill-every`` seconds on average, one node (relay or satellite)
  is killed with SIGKILL and restarted, on the same config and spool,
  after a random delay of at most ``--down-for`` seconds; one node at most
  is down at a time.  Half the kills of a satellite wait for a call to be
  in flight, then up to 0.5 ms more, so that they cut it off before,
  during or after the work it asked for.  A share of these faults
  (``--stop-share``, 0.2 by default) are clean stops instead: SIGTERM,
  which must end the node with status 0, then the same restart;
- every ``--cut-every`` seconds on average, one link is cut: its proxy
  drops both sides of its connections, and half the time refuses new ones
  for up to ``--down-for`` seconds.

Then the faults stop, every node is up again, and the command waits (at
most ``--converge-timeout`` seconds) until every plugin holds every sent
message.  It reads every plugin's record and prints the figures: messages
sent, uncertain, kills, restarts, link cuts, deliveries expected, lost and
duplicated.  Each sent message must have reached each of the five plugins
other than its sender exactly once, and be noted in its sender's state;
an uncertain one, each of them at most once, and either all of them or
none: all when its sender's state notes it, none when it does not.  Finally every node is stopped with
SIGTERM and must exit 0.

The exit status is 0 when nothing was lost or duplicated, no plugin
received its own message or one never sent, every answered emit is in its
plugin's state, no call failed with a fault, no log holds a traceback, and
every node stopped cleanly; 1 otherwise; 130 when SIGINT or SIGTERM
ended the run early (nothing judged).  ``--json PATH`` writes the figures.
Every process this command starts is ended, however the run ends.  The
work directory (spools and one log per process started) is removed after
a run that passed, unless ``--workdir`` named it.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import json
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import xmlrpc.client
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from co2.testing import AMP_LISTENING, SERVING, end_process, start_command, timeout_proxy

BIN_DIR = Path(sys.executable).parent
PLUGIN_DIR = Path(__file__).resolve().parent / "chaos_plugins"
LOCAL = "tcp:port=0:interface=127.0.0.1"
RELAYS = ("R1", "R2")
SATELLITES = ("S1", "S2", "S3")
MODULES = ("a", "b")
"""The chaos plugins of each satellite: ``chaos.a.X_Chaos`` and ``chaos.b.X_Chaos``."""
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
CALL_TIMEOUT = 10.0
POLL_EVERY = 1.0
LINK_UP = re.compile(r"link peer:\S+ up: ")
ERROR_LINE = re.compile(r"#(error|critical)\]")
TRACEBACK = re.compile(r"Traceback|Unhandled")

_started: list[subprocess.Popen[str]] = []
"""Every process this command started, so that each is ended however the run ends."""


class ChaosError(Exception):
    """Something the run needed did not happen."""


# --------------------------------------------------------------------------
# Proxies: one per link, so that links can be cut


class Proxy:
    """
    A TCP proxy for one link, run on the proxies' event loop: it accepts on
    an ephemeral loopback port and connects each connection to ``target``
    (the relay's AMP port, which changes when the relay restarts).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.port = 0
        self.target: int | None = None
        self.refuse_until = 0.0
        self.cuts = 0
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        """Listen on an ephemeral port of 127.0.0.1."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.target is None or time.monotonic() < self.refuse_until:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.transport.abort()
            return
        pair = (writer, up_writer)
        self._pairs.add(pair)
        try:
            await asyncio.gather(self._pipe(reader, up_writer, pair), self._pipe(up_reader, writer, pair))
        finally:
            self._pairs.discard(pair)

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        pair: tuple[asyncio.StreamWriter, asyncio.StreamWriter],
    ) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (OSError, ConnectionError):
            pass
        finally:
            # A link is one connection: when either side ends, both do.
            for side in pair:
                side.transport.abort()

    def cut(self, refuse_for: float) -> None:
        """Drop both sides of every connection, and refuse new ones for ``refuse_for`` seconds."""
        self.cuts += 1
        self.refuse_until = time.monotonic() + refuse_for
        for pair in list(self._pairs):
            for side in pair:
                side.transport.abort()

    def close(self) -> None:
        """Stop listening and drop every connection."""
        if self._server is not None:
            self._server.close()
        self.cut(0.0)


class Proxies:
    """The proxies of every link, on an asyncio loop in a thread of their own."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.links: dict[tuple[str, str], Proxy] = {}
        self._thread = threading.Thread(target=self.loop.run_forever, name="proxies", daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        """Run ``coroutine`` on the proxies' loop; its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(START_TIMEOUT)

    def call(self, function: Callable[[], Any]) -> Any:
        """Run ``function`` on the proxies' loop; its result."""

        async def called() -> Any:
            return function()

        return self.run(called())

    def add(self, satellite: str, relay: str) -> Proxy:
        """A new proxy for the link from ``satellite`` to ``relay``, listening."""
        proxy = Proxy(f"{satellite}-{relay}")
        self.run(proxy.start())
        self.links[satellite, relay] = proxy
        return proxy

    def point(self, relay: str, port: int) -> None:
        """Send the connections of every link to ``relay`` to its AMP ``port`` from now on."""

        def point() -> None:
            for (_, to), proxy in self.links.items():
                if to == relay:
                    proxy.target = port

        self.call(point)

    def close(self) -> None:
        """Close every proxy and stop the loop."""
        if self.loop.is_running():
            try:
                self.call(lambda: [proxy.close() for proxy in self.links.values()])
            finally:
                self.loop.call_soon_threadsafe(self.loop.stop)
                self._thread.join(5)


# --------------------------------------------------------------------------
# Nodes


@dataclass
class Node:
    """One co2 node: its config, and its current process (a new one after each restart)."""

    name: str
    program: str
    config: Path
    work: Path
    popen: subprocess.Popen[str] | None = None
    log_path: Path | None = None
    log_file: IO[str] | None = None
    starts: int = 0
    kills: int = 0
    url: str = ""
    amp_port: int = 0
    stops: int = 0
    ready: bool = False
    """Whether the current process serves (the client threads call it only then)."""
    calling: bool = False
    """Whether a client thread's call to this node is in flight."""

    def start(self) -> None:
        """Start a new process of this node, logging to a file of its own."""
        self.log_path = self.work / "logs" / f"{self.name}.{self.starts}.log"
        self.log_file = self.log_path.open("w")
        self.popen = start_command(
            [BIN_DIR / self.program, "--config", self.config], self.work,
            stdout=self.log_file, stderr=subprocess.STDOUT,
        )
        _started.append(self.popen)
        self.starts += 1

    def log(self) -> str:
        """What the current process logged so far."""
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def wait_ready(self) -> None:
        """Wait until the current process serves XML-RPC (and, for a relay, AMP); note its ports."""
        assert self.popen is not None
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            text = self.log()
            serving = SERVING.search(text)
            if serving:
                self.url = serving.group(1)
                amp = AMP_LISTENING.search(text)
                if amp:
                    self.amp_port = int(amp.group(1))
                self.ready = True
                return
            if self.popen.poll() is not None or time.monotonic() > deadline:
                raise ChaosError(f"{self.name} did not start serving:\n{text[-3000:]}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL the current process and reap it."""
        assert self.popen is not None
        self.ready = False
        self.popen.kill()
        self.popen.wait(STOP_TIMEOUT)
        self.kills += 1
        self._close_log()

    def stop(self) -> int | None:
        """SIGTERM the current process; its exit status, or None when it had to be killed."""
        assert self.popen is not None
        self.ready = False
        status = self.popen.returncode if end_process(self.popen, STOP_TIMEOUT) else None
        self.stops += 1
        self._close_log()
        return status

    def _close_log(self) -> None:
        if self.log_file is not None:
            self.log_file.close()
            self.log_file = None

    def all_logs(self) -> list[Path]:
        """The log of every process of this node, in order."""
        return [self.work / "logs" / f"{self.name}.{n}.log" for n in range(self.starts)]


def end_all() -> None:
    """End every process still running, SIGTERM then SIGKILL, each bounded in time."""
    running = [popen for popen in _started if popen.poll() is None]
    for popen in running:
        popen.terminate()
    deadline = time.monotonic() + 5.0
    for popen in running:
        try:
            popen.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(5.0)


def write_config(path: Path, **settings: object) -> Path:
    """Write a config of one ``key = repr(value)`` line per setting."""
    path.write_text("".join(f"{key} = {value!r}\n" for key, value in settings.items()))
    return path


class Network:
    """The five nodes, the six proxied links, and what was done to them."""

    def __init__(self, work: Path) -> None:
        self.work = work
        (work / "logs").mkdir(parents=True, exist_ok=True)
        self.proxies = Proxies()
        self.nodes: dict[str, Node] = {}
        self.lock = threading.Lock()
        self.restarts = 0

    def start(self) -> None:
        """Start the relays, then the satellites linked to both through the proxies; wait for the links."""
        for relay in RELAYS:
            config = write_config(self.work / f"{relay}.py", listen=LOCAL, amp_listen=LOCAL,
                                  spool=str(self.work / f"{relay}.spool"))
            self.nodes[relay] = Node(relay, "co2-relay", config, self.work)
        for satellite in SATELLITES:
            peers = [f"tcp:host=127.0.0.1:port={self.proxies.add(satellite, relay).port}" for relay in RELAYS]
            config = write_config(
                self.work / f"{satellite}.py", listen=LOCAL, plugin_dir=str(PLUGIN_DIR),
                plugin_list=["chaos"], peers=peers, spool=str(self.work / f"{satellite}.spool"),
            )
            self.nodes[satellite] = Node(satellite, "co2-satellite", config, self.work)
        for names in (RELAYS, SATELLITES):
            for name in names:
                self.nodes[name].start()
            for name in names:
                self._ready(self.nodes[name])
        deadline = time.monotonic() + START_TIMEOUT
        for satellite in SATELLITES:
            node = self.nodes[satellite]
            while len(LINK_UP.findall(node.log())) < len(RELAYS):
                if time.monotonic() > deadline:
                    raise ChaosError(f"{satellite} not linked to both relays:\n{node.log()[-3000:]}")
                time.sleep(0.05)

    def _ready(self, node: Node) -> None:
        node.wait_ready()
        if node.name in RELAYS:
            self.proxies.point(node.name, node.amp_port)

    def kill(self, name: str) -> None:
        """SIGKILL node ``name``."""
        self.nodes[name].kill()

    def restart(self, name: str) -> None:
        """Start node ``name`` again, on its config and spool, and wait until it serves."""
        node = self.nodes[name]
        node.start()
        self._ready(node)
        with self.lock:
            self.restarts += 1

    def cut(self, link: tuple[str, str], refuse_for: float) -> None:
        """Cut ``link`` (satellite, relay), refusing it for ``refuse_for`` seconds."""
        proxy = self.proxies.links[link]
        self.proxies.call(lambda: proxy.cut(refuse_for))

    def mend(self) -> None:
        """Let every link connect again at once."""

        def mend() -> None:
            for proxy in self.proxies.links.values():
                proxy.refuse_until = 0.0

        self.proxies.call(mend)

    @property
    def cuts(self) -> int:
        """Links cut so far."""
        return sum(proxy.cuts for proxy in self.proxies.links.values())

    def close(self) -> None:
        """Close the proxies."""
        self.proxies.close()


# --------------------------------------------------------------------------
# The stream of messages


PluginKey = tuple[str, str]
"""A plugin: (satellite, module)."""


@dataclass
class Ledger:
    """What the client threads sent, shared by them."""

    sent: dict[str, PluginKey] = field(default_factory=dict)
    uncertain: dict[str, PluginKey] = field(default_factory=dict)
    faults: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def emitter(net: Network, satellite: str, rate: float, stopping: threading.Event, ledger: Ledger) -> None:
    """
    Call the emit methods of ``satellite``'s plugins, in turn, ``rate`` times
    a second until ``stopping`` is set; wait while the satellite is down.
    """
    node = net.nodes[satellite]
    interval, n = 1.0 / rate, 0
    due = time.monotonic()
    server: xmlrpc.client.ServerProxy | None = None
    url = ""
    while not stopping.is_set():
        if not node.ready:
            stopping.wait(0.05)
            due = time.monotonic()
            continue
        if server is None or url != node.url:
            url = node.url
            server = timeout_proxy(url, CALL_TIMEOUT)
        module = MODULES[n % len(MODULES)]
        uid = f"{satellite}{module}.{n}"
        n += 1
        node.calling = True
        try:
            getattr(server, f"chaos.{module}.emit")(uid)
        except xmlrpc.client.Fault as e:
            with ledger.lock:
                ledger.uncertain[uid] = (satellite, module)
                ledger.faults.append(f"{satellite} chaos.{module}.emit: fault {e.faultCode} {e.faultString}")
        except Exception:
            # Cut off, most likely by a kill: the message may have gone or not.
            with ledger.lock:
                ledger.uncertain[uid] = (satellite, module)
            server = None
        else:
            with ledger.lock:
                ledger.sent[uid] = (satellite, module)
        finally:
            node.calling = False
        due += interval
        late = time.monotonic() - due
        if late > 1.0:  # fell behind: keep the pace from now rather than burst
            due += late
        elif late < 0:
            stopping.wait(-late)


# --------------------------------------------------------------------------
# Faults


@dataclass
class Faults:
    """The two fault threads' settings and their random sources."""

    kill_every: float
    cut_every: float
    down_for: float
    stop_share: float
    kill_random: random.Random
    cut_random: random.Random
    errors: list[str] = field(default_factory=list)


def killer(net: Network, faults: Faults, stopping: threading.Event) -> None:
    """
    Until ``stopping``: wait, SIGKILL a random node (or, for a share, stop it
    with SIGTERM), wait a little, start it again.
    """
    rng = faults.kill_random
    names = [*RELAYS, *SATELLITES]
    try:
        while not stopping.wait(rng.uniform(0.2, 2 * faults.kill_every - 0.2)):
            name = rng.choice(names)
            if rng.random() < faults.stop_share:
                status = net.nodes[name].stop()
                if status != 0:
                    faults.errors.append(f"{name} did not stop cleanly on SIGTERM (status {status})")
            else:
                if name in SATELLITES and rng.random() < 0.5:
                    in_flight(net.nodes[name], 0.5, rng.uniform(0.0, 0.0005))
                net.kill(name)
            time.sleep(rng.uniform(0.1, faults.down_for))  # restarted even when the run is over
            net.restart(name)
    except Exception as e:
        faults.errors.append(f"killer: {type(e).__name__}: {e}")


def in_flight(node: Node, timeout: float, into: float) -> None:
    """
    Wait (at most ``timeout`` seconds) until a client thread's call to
    ``node`` is in flight, then ``into`` seconds more: a call takes a few
    tenths of a millisecond, and a kill then lands before, during or after
    the work it asked for.
    """
    deadline = time.monotonic() + timeout
    while not node.calling and time.monotonic() < deadline:
        time.sleep(0)  # lets the client threads run
    until = time.perf_counter() + into
    while time.perf_counter() < until:
        time.sleep(0)


def cutter(net: Network, faults: Faults, stopping: threading.Event) -> None:
    """Until ``stopping``: wait, cut a random link, refusing it for a while half the time."""
    rng = faults.cut_random
    links = sorted(net.proxies.links)
    try:
        while not stopping.wait(rng.uniform(0.1, 2 * faults.cut_every - 0.1)):
            refuse_for = rng.uniform(0.0, faults.down_for) if rng.random() < 0.5 else 0.0
            net.cut(rng.choice(links), refuse_for)
    except Exception as e:
        faults.errors.append(f"cutter: {type(e).__name__}: {e}")


# --------------------------------------------------------------------------
# The check


def plugins() -> list[PluginKey]:
    """Every chaos plugin of the network."""
    return [(satellite, module) for satellite in SATELLITES for module in MODULES]


def read_records(net: Network) -> dict[PluginKey, dict[str, int]]:
    """What each plugin has received: uid -> times."""
    records = {}
    for satellite, module in plugins():
        server = timeout_proxy(net.nodes[satellite].url, CALL_TIMEOUT * 3)
        records[satellite, module] = dict(getattr(server, f"chaos.{module}.received")())
    return records


def read_emitted(net: Network) -> dict[PluginKey, set[str]]:
    """The uids each plugin has in its state as emitted."""
    emitted = {}
    for satellite, module in plugins():
        server = timeout_proxy(net.nodes[satellite].url, CALL_TIMEOUT * 3)
        emitted[satellite, module] = set(getattr(server, f"chaos.{module}.emitted")())
    return emitted


@dataclass
class Verdict:
    """The figures of the check."""

    expected: int = 0
    lost: int = 0
    duplicated: int = 0
    to_sender: int = 0
    unknown: int = 0
    uncertain_delivered: int = 0
    uncertain_partial: int = 0
    uncertain_mismatched: int = 0
    emits_unrecorded: int = 0
    examples: list[str] = field(default_factory=list)

    def example(self, text: str) -> None:
        """Keep the first few problems, to print."""
        if len(self.examples) < 10:
            self.examples.append(text)

    @property
    def converged(self) -> bool:
        """Whether nothing is missing (what is duplicated cannot be taken back by waiting)."""
        return self.lost == 0 and self.uncertain_partial == 0


def judge(
    ledger: Ledger,
    records: dict[PluginKey, dict[str, int]],
    emitted: dict[PluginKey, set[str]] | None = None,
) -> Verdict:
    """Compare what each plugin received with what was sent."""
    verdict = Verdict()
    everyone = plugins()
    with ledger.lock:
        sent, uncertain = dict(ledger.sent), dict(ledger.uncertain)
    for plugin, record in records.items():
        for uid, times in record.items():
            emitter = sent.get(uid) or uncertain.get(uid)
            if emitter is None:
                verdict.unknown += times
                verdict.example(f"{plugin} received {uid!r}, which was never emitted")
            elif emitter == plugin:
                verdict.to_sender += times
                verdict.example(f"{plugin} received its own message {uid}")
            elif times > 1:
                verdict.duplicated += times - 1
                verdict.example(f"{plugin} received {uid} {times} times")
    for uid, emitter in sent.items():
        receivers = [plugin for plugin in everyone if plugin != emitter]
        verdict.expected += len(receivers)
        for plugin in receivers:
            if uid not in records[plugin]:
                verdict.lost += 1
                verdict.example(f"{plugin} never received {uid} (sent by {emitter})")
        if emitted is not None and uid not in emitted[emitter]:
            verdict.emits_unrecorded += 1
            verdict.example(f"{emitter} answered emit({uid}) but its state does not hold it")
    for uid, emitter in uncertain.items():
        receivers = [plugin for plugin in everyone if plugin != emitter]
        got = [plugin for plugin in receivers if uid in records[plugin]]
        if got:
            verdict.uncertain_delivered += 1
            verdict.expected += len(receivers)
        if got and len(got) < len(receivers):
            verdict.uncertain_partial += 1
            verdict.lost += len(receivers) - len(got)
            verdict.example(f"uncertain {uid} reached {len(got)} of {len(receivers)} plugins")
        # The message and the emitter's note of it are committed together, or neither is.
        if emitted is not None and (uid in emitted[emitter]) != bool(got):
            verdict.uncertain_mismatched += 1
            verdict.example(f"uncertain {uid}: delivered {bool(got)}, in {emitter}'s state "
                            f"{uid in emitted[emitter]}")
    return verdict


def converge(net: Network, ledger: Ledger, timeout: float) -> tuple[Verdict, float | None]:
    """
    Wait until every plugin holds every message sent (at most ``timeout``
    seconds); the last verdict, and how long it took (None when it did not).
    """
    started = time.monotonic()
    while True:
        verdict = judge(ledger, read_records(net))
        took = time.monotonic() - started
        if verdict.converged:
            return verdict, took
        if took > timeout:
            return verdict, None
        time.sleep(POLL_EVERY)


def make_sure_up(net: Network) -> list[str]:
    """Start any node that is not running (it should not happen); what had to be done."""
    found = []
    for node in net.nodes.values():
        assert node.popen is not None
        if node.popen.poll() is not None:
            found.append(f"{node.name} had exited on its own, status {node.popen.returncode}")
            net.restart(node.name)
        timeout_proxy(node.url, CALL_TIMEOUT).system.listMethods()
    return found


def scan_logs(net: Network) -> tuple[int, int, list[str]]:
    """Error lines and tracebacks in every log of the run, and the first few of them."""
    errors = tracebacks = 0
    first: list[str] = []
    for node in net.nodes.values():
        for path in node.all_logs():
            for line in path.read_text(errors="replace").splitlines():
                error, traceback = ERROR_LINE.search(line), TRACEBACK.search(line)
                errors += bool(error)
                tracebacks += bool(traceback)
                if (error or traceback) and len(first) < 5:
                    first.append(f"{path.name}: {line.strip()[:300]}")
    return errors, tracebacks, first


# --------------------------------------------------------------------------
# The run


@dataclass
class Figures:
    """Everything the run reports."""

    seconds: float
    rate: float
    seed: int
    sent: int = 0
    uncertain: int = 0
    uncertain_delivered: int = 0
    uncertain_mismatched: int = 0
    kills: int = 0
    kills_by_node: dict[str, int] = field(default_factory=dict)
    stops: int = 0
    restarts: int = 0
    cuts: int = 0
    expected: int = 0
    lost: int = 0
    duplicated: int = 0
    to_sender: int = 0
    unknown: int = 0
    emits_unrecorded: int = 0
    faults: int = 0
    converge_seconds: float | None = None
    clean_stops: int = 0
    nodes: int = 0
    error_lines: int = 0
    tracebacks: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Whether the run kept every promise."""
        return not self.problems


def run(args: argparse.Namespace, work: Path, figures: Figures) -> None:
    """Start the network, run the stream and the faults, converge, check and stop; fill ``figures``."""
    net = Network(work)
    try:
        net.start()
        print(f"chaos: network up in {work}; {args.seconds:g}s at {args.rate:g} msg/s, seed {args.seed}",
              flush=True)
        ledger = Ledger()
        faults = Faults(args.kill_every, args.cut_every, args.down_for, args.stop_share,
                        random.Random(f"{args.seed}:kill"), random.Random(f"{args.seed}:cut"))
        stopping = threading.Event()
        threads = [threading.Thread(target=emitter, name=f"emit {satellite}",
                                    args=(net, satellite, args.rate / len(SATELLITES), stopping, ledger))
                   for satellite in SATELLITES]
        threads += [threading.Thread(target=killer, name="killer", args=(net, faults, stopping)),
                    threading.Thread(target=cutter, name="cutter", args=(net, faults, stopping))]
        for thread in threads:
            thread.start()
        try:
            started = time.monotonic()
            while (left := started + args.seconds - time.monotonic()) > 0:
                stopping.wait(min(left, 10.0))
                if left > 10.0:
                    kills = sum(node.kills for node in net.nodes.values())
                    print(f"[{time.monotonic() - started:6.1f}s] sent {len(ledger.sent)} "
                          f"uncertain {len(ledger.uncertain)} kills {kills} cuts {net.cuts}", flush=True)
        finally:
            stopping.set()
            for thread in threads:
                thread.join(START_TIMEOUT + STOP_TIMEOUT + CALL_TIMEOUT)
        figures.problems += faults.errors
        net.mend()
        figures.problems += make_sure_up(net)
        verdict, took = converge(net, ledger, args.converge_timeout)
        time.sleep(1.0)  # anything arriving late, such as a duplicate, is counted too
        verdict = judge(ledger, read_records(net), read_emitted(net))
        figures.sent, figures.uncertain = len(ledger.sent), len(ledger.uncertain)
        figures.uncertain_delivered = verdict.uncertain_delivered
        figures.uncertain_mismatched = verdict.uncertain_mismatched
        figures.kills_by_node = {name: node.kills for name, node in net.nodes.items()}
        figures.kills = sum(figures.kills_by_node.values())
        figures.stops = sum(node.stops for node in net.nodes.values())
        figures.restarts, figures.cuts = net.restarts, net.cuts
        figures.expected, figures.lost = verdict.expected, verdict.lost
        figures.duplicated = verdict.duplicated
        figures.to_sender, figures.unknown = verdict.to_sender, verdict.unknown
        figures.emits_unrecorded = verdict.emits_unrecorded
        figures.faults = len(ledger.faults)
        figures.converge_seconds = took
        figures.problems += ledger.faults[:5] + verdict.examples
        if took is None:
            figures.problems.append(f"not every message arrived within {args.converge_timeout:g}s")
    finally:
        figures.nodes = len(net.nodes)
        for node in reversed(list(net.nodes.values())):
            if node.popen is not None and node.popen.poll() is None:
                status = node.stop()
                if status == 0:
                    figures.clean_stops += 1
                else:
                    figures.problems.append(f"{node.name} did not stop cleanly on SIGTERM (status {status})")
            elif node.popen is not None:
                figures.problems.append(f"{node.name} was not running at the end")
        net.close()
        figures.error_lines, figures.tracebacks, first = scan_logs(net)
        if figures.tracebacks:
            figures.problems += [f"traceback in a log: {line}" for line in first]


def report(figures: Figures) -> None:
    """Print the figures and the verdict."""
    kills = ", ".join(f"{name} {count}" for name, count in figures.kills_by_node.items())
    converge = "did not" if figures.converge_seconds is None else f"{figures.converge_seconds:.1f} s"
    rows = [
        ("seconds", f"{figures.seconds:g}"),
        ("rate", f"{figures.rate:g} msg/s"),
        ("seed", str(figures.seed)),
        ("messages sent", str(figures.sent)),
        ("uncertain", f"{figures.uncertain} ({figures.uncertain_delivered} delivered, to every plugin)"),
        ("uncertain, delivery and state differ", str(figures.uncertain_mismatched)),
        ("kills (SIGKILL)", f"{figures.kills} ({kills})"),
        ("clean stops during the run", str(figures.stops)),
        ("restarts", str(figures.restarts)),
        ("link cuts", str(figures.cuts)),
        ("deliveries expected", str(figures.expected)),
        ("lost", str(figures.lost)),
        ("duplicated", str(figures.duplicated)),
        ("to their sender", str(figures.to_sender)),
        ("never emitted", str(figures.unknown)),
        ("answered emits not in state", str(figures.emits_unrecorded)),
        ("calls failed with a fault", str(figures.faults)),
        ("time to converge", converge),
        ("clean stops (SIGTERM)", f"{figures.clean_stops}/{figures.nodes}"),
        ("error lines in logs", f"{figures.error_lines} ({figures.tracebacks} tracebacks)"),
    ]
    width = max(len(name) for name, _ in rows)
    print()
    for name, value in rows:
        print(f"  {name.ljust(width)}  {value}")
    for problem in figures.problems:
        print(f"FAIL: {problem}")
    print("chaos: FAILED" if figures.problems else "chaos: passed", flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        description="Kill nodes and cut links of a co2 network under a steady stream; check exactly-once."
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="how long the faults go on (default 60)")
    parser.add_argument("--rate", type=float, default=20.0, help="messages a second, in all (default 20)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the faults (default: random)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the spools, configs and logs go (kept); default a temporary directory")
    parser.add_argument("--json", type=Path, default=None, help="write the figures to this file")
    parser.add_argument("--kill-every", type=float, default=3.0,
                        help="mean seconds between two kills (default 3)")
    parser.add_argument("--cut-every", type=float, default=1.5,
                        help="mean seconds between two link cuts (default 1.5)")
    parser.add_argument("--stop-share", type=float, default=0.2,
                        help="share of the node faults that are clean stops (SIGTERM) rather than kills "
                             "(default 0.2)")
    parser.add_argument("--down-for", type=float, default=2.0,
                        help="longest a killed node stays down or a cut link is refused (default 2)")
    parser.add_argument("--converge-timeout", type=float, default=60.0,
                        help="longest wait for every message to arrive after the faults (default 60)")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.rate <= 0 or args.converge_timeout <= 0:
        parser.error("--seconds, --rate and --converge-timeout must be positive")
    if args.kill_every < 0.5 or args.cut_every < 0.2 or args.down_for < 0.2:
        parser.error("--kill-every must be at least 0.5, --cut-every 0.2 and --down-for 0.2")
    if not 0 <= args.stop_share <= 1:
        parser.error("--stop-share must be between 0 and 1")
    if args.seed is None:
        args.seed = random.randrange(2**32)
    return args


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    """Run the chaos; the exit status.  SIGINT and SIGTERM end it early, nodes and all."""
    args = parse_args(argv)
    atexit.register(end_all)
    # Also when started in the background, where SIGINT comes in ignored.
    signal.signal(signal.SIGINT, _interrupted)
    signal.signal(signal.SIGTERM, _interrupted)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="co2-chaos-"))
    work.mkdir(parents=True, exist_ok=True)
    figures = Figures(args.seconds, args.rate, args.seed)
    try:
        run(args, work, figures)
    except ChaosError as e:
        figures.problems.append(str(e))
    except KeyboardInterrupt as e:
        print(f"chaos: interrupted ({e}); nothing judged; work directory {work}", file=sys.stderr)
        return 130
    finally:
        # Ending the nodes is not to be interrupted in turn.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        end_all()
    report(figures)
    if args.json is not None:
        args.json.write_text(json.dumps(
            {**{k: v for k, v in vars(figures).items() if k != "problems"},
             "problems": figures.problems, "passed": figures.passed}, indent=2) + "\n")
    if figures.passed and args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    elif not figures.passed:
        print(f"chaos: the spools and logs are in {work}")
    return 0 if figures.passed else 1


if __name__ == "__main__":
    sys.exit(main())
