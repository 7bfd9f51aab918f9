"""
co2 nodes on loopback: configs written to the work directory, relays and
satellites started from them on ephemeral ports, and links checked end to
end with probe messages.
"""

from __future__ import annotations

import itertools
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from co2.testing import AMP_LISTENING, SERVING

from .procs import BIN_DIR, BenchError, Proc, Processes, call

EPHEMERAL = "tcp:port=0:interface=127.0.0.1"
# Links may owe more than the defaults while a blast is in flight: the suite
# measures speed, so nothing may be dropped for lack of room.
ROOMY_LINKS = {"outbox_limit": 10_000_000, "outbox_bytes": 4 << 30}

# What a relay linked to a NATS backbone logs once it is on it, and once it
# has heard another relay there (relay/_backbone.py).
BACKBONE_UP = re.compile(r"backbone \S+ up: ")
BACKBONE_RELAY = re.compile(r"backbone \S+: relay \S+ \(\S+\) is on it")

_tokens = itertools.count()


@dataclass
class Node:
    """A started co2 node: its process, XML-RPC URL and AMP port (0 when it has none)."""

    proc: Proc
    url: str
    amp_port: int = 0
    ready_after: float = 0.0  # seconds from spawn to the "serving XML-RPC" line

    def call(self, method: str, *args: Any, timeout: float = 60.0) -> Any:
        return call(self.url, method, *args, timeout=timeout)

    @property
    def peer(self) -> str:
        """The client endpoint string other nodes put in ``peers`` to link to this one."""
        return f"tcp:host=127.0.0.1:port={self.amp_port}"


def write_config(work: Path, name: str, **settings: object) -> Path:
    """Write ``<work>/<name>.py`` with one ``key = repr(value)`` line per setting."""
    path = work / f"{name}.py"
    path.write_text("".join(f"{key} = {value!r}\n" for key, value in settings.items()))
    return path


def started(proc: Proc, amp: bool = False) -> Node:
    """Wait until the node ``proc`` serves XML-RPC (and listens for AMP links when ``amp``)."""
    arrived, match = proc.wait_line(SERVING)
    node = Node(proc, match.group(1), ready_after=arrived - proc.spawned)
    if amp:
        node.amp_port = int(proc.wait_line(AMP_LISTENING)[1].group(1))
    return node


def start_relay(
    procs: Processes, name: str = "relay", links: dict[str, int] = ROOMY_LINKS, **settings: object
) -> Node:
    """
    Start ``co2-relay`` listening for XML-RPC and AMP on ephemeral ports;
    ``links``: its outbox settings (``{}``: co2's defaults).
    """
    config = write_config(procs.cwd, name, listen=EPHEMERAL, amp_listen=EPHEMERAL, **links, **settings)
    return started(procs.start(name, BIN_DIR / "co2-relay", "--config", config, watch_log=True), amp=True)


def spawn_satellite(
    procs: Processes,
    name: str,
    plugin_dir: Path,
    plugin_list: list[str],
    peers: list[str] | None = None,
    links: dict[str, int] = ROOMY_LINKS,
    **settings: object,
) -> Proc:
    """
    Spawn ``co2-satellite`` serving XML-RPC on an ephemeral port, linked to
    ``peers`` with the outbox settings ``links``; do not wait.
    """
    if peers:
        settings = {"peers": peers, **links, **settings}
    config = write_config(
        procs.cwd, name, listen=EPHEMERAL, plugin_dir=str(plugin_dir), plugin_list=plugin_list, **settings
    )
    return procs.start(name, BIN_DIR / "co2-satellite", "--config", config, watch_log=True)


def start_satellite(
    procs: Processes,
    name: str,
    plugin_dir: Path,
    plugin_list: list[str],
    peers: list[str] | None = None,
    links: dict[str, int] = ROOMY_LINKS,
    **settings: object,
) -> Node:
    """Start ``co2-satellite`` (see :func:`spawn_satellite`) and wait until it serves."""
    proc = spawn_satellite(procs, name, plugin_dir, plugin_list, peers, links, **settings)
    return started(proc, amp="amp_listen" in settings)


@dataclass
class Net:
    """Started nodes: the relays in line, sender A linked to the first, receivers to the last."""

    relays: list[Node]
    sender: Node
    receivers: list[Node]

    @property
    def nodes(self) -> list[Node]:
        return [self.sender, *self.relays, *self.receivers]


def start_net(
    procs: Processes,
    plugin_dir: Path,
    receivers: int = 1,
    relays: int = 1,
    links: dict[str, int] = ROOMY_LINKS,
) -> Net:
    """
    ``relays`` relays in a line (each linked to the one before), satellite
    ``a`` linked to the first and ``receivers`` satellites (``b``, or
    ``b00``, ``b01``…) to the last, all with ``flow`` and the outbox
    settings ``links``; probed end to end.
    """
    line: list[Node] = []
    for i in range(relays):
        name = "relay" if relays == 1 else f"relay{i + 1}"
        line.append(start_relay(procs, name, links, **({"peers": [line[-1].peer]} if line else {})))
    sender = start_satellite(procs, "a", plugin_dir, ["flow"], [line[0].peer], links)
    names = ["b"] if receivers == 1 else [f"b{i:02d}" for i in range(receivers)]
    spawned = [spawn_satellite(procs, name, plugin_dir, ["flow"], [line[-1].peer], links) for name in names]
    net = Net(line, sender, [started(proc) for proc in spawned])
    wait_linked(sender, net.receivers, timeout=30 + 2 * receivers)
    return net


def start_ends(
    procs: Processes,
    plugin_dir: Path,
    relays: list[Node],
    names: tuple[str, str] = ("a", "b"),
    links: dict[str, int] = ROOMY_LINKS,
) -> Net:
    """
    Around relays already started and linked: satellite ``names[0]``
    linked to the first relay and ``names[1]`` to the last, both with
    ``flow`` and the outbox settings ``links``; probed end to end.
    """
    sender = start_satellite(procs, names[0], plugin_dir, ["flow"], [relays[0].peer], links)
    receiver = start_satellite(procs, names[1], plugin_dir, ["flow"], [relays[-1].peer], links)
    net = Net(relays, sender, [receiver])
    wait_linked(sender, net.receivers)
    return net


def wait_backbone(relays: list[Node], timeout: float = 30.0) -> None:
    """Wait until each relay is on its NATS backbone and has heard another relay there."""
    for relay in relays:
        relay.proc.wait_line(BACKBONE_UP, timeout)
        relay.proc.wait_line(BACKBONE_RELAY, timeout)


def wait_linked(sender: Node, receivers: list[Node], timeout: float = 30.0) -> None:
    """
    Send a probe from ``sender``'s ``flow`` plugin every second until every
    receiver's ``flow`` has got one, then clear what the receivers counted.
    """
    deadline = time.monotonic() + timeout
    waiting = list(receivers)
    while waiting:
        if time.monotonic() > deadline:
            names = ", ".join(node.proc.name for node in waiting)
            raise BenchError(
                f"links not up within {timeout:g}s: no probe from {sender.proc.name} reached {names}"
            )
        sender.call("flow.flow.probe", str(next(_tokens)))
        resend = time.monotonic() + 1.0
        while waiting and time.monotonic() < resend:
            waiting = [node for node in waiting if not node.call("flow.flow.probes")]
            time.sleep(0.05)
    for node in receivers:
        node.call("flow.flow.reset")
