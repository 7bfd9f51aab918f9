"""
The connections of a node's XML-RPC listener.

Almost every request a node gets is the same: ``POST / HTTP/1.1`` (or
``/RPC2``) with a ``Content-Length``, on a connection kept alive for the
next one.  :class:`XMLRPCChannel` answers exactly those itself, with a
parser that does no more than they need, and pipelined requests in order.
The first request that is anything else (another method or path,
HTTP/1.0, a chunked body, ``Expect``, a malformed head) is handed, with
the rest of the connection, to a ``twisted.web`` channel of the node's
``Site``, which answers it as any HTTP server would.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from twisted.cred.error import LoginFailed
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IProtocol, IProtocolNegotiationFactory
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.guard import BasicCredentialFactory
from twisted.web.http import datetimeToString
from twisted.web.server import Site
from zope.interface import implementer

from co2._admission import Admission
from co2._auth import Authentication, login_failure_reason
from co2._xmlrpc import DEFAULT_MAX_DEPTH
from satellites._dispatch import Caller, Dispatcher
from satellites._metrics import MetricsResource, node_registry
from satellites._resource import (
    REALM,
    UNAUTHORIZED_TEXT,
    XMLRPC_PATHS,
    NeedsCredentials,
    Responder,
    XMLRPCResource,
    basic_user,
    make_site,
    refusal_413,
    site_root,
    who_is,
)
from satellites._status import StatusJSON, StatusPage

__all__ = ["MAX_HEAD", "MAX_PIPELINED", "XMLRPCChannel", "XMLRPCFactory", "make_server"]

MAX_HEAD = 16 * 1024
"""A request head longer than this is left to ``twisted.web`` (which refuses it)."""

MAX_PIPELINED = 64
"""Requests a connection may have unanswered before it is read no further."""

_log = Logger(namespace="co2.xmlrpc")

_END_OF_HEAD = b"\r\n\r\n"


class _Answer:
    """The place of one request's response in the connection's order."""

    __slots__ = ("close", "response")

    def __init__(self, close: bool, response: bytes | None = None) -> None:
        self.close = close
        self.response = response


class XMLRPCChannel(Protocol):
    """One connection to the XML-RPC listener."""

    def __init__(self, server: XMLRPCFactory) -> None:
        self.server = server
        self._buffer = b""
        self._answers: deque[_Answer] = deque()
        self._handed: IProtocol | None = None
        self._hand_over = False
        self._closing = False
        self._paused = False
        self._caller: Caller = None
        self._last = 0.0
        self._started: float | None = None
        self._timer: IDelayedCall | None = None
        self._counted = False

    # Connection events

    def connectionMade(self) -> None:
        assert self.transport is not None
        peer = self.transport.getPeer()
        if isinstance(peer, (IPv4Address, IPv6Address)):
            self._caller = (peer.host, peer.port)
        self._io().registerProducer(self, True)
        self._last = self.server.reactor.seconds()
        first = min(self.server.idle_timeout, self.server.request_timeout)
        self._timer = self.server.reactor.callLater(first, self._check_time)

    def dataReceived(self, data: bytes) -> None:
        if self._handed is not None:
            self._handed.dataReceived(data)
            return
        self._last = self.server.reactor.seconds()
        if not self._buffer:
            self._started = self._last
        self._buffer += data
        self._serve()

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:  # noqa: B008
        self._stop_timer()
        if self._counted:
            self._counted = False
            self.server.admission.release()
        self._answers.clear()
        if self._handed is not None:
            self._handed.connectionLost(reason)

    # Flow control: the transport tells its producer when its buffer is full.

    def pauseProducing(self) -> None:
        self._paused = True
        self._io().pauseProducing()

    def resumeProducing(self) -> None:
        self._paused = False
        if len(self._answers) < MAX_PIPELINED:
            self._io().resumeProducing()

    def stopProducing(self) -> None:
        assert self.transport is not None
        self.transport.loseConnection()

    def _io(self) -> Any:
        # The transport as the stream it is: a consumer and a producer too.
        return self.transport

    def _stop_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _check_time(self) -> None:
        # One timer per connection, put off rather than reset on each read:
        # it closes a connection idle (no request begun, none unanswered)
        # for idle_timeout, and one whose request has not arrived whole
        # within request_timeout.
        self._timer = None
        server = self.server
        now = server.reactor.seconds()
        idle = self._started is None and not self._answers
        if self._started is not None and now >= self._started + server.request_timeout:
            self._time_out()
            return
        if idle and now >= self._last + server.idle_timeout:
            if self.transport is not None:
                self.transport.loseConnection()
            return
        # A request that begins before the next check is timed from then.
        deadline = now + server.request_timeout
        if self._started is not None:
            deadline = min(deadline, self._started + server.request_timeout)
        if idle:
            deadline = min(deadline, self._last + server.idle_timeout)
        self._timer = server.reactor.callLater(deadline - now, self._check_time)

    def _time_out(self) -> None:
        transport = self.transport
        if transport is None:
            return
        if not self._answers:
            transport.write(_plain_response(
                b"408 Request Timeout",
                b"The request did not arrive whole within %gs.\n" % self.server.request_timeout,
            ))
        transport.loseConnection()

    # Requests

    def _serve(self) -> None:
        # Answer every complete request in the buffer, in order; the buffer
        # is cut once at the end, not once per request.
        buffer = self._buffer
        at = 0
        while not (self._hand_over or self._closing):
            end = buffer.find(_END_OF_HEAD, at)
            if end < 0 and len(buffer) - at <= MAX_HEAD:
                break
            if end < 0 or end - at > MAX_HEAD:
                # A head too long goes to twisted.web, which refuses it,
                # however many reads brought it.
                self._hand_over = True
                break
            head = _parse_head(buffer[at:end])
            if head is None:
                self._hand_over = True
                break
            length, close, authorization = head
            if length > self.server.max_request_size:
                self._refuse_too_large()
                return
            start = end + 4
            if len(buffer) - start < length:
                break
            at = start + length
            self._answer(buffer[start:at], close, authorization)
        if at:
            self._buffer = buffer[at:]
            # What is left is the start of the next request.
            self._started = self._last if self._buffer else None
        if len(self._answers) >= MAX_PIPELINED and self.transport is not None:
            self._io().pauseProducing()
        if self._hand_over and not self._answers:
            self._hand_to_site()

    def _answer(self, body: bytes, close: bool, authorization: bytes | None) -> None:
        answer = _Answer(close)
        self._answers.append(answer)
        if close:
            self._closing = True
        if self.server.responder.authentication is None:
            response = self.server.responder.respond(body, self._caller)
        else:
            response = self._authenticated(body, authorization)
        if isinstance(response, Deferred):
            response.addCallback(self._ready, answer)
            response.addErrback(lambda f: _log.failure("answering a request", f))
        else:
            self._ready(response, answer)

    def _authenticated(self, body: bytes, authorization: bytes | None) -> Any:
        # The same rules as the twisted.web.guard in front of the site:
        # no credentials is an anonymous caller, who may call what is not
        # protected; credentials that are wrong or unreadable are refused.
        responder = self.server.responder
        authentication = responder.authentication
        assert authentication is not None
        if authorization is None:
            if authentication.everything:
                return self._unauthorized(None, "no credentials given")
            try:
                return responder.respond(body, self._caller, anonymous=True)
            except NeedsCredentials:
                return self._unauthorized(None, "no credentials given")
        scheme, _, token = authorization.partition(b" ")
        try:
            if scheme.lower() != b"basic":
                raise LoginFailed("not HTTP Basic")
            given = _BASIC.decode(token.strip(), None)
        except LoginFailed:
            return self._unauthorized(None, "credentials that are not HTTP Basic")
        outcome = authentication.verify(given.username, given.password)
        if isinstance(outcome, Deferred):
            return outcome.addCallbacks(
                lambda _: responder.respond(body, self._caller),
                lambda failure: self._unauthorized(basic_user(authorization), login_failure_reason(failure)),
            )
        if isinstance(outcome, Failure):
            return self._unauthorized(basic_user(authorization), login_failure_reason(outcome))
        return responder.respond(body, self._caller)

    def _unauthorized(self, username: str | None, why: str) -> _Status:
        authentication = self.server.responder.authentication
        assert authentication is not None
        authentication.refuse("the XML-RPC listener", who_is(self._caller), username, why)
        return _UNAUTHORIZED

    def _ready(self, body: bytes, answer: _Answer) -> None:
        if type(body) is _Status:
            answer.response = body.response(answer.close)
            self._flush()
            return
        answer.response = (
            b"HTTP/1.1 200 OK\r\n"
            b"Content-Type: text/xml; charset=utf-8\r\n"
            b"Content-Length: %d\r\n%s%s\r\n%s"
            % (
                len(body),
                self.server.date_header(),
                b"Connection: close\r\n" if answer.close else b"",
                body,
            )
        )
        self._flush()

    def _flush(self) -> None:
        # Write the responses that are ready, in the order of their requests.
        transport = self.transport
        if transport is None:
            return
        answers = self._answers
        while answers and answers[0].response is not None:
            answer = answers.popleft()
            assert answer.response is not None
            transport.write(answer.response)
            if answer.close:
                answers.clear()
                transport.loseConnection()
                return
        if not answers:
            if self._hand_over:
                self._hand_to_site()
            elif not self._paused:
                self._io().resumeProducing()

    def _refuse_too_large(self) -> None:
        # The body is never read: the refusal follows the earlier answers,
        # then the connection closes.
        self._closing = True
        self._buffer = b""
        self._answers.append(_Answer(True, refusal_413(self.server.max_request_size)))
        self._flush()

    def _hand_to_site(self) -> None:
        # From here on the connection belongs to a twisted.web channel.
        transport = self._io()
        if transport is None or self._handed is not None:
            return
        self._stop_timer()
        self._started = None
        transport.unregisterProducer()
        channel = self.server.site.buildProtocol(transport.getPeer())
        assert channel is not None
        self._handed = channel
        channel.makeConnection(transport)
        if self._paused:
            transport.pauseProducing()
        else:
            transport.resumeProducing()
        buffered, self._buffer = self._buffer, b""
        if buffered:
            channel.dataReceived(buffered)


@implementer(IProtocolNegotiationFactory)
class XMLRPCFactory(Factory):
    """
    Makes an :class:`XMLRPCChannel` for each connection, while fewer than
    ``admission.limit`` are open (past it, a connection gets ``503``);
    ``site`` serves what the channels hand over.  A connection idle for
    ``idle_timeout`` seconds is closed; so is one whose request has not
    arrived whole ``request_timeout`` seconds after it began (with
    ``408``).
    """

    noisy = False

    def __init__(
        self,
        responder: Responder,
        site: Site,
        max_request_size: int,
        reactor: Any,
        admission: Admission,
        idle_timeout: float = 60.0,
        request_timeout: float = 30.0,
    ) -> None:
        self.responder = responder
        self.site = site
        self.max_request_size = max_request_size
        self.reactor = reactor
        self.admission = admission
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
        channel = XMLRPCChannel(self)
        channel.factory = self
        channel._counted = True
        return channel

    def date_header(self) -> bytes:
        """The ``Date`` header line for now; formatted once a second."""
        second = int(self.reactor.seconds())
        if second != self._second:
            self._second = second
            self._date = b"Date: " + datetimeToString(second) + b"\r\n"
        return self._date


def _parse_head(head: bytes) -> tuple[int, bool, bytes | None] | None:
    """
    The body length, whether to close after answering and the
    ``Authorization`` header if any, for the head of an XML-RPC ``POST``
    this channel answers itself; None for any other.
    """
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or parts[0] != b"POST" or parts[2] != b"HTTP/1.1":
        return None
    if parts[1] not in XMLRPC_PATHS:
        return None
    length = -1
    close = False
    authorization = None
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or name[-1:] in b" \t" or line[:1] in b" \t":
            return None
        name = name.lower()
        if name == b"content-length":
            value = value.strip()
            if length >= 0 or not value.isdigit() or len(value) > 18:
                return None
            length = int(value)
        elif name == b"transfer-encoding" or name == b"expect":
            return None
        elif name == b"connection":
            tokens = [token.strip().lower() for token in value.split(b",")]
            close = b"close" in tokens
        elif name == b"authorization":
            if authorization is not None:
                return None
            authorization = value.strip()
    if length < 0:
        return None
    return length, close, authorization


def make_server(
    dispatcher: Dispatcher,
    max_request_size: int,
    reactor: Any = None,
    *,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_connections: int = 1000,
    idle_timeout: float = 60.0,
    request_timeout: float = 30.0,
    authentication: Authentication | None = None,
    node: Any = None,
    role: str = "satellite",
) -> XMLRPCFactory:
    """
    The factory a node's XML-RPC listener listens with: calls go to
    ``dispatcher``; bodies over ``max_request_size`` are refused with
    ``413``, documents nesting deeper than ``max_depth`` with a fault;
    the other limits are :class:`XMLRPCFactory`'s.  ``reactor`` gives time
    (the global one when None).  With ``authentication``, callers prove
    themselves with HTTP Basic as it says.  With ``node`` (a satellite or
    standalone relay, whose ``role`` the status page names), ``GET /``
    shows its status and ``GET /metrics`` tells what it has done.
    """
    if reactor is None:
        from twisted.internet import reactor
    resource = XMLRPCResource(dispatcher, max_depth, authentication)
    metrics = status = None
    if node is not None:
        metrics = MetricsResource(node_registry(node, resource.responder.calls))
        status = (StatusPage(node, role), StatusJSON(node, role))
    site = make_site(site_root(resource, authentication, metrics, status), max_request_size, reactor)
    site.timeOut = idle_timeout
    admission = Admission(max_connections, "the XML-RPC listener", reactor)
    return XMLRPCFactory(
        resource.responder, site, max_request_size, reactor, admission, idle_timeout, request_timeout
    )


class _Status(bytes):
    """A response other than ``200``: its whole status line and headers, without the end of head."""

    def response(self, close: bool) -> bytes:
        return self.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1) if close else bytes(self)


_UNAUTHORIZED = _Status(
    b"HTTP/1.1 401 Unauthorized\r\n"
    b'WWW-Authenticate: Basic realm="%s"\r\n'
    b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n\r\n%s"
    % (REALM, len(UNAUTHORIZED_TEXT), UNAUTHORIZED_TEXT)
)

_BASIC = BasicCredentialFactory(REALM)


class _Busy(Protocol):
    """Says a listener that is full is busy, then hangs up."""

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(_BUSY)
        self.transport.loseConnection()


def _plain_response(status: bytes, text: bytes) -> bytes:
    return (
        b"HTTP/1.1 %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
        b"Connection: close\r\n\r\n%s" % (status, len(text), text)
    )


_BUSY = _plain_response(b"503 Service Unavailable", b"Too many connections; try again later.\n")

