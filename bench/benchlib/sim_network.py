"""
Networks of co2 nodes in memory, for ``bench/simulate``: how one is laid
out (a tree of relays or a random mesh of them, satellites hanging off
the relays), and how the layout is built on a
:class:`co2.testing.MemoryNetwork` (no socket; one ``TestReactor``).

A relay is a :class:`relay.Relay` with no plugins, as ``co2-relay`` runs
one; a satellite is a :class:`satellites.Satellite` hosting one plugin,
:data:`COUNTER`, which counts what it receives.  Every node dials its
links as a ``peers`` entry would: a satellite its relay, a relay of the
tree its parent.
"""

from __future__ import annotations

import math
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from co2.testing import MemoryNetwork, NotSettled, TestReactor, write_package
from relay import Relay
from satellites import Config, Satellite, make_config

TOPOLOGIES = ("tree", "mesh")
SATELLITES_PER_RELAY = 9
"""About one node in ten is a relay: 100 nodes are 10 relays and 90 satellites."""
TREE_CHILDREN = 4
"""Relays of the tree each have this many relay children (the last ones fewer)."""
MESH_DEGREE = 3
"""Relays of the mesh have this many relay links on average."""
MAX_ROUNDS = 1_000_000
"""How many rounds a build or a settle may take before the network counts as stuck."""
PROGRESS = 30.0
"""Seconds between two lines saying how far a build got."""

COUNTER = '''
from collections import Counter

from co2 import Co2Plugin


class X_Counter(Co2Plugin):
    """Counts the messages it receives by their data."""

    def __init__(self, var_dict):
        Co2Plugin.__init__(self, var_dict)
        self.got = Counter()

    def receive(self, data_dict):
        self.got[data_dict["data"]] += 1

    def x_count(self):
        return sum(self.got.values())
'''
"""The plugin of every satellite: ``got[data]`` is how many times a message of that data came."""


@dataclass(frozen=True)
class Layout:
    """A network drawn before it is built."""

    topology: str
    relays: tuple[str, ...]
    satellites: tuple[str, ...]
    links: tuple[tuple[str, str], ...]
    """``(dialler, accepter)``: the first has the second among its peers."""
    side: frozenset[str]
    """The nodes on one side of the cut that splits the network in two (the others are on the other)."""

    @property
    def nodes(self) -> tuple[str, ...]:
        return self.relays + self.satellites

    @property
    def cut(self) -> tuple[tuple[str, str], ...]:
        """The links between the two sides."""
        return tuple(link for link in self.links if (link[0] in self.side) != (link[1] in self.side))


def relay_count(nodes: int) -> int:
    """How many of ``nodes`` are relays: one in ten, at least three."""
    return max(3, math.ceil(nodes / (SATELLITES_PER_RELAY + 1)))


def layout(topology: str, nodes: int, rng: random.Random) -> Layout:
    """About ``nodes`` nodes laid out as ``topology`` ("tree" or "mesh"), drawn with ``rng``."""
    if topology == "tree":
        return tree_layout(nodes)
    if topology == "mesh":
        return mesh_layout(nodes, rng)
    raise ValueError(f"no topology {topology!r}: one of {', '.join(TOPOLOGIES)}")


def tree_layout(nodes: int, children: int = TREE_CHILDREN) -> Layout:
    """
    A root relay, each relay with ``children`` relay children (filled
    level by level), and the satellites shared out in turn among the leaf
    relays.  The cut is the link of the root's first child: its subtree
    is one side.
    """
    count = relay_count(nodes)
    relays = tuple(f"r{i}" for i in range(count))
    parent = {i: (i - 1) // children for i in range(1, count)}
    links = [(relays[i], relays[up]) for i, up in parent.items()]
    leaves = [relays[i] for i in range(count) if children * i + 1 >= count]
    satellites = tuple(f"s{i}" for i in range(nodes - count))
    links += [(name, leaves[i % len(leaves)]) for i, name in enumerate(satellites)]
    below = {1}
    for i in range(2, count):
        if parent[i] in below:
            below.add(i)
    side = {relays[i] for i in below}
    side |= {dialler for dialler, accepter in links if dialler.startswith("s") and accepter in side}
    return Layout("tree", relays, satellites, tuple(links), frozenset(side))


def mesh_layout(nodes: int, rng: random.Random, degree: int = MESH_DEGREE) -> Layout:
    """
    Relays each linked to ``degree`` random others on average, connected
    (a random spanning tree first, then random extra links), and each
    satellite attached to a random relay.  The cut splits the relays in
    two connected sides, of about half each (see :func:`_connected_half`).
    """
    count = relay_count(nodes)
    relays = tuple(f"r{i}" for i in range(count))
    edges: set[frozenset[int]] = set()
    links: list[tuple[str, str]] = []

    def add(a: int, b: int) -> None:
        edges.add(frozenset((a, b)))
        links.append((relays[a], relays[b]))

    for i in range(1, count):
        add(i, rng.randrange(i))
    wanted = min(round(degree * count / 2), count * (count - 1) // 2)
    while len(edges) < wanted:
        a, b = rng.sample(range(count), 2)
        if frozenset((a, b)) not in edges:
            add(a, b)
    neighbours: dict[int, set[int]] = {i: set() for i in range(count)}
    for a, b in (tuple(edge) for edge in edges):
        neighbours[a].add(b)
        neighbours[b].add(a)
    half = _connected_half(neighbours, rng)
    satellites = tuple(f"s{i}" for i in range(nodes - count))
    homes = [rng.randrange(count) for _ in satellites]
    links += [(name, relays[home]) for name, home in zip(satellites, homes, strict=True)]
    side = {relays[i] for i in half}
    side |= {name for name, home in zip(satellites, homes, strict=True) if home in half}
    return Layout("mesh", relays, satellites, tuple(links), frozenset(side))


def _connected_half(neighbours: dict[int, set[int]], rng: random.Random, tries: int = 20) -> set[int]:
    """
    About half of the relays, such that both they and the others are
    connected.  From a random relay, half of them are gathered breadth
    first; what that leaves outside in pieces, but for the largest piece,
    joins them (each piece touches the half, so it stays connected).  Of
    ``tries`` random starts, the most even split is kept.
    """
    count = len(neighbours)
    best: set[int] = set()
    for start in rng.sample(range(count), min(count, tries)):
        half = set(_breadth_first(neighbours, start, set())[: count // 2])
        pieces, left = [], set(neighbours) - half
        while left:
            piece = _breadth_first(neighbours, min(left), half)
            pieces.append(piece)
            left -= set(piece)
        side = set(neighbours) - set(max(pieces, key=len))
        if not best or abs(2 * len(side) - count) < abs(2 * len(best) - count):
            best = side
    return best


def _breadth_first(neighbours: dict[int, set[int]], start: int, avoid: set[int]) -> list[int]:
    order, queue, met = [], deque([start]), {start}
    while queue:
        node = queue.popleft()
        order.append(node)
        for other in sorted(neighbours[node] - avoid - met):
            met.add(other)
            queue.append(other)
    return order


def host_id(index: int, name: str) -> str:
    """The ``host_id`` of node number ``index`` (from 1): its own IP in 10.0.0.0/8."""
    return f"{name}@10.{index >> 16 & 255}.{index >> 8 & 255}.{index & 255}:2004"


@dataclass
class Built:
    """A layout built: the network, its reactor, and each satellite's counting plugin."""

    layout: Layout
    network: MemoryNetwork
    reactor: TestReactor
    counters: dict[str, Any]
    """Each satellite's :data:`COUNTER` plugin, by name."""
    build_rounds: int

    def relays(self) -> list[Relay]:
        """The relay of every node, relays and satellites alike."""
        return [self.network.relay(name) for name in self.layout.nodes]


def write_plugin(root: Path) -> Path:
    """Write the ``counter`` package (:data:`COUNTER`) under ``root``; return ``root``."""
    write_package(root, "counter", {"counter": COUNTER})
    return root


def build(layout: Layout, plugin_dir: Path, say: Callable[[str], None] = lambda text: None) -> Built:
    """
    Make every node of ``layout`` (the ``counter`` package from
    ``plugin_dir``), add it to a new network, dial every link at once and
    settle, telling ``say`` how far it got every :data:`PROGRESS` seconds.
    """
    reactor = TestReactor()
    network = MemoryNetwork(reactor, max_rounds=MAX_ROUNDS)
    relay_config = make_config({"plugin_list": []})
    satellite_config = make_config({"plugin_dir": str(plugin_dir), "plugin_list": ["counter"]})
    for index, name in enumerate(layout.relays, 1):
        network.add(name, _relay(relay_config, reactor, host_id(index, name)))
    counters = {}
    for index, name in enumerate(layout.satellites, len(layout.relays) + 1):
        satellite = Satellite(satellite_config, reactor, host_id=host_id(index, name))
        failures = satellite.load_plugins()
        if failures or len(satellite.plugins) != 1:
            raise RuntimeError(f"satellite {name} could not load the counter plugin: {failures}")
        network.add(name, satellite)
        counters[name] = satellite.plugins[0]
    say(f"{len(layout.nodes):,} nodes made; linking them")
    for dialler, accepter in layout.links:
        network.link(dialler, accepter, settle=False)
    rounds, told = 1, time.monotonic()
    while network.step():
        rounds += 1
        if rounds > MAX_ROUNDS:
            raise NotSettled(f"the build still moved after {MAX_ROUNDS} rounds")
        if time.monotonic() - told > PROGRESS:
            told = time.monotonic()
            say(f"round {rounds}: {network.carried / 2**20:,.0f} MiB over the links so far")
    return Built(layout, network, reactor, counters, rounds)


def _relay(config: Config, reactor: TestReactor, host: str) -> Relay:
    relay = Relay(config, reactor)
    relay.host_id = host
    return relay


def stop(built: Built) -> None:
    """Stop every node: satellites unload their plugins, relays commit and close."""
    for name in built.layout.satellites:
        built.network.nodes[name].shutdown()
    for relay in built.relays():
        relay.close()
    built.reactor.advance(0)
