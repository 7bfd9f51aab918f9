"""Routing over AMP links: every message reaches every other plugin exactly once, whatever the topology."""

from __future__ import annotations

import datetime
import xmlrpc.client
from collections import Counter
from typing import Any

from doubles import MemoryNetwork
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import xmlrpc_values

from co2.testing import TestReactor


def got(satellite: Any) -> list[Any]:
    """The data the satellite's recording plugin received, in order."""
    return [message["data"] for message in satellite.plugins[0].got]


@st.composite
def topologies(draw: st.DrawFn) -> tuple[int, list[tuple[int, int]]]:
    """A connected graph of 2-7 nodes as directed links (who connects to whom)."""
    n = draw(st.integers(2, 7))
    kind = draw(st.sampled_from(["tree", "ring", "mesh", "random"]))
    pairs: list[tuple[int, int]]
    if kind == "ring":
        pairs = [(i, (i + 1) % n) for i in range(n)]  # for n = 2: two parallel links
    elif kind == "mesh":
        pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    else:
        pairs = [(draw(st.integers(0, i - 1)), i) for i in range(1, n)]
        if kind == "random":
            others = [(i, j) for i in range(n) for j in range(i + 1, n) if (i, j) not in pairs]
            pairs += draw(st.lists(st.sampled_from(others), unique=True)) if others else []
    flips = draw(st.lists(st.booleans(), min_size=len(pairs), max_size=len(pairs)))
    return n, [(b, a) if flip else (a, b) for (a, b), flip in zip(pairs, flips, strict=True)]


def recording_network(build: Any, n: int) -> tuple[TestReactor, MemoryNetwork, list[Any]]:
    """``n`` satellites with a recording plugin each, added to a new in-memory network."""
    reactor = TestReactor()
    network = MemoryNetwork(reactor)
    satellites = [build(reactor, i + 1, "rec") for i in range(n)]
    for i, satellite in enumerate(satellites):
        network.add(str(i), satellite)
    return reactor, network, satellites


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    topology=topologies(),
    sends=st.lists(st.tuples(st.integers(0, 6), st.booleans()), min_size=1, max_size=6),
)
def test_every_message_reaches_every_other_plugin_exactly_once(build, stop, topology, sends):
    """On any connected topology each plugin's message reaches every other node once, never its sender."""
    n, links = topology
    reactor, network, satellites = recording_network(build, n)
    try:
        made = {(a, b): network.link(str(a), str(b)) for a, b in links}
        sent: dict[str, int] = {}
        for k, (who, settle_now) in enumerate(sends):
            sender = who % n
            payload = f"{sender}:{k}"
            sent[payload] = sender
            satellites[sender].plugins[0].send(payload)
            if settle_now:
                network.settle()
        network.settle()

        # Where each node may hear a message from: the far end of each of its links.
        neighbours: dict[int, set[tuple[str, int]]] = {i: set() for i in range(n)}
        for (a, b), link in made.items():
            neighbours[b].add(link.client_address)
            neighbours[a].add(link.server_address)
        for i, satellite in enumerate(satellites):
            counts = Counter(got(satellite))
            expected = {payload for payload, sender in sent.items() if sender != i}
            assert set(counts) == expected, f"node {i}"
            assert all(count == 1 for count in counts.values()), f"node {i}: {counts}"
            for message in satellite.plugins[0].got:
                assert tuple(message["client_address"]) in neighbours[i]
                assert message["host_id"] == satellites[sent[message["data"]]].host_id
        for satellite in satellites:
            assert all(len(outbox) == 0 for outbox in satellite.relay.router.outboxes.values())
    finally:
        stop(satellites, reactor)


def test_client_address_is_the_previous_hop(network, make_satellite):
    """Along a chain a-b-c, b sees a's address and c sees b's, not the origin's."""
    a, b, c = make_satellite("a", "rec"), make_satellite("b", "rec"), make_satellite("c", "rec")
    ab = network.link("a", "b")
    cb = network.link("c", "b")
    a.plugins[0].send("hello")
    network.settle()
    assert b.plugins[0].got[0]["client_address"] == list(ab.client_address)
    assert ab.client_address[0] == "10.0.0.1"
    assert c.plugins[0].got[0]["client_address"] == list(cb.server_address)
    assert cb.server_address[0] == "10.0.0.2"
    assert c.plugins[0].got[0]["host_id"] == a.host_id


def ring(network: MemoryNetwork, make_satellite: Any, size: int) -> list[Any]:
    """``size`` satellites linked in a ring: 0 -> 1 -> ... -> 0."""
    satellites = [make_satellite(str(i), "rec") for i in range(size)]
    for i in range(size):
        network.link(str(i), str((i + 1) % size))
    return satellites


def test_a_link_cut_while_messages_flow_loses_and_repeats_nothing(network, make_satellite):
    """Cutting a ring link mid-flow, then restoring it, still gives each node each message once."""
    satellites = ring(network, make_satellite, 4)
    first = [f"m{k}" for k in range(6)]
    for payload in first:
        satellites[0].plugins[0].send(payload)
    # Let the messages get under way, then cut the link 0 -> 1 with batches on the wire.
    network.reactor.advance(0)
    for link in network.between("0", "1"):
        link.pump.pump(advanceClock=False)
    network.cut("0", "1")
    later = [f"n{k}" for k in range(4)]
    for payload in later:
        satellites[1].plugins[0].send(payload)
    network.settle()
    for i, satellite in enumerate(satellites):
        expected = (first if i != 0 else []) + (later if i != 1 else [])
        assert sorted(got(satellite)) == sorted(expected), f"node {i}"
    network.link("0", "1")
    network.settle()
    for i, satellite in enumerate(satellites):
        counts = Counter(got(satellite))
        assert all(count == 1 for count in counts.values()), f"node {i}: {counts}"
        assert len(counts) == 10 - (6 if i == 0 else 4 if i == 1 else 0)
    assert all(len(o) == 0 for s in satellites for o in s.relay.router.outboxes.values())


def test_a_link_that_is_down_queues_and_drains_in_order(network, make_satellite):
    """Messages sent while the only link is down wait in its outbox, then arrive in order, both ways."""
    a, b = make_satellite("a", "rec"), make_satellite("b", "rec")
    network.link("a", "b")
    network.cut("a", "b")
    network.settle()
    for k in range(10):
        a.plugins[0].send(f"a{k}")
        b.plugins[0].send(f"b{k}")
    network.settle()
    assert got(a) == [] and got(b) == []
    assert len(a.relay.router.outboxes["peer:b"]) == 10
    assert len(b.relay.router.outboxes[f"node:{a.relay.node_id}"]) == 10
    network.link("a", "b")
    network.settle()
    assert got(b) == [f"a{k}" for k in range(10)]
    assert got(a) == [f"b{k}" for k in range(10)]
    assert len(a.relay.router.outboxes["peer:b"]) == 0


def test_a_batch_whose_ack_was_lost_is_sent_again_and_delivered_once(network, make_satellite):
    """A batch received but not acknowledged before a cut is resent; the peer acks it and delivers it once."""
    a, b = make_satellite("a", "rec"), make_satellite("b", "rec")
    (link,) = [network.link("a", "b")]
    for k in range(5):
        a.plugins[0].send(k)
    network.reactor.advance(0)  # a sends its batch
    link.pump.pump(advanceClock=False)  # b reads it
    network.reactor.advance(0)  # b takes it and answers; the answer never leaves
    assert got(b) == [0, 1, 2, 3, 4]
    assert a.relay.router.outboxes["peer:b"].in_flight == 1
    link.cut()
    network.settle()
    assert a.relay.router.outboxes["peer:b"].waiting == 5
    network.link("a", "b")
    network.settle()
    assert got(b) == [0, 1, 2, 3, 4]
    assert b.relay.router.counters.duplicates == 5
    assert len(a.relay.router.outboxes["peer:b"]) == 0


def test_a_message_goes_no_further_than_its_hops(network, make_satellite):
    """With max_hops 2 a message crosses two links at most: a chain of four leaves the last out."""
    satellites = [make_satellite(str(i), "rec", max_hops=2) for i in range(4)]
    for i in range(3):
        network.link(str(i), str(i + 1))
    satellites[0].plugins[0].send("short")
    network.settle()
    assert [got(s) for s in satellites] == [[], ["short"], ["short"], []]


events = st.lists(
    st.one_of(
        st.tuples(st.just("send"), st.integers(0, 6)),
        st.tuples(st.sampled_from(["cut", "relink", "pump"]), st.integers(0, 30)),
        st.tuples(st.just("turn"), st.just(0)),
        st.tuples(st.just("settle"), st.just(0)),
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(topology=topologies(), steps=events)
def test_cuts_and_reconnections_never_lose_or_repeat_a_message(build, stop, topology, steps):
    """Links cut, replaced and restored at any moment: once all are back, each message arrived once."""
    n, links = topology
    reactor, network, satellites = recording_network(build, n)
    try:
        current = [network.link(str(a), str(b)) for a, b in links]
        sent: dict[str, int] = {}
        for k, (step, which) in enumerate(steps):
            if step == "send":
                sender = which % n
                sent[f"{sender}:{k}"] = sender
                satellites[sender].plugins[0].send(f"{sender}:{k}")
            elif step == "cut":
                current[which % len(links)].cut()
            elif step == "relink":
                a, b = links[which % len(links)]
                current[which % len(links)] = network.link(str(a), str(b))
            elif step == "pump":
                link = current[which % len(links)]
                if not link.closed:
                    link.pump.pump(advanceClock=False)
            elif step == "turn":
                reactor.advance(0)
            else:
                network.settle()
        for index, (a, b) in enumerate(links):
            if not current[index].up:
                current[index] = network.link(str(a), str(b))
        network.settle()
        for i, satellite in enumerate(satellites):
            counts = Counter(got(satellite))
            assert set(counts) == {p for p, sender in sent.items() if sender != i}, f"node {i}"
            assert all(count == 1 for count in counts.values()), f"node {i}: {counts}"
        for satellite in satellites:
            assert all(len(outbox) == 0 for outbox in satellite.relay.router.outboxes.values())
    finally:
        stop(satellites, reactor)


def test_a_second_connection_from_a_node_replaces_the_first(network, make_satellite):
    """Linking again while a link is up replaces it; batches in flight on the old one arrive once."""
    a, b = make_satellite("a", "rec"), make_satellite("b", "rec")
    old = network.link("a", "b")
    for k in range(5):
        a.plugins[0].send(k)
    network.reactor.advance(0)  # the batch is on the old connection's wire
    new = network.link("a", "b")
    assert old.closed and new.up
    assert set(a.relay.links) == {"peer:b"} and a.relay.links["peer:b"] is new.client
    assert set(b.relay.links) == {f"node:{a.relay.node_id}"}
    a.plugins[0].send(5)
    network.settle()
    assert got(b) == [0, 1, 2, 3, 4, 5]
    assert len(a.relay.router.outboxes["peer:b"]) == 0


def test_a_full_outbox_keeps_the_newest_while_the_link_is_down(network, make_satellite):
    """With outbox_limit 3 and the link down the oldest are dropped; the newest 3 arrive in order."""
    a = make_satellite("a", "rec", outbox_limit=3)
    b = make_satellite("b", "rec")
    network.link("a", "b")
    network.cut("a", "b")
    for k in range(7):
        a.plugins[0].send(k)
    network.settle()
    assert a.relay.router.counters.dropped == 4
    network.link("a", "b")
    network.settle()
    assert got(b) == [4, 5, 6]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values=st.lists(xmlrpc_values, min_size=1, max_size=4))
def test_any_xmlrpc_value_crosses_a_relay_unchanged(build, stop, values):
    """Data of any XML-RPC type, nested or not, goes from a plugin on A through a relay to B unchanged."""
    reactor = TestReactor()
    network = MemoryNetwork(reactor)
    a, relay, b = build(reactor, 1, "rec"), build(reactor, 2), build(reactor, 3, "rec")
    try:
        for name, node in (("a", a), ("relay", relay), ("b", b)):
            network.add(name, node)
        network.link("a", "relay")
        network.link("b", "relay")
        for value in values:
            a.plugins[0].send(value)
        network.settle()
        assert got(b) == values
        assert all(message["host_id"] == a.host_id for message in b.plugins[0].got)
    finally:
        stop([a, relay, b], reactor)


def test_big_ints_datetimes_bytes_and_unicode_cross_as_xmlrpc_gives_them(network, make_satellite):
    """Tuples, Binary, DateTime and the extremes of each type arrive as an XML-RPC parser gives them."""
    a, b = make_satellite("a", "rec"), make_satellite("b", "rec")
    network.link("a", "b")
    sent = {
        "ints": (-(2**63), 2**63 - 1, 0, True),
        "when": datetime.datetime(1, 1, 1),
        "later": xmlrpc.client.DateTime("99991231T23:59:59"),
        "blob": xmlrpc.client.Binary(bytes(range(256))),
        "text": "𝄞 é \t\r\n \u200b",
        "nested": [[[{"": None}]]],
        "float": 1e308,
    }
    a.plugins[0].send(sent)
    network.settle()
    assert got(b) == [{
        "ints": [-(2**63), 2**63 - 1, 0, True],
        "when": datetime.datetime(1, 1, 1),
        "later": datetime.datetime(9999, 12, 31, 23, 59, 59),
        "blob": bytes(range(256)),
        "text": "𝄞 é \t\r\n \u200b",
        "nested": [[[{"": None}]]],
        "float": 1e308,
    }]


def test_a_relay_encodes_each_envelope_once_for_all_its_links(network, make_satellite):
    """What a node forwards to several links is one entry, shared by their outboxes."""
    a = make_satellite("a", "rec")
    for name in ("p", "q", "r"):
        a.relay.router.outbox(f"peer:{name}")
    a.plugins[0].send("shared")
    network.settle()
    (first,), (second,), (third,) = (a.relay.router.outboxes[f"peer:{n}"].take(1 << 20)[1] for n in "pqr")
    assert first is second is third
