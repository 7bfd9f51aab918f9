"""
What AMP links log once per connection or per box is rate-limited: a
hostile client opening connection after connection gets LINES lines per
kind a window, then one count, and a listener that stops leaves no timer.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.logger import formatEvent
from twisted.protocols import amp

from co2._ratelog import EVERY, LINES
from co2.testing import TestReactor
from relay import Relay
from relay._links import LinkProtocol, LinkServerFactory
from satellites import make_config

EMPTY_BOX = b"\x00\x00"
BAD_HELLO = amp.AmpBox({
    b"_command": b"Hello", b"_ask": b"1", b"node": b"n9", b"host_id": b"9@10.0.0.9:2004", b"version": b"two",
}).serialize()


@pytest.fixture
def factory(reactor: TestReactor) -> Iterator[LinkServerFactory]:
    """The AMP listener's factory of a standalone relay."""
    relay = Relay(make_config({}), reactor, lambda *args: None)
    factory = LinkServerFactory(relay)
    factory.doStart()
    yield factory
    relay.close()


def connect(factory: LinkServerFactory, port: int) -> LinkProtocol:
    """A new connection to the listener from 10.0.0.9:``port``."""
    address = IPv4Address("TCP", "10.0.0.9", port)
    link = factory.buildProtocol(address)
    assert link is not None
    link.makeConnection(StringTransport(peerAddress=address))
    return link


def flood(factory: LinkServerFactory, data: bytes, count: int, first_port: int = 5000) -> None:
    """``count`` connections, each sending ``data`` and then closed."""
    for n in range(count):
        link = connect(factory, first_port + n)
        link.dataReceived(data)
        link.connectionLost()


def relay_lines(logged: list[dict[str, Any]], text: str) -> list[str]:
    """The lines of the relay's log so far that contain ``text``."""
    ours = (formatEvent(e) for e in logged if e.get("log_namespace") == "co2.relay")
    return [line for line in ours if text in line]


def pending(reactor: TestReactor) -> set[Any]:
    """The DelayedCalls of ``reactor`` still to run."""
    return {call for call in reactor.getDelayedCalls() if call.active()}


def test_a_flood_of_bad_connections_logs_a_few_lines_then_a_count(
    factory: LinkServerFactory, reactor: TestReactor, logged: list[dict[str, Any]]
) -> None:
    """Two hundred connections sending an empty box: LINES lines, then one count when the window ends."""
    flood(factory, EMPTY_BOX, 200)
    assert len(relay_lines(logged, "neither a command nor an answer")) == LINES
    reactor.advance(EVERY)
    lines = relay_lines(logged, "neither command nor answer")
    assert lines == [
        f"connections closed: neither command nor answer: {200 - LINES} more within 10s "
        "not logged one by one; the last: link from 10.0.0.9:5199: "
        "a box that is neither a command nor an answer: keys []; connection closed"
    ]


def test_refused_commands_are_a_kind_of_their_own(
    factory: LinkServerFactory, reactor: TestReactor, logged: list[dict[str, Any]]
) -> None:
    """A flood of refused Hellos holds back nothing of another kind of line, and is counted apart."""
    flood(factory, BAD_HELLO, 50)
    flood(factory, EMPTY_BOX, 2, first_port=6000)
    assert len(relay_lines(logged, "refused Hello: Hello: cannot read the arguments")) == LINES
    assert len(relay_lines(logged, "neither a command nor an answer")) == 2
    reactor.advance(EVERY)
    (count,) = relay_lines(logged, " more within ")
    assert count.startswith(f"connections closed: refused Hello: {50 - LINES} more within 10s")


def test_a_listener_that_stops_logs_its_count_and_leaves_no_timer(
    factory: LinkServerFactory, reactor: TestReactor, logged: list[dict[str, Any]]
) -> None:
    """When the listening port stops, what was held back is counted at once; no timer of its log is left."""
    before = pending(reactor)
    flood(factory, EMPTY_BOX, LINES + 7)
    assert len(pending(reactor) - before) == 1  # the count's timer
    factory.doStop()
    assert relay_lines(logged, " more within ")[-1].startswith(
        "connections closed: neither command nor answer: 7 more within 10s"
    )
    assert pending(reactor) == before and len(factory.limited) == 0


def test_a_link_given_no_log_has_its_own_closed_with_the_connection(reactor: TestReactor) -> None:
    """A dialled link logs through a log of its own, which its connection's end closes."""
    relay = Relay(make_config({}), reactor, lambda *args: None)
    link = LinkProtocol(relay, "peer:test")
    link.makeConnection(StringTransport())
    assert link.limited is not LinkProtocol(relay, "peer:other").limited
    link.connectionLost()
    assert link.limited.closed
    relay.close()


def test_links_accepted_by_one_listener_share_its_log(factory: LinkServerFactory) -> None:
    """Every link a listener accepts logs through the listener's one log."""
    assert connect(factory, 1).limited is connect(factory, 2).limited is factory.limited


def test_a_flood_of_routed_answers_too_large_is_logged_a_few_at_a_time(
    network: Any, make_satellite: Any, reactor: TestReactor, logged: list[dict[str, Any]]
) -> None:
    """Call after call whose answer cannot cross the link: LINES lines, then one count."""
    from xmlrpc.client import Fault

    from test_directory import call

    a = make_satellite("a", "rec")
    make_satellite("c", "calc", max_message_size=1000, max_request_size=2000)
    network.link("a", "c")
    big = "z" * (150 * 1024)
    for _ in range(LINES + 6):
        with pytest.raises(Fault):
            call(network, a, "calc.ops.add", big, big)
    assert len(relay_lines(logged, "a routed call's answer of")) == LINES
    reactor.advance(EVERY)
    assert relay_lines(logged, " more within ")[-1].startswith("routed answer too large: 6 more within 10s")


def test_a_peer_that_cannot_be_reached_is_one_line_per_attempt_naming_it_and_why(logged):
    """One co2 line per failed attempt, naming the endpoint, why and the delay; no factory chatter."""
    import errno

    from twisted.internet.error import ConnectionRefusedError
    from twisted.internet.testing import MemoryReactorClock
    from twisted.python.failure import Failure

    from relay._dialling import peer_service
    from satellites._logging import QUIETER

    reactor = MemoryReactorClock()
    peer = "tcp:host=127.0.0.1:port=1"
    relay = Relay(make_config({"peers": [peer]}), reactor, lambda *args: None)
    service = peer_service(relay, peer)
    service.startService()
    for _ in range(3):
        factory = reactor.tcpClients[-1][2]
        refused = ConnectionRefusedError(osError=errno.ECONNREFUSED)  # as the TCP client makes it
        factory.clientConnectionFailed(reactor.connectors[-1], Failure(refused))
        reactor.advance(60)
    service.stopService()
    relay.close()
    lines = [formatEvent(event) for event in logged]
    said = [line for line in lines if "cannot connect" in line]
    assert len(said) == 3
    assert said[0].startswith(f"link peer:{peer}: cannot connect to {peer}: connection refused; retrying in ")
    assert not [line for line in lines if "Starting factory" in line]
    # Twisted's own retry lines are still emitted, in a namespace the node's log keeps below info.
    retries = [event for event in logged if "Scheduling retry" in formatEvent(event)]
    assert retries and all(event["log_namespace"].startswith(QUIETER) for event in retries)


def test_twisteds_connection_chatter_is_kept_below_info():
    import io

    from twisted.logger import Logger, LogLevel, globalLogPublisher

    from satellites._logging import log_observer

    out = io.StringIO()
    observer = log_observer("text", LogLevel.info, out)
    globalLogPublisher.addObserver(observer)
    try:
        Logger(namespace="twisted.application._client_service.ClientService").info("Scheduling retry 8")
        Logger(namespace="twisted.protocols.amp").info("LinkProtocol connection established")
        Logger(namespace="twisted.protocols.amp").critical("Amp server or network failure")
        Logger(namespace="co2.relay").info("link peer:x up")
    finally:
        globalLogPublisher.removeObserver(observer)
    text = out.getvalue()
    assert "Scheduling retry" not in text and "connection established" not in text
    assert "Amp server or network failure" in text and "link peer:x up" in text


def test_a_link_going_down_says_why(network, make_satellite, logged):
    """The line of a link that goes down says why: the peer closed it, or the connection was lost."""
    make_satellite("a", "rec")
    make_satellite("b", "rec")
    network.link("a", "b")
    network.cut("a", "b")
    lines = [formatEvent(event) for event in logged if "down:" in formatEvent(event)]
    assert lines and all(line.startswith("link ") for line in lines)
    assert any("the link was cut" in line for line in lines)
