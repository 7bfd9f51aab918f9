"""Limits on messages and links: max_message_size, the largest box a link reads, the time to say Hello."""

from __future__ import annotations

from typing import Any
from xmlrpc.client import Fault

import pytest
from twisted.logger import formatEvent
from twisted.protocols import amp

from co2.protocol import Announce, BadBatch, Deliver, Hello
from co2.testing import MemoryXMLRPCClient
from relay._links import BOX_OVERHEAD, max_box_size
from satellites import Config, make_config, make_server

LIMITS = {"max_message_size": 1000, "max_request_size": 2000}


def test_the_default_limit_and_the_box_it_makes() -> None:
    node = Config().node
    assert node.max_message_size == 16 * 1024 * 1024
    assert max_box_size(node) == 16 * 1024 * 1024 + BOX_OVERHEAD
    assert max_box_size(make_config(LIMITS).node) == 256 * 1024 + BOX_OVERHEAD


def test_a_plugin_cannot_send_a_message_over_the_limit(make_satellite) -> None:
    satellite = make_satellite("a", "rec", **LIMITS)
    plugin = satellite.plugins[0]
    plugin.send("x" * 800)
    with pytest.raises(ValueError, match=r"cannot send \d+ bytes: over max_message_size \(1000\)"):
        plugin.send("x" * 1000)


def test_notify_refuses_a_message_over_the_limit(make_satellite, reactor) -> None:
    satellite = make_satellite("a", "rec", **LIMITS)
    client = MemoryXMLRPCClient(make_server(satellite.dispatcher, 2000, reactor))
    results: list[Any] = []
    client.call("notify", {"data": "y" * 1200, "host_id": "7@127.0.0.1:2004"}).addBoth(results.append)
    reactor.advance(0)
    assert isinstance(results[0].value, Fault) and results[0].value.faultCode == -32602
    assert "over max_message_size (1000)" in results[0].value.faultString
    assert satellite.plugins[0].got == []


class Peer(amp.AMP):
    """A bare peer that takes the node's announcements."""

    @Announce.responder
    def announced(self, **_: Any) -> dict[str, Any]:
        return {}


def introduced_client(network: Any, name: str) -> tuple[amp.AMP, Any]:
    client = Peer()
    link = network.connect(client, name, ("10.0.0.9", 5000))
    answered: list[Any] = []
    client.callRemote(Hello, node="n9", host_id="9@10.0.0.9:2004", version=2).addBoth(answered.append)
    link.pump.flush()
    assert isinstance(answered[0], dict)
    return client, link


def test_a_box_over_the_limit_closes_the_link(network, make_satellite, logged) -> None:
    make_satellite("a", "rec", **LIMITS)
    client, link = introduced_client(network, "a")
    small: list[Any] = []
    client.callRemote(Deliver, batch=b"\x00" * (200 * 1024)).addBoth(small.append)
    link.pump.flush()
    assert small[0].check(BadBatch) and not link.closed
    big: list[Any] = []
    client.callRemote(Deliver, batch=b"\x00" * (400 * 1024)).addBoth(big.append)
    link.pump.flush()
    assert link.closed
    lines = [formatEvent(e) for e in logged if "box of more than" in formatEvent(e)]
    assert len(lines) == 1
    assert lines[0].endswith(
        f": a box of more than {256 * 1024 + BOX_OVERHEAD} bytes (max_message_size); connection closed"
    )


def test_a_routed_answer_too_large_to_cross_is_a_fault(network, make_satellite) -> None:
    """The node that would send an answer its peer cannot read sends a fault instead; the link stays."""
    from test_directory import call

    a = make_satellite("a", "rec")
    make_satellite("c", "calc", **LIMITS)
    network.link("a", "c")
    assert call(network, a, "calc.ops.add", "x" * 100, "y" * 100) == "x" * 100 + "y" * 100
    big = "z" * (150 * 1024)
    with pytest.raises(Fault) as raised:
        call(network, a, "calc.ops.add", big, big)
    assert raised.value.faultCode == -32603 and "too large to route" in raised.value.faultString
    assert network.between("a", "c")


def test_a_connection_that_never_says_hello_is_closed_after_request_timeout(
    network, make_satellite, reactor, logged
) -> None:
    make_satellite("a", "rec", request_timeout=7.0)
    silent = network.connect(Peer(), "a", ("10.0.0.9", 5001))
    _, talking = introduced_client(network, "a")
    reactor.advance(6.9)
    assert not silent.closed
    reactor.advance(0.2)
    silent.pump.flush()
    assert silent.closed and not talking.closed
    assert any("no Hello within 7s (request_timeout)" in formatEvent(e) for e in logged)


class _Stuck:
    """An up link that never sends: its outbox only fills."""

    def wake(self) -> None:
        pass

    def send_now(self) -> None:
        pass


def test_a_peer_past_the_window_is_refused_and_cut_off(network, make_satellite) -> None:
    """
    While a node is congested it parks the batches it cannot take yet: a
    peer that keeps sending past the window (8 unanswered) gets the fatal
    WINDOW_EXCEEDED and loses the link, so what is parked stays bounded.
    """
    from co2._message import encode_message
    from co2.protocol import WindowExceeded, encode_batch, encode_envelope
    from relay._links import WINDOW

    satellite = make_satellite("a", "rec", outbox_limit=2)
    router = satellite.relay.router
    router.attach("peer:stuck", _Stuck())
    satellite.plugins[0].send("fills the stuck link's outbox")
    assert router.congested
    client, link = introduced_client(network, "a")
    body = encode_message({"data": 1, "host_id": "9@10.0.0.9:2004"})
    answers: list[Any] = []
    for n in range(WINDOW + 1):
        batch = encode_batch([encode_envelope(f"w.{n}", 3, body)])
        client.callRemote(Deliver, batch=batch).addBoth(answers.append)
    link.pump.flush()
    assert answers[0].check(WindowExceeded)
    assert f"a peer may have at most {WINDOW}" in answers[0].getErrorMessage()
    assert link.closed and len(answers) == WINDOW + 1  # the parked ones end with the connection
