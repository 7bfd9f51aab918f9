"""The HTTP front end's connections: keep-alive, pipelining, framing, limits, flow control and time."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import formatEvent

from co2._admission import Admission
from co2._ratelog import LINES
from co2._xmlrpc import dump_call, parse_response
from satellites import Dispatcher, Method, MethodRegistry, make_server
from satellites._http import MAX_HEAD, MAX_HEADERS, MAX_PIPELINED, HTTPChannel, HTTPFactory

PEER = IPv4Address("TCP", "10.1.2.3", 40404)
HOST = IPv4Address("TCP", "127.0.0.1", 2004)


class Connection:
    """One connection to a listener, driven through memory."""

    def __init__(self, factory: Any) -> None:
        self.transport = StringTransport(peerAddress=PEER, hostAddress=HOST)
        self.protocol = factory.buildProtocol(PEER)
        self.protocol.makeConnection(self.transport)

    def send(self, data: bytes) -> None:
        self.protocol.dataReceived(data)

    def responses(self) -> list[tuple[int, dict[bytes, bytes], bytes]]:
        """Every complete response written so far (status, headers, body), consumed."""
        raw = self.transport.value()
        self.transport.clear()
        found = []
        while raw:
            head, _, rest = raw.partition(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            status = int(lines[0].split(b" ")[1])
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
            if status == 100:
                raw = rest
                continue
            length = int(headers.get(b"content-length", len(rest)))
            found.append((status, headers, rest[:length]))
            raw = rest[length:]
        return found


def post(body: bytes, path: bytes = b"/RPC2", extra: bytes = b"") -> bytes:
    return (
        b"POST %s HTTP/1.1\r\nHost: 127.0.0.1:2004\r\nContent-Type: text/xml\r\n"
        b"Content-Length: %d\r\n%s\r\n%s" % (path, len(body), extra, body)
    )


def call(method: str, *params: Any, extra: bytes = b"") -> bytes:
    return post(dump_call(method, params), extra=extra)


@pytest.fixture
def pending() -> list[Deferred[Any]]:
    return []


@pytest.fixture
def reactor() -> MemoryReactorClock:
    return MemoryReactorClock()


@pytest.fixture
def factory(reactor: MemoryReactorClock, pending: list[Deferred[Any]]) -> Any:
    registry = MethodRegistry()
    callers: list[Any] = []

    def later() -> Deferred[str]:
        d: Deferred[str] = Deferred()
        pending.append(d)
        return d

    def caller(who: Any) -> list[Any]:
        callers.append(who)
        return list(who)

    registry.add(Method.of("add", lambda x, y: x + y))
    registry.add(Method.of("later", later))
    registry.add(Method.of("caller", caller, takes_caller=True))
    return make_server(Dispatcher(registry), 4096, reactor)


def values(connection: Connection) -> list[Any]:
    return [parse_response(body) for status, _, body in connection.responses() if status == 200]


def test_keep_alive_answers_request_after_request(factory: Any) -> None:
    """One connection carries many calls, each answered with a Content-Length and kept open."""
    connection = Connection(factory)
    connection.send(call("add", 1, 2))
    ((status, headers, body),) = connection.responses()
    assert status == 200 and headers[b"content-type"] == b"text/xml; charset=utf-8"
    assert int(headers[b"content-length"]) == len(body) and b"date" in headers
    assert parse_response(body) == 3
    connection.send(call("add", 5, 6))
    assert values(connection) == [11]
    assert not connection.transport.disconnecting


def test_pipelined_requests_are_answered_in_order(factory: Any) -> None:
    """Several requests in one read are all answered, in order."""
    connection = Connection(factory)
    connection.send(b"".join(call("add", n, 1) for n in range(5)))
    assert values(connection) == [1, 2, 3, 4, 5]


def test_a_request_may_arrive_a_byte_at_a_time(factory: Any) -> None:
    """A head and body split into single bytes are put back together."""
    connection = Connection(factory)
    for byte in call("add", 20, 22):
        connection.send(bytes([byte]))
    assert values(connection) == [42]


def test_a_later_answer_holds_back_the_ones_after_it(factory: Any, pending: list[Deferred[Any]]) -> None:
    """An answer that is ready waits for the slower answers to requests before it."""
    connection = Connection(factory)
    connection.send(call("later") + call("add", 1, 1))
    assert connection.responses() == []
    pending[0].callback("done")
    assert values(connection) == ["done", 2]


def test_the_caller_is_the_connection_peer(factory: Any) -> None:
    """Methods that take the caller get the connection's peer address."""
    connection = Connection(factory)
    connection.send(call("caller"))
    assert values(connection) == [["10.1.2.3", 40404]]


def test_connection_close_is_honoured(factory: Any) -> None:
    """A request saying Connection: close gets its answer, then the connection closes."""
    connection = Connection(factory)
    connection.send(call("add", 1, 2, extra=b"Connection: close\r\n") + call("add", 3, 4))
    ((_, headers, body),) = connection.responses()
    assert headers[b"connection"] == b"close" and parse_response(body) == 3
    assert connection.transport.disconnecting


def test_a_body_over_the_limit_is_refused_unread(factory: Any) -> None:
    """A Content-Length over the limit gets 413 after the earlier answers, then the connection closes."""
    connection = Connection(factory)
    connection.send(call("add", 1, 1) + b"POST /RPC2 HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n")
    (first, refused) = connection.responses()
    assert parse_response(first[2]) == 2
    assert refused[0] == 413 and b"over 4096 bytes" in refused[2]
    assert connection.transport.disconnecting


def test_the_refusal_waits_for_slower_answers(factory: Any, pending: list[Deferred[Any]]) -> None:
    """A 413 is not written before the answer to an earlier, slower request."""
    connection = Connection(factory)
    connection.send(call("later") + b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999\r\n\r\n")
    assert connection.responses() == []
    pending[0].callback("first")
    statuses = [status for status, _, _ in connection.responses()]
    assert statuses == [200, 413]


def test_a_get_of_the_xmlrpc_path_is_not_allowed(factory: Any) -> None:
    """A GET of /RPC2 (no pages on this node) says only POST is allowed."""
    connection = Connection(factory)
    connection.send(b"GET /RPC2 HTTP/1.1\r\nHost: 127.0.0.1:2004\r\n\r\n")
    ((status, headers, _),) = connection.responses()
    assert status == 405 and headers[b"allow"] == b"POST"
    assert not connection.transport.disconnecting


def test_another_path_is_not_found(factory: Any) -> None:
    """A POST to a path that is not an XML-RPC endpoint gets 404."""
    connection = Connection(factory)
    connection.send(post(dump_call("add", (1, 2)), path=b"/other"))
    ((status, _, body),) = connection.responses()
    assert status == 404 and b"Nothing here" in body


@pytest.mark.parametrize("head", [
    b"POST /RPC2 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n",
    b"POST /RPC2 HTTP/1.0\r\nContent-Type: text/xml\r\nContent-Length: %d\r\n\r\n%s",
    b"POST /RPC2 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml\r\nExpect: 100-continue\r\n"
    b"Content-Length: %d\r\n\r\n%s",
    b"POST /RPC2?x=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml\r\nContent-Length: %d\r\n\r\n%s",
    b"POST / HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: Application/XML; charset=utf-8\r\n"
    b"content-length: %d\r\n\r\n%s",
], ids=["chunked", "http-1.0", "expect", "query", "lower-case"])
def test_other_request_forms_get_their_answer(factory: Any, head: bytes) -> None:
    """Chunked bodies, HTTP/1.0, Expect, query strings and lower-case names all get their XML-RPC answer."""
    body = dump_call("add", (2, 3))
    connection = Connection(factory)
    connection.send(head % (len(body), body))
    ((status, _, answer),) = connection.responses()
    assert status == 200 and parse_response(answer) == 5


def test_expect_100_continue_is_answered_before_the_body(factory: Any) -> None:
    """A client that waits for 100 Continue gets it once the head is read, and its answer after the body."""
    body = dump_call("add", (2, 3))
    connection = Connection(factory)
    connection.send(
        b"POST /RPC2 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml\r\n"
        b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body)
    )
    assert connection.transport.value() == b"HTTP/1.1 100 Continue\r\n\r\n"
    connection.send(body)
    assert values(connection) == [5]


@pytest.mark.parametrize(("head", "status", "says"), [
    (b"POST /RPC2 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", 400,
     b"Duplicate Content-Length"),
    (b"POST /RPC2 HTTP/1.1\r\nHost: a\r\nContent-Length: -5\r\n\r\n", 400, b"Content-Length"),
    (b"POST /RPC2 HTTP/1.1\r\nHost: a\r\nContent-Length: five\r\n\r\n", 400, b"Content-Length"),
    (b"POST /RPC2 HTTP/1.1\r\nHost: a\r\nno colon here\r\nContent-Length: 0\r\n\r\n", 400, b"Malformed"),
    (b"POST  /RPC2 HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", 400, b"Malformed"),
    (b"POST /RPC2 HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nX-Pad: y\nTransfer-Encoding: chunked\r\n\r\n",
     400, b"CR"),
    (b"POST /RPC2 HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nX-Pad: y\rTransfer-Encoding: chunked\r\n\r\n",
     400, b"LF"),
    (b"POST /RPC2 HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n", 400,
     b"Transfer-Encoding"),
    (b"POST /RPC2 HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\nContent-Length: 0\r\n\r\n", 400, b"whitespace"),
    (b"POST /RPC2 HTTP/1.1\r\nHost: a\r\nX-A: b\x00c\r\nContent-Length: 0\r\n\r\n", 400, b"header value"),
    (b"POST /RPC2 HTTP/1.1\r\nHost: a\r\nX-A: b\x01c\r\nContent-Length: 0\r\n\r\n", 400, b"header value"),
    (b"POST /RPC2 HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 400, b"needs a Host"),
    (b"POST /RPC2 HTTP/1.1\r\nHost: a\r\nHost: b\r\nContent-Length: 0\r\n\r\n", 400, b"More than one Host"),
    (b"\r\nPOST /RPC2 HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", 400, b"empty line"),
    (b"POST /RPC2 HTTP/2.0\r\nHost: a\r\nContent-Length: 0\r\n\r\n", 505, b"HTTP/1.1"),
    (b"POST /RPC2 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501,
     b"chunked"),
    (b"POST http://a/RPC2 HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", 400, b"must be a path"),
    (b"POST /RPC2 HTTP/1.1\r\nHost: a\r\nExpect: magic\r\nContent-Length: 0\r\n\r\n", 417, b"100-continue"),
], ids=[
    "two-lengths", "negative", "not-a-number", "no-colon", "double-space", "bare-lf", "bare-cr",
    "length-and-chunked", "obs-fold", "nul", "control", "no-host", "two-hosts", "empty-line-first", "http-2",
    "gzip", "absolute-form", "expect-other",
])
def test_what_rfc_9112_refuses_is_refused_and_closed(
    factory: Any, head: bytes, status: int, says: bytes
) -> None:
    """Each malformed or ambiguous head gets its 4xx (or 5xx) saying why, and the connection closes."""
    connection = Connection(factory)
    connection.send(head + call("add", 1, 1))
    ((got, headers, body),) = connection.responses()
    assert (got, headers[b"connection"]) == (status, b"close")
    assert says in body
    assert connection.transport.disconnecting


def test_a_smuggled_request_is_never_answered(factory: Any) -> None:
    """A second request hidden in a body that another parser would frame differently is never run."""
    hidden = call("caller")
    connection = Connection(factory)
    connection.send(
        b"POST /RPC2 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml\r\nContent-Length: 4\r\n"
        b"X-Pad: y\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(hidden), hidden)
    )
    assert [status for status, _, _ in connection.responses()] == [400]


def test_a_head_that_never_ends_is_refused(factory: Any) -> None:
    """A head longer than MAX_HEAD with no end is refused with 431, not buffered for ever."""
    connection = Connection(factory)
    for _ in range(4):
        connection.send(b"POST /RPC2 HTTP/1.1\r\n" + b"X-Long: " + b"a" * (MAX_HEAD // 3))
    ((status, _, _),) = connection.responses()
    assert status == 431 and connection.transport.disconnecting


def test_a_whole_head_over_the_limit_is_refused(factory: Any) -> None:
    """A complete head one byte over MAX_HEAD gets 431; one at the limit is answered."""
    request = call("add", 1, 1)
    head, _, body = request.partition(b"\r\n\r\n")
    pad = MAX_HEAD - len(head) - 4 - len(b"\r\nX-Pad: ")
    at_limit = head + b"\r\nX-Pad: " + b"p" * pad + b"\r\n\r\n" + body
    assert len(at_limit) - len(body) == MAX_HEAD
    connection = Connection(factory)
    connection.send(at_limit)
    assert values(connection) == [2]
    over = head + b"\r\nX-Pad: " + b"p" * (pad + 1) + b"\r\n\r\n" + body
    connection.send(over)
    ((status, _, _),) = connection.responses()
    assert status == 431


def test_too_many_header_lines_are_refused(factory: Any) -> None:
    """More than MAX_HEADERS header lines get 431."""
    connection = Connection(factory)
    connection.send(call("add", 1, 1, extra=b"X: y\r\n" * MAX_HEADERS))
    ((status, _, body),) = connection.responses()
    assert status == 431 and b"header lines" in body


def test_requests_after_a_page_are_answered_in_order(factory: Any) -> None:
    """A call, then a GET, then a call: three answers in request order, on one connection."""
    connection = Connection(factory)
    connection.send(call("add", 1, 1) + b"GET /RPC2 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" + call("add", 2, 2))
    statuses = [(status, body) for status, _, body in connection.responses()]
    assert [status for status, _ in statuses] == [200, 405, 200]
    assert parse_response(statuses[2][1]) == 4


def test_a_get_after_a_slow_call_waits_for_it(factory: Any, pending: list[Deferred[Any]]) -> None:
    """A GET after a slow call is answered only after the slow call."""
    connection = Connection(factory)
    connection.send(call("later") + b"GET /RPC2 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert connection.responses() == []
    pending[0].callback("slow")
    assert [status for status, _, _ in connection.responses()] == [200, 405]


def test_nothing_after_a_chunked_request_is_run(factory: Any) -> None:
    """A chunked request is answered and the connection closed: a request after it is not run."""
    body = dump_call("add", (2, 3))
    connection = Connection(factory)
    connection.send(
        b"POST /RPC2 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(body), body) + call("caller")
    )
    ((_, headers, answer),) = connection.responses()
    assert parse_response(answer) == 5 and headers[b"connection"] == b"close"


@pytest.mark.parametrize(("head", "status"), [
    (b"GET /RPC2 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n", 400),
    (b"POST /RPC2 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: upgrade\r\nUpgrade: x\r\n"
     b"Content-Length: 4\r\n\r\nabcd", 400),
    (b"CONNECT /RPC2 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 4\r\n\r\nabcd", 405),
], ids=["websocket", "upgrade-with-body", "connect"])
def test_a_protocol_switch_is_refused_and_nothing_after_it_is_read(
    factory: Any, head: bytes, status: int
) -> None:
    """Upgrade and CONNECT (bodies llhttp would leave unread) are refused; nothing after is a request."""
    connection = Connection(factory)
    connection.send(head + call("caller"))
    ((got, headers, _),) = connection.responses()
    assert got == status and headers[b"connection"] == b"close"


def test_too_many_unanswered_requests_stop_reading(factory: Any, pending: list[Deferred[Any]]) -> None:
    """Past MAX_PIPELINED unanswered requests the connection is read no further until they are answered."""
    connection = Connection(factory)
    connection.send(b"".join(call("later") for _ in range(MAX_PIPELINED)))
    assert connection.transport.producerState == "paused"
    for d in pending:
        d.callback(1)
    assert connection.transport.producerState == "producing"
    assert len(connection.responses()) == MAX_PIPELINED


def test_an_idle_connection_is_closed(factory: Any, reactor: MemoryReactorClock) -> None:
    """A connection idle for the site's timeout is closed; activity puts that off."""
    connection = Connection(factory)
    timeout = factory.idle_timeout
    reactor.advance(timeout - 1)
    connection.send(call("add", 1, 1))
    reactor.advance(2)
    assert not connection.transport.disconnecting
    reactor.advance(timeout)
    assert connection.transport.disconnecting


def test_an_answer_for_a_closed_connection_is_dropped(factory: Any, pending: list[Deferred[Any]]) -> None:
    """A slow answer that arrives after the client left is dropped quietly."""
    connection = Connection(factory)
    connection.send(call("later"))
    connection.protocol.connectionLost(None)
    connection.protocol.transport = None
    pending[0].callback("late")
    assert connection.transport.value() == b""


def test_the_channel_is_the_front_end(factory: Any) -> None:
    """The listener's factory makes HTTPChannel connections."""
    assert isinstance(factory.buildProtocol(PEER), HTTPChannel)


def test_the_listener_does_not_log_each_start(factory: Any) -> None:
    """Like the site before it, the listener's factory logs no start and stop lines."""
    assert factory.noisy is False


def limited(reactor: MemoryReactorClock, **limits: Any) -> Any:
    registry = MethodRegistry()
    registry.add(Method.of("add", lambda x, y: x + y))
    registry.add(Method.of("echo", lambda value: value))
    return make_server(Dispatcher(registry), 4096, reactor, **limits)


def test_a_request_that_does_not_arrive_whole_in_time_gets_408(reactor: MemoryReactorClock) -> None:
    """A request trickled in slower than request_timeout is answered 408 and the connection closed."""
    factory = limited(reactor, request_timeout=5, idle_timeout=60)
    connection = Connection(factory)
    request = call("add", 1, 2)
    for byte in request[:40]:
        connection.send(bytes([byte]))
        reactor.advance(0.5)
    assert connection.transport.disconnecting
    ((status, headers, body),) = connection.responses()
    assert status == 408 and headers[b"connection"] == b"close" and b"within 5s" in body


def test_whole_requests_in_time_keep_the_connection(reactor: MemoryReactorClock) -> None:
    """Requests that each arrive whole in time keep the connection open past request_timeout."""
    factory = limited(reactor, request_timeout=5, idle_timeout=60)
    connection = Connection(factory)
    for n in range(10):
        connection.send(call("add", n, 1))
        reactor.advance(2)
    assert len(values(connection)) == 10
    assert not connection.transport.disconnecting


def test_the_idle_timeout_is_configurable(reactor: MemoryReactorClock) -> None:
    """idle_timeout bounds how long a connection with no request stays open."""
    factory = limited(reactor, idle_timeout=3)
    connection = Connection(factory)
    reactor.advance(2.9)
    assert not connection.transport.disconnecting
    reactor.advance(0.2)
    assert connection.transport.disconnecting


def test_connections_past_the_limit_get_503(reactor: MemoryReactorClock) -> None:
    """Past max_connections a new connection is answered 503 and closed; a closed one makes room."""
    factory = limited(reactor, max_connections=2)
    first, second = Connection(factory), Connection(factory)
    third = Connection(factory)
    ((status, headers, _),) = third.responses()
    assert status == 503 and headers[b"connection"] == b"close"
    assert third.transport.disconnecting
    first.protocol.connectionLost(None)
    fourth = Connection(factory)
    fourth.send(call("add", 2, 2))
    assert values(fourth) == [4]
    second.send(call("add", 1, 1))
    assert values(second) == [2]


def refusal_lines(events: list[dict[str, Any]]) -> list[str]:
    """The lines about refused connections among ``events``."""
    return [formatEvent(e) for e in events if e.get("log_namespace") == "co2.limits"]


def test_refused_connections_are_logged_a_few_at_a_time(
    reactor: MemoryReactorClock, logged: list[dict[str, Any]]
) -> None:
    """A flood of refused connections gives LINES warnings, then one counting the others after 10 s."""
    factory = limited(reactor, max_connections=1)
    Connection(factory)
    for _ in range(50):
        Connection(factory)
    one = "the XML-RPC listener: refused a connection: 1 already open (max_connections)"
    assert refusal_lines(logged) == [one] * LINES
    reactor.advance(10)
    assert refusal_lines(logged)[LINES:] == [
        f"the XML-RPC listener: {50 - LINES} more connection(s) refused within 10s: 1 already open "
        "(max_connections)"
    ]
    counted = [e["count"] for e in logged if e.get("log_namespace") == "co2.limits" and "count" in e]
    assert counted == [50 - LINES]
    Connection(factory)
    assert refusal_lines(logged)[-1] == one
    assert factory.admission.refused == 51


def test_a_listener_that_stops_logs_its_counts_and_leaves_no_timer(
    reactor: MemoryReactorClock, logged: list[dict[str, Any]]
) -> None:
    """When the listening port stops, the refusals held back are counted at once and no timer is left."""
    factory = limited(reactor, max_connections=1)
    factory.doStart()
    Connection(factory)
    idle = list(reactor.getDelayedCalls())  # the admitted connection's idle timer
    for _ in range(LINES + 3):
        Connection(factory)
    assert len(reactor.getDelayedCalls()) == len(idle) + 1
    factory.doStop()
    assert refusal_lines(logged)[-1].startswith("the XML-RPC listener: 3 more connection(s) refused")
    assert reactor.getDelayedCalls() == idle


class Broken:
    """A router whose every answer fails: a bug that a client could set off with each request."""

    def answer(self, request: Any, channel: Any) -> Deferred[Any]:
        return fail(ZeroDivisionError("a bug"))


def test_answers_that_fail_are_logged_a_few_at_a_time(
    reactor: MemoryReactorClock, logged: list[dict[str, Any]]
) -> None:
    """A request that sets off a bug, sent again and again: LINES tracebacks, then one count."""
    factory = HTTPFactory(Broken(), reactor, Admission(100, "test", reactor), 4096)
    for _ in range(40):
        Connection(factory).send(call("add", 1, 2))
    failures = [e for e in logged if e.get("log_namespace") == "co2.http"]
    assert len(failures) == LINES and all(e["log_failure"].check(ZeroDivisionError) for e in failures)
    reactor.advance(10)
    last = [e for e in logged if e.get("log_namespace") == "co2.http"][-1]
    assert "log_failure" not in last
    assert formatEvent(last) == (
        f"answers failed: {40 - LINES} more within 10s not logged one by one; the last: answering a request"
    )


def test_the_nesting_limit_is_configurable(reactor: MemoryReactorClock) -> None:
    """A document nesting deeper than max_depth gets a -32700 fault; one within it is answered."""
    factory = limited(reactor, max_depth=12)
    connection = Connection(factory)
    connection.send(call("echo", [[1]]))
    connection.send(call("echo", [[[[[1]]]]]))
    (shallow, deep) = connection.responses()
    assert parse_response(shallow[2]) == [[1]]
    with pytest.raises(Exception, match="nest deeper than 12"):
        parse_response(deep[2])


def test_a_slow_answer_is_not_idleness(
    reactor: MemoryReactorClock, factory: Any, pending: list[Deferred[Any]]
) -> None:
    """A connection waiting for a slow method's answer is not closed as idle, nor checked in a busy loop."""
    connection = Connection(factory)
    connection.send(call("later"))
    reactor.advance(factory.idle_timeout * 3)
    assert not connection.transport.disconnecting
    assert len(reactor.getDelayedCalls()) == 1
    pending[0].callback("late")
    assert values(connection) == ["late"]
