"""
The HTTP/1.1 front end of a node's listener.

Every request on every connection is framed by llhttp (through
``httptools``), the parser of Node.js, in its strict mode: it alone says
where a request's head and body end.  What RFC 9112 asks a server to
refuse and llhttp leaves to its user is refused here: an empty line
before the request line, a request in HTTP/1.1 with no ``Host``, a
transfer coding other than ``chunked``, a version other than 1.0 and
1.1, a head over :data:`MAX_HEAD` bytes or :data:`MAX_HEADERS` lines, a
body over ``max_request_size``.  A refusal is answered in its turn, after
the requests before it, and the connection is closed.

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
  seconds is aborted.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from httptools import HttpParserError, HttpParserUpgrade, HttpRequestParser
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IDelayedCall, IProtocolNegotiationFactory
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import datetimeToString
from zope.interface import implementer

from co2._admission import Admission
from satellites._exchange import NOTED, Refused, Request, Responding, Response

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

MAX_HEAD = 16 * 1024
"""The longest request head, request line included, in bytes: a longer one gets ``431``."""

MAX_HEADERS = 100
"""The most header lines in one request: more get ``431``."""

MAX_PIPELINED = 16
"""Requests of one connection framed and not yet answered, at most: past that it is not read."""

WRITE_CHUNK = 64 * 1024
"""A longer answer is written this much at a time, each piece once the client took the one before."""

_log = Logger(namespace="co2.http")

_END_OF_HEAD = b"\r\n\r\n"

_NEVER = float("inf")

# The framing of the request under way.
_IDLE, _HEAD, _BODY, _CHUNKED, _DONE = range(5)


class _Slot:
    """The place of one answer in the connection's order."""

    __slots__ = ("close", "data", "head_only", "pending", "sent")

    def __init__(self, close: bool, head_only: bool) -> None:
        self.close = close
        self.head_only = head_only
        self.data: bytes | None = None
        self.sent = 0
        self.pending: Deferred[Response] | None = None


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
        self._parser = HttpRequestParser(self)
        self._seconds = server.reactor.seconds
        self._phase = _IDLE
        self._request = Request()
        self._noted: dict[str, bytes] = {}
        self._url = b""
        self._headers = 0
        self._head_size = 0
        self._tail = b""
        self._line = b""
        self._parts: list[bytes] = []
        self._size = 0
        self._remaining = 0
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

    # Connection events

    def connectionMade(self) -> None:
        transport = self._io()
        peer = transport.getPeer()
        if isinstance(peer, (IPv4Address, IPv6Address)):
            self.caller = (peer.host, peer.port)
            host = transport.getHost()
            self.local_host = f"[{host.host}]" if isinstance(host, IPv6Address) else host.host
        transport.registerProducer(self, True)
        self._now = self._last = self.server.reactor.seconds()
        self._arm(self._last + self.server.idle_timeout)

    def dataReceived(self, data: bytes) -> None:
        if self._phase == _DONE:
            return
        self._now = self._last = self._seconds()
        try:
            self._frame(data)
        except Refused as refused:
            self._refuse(refused)
        except HttpParserUpgrade:  # pragma: no cover - refused at its headers
            self._refuse(Refused(b"400 Bad Request", "Upgrade is refused."))
        except HttpParserError as e:
            cause = e.__context__
            if isinstance(cause, Refused):
                self._refuse(cause)
            elif not isinstance(cause, _Ignored):
                self._refuse(Refused(b"400 Bad Request", f"Malformed request: {e}."))
        self._advance()

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:  # noqa: B008
        self._phase = _DONE
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
            # A call whose client has gone is not worth finishing.
            if slot.pending is not None and not slot.pending.called:
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
            self._phase != _DONE
            and self._blocked_since is None
            and len(self._waiting) + len(self._answers) < MAX_PIPELINED
        )
        if want != self._reading and self.transport is not None:
            self._reading = want
            if want:
                self._io().resumeProducing()
            else:
                self._io().pauseProducing()

    # Framing: llhttp decides; the channel feeds it so that each request's
    # head is measured exactly (a head ends at the first empty line) and
    # nothing after a request is fed before the request is whole.

    def _frame(self, data: bytes) -> None:
        view = memoryview(data)
        at, end = 0, len(data)
        parser = self._parser
        while at < end:
            phase = self._phase
            if phase == _BODY and self._remaining:
                take = min(self._remaining, end - at)
                self._remaining -= take
                parser.feed_data(view[at:at + take])
                at += take
            elif phase == _IDLE or phase == _HEAD:
                at = self._frame_head(data, view, at)
            elif phase != _DONE:
                # A chunked body's end is llhttp's to find; nothing after it is read.
                parser.feed_data(view[at:])
                return
            else:
                return

    def _frame_head(self, data: bytes, view: memoryview, at: int) -> int:
        if self._phase == _IDLE:
            if data[at] in b"\r\n":
                raise Refused(b"400 Bad Request", "An empty line stands before the request line.")
            self._phase = _HEAD
            self._started = now = self._now
            deadline = now + self.server.request_timeout
            if deadline < self._deadline:
                self._arm(deadline)
            found = data.find(_END_OF_HEAD, at)
            if found >= 0 and found + 4 - at <= MAX_HEAD:
                # The whole head is in this read, as it nearly always is.
                stop = found + 4
                self._line = data[at:data.find(b"\n", at, stop) + 1]
                self._head_size = stop - at
                self._tail = b""
                self._parser.feed_data(view[at:stop])
                return stop
            self._head_size = 0
            self._tail = b""
            self._line = b""
        stop = -1
        if self._tail:
            # The empty line may begin in an earlier read.
            found = (self._tail + data[at:at + 3]).find(_END_OF_HEAD)
            if found >= 0:
                stop = at + found + 4 - len(self._tail)
        if stop < 0:
            found = data.find(_END_OF_HEAD, at)
            stop = len(data) if found < 0 else found + 4
            if found < 0:
                self._tail = (self._tail + data[max(at, stop - 3):])[-3:]
        self._head_size += stop - at
        if self._head_size > MAX_HEAD:
            raise Refused(b"431 Request Header Fields Too Large", f"A request head over {MAX_HEAD} bytes.")
        if self._line[-1:] != b"\n":
            # The request line as sent, to check that llhttp read it as written.
            line_end = data.find(b"\n", at, stop)
            self._line += data[at:stop if line_end < 0 else line_end + 1]
        self._parser.feed_data(view[at:stop])
        return stop

    # llhttp's callbacks

    # A request's state starts afresh when the one before is complete (no
    # on_message_begin: one call less per request).

    def on_url(self, url: bytes) -> None:
        if self._phase == _DONE:
            raise _Ignored()
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers += 1
        if self._headers > MAX_HEADERS:
            raise Refused(b"431 Request Header Fields Too Large", f"More than {MAX_HEADERS} header lines.")
        noted = NOTED.get(name.lower())
        if noted is not None:
            if noted in self._noted:
                raise Refused(b"400 Bad Request", f"More than one {name.decode('latin-1')} header.")
            self._noted[noted] = value

    def on_headers_complete(self) -> None:
        self._request = request = Request()
        request.__dict__ = self._noted  # the header lines it was read for
        parser = self._parser
        request.method = parser.get_method()
        request.target = self._url
        # The version as the request line spells it (llhttp took only HTTP/d.d).
        request.version = version = self._line[-5:-2]
        if version != b"1.1" and version != b"1.0":
            raise Refused(b"505 HTTP Version Not Supported", "This server speaks HTTP/1.1 and HTTP/1.0.")
        if request.host is None and version == b"1.1":
            raise Refused(b"400 Bad Request", "An HTTP/1.1 request needs a Host header.")
        if self._url[:1] != b"/":
            raise Refused(b"400 Bad Request", "The request target must be a path.")
        if len(self._line) != len(request.method) + len(self._url) + 12:
            # llhttp takes more than one space between the parts; RFC 9112 does not.
            raise Refused(b"400 Bad Request", "Malformed request line: one space between its three parts.")
        if parser.should_upgrade():
            # llhttp would stop framing here, leaving the body unread.
            if request.method == b"CONNECT":
                raise Refused(b"405 Method Not Allowed", "CONNECT is not served here.")
            raise Refused(b"400 Bad Request", "No protocol but HTTP/1.1 is spoken here: Upgrade is refused.")
        request.keep_alive = parser.should_keep_alive()
        if request._transfer is not None:
            if request._transfer.strip().lower() != b"chunked":
                raise Refused(b"501 Not Implemented", "The only transfer coding taken is chunked.")
            self._phase = _CHUNKED
            request.keep_alive = False
        else:
            length = int(request._length) if request._length is not None else 0
            if length > self.server.max_request_size:
                raise Refused(b"413 Content Too Large", _too_large(self.server.max_request_size))
            self._phase = _BODY
            self._remaining = length
        if request.expect is not None:
            if request.expect.strip().lower() != b"100-continue":
                raise Refused(b"417 Expectation Failed", "The only expectation met is 100-continue.")
            if not self._waiting and not self._answers and self.transport is not None:
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > self.server.max_request_size:
            raise Refused(b"413 Content Too Large", _too_large(self.server.max_request_size))
        self._parts.append(body)

    def on_message_complete(self) -> None:
        request = self._request
        parts = self._parts
        if parts:
            request.body = parts[0] if len(parts) == 1 else b"".join(parts)
            self._parts = []
        self._started = None
        self._phase = _IDLE if request.keep_alive else _DONE
        self._waiting.append(request)
        self._noted = {}
        self._url = b""
        self._headers = self._size = 0

    # Answers, in the order of their requests

    def _refuse(self, refused: Refused) -> None:
        self._phase = _DONE
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
                if type(answer) is not Response:
                    self._start(item, answer)  # a Deferred
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

    def _start(self, item: Request | Response, answer: Any = None) -> None:
        # The answer takes its place in line (``answer``: already asked for).
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
        if isinstance(answer, Deferred):
            slot.pending = answer
            answer.addCallback(self._ready, slot)
            answer.addErrback(_unless_cancelled)
        else:
            self._ready(answer, slot)

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
        self._phase = _DONE
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


def _unless_cancelled(failure: Failure) -> None:
    if not failure.check(CancelledError):
        _log.failure("answering a request", failure)


class _Ignored(Exception):
    """Raised in llhttp's callback to stop it framing what follows a connection's last request."""


def _too_large(limit: int) -> str:
    return f"Request body over {limit} bytes refused."


@implementer(IProtocolNegotiationFactory)
class HTTPFactory(Factory):
    """
    Makes an :class:`HTTPChannel` for each connection, while fewer than
    ``admission.limit`` are open (past it, a connection gets ``503``);
    ``responding`` answers the requests they frame.
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
