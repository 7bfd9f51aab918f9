"""
In-memory doubles for a satellite: a clock that runs "threaded" work
inline, and an XML-RPC client that drives an HTTP server factory through
an in-memory connection.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.base import DelayedCall
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IDelayedCall, IProtocolFactory
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from co2._xmlrpc import dump_call, parse_response

__all__ = ["HTTPResponse", "InlineThreadPool", "MemoryXMLRPCClient", "TestReactor"]


class InlineThreadPool:
    """A thread pool that runs each piece of work at once, in the caller's thread."""

    def callInThreadWithCallback(
        self,
        onResult: Callable[[bool, Any], None],
        func: Callable[..., Any],
        *args: Any,
        **kwargs: Any,
    ) -> None:
        try:
            result = func(*args, **kwargs)
        except BaseException:
            onResult(False, Failure())
        else:
            onResult(True, result)

    def callInThread(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self.callInThreadWithCallback(lambda ok, result: None, func, *args, **kwargs)


def calls_due(clock: Clock) -> bool:
    """Whether a delayed call of ``clock`` is due now."""
    now = clock.seconds()
    return any(call.getTime() <= now for call in clock.getDelayedCalls())


class _Call(DelayedCall):
    """A delayed call that tells its clock whenever its time moves (``reset``, ``delay``)."""

    def reset(self, secondsFromNow: float) -> None:
        super().reset(secondsFromNow)
        self.resetter(self)

    def delay(self, secondsLater: float) -> None:
        super().delay(secondsLater)
        self.resetter(self)


def _time(call: IDelayedCall) -> float:
    return call.getTime()


class TestReactor(Clock):
    """
    A ``Clock`` that also runs "threaded" work inline: enough of a reactor
    for a satellite in a unit test.  Advance time with ``advance()``; calls
    made with ``callFromThread`` (from any thread) run at the next advance.

    Calls run in the order ``Clock`` runs them (by time, then in the order
    they were made), but ``Clock`` sorts every pending call at each
    ``callLater`` and after each call it runs, which makes a network of
    thousands of nodes (tens of thousands of timers) crawl; here the list
    stays sorted as calls are added and is sorted again only when a call's
    time was moved.
    """

    __test__ = False  # not a pytest test class

    def __init__(self) -> None:
        super().__init__()
        self.pool = InlineThreadPool()
        self._from_threads: deque[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]]
        self._from_threads = deque()
        self._moved = False

    def callLater(
        self, delay: float, callable: Callable[..., object], *args: object, **kw: object
    ) -> IDelayedCall:
        call = _Call(
            self.seconds() + delay, callable, args, kw, self.calls.remove, self._call_moved, self.seconds
        )
        if self._moved:
            self.calls.append(call)
            self._sort()
        else:
            bisect.insort_right(self.calls, call, key=_time)
        return call

    def _call_moved(self, call: IDelayedCall) -> None:
        self._moved = True

    def _sort(self) -> None:
        self.calls.sort(key=_time)
        self._moved = False

    def advance(self, amount: float) -> None:
        while self._from_threads:
            f, args, kwargs = self._from_threads.popleft()
            self.callLater(0, f, *args, **kwargs)
        # Clock.advance, but for sorting only when a call's time moved.
        self.rightNow += amount
        if self._moved:
            self._sort()
        calls = self.calls
        while calls and calls[0].getTime() <= self.seconds():
            call = calls.pop(0)
            call.called = 1
            call.func(*call.args, **call.kw)
            if self._moved:
                self._sort()

    def due(self) -> bool:
        """Whether work waits to run now: a call from a thread, or a delayed call whose time has come."""
        return bool(self._from_threads) or calls_due(self)

    def getThreadPool(self) -> InlineThreadPool:
        return self.pool

    def callFromThread(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self._from_threads.append((f, args, kwargs))

    def callInThread(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self.pool.callInThread(f, *args, **kwargs)


@dataclass(frozen=True)
class HTTPResponse:
    """A response read back from an in-memory connection."""

    status: int
    headers: dict[bytes, bytes]
    body: bytes


class _ClosingTransport(StringTransport):
    def __init__(self, peer: IPv4Address, host: IPv4Address, on_close: Callable[[], None]):
        super().__init__(hostAddress=host, peerAddress=peer)
        self._on_close = on_close

    def loseConnection(self) -> None:
        if not self.disconnecting:
            super().loseConnection()
            self._on_close()

    def abortConnection(self) -> None:
        self.loseConnection()


def _parse_http(raw: bytes) -> HTTPResponse:
    while raw.startswith(b"HTTP/1.1 100"):
        raw = raw.split(b"\r\n\r\n", 1)[1]
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    if b"content-length" in headers:
        body = body[: int(headers[b"content-length"])]
    return HTTPResponse(status, headers, body)


class MemoryXMLRPCClient:
    """
    Calls an HTTP server factory (a ``Site``, or a satellite's from
    ``satellites.make_server``) through memory.

    Each request uses a fresh connection from ``client`` (an ``(ip, port)``
    pair), so the site sees that caller address.
    """

    def __init__(
        self,
        site: IProtocolFactory,
        client: tuple[str, int] = ("127.0.0.1", 40000),
        server: tuple[str, int] = ("127.0.0.1", 2004),
    ) -> None:
        self.site = site
        self.client = client
        self.server = server

    def request(
        self,
        method: bytes,
        path: bytes,
        body: bytes = b"",
        headers: Iterable[tuple[bytes, bytes]] = (),
        chunks: Iterable[bytes] | None = None,
    ) -> Deferred[HTTPResponse]:
        """
        Send one HTTP request; fire with the response once the server closes
        the connection.  ``chunks`` sends the request head and body in those
        pieces instead of all at once.
        """
        result: Deferred[HTTPResponse] = Deferred()
        peer = IPv4Address("TCP", *self.client)
        host = IPv4Address("TCP", *self.server)
        protocol = self.site.buildProtocol(peer)
        assert protocol is not None

        def closed() -> None:
            protocol.connectionLost(Failure(ConnectionDone()))
            if not result.called:
                result.callback(_parse_http(transport.value()))

        transport = _ClosingTransport(peer, host, closed)
        protocol.makeConnection(transport)
        names = {name.lower() for name, _ in headers}
        head = [method + b" " + path + b" HTTP/1.1", b"Connection: close"]
        if b"host" not in names:
            head.append(b"Host: %s:%d" % (host.host.encode(), host.port))
        head += [name + b": " + value for name, value in headers]
        if b"content-length" not in names and b"transfer-encoding" not in names:
            head.append(b"Content-Length: %d" % len(body))
        data = b"\r\n".join(head) + b"\r\n\r\n" + body
        for piece in chunks if chunks is not None else [data]:
            if transport.disconnecting:
                break
            protocol.dataReceived(piece)
        return result

    def post(self, body: bytes, path: bytes = b"/RPC2") -> Deferred[HTTPResponse]:
        """POST ``body`` as ``text/xml``."""
        return self.request(b"POST", path, body, [(b"Content-Type", b"text/xml")])

    def call(self, method: str, *params: Any) -> Deferred[Any]:
        """
        Call ``method`` with ``params``; fire with its result or fail with
        ``xmlrpc.client.Fault``.
        """
        d = self.post(dump_call(method, params))
        d.addCallback(_xmlrpc_value)
        return d


def _xmlrpc_value(response: HTTPResponse) -> Any:
    if response.status != 200:
        raise ValueError(f"HTTP {response.status}: {response.body!r}")
    return parse_response(response.body)
