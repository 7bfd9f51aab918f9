"""
The HTTP/1.1 front end of a node's listener.

Every request on every connection is framed by llhttp in its strict mode,
and what RFC 9112 asks a server to refuse is refused (see
:mod:`satellites._http_framing`).  A refusal is answered in its turn,
after the requests before it, and the connection is closed.

What a framed :class:`Request` gets is the business of a router
(:class:`satellites._routes.Routes`); the channel keeps the order of the
answers, the flow of bytes and the time:

- at most :data:`MAX_PIPELINED` requests of a connection are framed and
  unanswered at once; past that, and while the client does not take what
  was written, the connection is not read;
- a request must arrive whole within ``request_timeout`` seconds of its
  first byte (else ``408``); a connection with nothing to do for
  ``idle_timeout`` seconds is closed, and one whose client takes none of
  its answers (or of its last answer, once closing) for ``idle_timeout``
  seconds is aborted;
- a call whose client has gone is cancelled.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IDelayedCall, IProtocolNegotiationFactory
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure
from twisted.web.http import datetimeToString
from zope.interface import implementer

from co2._admission import Admission
from co2._ratelog import RateLimitedLog
from satellites._exchange import Refused, Request, Responding, Response
from satellites._http_framing import MAX_HEAD, MAX_HEADERS, Framing
from satellites._soon import Soon, ready, then

__all__ = [
    "MAX_HEAD",
    "MAX_HEADERS",
    "MAX_PIPELINED",
    "HTTPChannel",
    "HTTPFactory",
    "Refused",
    "Request",
    "Responding",
    "Response",
]

MAX_PIPELINED = 16
"""Requests of one connection framed and not yet answered, at most: past that it is not read."""

WRITE_CHUNK = 64 * 1024
"""A longer answer is written this much at a time, each piece once the client took the one before."""

_log = Logger(namespace="co2.http")

_NEVER = float("inf")


class _Slot:
    """The place of one answer in the connection's order."""

    __slots__ = ("close", "data", "head_only", "pending", "sent")

    def __init__(self, close: bool, head_only: bool) -> None:
        self.close = close
        self.head_only = head_only
        self.data: bytes | None = None
        self.sent = 0
        self.pending: Deferred[Any] | None = None
        """What an answer not ready at once comes through: cancelled if the client goes."""


class HTTPChannel(Protocol):
    """One connection to a node's HTTP listener."""

    def __init__(self, server: HTTPFactory) -> None:
        self.server = server
        self.caller: tuple[str, int] | None = None
        """The client's ``(ip, port)``; None for a UNIX socket."""
        self.local_host: str | None = None
        """The address the client reached, as a ``Host`` header names it; None for a UNIX socket."""
        self.host_allowed: bytes | None = b"\x00"
        """The last ``Host`` header the router allowed here (at first a value no request can have)."""
        self._framing = Framing(self, server.max_request_size)
        self._seconds = server.reactor.seconds
        self._waiting: deque[Request | Response] = deque()
        self._answers: deque[_Slot] = deque()
        self._advancing = False
        self._reading = True
        self._blocked_since: float | None = None
        self._closing_since: float | None = None
        self._started: float | None = None
        self._now = 0.0
        self._last = 0.0
        self._timer: IDelayedCall | None = None
        self._deadline = _NEVER
        self._counted = False
        self._heard = False

    # Connection events

    def connectionMade(self) -> None:
        transport = self._io()
        self._read_addresses(transport)
        transport.registerProducer(self, True)
        self._now = self._last = self.server.reactor.seconds()
        self._arm(self._last + self.server.idle_timeout)

    def _read_addresses(self, transport: Any) -> None:
        peer = transport.getPeer()
        if isinstance(peer, (IPv4Address, IPv6Address)):
            self.caller = (peer.host, peer.port)
            host = transport.getHost()
            self.local_host = f"[{host.host}]" if isinstance(host, IPv6Address) else host.host

    def dataReceived(self, data: bytes) -> None:
        if not self._heard:
            # Behind the PROXY protocol (haproxy: endpoints) the client's own
            # address is known only once its header came, with the first data.
            self._heard = True
            self._read_addresses(self._io())
        if self._framing.done:
            return
        self._now = self._last = self._seconds()
        try:
            self._framing.feed(data)
        except Refused as refused:
            self._refuse(refused)
        self._advance()

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:  # noqa: B008
        self._framing.stop()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self._deadline = _NEVER
        if self._counted:
            self._counted = False
            self.server.admission.release()
        self._waiting.clear()
        answers, self._answers = self._answers, deque()
        for slot in answers:
            # A call whose client has gone is not worth finishing.  (A
            # Deferred that fired but waits on another passes this on.)
            if slot.pending is not None:
                slot.pending.cancel()

    # Flow control: the transport tells its producer when its buffer is full.

    def pauseProducing(self) -> None:
        self._blocked_since = self._now = self.server.reactor.seconds()
        self._pace()
        self._arm(self._now + self.server.idle_timeout)

    def resumeProducing(self) -> None:
        self._blocked_since = None
        self._last = self._now = self.server.reactor.seconds()
        self._advance()

    def stopProducing(self) -> None:
        self._io().abortConnection()

    def _io(self) -> Any:
        # The transport as the stream it is: a consumer and a producer too.
        return self.transport

    def _pace(self) -> None:
        # Read while there is room for more requests and the client takes its answers.
        want = (
            not self._framing.done
            and self._blocked_since is None
            and len(self._waiting) + len(self._answers) < MAX_PIPELINED
        )
        if want != self._reading and self.transport is not None:
            self._reading = want
            if want:
                self._io().resumeProducing()
            else:
                self._io().pauseProducing()

    # What the framing tells (see Framed)

    def request_begun(self) -> None:
        """A request has begun: it must come whole within ``request_timeout``."""
        self._started = now = self._now
        deadline = now + self.server.request_timeout
        if deadline < self._deadline:
            self._arm(deadline)

    def request_framed(self, request: Request) -> None:
        """``request`` came whole: it is answered in its turn."""
        self._started = None
        self._waiting.append(request)

    def continue_expected(self) -> None:
        """Say ``100 Continue``, unless answers are still due before this request's."""
        if not self._waiting and not self._answers and self.transport is not None:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    # Answers, in the order of their requests

    def _refuse(self, refused: Refused) -> None:
        self._framing.stop()
        self._started = None
        self._waiting.append(refused.response)

    def _advance(self) -> None:
        if self._advancing:
            return
        self._advancing = True
        try:
            answers = self._answers
            waiting = self._waiting
            while True:
                if (answers or self._closing_since is not None) and not self._flush():
                    return
                if not waiting or len(answers) >= MAX_PIPELINED or self._blocked_since is not None:
                    break
                item = waiting.popleft()
                if answers or type(item) is not Request:
                    self._start(item)
                    continue
                # Nothing waits ahead of it: an answer ready now goes out now.
                answer = self.server.responding.answer(item, self)
                if not ready(answer):
                    self._start(item, answer)
                elif not self._write(answer, item):
                    return
        finally:
            self._advancing = False
        self._pace()

    def _write(self, response: Response, request: Request) -> bool:
        """Write the answer to ``request``, the first in line; False once closing."""
        close = response.close or not request.keep_alive
        data = self._encode(response, close, request.method == b"HEAD")
        if len(data) > WRITE_CHUNK:
            slot = _Slot(close, False)
            slot.data = data
            self._answers.append(slot)
            return self._flush()
        self._io().write(data)
        self._last = self._now
        if close:
            self._close()
            return False
        return True

    def _encode(self, response: Response, close: bool, head_only: bool) -> bytes:
        status, headers, body, _ = response
        return b"HTTP/1.1 %s\r\n%sContent-Length: %d\r\n%s%s\r\n%s" % (
            status,
            headers,
            len(body),
            self.server.date_header(self._now),
            b"Connection: close\r\n" if close else b"",
            b"" if head_only else body,
        )

    def _start(self, item: Request | Response, answer: Soon[Response] | None = None) -> None:
        # The answer takes its place in line, to be written once it is
        # ready and the answers before it are gone (``answer``: already
        # asked for).
        if type(item) is Response:
            slot = _Slot(True, False)
            self._answers.append(slot)
            self._ready(item, slot)
            return
        assert isinstance(item, Request)
        slot = _Slot(not item.keep_alive, item.method == b"HEAD")
        self._answers.append(slot)
        if answer is None:
            answer = self.server.responding.answer(item, self)
        slot.pending = then(answer, self._ready, slot, failed=self._failed)

    def _failed(self, failure: Failure, slot: _Slot) -> None:
        # A call cancelled because its client went is no failure; anything
        # else is a bug, which a client could trigger on every request.
        if not failure.check(CancelledError):
            self.server.limited.emit("answers failed", LogLevel.critical, "answering a request",
                                     log_failure=failure)

    def _ready(self, response: Response, slot: _Slot) -> None:
        if response.close:
            slot.close = True
        if slot.pending is not None:
            self._now = self.server.reactor.seconds()  # the answer came later
        slot.data = self._encode(response, slot.close, slot.head_only)
        if not self._advancing:
            self._advance()

    def _flush(self) -> bool:
        # Write the answers that are ready, in order; False once closing.
        transport = self.transport
        if transport is None or self._closing_since is not None:
            return False
        answers = self._answers
        while answers and answers[0].data is not None:
            slot = answers[0]
            data = slot.data
            assert data is not None
            if len(data) - slot.sent > WRITE_CHUNK:
                # A piece at a time: the transport pauses the channel when
                # its buffer is full and resumes it once the client took it.
                if self._blocked_since is not None:
                    return True
                transport.write(data[slot.sent:slot.sent + WRITE_CHUNK])
                slot.sent += WRITE_CHUNK
                continue
            transport.write(data[slot.sent:] if slot.sent else data)
            answers.popleft()
            self._last = self._now
            if slot.close:
                self._close()
                return False
        return True

    def _close(self) -> None:
        # The producer goes first: a transport that still has one would
        # resume it once its buffer drains, instead of closing.
        self._framing.stop()
        self._waiting.clear()
        self._answers.clear()
        self._closing_since = self.server.reactor.seconds()
        transport = self._io()
        transport.unregisterProducer()
        transport.loseConnection()
        self._arm(self._closing_since + self.server.idle_timeout)

    # Time: one timer a connection, set for the nearest deadline.

    def _arm(self, deadline: float) -> None:
        if self._deadline <= deadline:
            return  # the timer is set for then or sooner
        timer = self._timer
        if timer is not None and timer.active():
            timer.cancel()
        self._deadline = deadline
        self._timer = self.server.reactor.callLater(
            max(0.0, deadline - self.server.reactor.seconds()), self._check_time
        )

    def _check_time(self) -> None:
        self._timer = None
        self._deadline = _NEVER
        server = self.server
        now = server.reactor.seconds()
        transport = self._io()
        if transport is None:
            return
        stuck = self._closing_since if self._closing_since is not None else self._blocked_since
        if stuck is not None:
            # The client takes nothing of what was written to it.
            if now >= stuck + server.idle_timeout:
                transport.abortConnection()
                return
            self._arm(stuck + server.idle_timeout)
            return
        if self._started is not None:
            if now >= self._started + server.request_timeout:
                self._refuse(Refused(
                    b"408 Request Timeout",
                    f"The request did not arrive whole within {server.request_timeout:g}s.",
                ))
                self._advance()
                if self._closing_since is None:
                    self._arm(now + server.idle_timeout)
                return
            self._arm(self._started + server.request_timeout)
            return
        if not self._waiting and not self._answers:
            if now >= self._last + server.idle_timeout:
                self._close()
                return
            self._arm(self._last + server.idle_timeout)
            return
        # Answers are on their way; their calls have timeouts of their own.
        self._arm(now + server.idle_timeout)


@implementer(IProtocolNegotiationFactory)
class HTTPFactory(Factory):
    """
    Makes an :class:`HTTPChannel` for each connection, while fewer than
    ``admission.limit`` are open (past it, a connection gets ``503``);
    ``responding`` answers the requests they frame.  A factory serves one
    listening port: when it stops, what its logs counted is logged.
    """

    noisy = False

    def __init__(
        self,
        responding: Responding,
        reactor: Any,
        admission: Admission,
        max_request_size: int,
        idle_timeout: float = 60.0,
        request_timeout: float = 30.0,
    ) -> None:
        self.responding = responding
        self.reactor = reactor
        self.admission = admission
        self.max_request_size = max_request_size
        self.idle_timeout = idle_timeout
        self.request_timeout = request_timeout
        self._second = -1
        self._date = b""
        self.limited = RateLimitedLog(_log, reactor)
        """Where what can repeat once per request is logged, a few lines at a time."""

    def acceptableProtocols(self) -> list[bytes]:
        """
        What a TLS listener agrees to in ALPN: HTTP/1.1.  (A client that
        offers ALPN to a server that names nothing is refused the
        handshake by Twisted.)
        """
        return [b"http/1.1"]

    def buildProtocol(self, addr: Any) -> Protocol:
        if not self.admission.admit():
            return _Busy()
        channel = HTTPChannel(self)
        channel.factory = self
        channel._counted = True
        return channel

    def stopFactory(self) -> None:
        """The listener stopped: what its logs counted is logged now, and no timer is left."""
        self.limited.close()
        self.admission.close()

    def date_header(self, now: float) -> bytes:
        """The ``Date`` header line for ``now``; formatted once a second."""
        second = int(now)
        if second != self._second:
            self._second = second
            self._date = b"Date: " + datetimeToString(second) + b"\r\n"
        return self._date


class _Busy(Protocol):
    """Says a listener that is full is busy, then hangs up."""

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(_BUSY)
        self.transport.loseConnection()


_BUSY_TEXT = b"Too many connections; try again later.\n"
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
    b"Connection: close\r\n\r\n%s" % (len(_BUSY_TEXT), _BUSY_TEXT)
)
