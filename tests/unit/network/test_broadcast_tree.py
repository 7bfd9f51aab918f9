"""
Broadcast without waste: on a stable network each node gets each message
once, over the tree of shortest paths from the message's origin; while
links change, nodes flood and seen ids drop the duplicates, and every
plugin still gets every message exactly once.
"""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

from doubles import MemoryNetwork
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from co2.testing import TestReactor
from relay._tree import SETTLE, Topology, origin_of

RELAYS = 5


def got(satellite: Any) -> list[Any]:
    return [message["data"] for message in satellite.plugins[0].got]


def duplicates(nodes: list[Any]) -> int:
    """Duplicate arrivals over the network, as each node's status counts them."""
    return sum(node.relay.snapshot().counters["duplicates"] for node in nodes)


def mesh_with_satellites(build: Any) -> tuple[TestReactor, MemoryNetwork, list[Any], list[Any]]:
    """Five relays in a full mesh, a satellite with a recording plugin on three of them."""
    reactor = TestReactor()
    network = MemoryNetwork(reactor)
    relays = [build(reactor, i + 1) for i in range(RELAYS)]
    satellites = [build(reactor, 10 + i, "rec") for i in range(3)]
    for i, node in enumerate(relays):
        network.add(f"r{i}", node)
    for i, node in enumerate(satellites):
        network.add(f"s{i}", node)
    for a, b in itertools.combinations(range(RELAYS), 2):
        network.link(f"r{a}", f"r{b}")
    for i in range(3):
        network.link(f"s{i}", f"r{i}")
    return reactor, network, relays, satellites


def send_round(network: MemoryNetwork, satellites: list[Any], tag: str, each: int = 10) -> set[str]:
    sent = set()
    for i, satellite in enumerate(satellites):
        for k in range(each):
            payload = f"{tag}:{i}:{k}"
            satellite.plugins[0].send(payload)
            sent.add(payload)
    network.settle()
    return sent


def assert_exactly_once(satellites: list[Any], sent: set[str]) -> None:
    for i, satellite in enumerate(satellites):
        counts = Counter(got(satellite))
        expected = {payload for payload in sent if payload.split(":")[1] != str(i)}
        assert set(counts) == expected
        assert all(count == 1 for count in counts.values())


def test_a_stable_mesh_carries_each_message_to_each_node_once(build, stop):
    """The five-relay mesh: 12 duplicate arrivals per message by flooding, none over the tree."""
    reactor, network, relays, satellites = mesh_with_satellites(build)
    try:
        reactor.advance(SETTLE)
        before = duplicates(relays + satellites)
        sent = send_round(network, satellites, "stable")
        assert_exactly_once(satellites, sent)
        assert (duplicates(relays + satellites) - before) / len(sent) <= 0.1
        assert duplicates(relays + satellites) == before
    finally:
        stop(relays + satellites, reactor)


def test_while_the_map_settles_nodes_flood_and_plugins_still_get_each_message_once(build, stop):
    reactor, network, relays, satellites = mesh_with_satellites(build)
    try:
        sent = send_round(network, satellites, "unsettled")
        assert_exactly_once(satellites, sent)
        assert duplicates(relays + satellites) > 0  # flooding: the safety net at work
    finally:
        stop(relays + satellites, reactor)


def test_a_cut_link_floods_at_once_then_the_tree_goes_around_it(build, stop):
    reactor, network, relays, satellites = mesh_with_satellites(build)
    try:
        reactor.advance(SETTLE)
        network.cut("r0", "r1")
        network.settle()
        first = send_round(network, satellites, "just-cut")
        reactor.advance(SETTLE)
        before = duplicates(relays + satellites)
        later = send_round(network, satellites, "around")
        assert_exactly_once(satellites, first | later)
        assert duplicates(relays + satellites) == before
    finally:
        stop(relays + satellites, reactor)


def test_a_link_that_is_down_still_gets_what_it_is_owed(build, stop):
    """A satellite cut off from its relay gets, once linked again, what was sent meanwhile."""
    reactor, network, relays, satellites = mesh_with_satellites(build)
    try:
        reactor.advance(SETTLE)
        network.cut("s2", "r2")
        network.settle()
        reactor.advance(SETTLE)
        sent = send_round(network, satellites[:2], "while-away")
        network.link("s2", "r2")
        network.settle()
        reactor.advance(1)
        network.settle()
        assert Counter(got(satellites[2])) == Counter(sent)
    finally:
        stop(relays + satellites, reactor)


@st.composite
def graphs(draw: st.DrawFn) -> tuple[int, list[tuple[int, int]]]:
    """A connected graph of 2 to 7 relays (a spanning tree and some more links)."""
    n = draw(st.integers(2, 7))
    edges = {(draw(st.integers(0, i - 1)), i) for i in range(1, n)}
    others = [pair for pair in itertools.combinations(range(n), 2) if pair not in edges]
    if others:
        edges |= set(draw(st.lists(st.sampled_from(others), unique=True)))
    return n, sorted(edges)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graph=graphs(), homes=st.lists(st.integers(0, 6), min_size=2, max_size=4), cut=st.integers(0, 20))
def test_on_any_settled_network_no_node_gets_a_message_twice(build, stop, graph, homes, cut):
    """
    Relays joined at random, satellites on some: once the map settles,
    nothing arrives twice anywhere, and after a link is cut (the network
    may split) every plugin still gets what it can be reached by exactly
    once, before and after the map settles again.
    """
    n, edges = graph
    reactor = TestReactor()
    network = MemoryNetwork(reactor)
    relays = [build(reactor, i + 1) for i in range(n)]
    satellites = [build(reactor, 20 + i, "rec") for i in range(len(homes))]
    nodes = relays + satellites
    try:
        for i, node in enumerate(relays):
            network.add(f"r{i}", node)
        for i, node in enumerate(satellites):
            network.add(f"s{i}", node)
        for a, b in edges:
            network.link(f"r{a}", f"r{b}")
        for i, home in enumerate(homes):
            network.link(f"s{i}", f"r{home % n}")
        reactor.advance(SETTLE)
        sent = send_round(network, satellites, "settled", each=3)
        assert duplicates(nodes) == 0
        assert_exactly_once(satellites, sent)

        a, b = edges[cut % len(edges)]
        network.cut(f"r{a}", f"r{b}")
        network.settle()
        sent_during = send_round(network, satellites, "cut", each=2)
        reactor.advance(SETTLE)
        network.settle()
        sent_after = send_round(network, satellites, "after", each=2)
        # Who can reach whom now: the relays joined by the links left.
        joined = {i: {i} for i in range(n)}
        for x, y in edges:
            if (x, y) != (a, b):
                merged = joined[x] | joined[y]
                for member in merged:
                    joined[member] = merged
        for i, satellite in enumerate(satellites):
            counts = Counter(got(satellite))
            assert all(count == 1 for count in counts.values()), counts
            reach = joined[homes[i] % n]
            for payload in sent_during | sent_after:
                sender = int(payload.split(":")[1])
                if sender != i and homes[sender] % n in reach:
                    assert counts[payload] == 1, (payload, counts)
    finally:
        stop(nodes, reactor)


# The map and its trees


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def seconds(self) -> float:
        return self.now


def topology_of(me: str, edges: list[tuple[str, str]]) -> Topology:
    clock = Clock()
    topology = Topology(clock, me)
    nodes = {node for edge in edges for node in edge} | {me}
    for node in nodes:
        topology.set(node, {b if a == node else a for a, b in edges if node in (a, b)})
    clock.now = SETTLE
    return topology


def test_a_tree_of_a_square_breaks_ties_by_the_smallest_id():
    square = [("a", "b"), ("b", "d"), ("d", "c"), ("c", "a")]
    assert topology_of("a", square).branch("a") == ("", frozenset({"b", "c"}))
    assert topology_of("b", square).branch("a") == ("a", frozenset({"d"}))  # b < c: d's parent is b
    assert topology_of("c", square).branch("a") == ("a", frozenset())
    assert topology_of("d", square).branch("a") == ("b", frozenset())


def test_an_edge_counts_only_once_both_ends_announce_it():
    topology = topology_of("a", [("a", "b"), ("b", "c")])
    topology.set("c", set())  # c has not announced its link to b yet
    assert topology.branch("c") is None
    assert topology.branch("a") == ("", frozenset({"b"}))


def test_an_unknown_origin_has_no_tree_and_changes_unsettle_the_map():
    topology = topology_of("a", [("a", "b")])
    assert topology.settled
    assert topology.branch("z") is None
    topology.set("b", {"a", "c"})
    assert not topology.settled
    topology.set("b", {"a", "c"})  # the same again is no change
    topology.forget("nobody")
    assert topology.version == topology_of("a", [("a", "b")]).version + 1


def test_a_message_id_starts_with_its_origin():
    assert origin_of("0123abcd.f00d.17") == "0123abcd"
    assert origin_of("no-dot") == "no-dot"

