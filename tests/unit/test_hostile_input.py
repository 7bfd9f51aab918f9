"""Hostile input, in memory: the reader, the dispatcher, the listener and AMP links refuse it cleanly."""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from xmlrpc.client import Fault

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.protocols import amp
from twisted.test import iosim

from co2 import faults
from co2._xmlrpc import XMLRPCParseError, parse_call, parse_response
from co2.protocol import Announce, BadArguments, Hello, UnexpectedHello
from co2.testing import TestReactor
from relay import Relay
from relay._links import LinkProtocol
from satellites import Config, Dispatcher, Method, MethodRegistry, make_server
from satellites._http import MAX_HEAD

PEER = IPv4Address("TCP", "10.1.2.3", 40404)


@pytest.mark.parametrize("encoding", ["x-bogus", "rot13", "base64"])
def test_a_document_in_an_unknown_encoding_is_a_parse_error(encoding: str) -> None:
    """An XML declaration naming no text encoding Python has is fault -32700, not an exception."""
    declaration = f"<?xml version='1.0' encoding='{encoding}'?>".encode()
    response = b"<methodResponse><params><param><value>1</value></param></params></methodResponse>"
    for parse, body in (
        (parse_call, b"<methodCall><methodName>m</methodName></methodCall>"),
        (parse_response, response),
    ):
        with pytest.raises(XMLRPCParseError) as refused:
            parse(declaration + body)
        assert refused.value.code == faults.PARSE_ERROR
        assert "unsupported encoding" in str(refused.value)


def echo(*values: Any) -> list[Any]:
    return list(values)


@pytest.fixture
def dispatcher() -> Dispatcher:
    registry = MethodRegistry()
    registry.add(Method.of("p.m.echo", echo, owner="p"))
    registry.add(Method.of("server.echo", echo))
    return Dispatcher(registry)


@pytest.mark.parametrize("value", [
    float("nan"), float("inf"), -float("inf"), 2**63, -(2**63) - 1, 2**64, Decimal("1.5"),
    [1, {"x": [float("nan")]}], {"deep": [[[2**70]]]},
])
def test_a_plugin_is_not_called_with_what_co2_cannot_carry(dispatcher: Dispatcher, value: Any) -> None:
    """NaN, an infinity, an int beyond 64 bits or a Decimal, however nested, is fault -32602."""
    with pytest.raises(Fault) as refused:
        dispatcher.invoke(None, "p.m.echo", ("fine", value))
    assert refused.value.faultCode == faults.INVALID_PARAMS
    assert refused.value.faultString.startswith("p.m.echo: ")


def test_a_plugin_gets_every_value_co2_carries(dispatcher: Dispatcher) -> None:
    """The limits themselves, and every other XML-RPC type, reach the plugin as they are."""
    params = (2**63 - 1, -(2**63), 1.5, True, None, b"\0", "s", [{"k": [1]}], {})
    assert dispatcher.invoke(None, "p.m.echo", params) == list(params)


def test_server_methods_are_not_checked(dispatcher: Dispatcher) -> None:
    """Only plugin methods are guarded: the server's own take their parameters as they come."""
    assert dispatcher.invoke(None, "server.echo", (2**64,)) == [2**64]


def test_a_head_too_long_in_one_read_is_refused() -> None:
    """A request head well over MAX_HEAD is refused with 431 even when it arrives in one read."""
    registry = MethodRegistry()
    registry.add(Method.of("add", lambda x, y: x + y))
    factory = make_server(Dispatcher(registry), 4096, MemoryReactorClock())
    transport = StringTransport(peerAddress=PEER)
    protocol = factory.buildProtocol(PEER)
    protocol.makeConnection(transport)
    padding = b"X-Padding: %s\r\n" % (b"p" * 60)
    protocol.dataReceived(
        b"POST / HTTP/1.1\r\nHost: h\r\n" + padding * (2 * MAX_HEAD // len(padding))
        + b"Content-Length: 0\r\n\r\n"
    )
    assert transport.value().startswith(b"HTTP/1.1 431 ")


def test_a_reader_failure_is_an_internal_error(monkeypatch: pytest.MonkeyPatch, logged: list[Any]) -> None:
    """Should the reader itself fail, the client still gets an answer: fault -32603."""
    from satellites import _responder as _resource

    def broken(body: bytes, max_depth: int) -> Any:
        raise RuntimeError("reader bug")

    monkeypatch.setattr(_resource, "parse_call", broken)
    answer = _resource.Responder(Dispatcher(MethodRegistry())).respond(b"<x/>", None)
    assert isinstance(answer, bytes)
    with pytest.raises(Fault) as fault:
        parse_response(answer)
    assert fault.value.faultCode == faults.INTERNAL_ERROR


class Listener(amp.AMP):
    """A listening node that answers Hello with ``node``."""

    node = "0123456789abcdef"

    @Hello.responder
    def hello(self, node: str, host_id: str, version: int, **credentials: Any) -> dict[str, Any]:
        return {"node": self.node, "host_id": "1@192.0.2.8:2004", "version": version}


def dialer(reactor: TestReactor, listener: amp.AMP) -> tuple[LinkProtocol, iosim.IOPump]:
    """A link this node dialled, connected to ``listener``."""
    client = LinkProtocol(Relay(Config(), reactor, lambda *args: None), "peer:test")
    _, _, pump = iosim.connectedServerAndClient(lambda: listener, lambda: client, greet=False)
    return client, pump


def test_a_hello_sent_to_the_dialer_is_refused(reactor: TestReactor) -> None:
    """The node that connects says Hello; one sent to it is refused with UNEXPECTED_HELLO."""
    listener = Listener()
    client, pump = dialer(reactor, listener)
    results: list[Any] = []
    listener.callRemote(Hello, node="n", host_id="1@192.0.2.8:2004", version=2).addBoth(results.append)
    pump.flush()
    assert results[0].check(UnexpectedHello)
    assert not client.introduced and client.owner.links == {}


def test_a_malformed_answer_to_hello_keeps_the_link_down(reactor: TestReactor) -> None:
    """A listener answering Hello with a node id holding a newline is refused: no link comes up."""
    listener = Listener()
    listener.node = "forged\nline"
    client, pump = dialer(reactor, listener)
    results: list[Any] = []
    client.say_hello().addBoth(results.append)
    pump.flush()
    assert results[0].check(BadArguments)
    assert not client.introduced and client.owner.links == {}


class Peer(Listener):
    """A listener that also takes announcements (and does nothing with them)."""

    @Announce.responder
    def announced(self, **_: Any) -> dict[str, Any]:
        return {}


def announce_from_a_peer(reactor: TestReactor, **announced: Any) -> tuple[Peer, LinkProtocol]:
    """A link this node dialled, up, over which the peer sends an Announce of itself with ``announced``."""
    listener = Peer()
    client, pump = dialer(reactor, listener)
    client.say_hello()
    pump.flush()
    reactor.advance(0)
    assert client.introduced
    listener.callRemote(Announce, node=listener.node, host_id="1@192.0.2.8:2004", version=5, hops=0,
                        ttl=60.0, **announced)
    pump.flush()
    return listener, client


def test_an_announce_with_a_malformed_neighbour_is_refused(reactor: TestReactor) -> None:
    """A neighbour that is not a node id refuses the whole Announce (fatal): the map takes nothing of it."""
    listener, client = announce_from_a_peer(reactor, methods=b"", neighbours=b"fine\nnot one")
    assert client.owner.links == {}  # refused, and the link closed
    assert listener.node not in client.owner.directory.topology.neighbours


def test_an_announce_without_neighbours_leaves_its_node_off_the_map(reactor: TestReactor) -> None:
    """A node that does not say its neighbours (an older one) is known, and flooded to, not mapped."""
    listener, client = announce_from_a_peer(reactor, methods=b"old.m.x")
    assert client.introduced
    directory = client.owner.directory
    assert directory.names() == {"old.m.x"}
    assert listener.node not in directory.topology.neighbours
