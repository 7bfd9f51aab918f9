"""
The plugin packages the suite generates: ``bench`` (the call target),
``flow`` (sends and receives messages, and measures them) and the
one-method packages ``p0000``, ``p0001``… for the load-time figure.
"""

from __future__ import annotations

from pathlib import Path

TEXT_PHRASE = "hello world, this is text. "
TEXT_SIZE = 100 * 1024  # characters, ASCII: bytes too
TEXT_REPEATS = -(-TEXT_SIZE // len(TEXT_PHRASE))
TEXT = (TEXT_PHRASE * TEXT_REPEATS)[:TEXT_SIZE]
"""The answer of ``bench.calls.text()``: words, 100 KiB."""

CALLS = f'''\
"""The call target of the XML-RPC figures."""

from co2 import Co2Plugin

TEXT = ({TEXT_PHRASE!r} * {TEXT_REPEATS})[:{TEXT_SIZE}]  # built once


class X_Calls(Co2Plugin):
    """Adds the two coordinates of a point; answers a long text."""

    def x_add(self, point):
        """Return point["x"] + point["y"]."""
        return point["x"] + point["y"]

    def x_text(self):
        """Return {TEXT_SIZE:,} characters of words."""
        return TEXT
'''

FLOW = '''\
"""
Sends messages (x_blast, x_steady, x_probe) and measures those it receives
(x_stats, x_latency, x_probes).  Message data:

- a blast message of kind "text": the zero-padded sequence number, padded
  with "x" to the size asked; of kind "record": the dict record(seq);
- a steady message: "t", the sequence number, a space, repr(time.time()) at sending;
- a probe: "p" and a token.
"""

import time

from twisted.internet import reactor
from twisted.internet.task import LoopingCall

from co2 import Co2Plugin

SLICE = 250  # messages sent per reactor turn by x_blast, at most
SLICE_BYTES = 1 << 20  # and about this many bytes of text


def record(seq):
    """The dict message compared with NATS (there JSON-encoded)."""
    return {"seq": seq, "sensor": "t-17", "values": [1.5, 2.5, 3.5], "tags": {"site": "x"}}


def percentile(ordered, p):
    """The nearest-rank p-th percentile of the sorted list ordered."""
    rank = max(1, -(-len(ordered) * p // 100))
    return ordered[int(rank) - 1]


class X_Flow(Co2Plugin):
    """Sends numbered messages and keeps count of those it receives."""

    def __init__(self, var_dict):
        Co2Plugin.__init__(self, var_dict)
        self.loop = None
        self.probes = []
        self.x_reset()

    # -- sending --------------------------------------------------------

    def x_blast(self, n, size, kind="text", per_turn=0):
        """
        Start sending n messages (kind "text" of size characters, or "record"),
        per_turn of them a reactor turn (0: SLICE, fewer for big texts); return at once.
        """
        self.first_send = None
        self.last_send = None
        if not per_turn:
            per_turn = max(1, min(SLICE, SLICE_BYTES // size)) if kind == "text" else SLICE
        reactor.callLater(0, self._blast_slice, 0, n, size, kind, per_turn)
        return True

    def _blast_slice(self, start, n, size, kind, per_turn):
        if self.first_send is None:
            self.first_send = time.time()
        end = min(n, start + per_turn)
        send = self.send
        taken = None
        if kind == "record":
            for i in range(start, end):
                taken = send(record(i))
        else:
            for i in range(start, end):
                taken = send(f"{i:012d}".ljust(size, "x"))
        if end >= n:
            self.last_send = time.time()
        elif taken is None or taken.called:
            reactor.callLater(0, self._blast_slice, end, n, size, kind, per_turn)
        else:
            # The network is congested: the next slice waits until it has taken this one.
            taken.addCallback(lambda _: reactor.callLater(0, self._blast_slice, end, n, size, kind, per_turn))

    def x_sent(self):
        """Return the times of the first and last send of the last blast (None until then)."""
        return {"first": self.first_send, "last": self.last_send}

    def x_steady(self, rate, seconds):
        """Send rate messages a second for seconds, each holding its sending time; return the count."""
        total = int(rate * seconds)
        state = {"i": 0}

        def tick(count):
            for _ in range(count):
                if state["i"] >= total:
                    if self.loop is not None and self.loop.running:
                        self.loop.stop()
                    return
                self.send(f"t{state['i']:012d} {time.time()!r}")
                state["i"] += 1

        if self.loop is not None and self.loop.running:
            self.loop.stop()
        self.loop = LoopingCall.withCount(tick)
        self.loop.start(1.0 / rate, now=True)
        return total

    def x_probe(self, token):
        """Send one probe message carrying token."""
        self.send("p" + token)
        return True

    # -- receiving ------------------------------------------------------

    def receive(self, data_dict):
        data = data_dict["data"]
        now = time.time()
        if isinstance(data, dict):
            self._count(data["seq"], now)
            return
        if not isinstance(data, str) or not data:
            return
        kind = data[0]
        if kind == "p":
            self.probes.append(data[1:])
        elif kind == "t":
            seq, sent = data[1:].split(" ", 1)
            self.steady.append((int(seq), float(sent), now))
        else:
            self._count(int(data[:12]), now)

    def _count(self, seq, now):
        seen = self.seen
        if seq >= len(seen):
            seen.extend(bytes(max(seq + 1 - len(seen), len(seen))))
        if seen[seq]:
            self.duplicates += 1
        else:
            seen[seq] = 1
            self.distinct += 1
        if self.first_arrival is None:
            self.first_arrival = now
        self.last_arrival = now
        self.received += 1

    def x_stats(self):
        """Return what arrived since the last reset: counts and first and last arrival times."""
        return {
            "received": self.received,
            "distinct": self.distinct,
            "duplicates": self.duplicates,
            "first": self.first_arrival,
            "last": self.last_arrival,
        }

    def x_latency(self, warmup):
        """Return counts and one-way latency percentiles (ms) of steady messages, after warmup seconds."""
        seqs = [seq for seq, _, _ in self.steady]
        result = {
            "received": len(seqs),
            "distinct": len(set(seqs)),
            "duplicates": len(seqs) - len(set(seqs)),
            "max_seq": max(seqs) if seqs else -1,
        }
        if seqs:
            start = min(sent for _, sent, _ in self.steady) + warmup
            ms = sorted((got - sent) * 1000.0 for _, sent, got in self.steady if sent >= start)
            result.update(
                counted=len(ms),
                p50_ms=percentile(ms, 50) if ms else None,
                p99_ms=percentile(ms, 99) if ms else None,
                max_ms=ms[-1] if ms else None,
            )
        return result

    def x_probes(self):
        """Return the probe tokens received so far."""
        return list(self.probes)

    def x_reset(self):
        """Forget everything received."""
        self.seen = bytearray()
        self.received = 0
        self.distinct = 0
        self.duplicates = 0
        self.first_arrival = None
        self.last_arrival = None
        self.steady = []
        self.probes = []
        return True
'''

PING = '''\
"""Answers ping."""

from co2 import Co2Plugin


class X_M(Co2Plugin):
    """One method."""

    def x_ping(self):
        """Return True."""
        return True
'''


def write_package(plugin_dir: Path, name: str, modules: dict[str, str], description: str) -> None:
    """Write package ``name`` in ``plugin_dir``: ``__init__.py`` listing ``modules``, and each module."""
    package = plugin_dir / name
    package.mkdir(parents=True, exist_ok=True)
    init = f'"""{description}"""\n\n__all__ = {sorted(modules)!r}\n'
    (package / "__init__.py").write_text(init)
    for module, source in modules.items():
        (package / f"{module}.py").write_text(source)


def write_calls(plugin_dir: Path) -> str:
    """Write package ``bench`` (methods ``bench.calls.add`` and ``bench.calls.text``); return its name."""
    write_package(plugin_dir, "bench", {"calls": CALLS}, "The call target of the XML-RPC figures.")
    return "bench"


def write_flow(plugin_dir: Path) -> str:
    """Write package ``flow`` (module ``flow``, class ``X_Flow``); return its name."""
    write_package(plugin_dir, "flow", {"flow": FLOW}, "Sends and measures messages.")
    return "flow"


def ping_name(i: int) -> str:
    """The name of the i-th one-method package."""
    return f"p{i:04d}"


def write_pings(plugin_dir: Path, count: int) -> list[str]:
    """Write packages ``p0000``… (``count`` of them, each method ``pNNNN.m.ping``); return their names."""
    names = [ping_name(i) for i in range(count)]
    for name in names:
        write_package(plugin_dir, name, {"m": PING}, "Answers ping.")
    return names
