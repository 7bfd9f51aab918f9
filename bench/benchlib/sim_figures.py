"""
What ``bench/simulate`` measures on a network built in memory
(:mod:`.sim_network`): each figure is a function of a :class:`~.sim_network.Built`.

- :func:`send_messages` — per message: link transmissions, duplicate
  arrivals, the rounds until every satellite got it, and whether each got
  it exactly once;
- :func:`node_memory` — per node: seen ids, directory entries, and the
  bytes each takes (:func:`deep_size`);
- :func:`run_for` — the clock moved on (the directories announce again);
- :func:`partition` — the cut that splits the network in two, held until
  what each side knew of the other expired, then healed: the rounds and
  simulated time until every directory knows every node again.

A *round* is :meth:`co2.testing.MemoryNetwork.step`: every link carries
what was written on it before the round, so a round is one hop.
"""

from __future__ import annotations

import math
import random
import sys
import time
import types
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from twisted.internet.base import DelayedCall
from twisted.internet.task import Clock, LoopingCall

from relay import LinkProtocol, Relay, SeenIds

from .sim_network import Built

# What deep_size does not follow: code, the clock and the links (a
# directory refers to them, it does not hold them).
_NOT_HELD = (
    type, types.ModuleType, types.FunctionType, types.MethodType, types.BuiltinFunctionType,
    Clock, DelayedCall, LoopingCall, LinkProtocol,
)
_LEAVES = (str, bytes, int, float, bool, type(None))


def deep_size(root: object, not_held: tuple[type, ...] = _NOT_HELD) -> int:
    """
    The bytes of ``root`` and of everything it holds: ``sys.getsizeof``
    summed over each object reachable through containers, ``__dict__``
    and ``__slots__``, each counted once, not following ``not_held``.
    The allocator's overhead is left out; what ``root`` shares with other
    objects (an interned string) is counted here too.
    """
    total, met, todo = 0, set(), [root]
    while todo:
        obj = todo.pop()
        if id(obj) in met or isinstance(obj, not_held):
            continue
        met.add(id(obj))
        total += sys.getsizeof(obj)
        if isinstance(obj, _LEAVES):
            continue
        if isinstance(obj, dict):
            todo.extend(obj.keys())
            todo.extend(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset, deque)):
            todo.extend(obj)
        else:
            attributes = getattr(obj, "__dict__", None)
            if attributes is not None:
                todo.append(attributes)
            for cls in type(obj).__mro__:
                for slot in getattr(cls, "__slots__", ()):
                    if hasattr(obj, slot):
                        todo.append(getattr(obj, slot))
    return total


@dataclass
class Totals:
    """What every node's relay has counted so far, summed over the network."""

    transmissions: int
    """Messages carried over links (each link's ``messages_out``)."""
    duplicates: int
    """Messages that arrived at a node that had seen them already."""

    @classmethod
    def of(cls, relays: Iterable[Relay]) -> Totals:
        transmissions = duplicates = 0
        for relay in relays:
            snapshot = relay.snapshot()
            transmissions += sum(link.messages_out for link in snapshot.links)
            duplicates += snapshot.counters["duplicates"]
        return cls(transmissions, duplicates)


@dataclass
class Message:
    """One message sent from a satellite's plugin, as the network carried it."""

    sender: str
    transmissions: int
    duplicates: int
    rounds_to_deliver: int
    """Rounds until the last satellite got it."""
    rounds_to_quiet: int
    """Rounds until nothing moved any more (acknowledgements included)."""
    exactly_once: bool
    """Whether every satellite but the sender got it once, and the sender not at all."""


def send_message(built: Built, data: Any, sender: str) -> Message:
    """Send ``data`` from ``sender``'s plugin and run the network until it is quiet."""
    network, counters = built.network, built.counters
    relays = built.relays()
    before = Totals.of(relays)
    counters[sender].send(data)
    others = [counter for name, counter in counters.items() if name != sender]
    rounds = 0
    while not all(counter.got[data] for counter in others):
        rounds += 1
        if not network.step():
            break  # quiet, and some satellite never got it
    quiet = rounds + network.settle() - 1
    after = Totals.of(relays)
    once = counters[sender].got[data] == 0 and all(counter.got[data] == 1 for counter in others)
    return Message(
        sender, after.transmissions - before.transmissions, after.duplicates - before.duplicates,
        rounds, quiet, once,
    )


def send_messages(built: Built, count: int, rng: random.Random, first: int = 0) -> list[Message]:
    """Send ``count`` messages (data ``first``, ``first + 1``...), each from a satellite ``rng`` picks."""
    satellites = built.layout.satellites
    return [send_message(built, first + i, rng.choice(satellites)) for i in range(count)]


@dataclass
class Memory:
    """What the nodes of a sample keep, averaged (and the largest)."""

    sampled: int
    seen_ids: float
    seen_bytes: float
    seen_bytes_max: int
    directory_entries: float
    directory_entries_min: int
    directory_bytes: float
    directory_bytes_max: int
    seen_limit: int
    """How many ids a node remembers at most (``seen_limit``)."""
    seen_bytes_full: int
    """The bytes of a node's seen ids once it remembers ``seen_limit`` of them, ids of the same shape."""


def node_memory(built: Built, rng: random.Random, sample: int = 100) -> Memory:
    """
    The seen ids and directory of ``sample`` nodes drawn by ``rng`` (all
    when there are fewer), and their :func:`deep_size`.  Directory entries
    are counted on every node.
    """
    names = built.layout.nodes
    chosen = names if len(names) <= sample else rng.sample(names, sample)
    relays = [built.network.relay(name) for name in chosen]
    seen = [relay.router.seen for relay in relays]
    seen_bytes = [deep_size(ids) for ids in seen]
    directory_bytes = [deep_size(relay.directory) for relay in relays]
    entries = [len(relay.directory.known) for relay in built.relays()]
    limit = seen[0].limit
    return Memory(
        len(chosen), _mean(len(ids) for ids in seen), _mean(seen_bytes), max(seen_bytes),
        _mean(entries), min(entries), _mean(directory_bytes), max(directory_bytes),
        limit, deep_size(full_seen_ids(limit, relays[0].node_id)),
    )


def full_seen_ids(limit: int, origin: str) -> SeenIds:
    """Seen ids holding ``limit`` message ids as a node makes them: ``<origin>.<count>``."""
    return SeenIds(limit, (f"{origin}.{count}" for count in range(1, limit + 1)))


def _mean(values: Iterable[float]) -> float:
    values = list(values)
    return sum(values) / len(values) if values else math.nan


def run_for(built: Built, seconds: float) -> int:
    """
    Move the clock on by ``seconds``, settling the network after each
    timer that fires (the directories' announcements among them).
    Returns the rounds it took.
    """
    network, reactor = built.network, built.reactor
    target = reactor.seconds() + seconds
    rounds = network.settle()
    while (due := _next_call(reactor)) is not None and due <= target:
        reactor.advance(max(0.0, due - reactor.seconds()))
        rounds += network.settle()
    reactor.advance(max(0.0, target - reactor.seconds()))
    return rounds + network.settle()


def _next_call(reactor: Clock) -> float | None:
    return min((call.getTime() for call in reactor.getDelayedCalls()), default=None)


def directories_whole(built: Built) -> bool:
    """Whether every node's directory knows every other node."""
    others = len(built.layout.nodes) - 1
    return all(len(relay.directory.known) >= others for relay in built.relays())


@dataclass
class Partition:
    """A cut network, held apart, then healed."""

    sides: tuple[int, int]
    """Nodes on each side."""
    links_cut: int
    held_seconds: float
    entries_while_cut: float
    """Directory entries per node, averaged, at the end of the partition."""
    strangers_while_cut: int
    """Nodes whose directory still listed a node of the other side at the end of the partition."""
    heal_rounds: int
    """Rounds from the links coming back until every directory knew every node."""
    heal_seconds: float
    """Simulated time that took (the clock moves only when the network is quiet)."""
    heal_bytes: int
    heal_wall: float
    healed: bool


def partition(built: Built, hold: float, bound: float) -> Partition:
    """
    Cut the links between the two sides of the layout, run the clock for
    ``hold`` seconds, link them again and run the network until every
    directory knows every node: round by round while it moves, the clock
    on to the next timer when it is quiet, ``bound`` seconds at most.
    """
    layout, network, reactor = built.layout, built.network, built.reactor
    for dialler, accepter in layout.cut:
        network.cut(dialler, accepter)
    run_for(built, hold)
    ids = {name: network.relay(name).node_id for name in layout.nodes}
    side_ids = {ids[name] for name in layout.side}
    strangers = 0
    for name in layout.nodes:
        mine = name in layout.side
        if any((node in side_ids) != mine for node in network.relay(name).directory.known):
            strangers += 1
    entries = _mean(len(relay.directory.known) for relay in built.relays())
    started, carried, since = time.perf_counter(), network.carried, reactor.seconds()
    for dialler, accepter in layout.cut:
        network.link(dialler, accepter, settle=False)
    rounds = 0
    while not (healed := directories_whole(built)):
        if network.step():
            rounds += 1
            continue
        due = _next_call(reactor)
        if due is None or due - since > bound:
            break
        reactor.advance(max(0.0, due - reactor.seconds()))
    heal_seconds = reactor.seconds() - since
    network.settle()
    side = len(layout.side)
    return Partition(
        (side, len(layout.nodes) - side), len(layout.cut), hold, entries, strangers,
        rounds, heal_seconds, network.carried - carried, time.perf_counter() - started, healed,
    )
