"""AMP links: Hello first, batches of any size, refusals, replays and reconnection with backoff."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from doubles import MemoryNetwork
from doubles import format_events as text_of
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.testing import MemoryReactorClock
from twisted.protocols import amp
from twisted.python.failure import Failure
from twisted.test import iosim

from co2._message import decode_message, encode_message
from co2.protocol import (
    PROTOCOL_VERSION,
    Announce,
    BadBatch,
    Call,
    Deliver,
    Hello,
    IncompatibleVersion,
    NotIntroduced,
    SameNode,
    encode_batch,
    encode_envelope,
)
from relay import Entry, Relay
from relay._classic import ClassicLink
from relay._dialling import retry_policy
from relay._links import LinkProtocol
from relay._service import Links
from satellites import Config, make_config


def got(satellite: Any) -> list[Any]:
    """The data the satellite's recording plugin received, in order."""
    return [message["data"] for message in satellite.plugins[0].got]


def message(data: Any, host: str = "10.0.0.1") -> bytes:
    """An encoded message holding ``data`` from ``host``."""
    return encode_message({"data": data, "host_id": f"1@{host}:2004"})


def result_of(network: MemoryNetwork, d: Any) -> Any:
    """Settle the network and return what ``d`` fired with (a Failure if it failed)."""
    results: list[Any] = []
    d.addBoth(results.append)  # before the answer: AMP drops a link whose failures nobody handles
    network.settle()
    assert results, "no answer"
    return results[0]


def test_a_one_mebibyte_message_crosses_a_link_unchanged(network, make_satellite):
    """A message of 1 MiB of text and 1 MiB of bytes reaches the peer's plugin unchanged."""
    a, b = make_satellite("a", "rec"), make_satellite("b", "rec")
    network.link("a", "b")
    text = "".join(chr(0x20 + i % 0x5F) for i in range(1 << 20)) + "é€𝄞"
    blob = bytes(i * 7 % 256 for i in range(1 << 20))
    data = {"text": text, "blob": blob, "nested": [blob[:70_000], {"n": 2**40}]}
    a.plugins[0].send(data)
    network.settle()
    assert got(b) == [data]


def stranger(network: MemoryNetwork, to: str) -> LinkProtocol:
    """An AMP connection to node ``to`` that has not said Hello yet."""
    relay = Relay(Config(), network.reactor, lambda *args: None)
    protocol = LinkProtocol(relay, "peer:test")
    network.connect(protocol, to, ("192.0.2.9", 5555))
    network.settle()
    return protocol


def test_commands_before_hello_are_refused(network, make_satellite):
    """Deliver and Call before Hello fail with HELLO_FIRST; an Announce is ignored."""
    b = make_satellite("b", "rec")
    protocol = stranger(network, "b")
    batch = encode_batch([encode_envelope("s.1", 3, message(1, "192.0.2.9"))])
    failure = result_of(network, protocol.callRemote(Deliver, batch=batch))
    assert failure.check(NotIntroduced)
    failure = result_of(network, protocol.callRemote(Call, node=b.relay.node_id, hops=3, request=b""))
    assert failure.check(NotIntroduced)
    protocol.callRemote(Announce, node="n", host_id="1@192.0.2.9:2004", version=1, hops=0,
                        ttl=60.0, methods=b"spy.m.x")
    network.settle()
    assert got(b) == []
    assert b.relay.directory.known == {}
    assert b.relay.links == {}


def test_a_node_linking_to_itself_gets_same_node(network, make_satellite, logged):
    """Hello from a node to itself is refused with SAME_NODE; the connection is closed, no link is up."""
    a = make_satellite("a", "rec")
    link = network.link("a", "a")
    assert link.refused is not None and link.refused.check(SameNode)
    assert link.closed
    assert a.relay.links == {}
    assert "Hello failed" in text_of(logged)


@pytest.mark.parametrize("version", [0, 1, PROTOCOL_VERSION + 1])
def test_hello_with_another_version_is_refused(network, make_satellite, version):
    """A Hello offering any version but this node's fails with INCOMPATIBLE_VERSION naming both."""
    b = make_satellite("b")
    protocol = stranger(network, "b")
    d = protocol.callRemote(Hello, node="n", host_id="1@192.0.2.9:2004", version=version)
    failure = result_of(network, d)
    assert failure.check(IncompatibleVersion)
    assert f"speaks protocol version {PROTOCOL_VERSION} only, not {version}" in failure.getErrorMessage()
    assert b.relay.links == {}


class OldNode(amp.AMP):
    """A node that answers Hello with protocol version 1."""

    @Hello.responder
    def hello(self, node: str, host_id: str, version: int, **credentials: Any) -> dict[str, Any]:
        return {"node": "0123456789abcdef", "host_id": "1@192.0.2.8:2004", "version": 1}


def test_a_hello_answered_with_another_version_fails(reactor, logged):
    """The dialer refuses a listener that answers Hello with another version: no link comes up."""
    relay = Relay(Config(), reactor, lambda *args: None)
    client = LinkProtocol(relay, "peer:old")
    _, _, pump = iosim.connectedServerAndClient(OldNode, lambda: client, greet=False)
    results: list[Any] = []
    client.say_hello().addBoth(results.append)
    pump.flush()
    assert results[0].check(IncompatibleVersion)
    assert "answered with protocol version 1" in results[0].getErrorMessage()
    assert relay.links == {} and not client.introduced


def test_hello_answers_who_the_listening_node_is(network, make_satellite):
    """Hello's answer names the listening node and its host_id; both sides then hold the link."""
    b = make_satellite("b")
    protocol = stranger(network, "b")
    assert result_of(network, protocol.say_hello()) is None
    assert (protocol.peer_node, protocol.peer_host_id) == (b.relay.node_id, b.host_id)
    assert protocol.introduced
    assert set(b.relay.links) == {f"node:{protocol.owner.node_id}"}
    assert set(protocol.owner.links) == {"peer:test"}


def test_a_refused_batch_is_dropped_and_the_link_goes_on(network, make_satellite, logged):
    """A batch the peer refuses with BAD_BATCH is logged and dropped; what follows still arrives."""
    a, b = make_satellite("a", "rec"), make_satellite("b", "rec")
    network.link("a", "b")
    outbox = a.relay.router.outboxes["peer:b"]
    no_id = encode_envelope("x", 3, b"\x01").replace(b"\xa1x", b"\xa0", 1)  # an envelope with an empty id
    outbox.put(Entry(10_000, no_id))
    a.relay.links["peer:b"].wake()
    network.settle()
    a.plugins[0].send("after")
    network.settle()
    assert got(b) == ["after"]
    assert len(outbox) == 0
    assert "the peer refused a batch" in text_of(logged)
    protocol = a.relay.links["peer:b"]
    assert result_of(network, protocol.callRemote(Deliver, batch=b"junk")).check(BadBatch)


def test_a_message_co2_cannot_carry_is_dropped_where_it_is_opened(network, make_satellite, logged):
    """
    A well-formed envelope around a bad message is taken by the link (links
    carry messages unopened); the node that opens it for its plugins drops
    it, counts it as invalid and says so, and what follows still arrives.
    """
    a, b = make_satellite("a", "rec"), make_satellite("b", "rec")
    network.link("a", "b")
    a.relay.router.outboxes["peer:b"].put(Entry(10_000, encode_envelope("bad.1", 3, b"\x01")))
    a.relay.links["peer:b"].wake()
    network.settle()
    a.plugins[0].send("after")
    network.settle()
    assert got(b) == ["after"]
    assert b.relay.snapshot().counters["invalid"] == 1
    assert "is not one co2 can carry" in text_of(logged)


def test_a_replayed_batch_is_acknowledged_but_delivered_once(network, make_satellite):
    """The same batch sent twice is answered both times; the plugins receive its messages once."""
    make_satellite("a", "rec")
    b = make_satellite("b", "rec")
    network.link("a", "b")
    protocol = network.relay("a").links["peer:b"]
    batch = encode_batch([encode_envelope(f"r.{i}", 3, message(i)) for i in range(3)])
    assert result_of(network, protocol.callRemote(Deliver, batch=batch)) == {}
    assert result_of(network, protocol.callRemote(Deliver, batch=batch)) == {}
    assert got(b) == [0, 1, 2]
    assert b.relay.router.counters.duplicates == 3


# Reconnection: a peer_service driven by a MemoryReactorClock.

PEER = "tcp:host=10.0.0.2:port=2005"
KEY = f"peer:{PEER}"


def fail_newest(clock: MemoryReactorClock) -> None:
    """Fail the newest connection attempt as a refused TCP connection would."""
    factory = clock.tcpClients[-1][2]
    factory.clientConnectionFailed(None, Failure(ConnectionRefusedError()))


def delay_after(clock: MemoryReactorClock, action: Callable[[], object]) -> float:
    """Run ``action``; return the delay of the one retry (due within a minute) it scheduled."""
    before = set(clock.getDelayedCalls())
    action()
    now = clock.seconds()
    (delay,) = [call.getTime() - now for call in set(clock.getDelayedCalls()) - before
                if call.getTime() - now < 60]
    return delay


def bounds(failures: int) -> tuple[float, float]:
    """The delay after ``failures`` in a row: 0.5 s, 1.5 times more each time, at most 30 s, plus [0, 1)."""
    base = min(0.5 * 1.5 ** (failures - 1), 30.0)
    return base, base + 1.0


@pytest.fixture
def clock() -> MemoryReactorClock:
    """A memory reactor whose connections a test completes or fails."""
    return MemoryReactorClock()


@pytest.fixture
def linked(clock):
    """Relay a with b among its peers (not started) and relay b, on one MemoryNetwork."""
    network = MemoryNetwork(clock)
    b = network.add("b", Relay(Config(), clock, lambda *args: None), ("10.0.0.2", 2005))
    a = Relay(make_config({"peers": (PEER,)}), clock, lambda *args: None)
    return network, a, b


def start_links(network: MemoryNetwork, a: Relay) -> Links:
    """Add relay ``a`` to the network at 10.0.0.1 and start its links: its peer service dials."""
    network.add("a", a, ("10.0.0.1", 2005))
    links = Links(a)
    links.startService()
    return links


def connect_newest(network: MemoryNetwork, clock: MemoryReactorClock, to: str) -> Any:
    """Complete the newest connection attempt to node ``to``; returns the memory link."""
    host, port, factory = clock.tcpClients[-1][:3]
    assert (host, port) == ("10.0.0.2", 2005)
    protocol = factory.buildProtocol(IPv4Address("TCP", host, port))
    link = network.connect(protocol, to, "a")
    network.settle()
    return link


def test_reconnection_delays_grow_to_the_cap_and_reset_after_hello(clock, linked):
    """Failed attempts wait longer each time up to 30 s; after a link whose Hello succeeded, 0.5 s again."""
    network, a, _ = linked
    start_links(network, a)
    assert len(clock.tcpClients) == 1
    delays = []
    for attempt in range(1, 15):
        delay = delay_after(clock, lambda: fail_newest(clock))
        low, high = bounds(attempt)
        assert low <= delay < high, f"attempt {attempt}: {delay}"
        delays.append(delay)
        clock.advance(delay)
        assert len(clock.tcpClients) == attempt + 1
    assert all(30 <= delay < 31 for delay in delays[-3:])
    assert delays[9] > 2 * delays[3]
    link = connect_newest(network, clock, "b")
    assert link.up and set(a.links) == {KEY}
    delay = delay_after(clock, link.cut)
    assert bounds(1)[0] <= delay < bounds(1)[1]
    assert a.links == {}


def test_queued_messages_go_out_when_the_service_reconnects(clock, linked):
    """What a relay queued while its peer was unreachable is delivered once the service connects."""
    network, a, b = linked
    a.router.send(message("early"), ["10.0.0.1", 2004])
    start_links(network, a)
    clock.advance(delay_after(clock, lambda: fail_newest(clock)))
    arrived: list[Any] = []
    b.router.turn.handover = lambda local: arrived.extend(decode_message(m)["data"] for m, _, _ in local)
    connect_newest(network, clock, "b")
    assert arrived == ["early"]
    assert len(a.router.outboxes[KEY]) == 0


def test_a_refused_hello_counts_as_a_failed_attempt(clock, linked, logged):
    """When the peer refuses Hello the connection is closed and the next delay keeps growing."""
    network, a, b = linked
    start_links(network, a)
    for _ in (1, 2):
        clock.advance(delay_after(clock, lambda: fail_newest(clock)))
    b.node_id = a.node_id  # b now looks like a itself: SAME_NODE
    links = []
    delay = delay_after(clock, lambda: links.append(connect_newest(network, clock, "b")))
    assert links[0].closed and a.links == {}
    low, high = bounds(3)
    assert low <= delay < high
    assert "Hello failed" in text_of(logged)
    assert "Unhandled" not in text_of(logged)


def test_a_connection_lost_during_hello_counts_as_a_failed_attempt(clock, linked, logged):
    """A connection that drops before Hello is answered is a failed attempt; no error escapes."""
    network, a, _ = linked
    start_links(network, a)
    clock.advance(delay_after(clock, lambda: fail_newest(clock)))
    host, port, factory = clock.tcpClients[-1][:3]
    link = network.connect(factory.buildProtocol(IPv4Address("TCP", host, port)), "b", "a")
    delay = delay_after(clock, link.cut)
    low, high = bounds(2)
    assert low <= delay < high
    network.settle()
    assert a.links == {}
    assert "Unhandled" not in text_of(logged)


def test_stopping_the_relay_stops_reconnecting(clock, linked):
    """After the links stop no further connection attempt is made."""
    network, a, _ = linked
    links = start_links(network, a)
    fail_newest(clock)
    links.stopService()
    clock.advance(60)
    assert len(clock.tcpClients) == 1


def test_classic_links_back_off_as_amp_links_do():
    """A classic link's default retry waits 0.5 s after one failure, growing to 30 s, plus jitter."""
    link = ClassicLink(Relay(Config(), MemoryReactorClock(), lambda *args: None).router,
                       MemoryReactorClock(), "http://10.0.0.2:2004/", lambda: "1@10.0.0.1:2004")
    for policy in (link.retry, retry_policy()):
        for failures in (1, 2, 3, 10, 11, 50):
            low, high = bounds(failures)
            assert low <= policy(failures) < high


def test_the_amp_listener_holds_at_most_max_connections(reactor):
    """Past max_connections the AMP listener refuses new connections; a closed one makes room."""
    from relay._links import LinkServerFactory

    relay = Relay(make_config({"max_connections": 2}), reactor, lambda *args: None)
    factory = LinkServerFactory(relay, relay.config.node.max_connections)
    address = IPv4Address("TCP", "127.0.0.1", 40000)
    first, second = factory.buildProtocol(address), factory.buildProtocol(address)
    assert first is not None and second is not None
    assert factory.buildProtocol(address) is None
    first.makeConnection(iosim.FakeTransport(first, isServer=True))
    first.connectionLost(Failure(ConnectionRefusedError()))
    assert factory.buildProtocol(address) is not None
    assert factory.admission.refused == 1
