"""The HTTP listener's defences, one test for each way it was found to fail."""

from __future__ import annotations

from typing import Any
from xmlrpc.client import Fault

import pytest
from test_http import HOST, PEER, Connection, call, post, values
from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock

from co2 import faults
from co2._auth import basic_authorization, make_authentication
from co2._xmlrpc import dump_call, parse_response
from satellites import Dispatcher, Method, MethodRegistry, make_server


@pytest.fixture
def reactor() -> MemoryReactorClock:
    return MemoryReactorClock()


@pytest.fixture
def pending() -> list[Deferred[Any]]:
    return []


def server(reactor: MemoryReactorClock, pending: list[Deferred[Any]], **settings: Any) -> Any:
    registry = MethodRegistry()
    ran: list[str] = []

    def later() -> Deferred[str]:
        d: Deferred[str] = Deferred()
        pending.append(d)
        return d

    def big(size: int) -> str:
        return "x" * size

    def run(word: str) -> str:
        ran.append(word)
        return word

    registry.add(Method.of("add", lambda x, y: x + y))
    registry.add(Method.of("later", later))
    registry.add(Method.of("big", big))
    registry.add(Method.of("run", run))
    limit = settings.pop("max_response_size", None)
    factory = make_server(Dispatcher(registry, max_response_size=limit), 4096, reactor, **settings)
    factory.ran = ran
    return factory


def test_closing_unregisters_the_producer_first(
    reactor: MemoryReactorClock, pending: list[Deferred[Any]]
) -> None:
    """
    Connection: close unregisters the channel as the transport's producer before closing
    (the old lane closed while registered, and Twisted resumed it instead of closing: CLOSE-WAIT for ever).
    """
    connection = Connection(server(reactor, pending))
    connection.send(call("big", 100_000, extra=b"Connection: close\r\n"))
    assert connection.transport.disconnecting
    assert connection.transport.producer is None


def test_a_closing_connection_that_does_not_drain_is_aborted(
    reactor: MemoryReactorClock, pending: list[Deferred[Any]]
) -> None:
    """A connection closing after a large answer its client never reads is aborted after idle_timeout."""
    connection = Connection(server(reactor, pending, idle_timeout=5))
    connection.send(call("big", 100_000, extra=b"Connection: close\r\n"))
    assert not connection.transport.disconnected
    reactor.advance(5)
    assert connection.transport.disconnected  # aborted
    assert reactor.getDelayedCalls() == []


def test_nothing_is_read_once_the_connection_is_closing(
    reactor: MemoryReactorClock, pending: list[Deferred[Any]]
) -> None:
    """
    After a Connection: close request with a slow answer, the connection is not read and
    what comes is not held
    (the old lane kept appending to its buffer: four connections grew the node by 209 MiB).
    """
    connection = Connection(server(reactor, pending))
    connection.send(call("later", extra=b"Connection: close\r\n"))
    assert connection.transport.producerState == "paused"
    channel = connection.protocol
    for _ in range(100):
        connection.send(b"x" * 65536)
    assert not channel._waiting and not channel._framing._parts and len(channel._framing._line) < 100
    pending[0].callback("done")
    assert values(connection) == ["done"]
    assert connection.transport.disconnecting


def test_a_client_that_does_not_read_is_aborted(
    reactor: MemoryReactorClock, pending: list[Deferred[Any]]
) -> None:
    """
    While the transport's buffer stays full the connection is not read, and after idle_timeout it is aborted
    (the old lane had no write timeout: a client that never read held its answer and its slot for ever).
    """
    factory = server(reactor, pending, idle_timeout=10, max_connections=1)
    connection = Connection(factory)
    connection.send(call("big", 100_000))
    connection.protocol.pauseProducing()  # what a transport does when its buffer is full
    assert connection.transport.producerState == "paused"
    connection.send(call("add", 1, 1))
    reactor.advance(9)
    assert not connection.transport.disconnected
    reactor.advance(1)
    assert connection.transport.disconnected
    connection.protocol.connectionLost(None)
    fresh = Connection(factory)
    fresh.send(call("add", 2, 2))
    assert values(fresh) == [4]


def test_a_client_that_reads_slowly_keeps_its_connection(
    reactor: MemoryReactorClock, pending: list[Deferred[Any]]
) -> None:
    """A client that takes its answers, however slowly, is not aborted; its later requests are answered."""
    connection = Connection(server(reactor, pending, idle_timeout=10))
    for _ in range(5):
        connection.protocol.pauseProducing()
        reactor.advance(9)
        connection.protocol.resumeProducing()
    connection.send(call("add", 1, 1))
    assert not connection.transport.disconnected
    assert values(connection) == [2]


def test_request_timeout_holds_for_every_request(
    reactor: MemoryReactorClock, pending: list[Deferred[Any]]
) -> None:
    """
    After a GET and a call on the same connection, a trickled head still gets 408 within request_timeout
    (the old lane stopped timing once it handed a connection to twisted.web: 40 s with request_timeout = 3).
    """
    connection = Connection(server(reactor, pending, request_timeout=3, idle_timeout=60))
    connection.send(b"GET /RPC2 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" + call("add", 1, 1))
    assert [status for status, _, _ in connection.responses()] == [405, 200]
    for byte in call("add", 2, 2)[:10]:
        connection.send(bytes([byte]))
        reactor.advance(0.5)
    reactor.advance(1)
    ((status, _, body),) = connection.responses()
    assert status == 408 and b"within 3s" in body and connection.transport.disconnecting


def test_a_single_answer_over_max_response_size_is_a_fault(
    reactor: MemoryReactorClock, pending: list[Deferred[Any]]
) -> None:
    """An answer longer than max_response_size is fault -32005, naming the method and the limit."""
    connection = Connection(server(reactor, pending, max_response_size=10_000))
    connection.send(call("big", 100) + call("big", 20_000))
    small, large = connection.responses()
    assert parse_response(small[2]) == "x" * 100
    with pytest.raises(Fault) as refused:
        parse_response(large[2])
    assert refused.value.faultCode == faults.RESPONSE_TOO_LARGE
    assert refused.value.faultString == "the answer to big would be over max_response_size (10000 bytes)"


def test_a_multicall_stops_as_soon_as_its_answers_pass_the_bound(
    reactor: MemoryReactorClock, pending: list[Deferred[Any]]
) -> None:
    """
    A multicall of many large answers is fault -32005 and the calls after the bound are never made
    (the old node answered 40 x co2.watch(0, 0) with 180 MB).
    """
    factory = server(reactor, pending, max_response_size=50_000)
    connection = Connection(factory)
    calls = [{"methodName": "big", "params": [10_000]} for _ in range(12)]
    calls.insert(3, {"methodName": "run", "params": ["early"]})
    calls.append({"methodName": "run", "params": ["late"]})
    connection.send(post(dump_call("system.multicall", (calls,))))
    ((_, _, body),) = connection.responses()
    with pytest.raises(Fault) as refused:
        parse_response(body)
    assert refused.value.faultCode == faults.RESPONSE_TOO_LARGE
    assert "system.multicall" in refused.value.faultString
    assert factory.ran == ["early"]


def test_a_multicall_of_slow_answers_is_bounded_too(
    reactor: MemoryReactorClock, pending: list[Deferred[Any]]
) -> None:
    """Answers that come later count as they come; past the bound the rest are cancelled, a fault sent."""
    connection = Connection(server(reactor, pending, max_response_size=50_000))
    calls = [{"methodName": "later", "params": []} for _ in range(3)]
    connection.send(post(dump_call("system.multicall", (calls,))))
    pending[0].callback("x" * 30_000)
    pending[1].callback("y" * 30_000)
    assert pending[2].called  # cancelled
    ((_, _, body),) = connection.responses()
    with pytest.raises(Fault, match="over max_response_size"):
        parse_response(body)


def test_a_multicall_within_the_bound_is_answered_whole(
    reactor: MemoryReactorClock, pending: list[Deferred[Any]]
) -> None:
    """Under max_response_size a multicall mixing ready and later answers is answered in order."""
    connection = Connection(server(reactor, pending, max_response_size=50_000))
    calls = [{"methodName": "later", "params": []}, {"methodName": "add", "params": [1, 2]}]
    connection.send(post(dump_call("system.multicall", (calls,))))
    pending[0].callback("slow")
    assert values(connection) == [[["slow"], [3]]]


@pytest.mark.parametrize(
    "content_type", [b"text/plain", b"application/x-www-form-urlencoded", b"multipart/form-data"]
)
def test_a_body_a_browser_form_can_send_is_refused(
    reactor: MemoryReactorClock, pending: list[Deferred[Any]], content_type: bytes
) -> None:
    """
    A POST whose body is not XML gets 415 and runs nothing
    (the old node ran ham.spam.call_me for any page that posted text/plain).
    """
    factory = server(reactor, pending)
    connection = Connection(factory)
    connection.send(call("run", "csrf").replace(b"text/xml", content_type))
    ((status, headers, _),) = connection.responses()
    assert status == 415 and factory.ran == []
    assert headers[b"x-content-type-options"] == b"nosniff"


def test_an_origin_not_allowed_is_refused(reactor: MemoryReactorClock, pending: list[Deferred[Any]]) -> None:
    """A request from a web page of another origin gets 403 and runs nothing; an allowed origin is served."""
    factory = server(reactor, pending, allowed_origins=["https://dash.example"])
    connection = Connection(factory)
    connection.send(call("run", "csrf", extra=b"Origin: http://evil.example\r\n"))
    connection.send(call("run", "ok", extra=b"Origin: https://DASH.example\r\n"))
    refused, served = connection.responses()
    assert refused[0] == 403 and b"origin" in refused[2]
    assert served[0] == 200 and factory.ran == ["ok"]


@pytest.mark.parametrize(("host", "allowed_hosts", "status"), [
    (b"evil.example:2004", (), 403),
    (b"127.0.0.1:2004", (), 200),
    (b"127.0.0.1", (), 200),
    (b"localhost:2004", (), 200),
    (b"LOCALHOST", (), 200),
    (b"127.0.0.2:2004", (), 403),
    (b"sat1.example:2004", ("sat1.example",), 200),
    (b"evil.example", ("sat1.example",), 403),
    (b"evil.example", ("*",), 200),
], ids=[
    "rebound", "own", "own-no-port", "localhost", "localhost-caps", "other-ip", "allowed", "not-allowed",
    "any",
])
def test_the_host_must_name_the_listener(
    reactor: MemoryReactorClock, pending: list[Deferred[Any]], host: bytes, allowed_hosts: tuple[str, ...],
    status: int,
) -> None:
    """A Host naming neither the address reached, localhost on loopback, nor an allowed name gets 403."""
    connection = Connection(server(reactor, pending, allowed_hosts=allowed_hosts))
    connection.send(call("add", 1, 1).replace(b"Host: 127.0.0.1:2004", b"Host: " + host))
    ((got, _, _),) = connection.responses()
    assert got == status


def test_http_1_0_without_host_is_served(reactor: MemoryReactorClock, pending: list[Deferred[Any]]) -> None:
    """HTTP/1.0 has no Host header to check (and no browser sends such a request): it is answered."""
    body = dump_call("add", (1, 2))
    connection = Connection(server(reactor, pending))
    connection.send(
        b"POST /RPC2 HTTP/1.0\r\nContent-Type: text/xml\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    assert values(connection) == [3]


def test_the_listener_address_is_what_the_host_is_checked_against() -> None:
    """The channel takes the address the client reached from its transport."""
    connection = Connection(server(MemoryReactorClock(), []))
    assert connection.protocol.local_host == HOST.host
    assert connection.protocol.caller == (PEER.host, PEER.port)


class PausingTransport:
    """
    What Twisted's TCP transport does with its producer: pause it once more than 64 KiB wait unsent,
    resume it only when all of it was sent.
    """

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.unsent = 0
        transport = connection.transport
        self.write = transport.write

        def write(data: bytes) -> None:
            self.write(data)
            self.unsent += len(data)
            if self.unsent > 64 * 1024 and transport.producer is not None:
                transport.producer.pauseProducing()

        transport.write = write  # type: ignore[method-assign]

    def take(self, size: int) -> None:
        """The client read ``size`` bytes; once nothing is left unsent, the transport resumes its producer."""
        if self.unsent == 0:
            return
        self.unsent = max(0, self.unsent - size)
        producer = self.connection.transport.producer
        if self.unsent == 0 and producer is not None:
            producer.resumeProducing()


def test_a_client_reading_a_big_answer_steadily_gets_all_of_it(
    reactor: MemoryReactorClock, pending: list[Deferred[Any]]
) -> None:
    """
    A large answer goes out a piece at a time, so a client reading steadily (100 KiB each 0.5 s here) is never
    taken for stuck; written whole, it would wait 5 s for the buffer to empty and be aborted at 2 s.
    """
    connection = Connection(server(reactor, pending, idle_timeout=2, max_response_size=None))
    link = PausingTransport(connection)
    connection.send(call("big", 1_000_000))
    for _ in range(16):  # 8 s: about ten times idle_timeout
        reactor.advance(0.5)
        link.take(100 * 1024)
    assert link.unsent == 0 and not connection.transport.disconnected
    assert values(connection) == ["x" * 1_000_000]


def test_idle_time_counts_from_the_last_answer(
    reactor: MemoryReactorClock, pending: list[Deferred[Any]]
) -> None:
    """A connection whose slow answer was written at t is idle from t, not from when its request was read."""
    connection = Connection(server(reactor, pending, idle_timeout=4))
    connection.send(call("later"))
    reactor.advance(3)
    pending[0].callback("slow")
    reactor.advance(2)
    assert not connection.transport.disconnecting
    connection.send(call("add", 1, 1))
    assert values(connection) == ["slow", 2]
    reactor.advance(4)
    assert connection.transport.disconnecting


def test_a_call_whose_client_left_is_cancelled(
    reactor: MemoryReactorClock, pending: list[Deferred[Any]], logged: list[dict[str, Any]]
) -> None:
    """When the connection is lost, the calls it still waits for are cancelled, quietly."""
    connection = Connection(server(reactor, pending))
    connection.send(call("later") + call("later"))
    connection.protocol.connectionLost(None)
    assert all(d.called for d in pending)
    assert connection.transport.value() == b""
    assert [e for e in logged if e.get("log_failure") is not None] == []


def test_a_call_whose_client_left_is_cancelled_after_its_login(
    reactor: MemoryReactorClock, pending: list[Deferred[Any]]
) -> None:
    """A call made with credentials (answered through the checkers' Deferred) is cancelled too."""
    authentication = make_authentication(["memory:alice:secret"], ["*"], reactor)
    connection = Connection(server(reactor, pending, authentication=authentication))
    login = b"Authorization: " + basic_authorization("alice", "secret") + b"\r\n"
    connection.send(call("later", extra=login))
    assert len(pending) == 1 and not pending[0].called
    connection.protocol.connectionLost(None)
    assert pending[0].called
    assert connection.transport.value() == b""


def test_an_empty_host_is_checked_too(
    reactor: MemoryReactorClock, pending: list[Deferred[Any]]
) -> None:
    """An empty Host header names no allowed host: 403, even as the first request of a connection."""
    connection = Connection(server(reactor, pending))
    connection.send(call("add", 1, 1).replace(b"Host: 127.0.0.1:2004", b"Host: "))
    ((status, _, _),) = connection.responses()
    assert status == 403


def test_the_nodes_own_origin_is_let_in(reactor: MemoryReactorClock, pending: list[Deferred[Any]]) -> None:
    """A page the node served (/methods) calls it from its own origin; another origin still gets 403."""
    factory = server(reactor, pending)
    connection = Connection(factory)
    connection.send(call("run", "own", extra=b"Origin: http://127.0.0.1:2004\r\n"))
    connection.send(call("run", "other-port", extra=b"Origin: http://127.0.0.1:2005\r\n"))
    connection.send(call("run", "evil", extra=b"Origin: http://evil.example\r\n"))
    own, other_port, evil = connection.responses()
    assert own[0] == 200 and other_port[0] == 403 and evil[0] == 403
    assert factory.ran == ["own"]
