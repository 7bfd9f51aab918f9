"""
What a node's HTTP front end answers, once a request is framed.

Every request, on every route, passes the same checks in this order:

1. **Host**: the ``Host`` header must name the address the client
   reached (``localhost`` too, when that is loopback) or a name in
   ``allowed_hosts`` (``"*"`` takes any); else ``403``.  A page in a
   browser that a DNS name was rebound under cannot read a node.
2. **Origin**: a request with an ``Origin`` header not in
   ``allowed_origins`` (empty by default) gets ``403``: browsers send
   one on every cross-site ``POST``, XML-RPC clients never do.  The
   node's own origin (the scheme and the ``Host`` checked above) is
   always let in: it is the node's own pages (``/methods``) calling it.
3. **Route**: ``POST /`` and ``/RPC2`` are XML-RPC (a ``text/xml`` or
   ``application/xml`` body, else ``415``); ``GET`` (and ``HEAD``) of
   ``/``, ``/status.json`` and ``/metrics`` are the node's pages; a
   known path with another method gets ``405``, any other path ``404``.
4. **Authentication** (HTTP Basic, through ``twisted.cred``): credentials,
   when given, are checked on every route, and wrong ones get ``401``;
   without them a caller may call what ``auth_methods`` leaves open.  A
   source with too many recent failures gets ``429`` without a check.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from twisted.cred.error import LoginFailed
from twisted.internet.defer import Deferred

from co2._admission import Admission
from co2._auth import Authentication, login_failure_reason, login_source
from co2._xmlrpc import DEFAULT_MAX_DEPTH
from satellites._dispatch import Caller, Dispatcher
from satellites._exchange import PAGE_HEADERS, Request, Response, plain
from satellites._http import HTTPChannel, HTTPFactory
from satellites._metrics import MetricsPage, node_registry
from satellites._network import NetworkJSON, methods_page, network_page
from satellites._responder import (
    REALM,
    UNAUTHORIZED_TEXT,
    XMLRPC_PATHS,
    NeedsCredentials,
    Responder,
    basic_user,
    decode_basic,
    who_is,
)
from satellites._soon import Soon, then
from satellites._status import StatusJSON, StatusPage

__all__ = ["Page", "Routes", "make_server"]


class Page(Protocol):
    """A page a node serves at ``GET``: rendered anew for each request."""

    name: str
    """What ``auth_methods`` calls it (``status``, ``metrics``)."""
    content_type: bytes

    def render(self) -> bytes:
        """The page's body as it is now."""


_XML_TYPES = (b"text/xml", b"application/xml")
_XML_HEADERS = b"Content-Type: text/xml; charset=utf-8\r\n"

_WRONG_HOST = plain(
    b"403 Forbidden", "The Host header names neither this node's address nor a name in allowed_hosts."
)
_WRONG_ORIGIN = plain(
    b"403 Forbidden", "Requests from web pages of that origin are refused (allowed_origins)."
)
_NOT_XML = plain(b"415 Unsupported Media Type", "An XML-RPC call is a text/xml body.")
_NOT_FOUND = plain(b"404 Not Found", "Nothing here: XML-RPC is POST / or /RPC2.")
_UNAUTHORIZED = Response(
    b"401 Unauthorized",
    b'WWW-Authenticate: Basic realm="%s"\r\nContent-Type: text/plain; charset=utf-8\r\n%s'
    % (REALM, PAGE_HEADERS),
    UNAUTHORIZED_TEXT,
)
_THROTTLED = plain(
    b"429 Too Many Requests", "Too many failed logins from this address; wait and try again.",
    b"Retry-After: 10\r\n",
)


class Routes:
    """
    Answers the requests of a node's HTTP front end: XML-RPC through
    ``responder``, and ``pages`` (path to :class:`Page`).
    """

    def __init__(
        self,
        responder: Responder,
        pages: Mapping[bytes, Page] | None = None,
        allowed_hosts: Iterable[str] = (),
        allowed_origins: Iterable[str] = (),
    ) -> None:
        self.responder = responder
        self.authentication: Authentication | None = responder.authentication
        self.pages = dict(pages or {})
        hosts = {host.lower() for host in allowed_hosts}
        self.any_host = "*" in hosts
        self.hosts = {host.encode("idna") for host in hosts}
        self.origins = {origin.lower().encode() for origin in allowed_origins}
        # What the Content-Type headers seen lately decided: nearly every
        # request repeats the one before.
        self._types_seen: dict[bytes | None, bool] = {}

    def answer(self, request: Request, channel: HTTPChannel) -> Soon[Response]:
        """The response to ``request``, which came on ``channel``: now, or a Deferred that never fails."""
        local = channel.local_host
        if local is not None and not self.any_host and request.host != channel.host_allowed:
            # Decided once per connection for the Host it keeps sending.
            if not self._host_allowed(request.host, local):
                return _WRONG_HOST
            channel.host_allowed = request.host
        origin = request.origin
        if origin is not None and not (origin.lower() in self.origins or _own_origin(origin, request.host)):
            return _WRONG_ORIGIN
        path = request.path
        method = request.method
        if method == b"POST" and path in XMLRPC_PATHS:
            return self._call(request, channel.caller)
        page = self.pages.get(path)
        if page is not None and (method == b"GET" or method == b"HEAD"):
            return self._page(page, request, channel.caller)
        allowed = [b"GET", b"HEAD"] if page is not None else []
        if path in XMLRPC_PATHS:
            allowed.append(b"POST")
        if not allowed:
            return _NOT_FOUND
        return plain(
            b"405 Method Not Allowed", f"{method.decode('latin-1')} is not answered here.",
            b"Allow: %s\r\n" % b", ".join(allowed),
        )

    def _host_allowed(self, host: bytes | None, local: str) -> bool:
        if host is None:
            return True  # HTTP/1.0 without Host: no browser sends that
        name = _host_name(host)
        if name == local.encode() or name in self.hosts:
            return True
        return name == b"localhost" and _is_loopback(local)

    # XML-RPC

    def _call(self, request: Request, caller: Caller) -> Soon[Response]:
        content_type = request.content_type
        is_xml = self._types_seen.get(content_type)
        if is_xml is None:
            is_xml = _remember(self._types_seen, content_type, _is_xml(content_type))
        if not is_xml:
            return _NOT_XML
        body = request.body
        authentication = self.authentication
        if authentication is None:
            return _xml(self.responder.respond(body, caller))
        if request.authorization is None:
            if authentication.everything:
                return self._unauthorized(caller, None, "no credentials given")
            try:
                return _xml(self.responder.respond(body, caller, anonymous=True))
            except NeedsCredentials:
                return self._unauthorized(caller, None, "no credentials given")
        return self._as_user(request, caller, lambda: _xml(self.responder.respond(body, caller)))

    # Pages

    def _page(self, page: Page, request: Request, caller: Caller) -> Soon[Response]:
        authentication = self.authentication
        if authentication is None:
            return _rendered(page)
        if request.authorization is None:
            if authentication.needs_credentials([page.name]):
                return self._unauthorized(caller, None, "no credentials given")
            return _rendered(page)
        return self._as_user(request, caller, lambda: _rendered(page))

    # Authentication: one decision for every route

    def _as_user(
        self, request: Request, caller: Caller, respond: Callable[[], Soon[Response]]
    ) -> Response | Deferred[Response]:
        """
        A Deferred of ``respond()``'s answer once the request's credentials
        are checked (or of ``401`` if they are wrong); a refusal now for a
        throttled source or credentials that are not HTTP Basic.
        """
        authentication = self.authentication
        assert authentication is not None and request.authorization is not None
        header = request.authorization
        source = login_source(caller[0] if caller is not None else None)
        if authentication.throttled(source):
            authentication.refuse("the XML-RPC listener", who_is(caller), basic_user(header),
                                  "too many failed logins")
            return _THROTTLED
        try:
            given = decode_basic(header)
        except LoginFailed:
            return self._unauthorized(caller, None, "credentials that are not HTTP Basic")
        checked: Deferred[Any] = authentication.check(given.username, given.password, source)
        return checked.addCallbacks(
            lambda _: respond(),
            lambda failure: self._unauthorized(caller, basic_user(header), login_failure_reason(failure)),
        )

    def _unauthorized(self, caller: Caller, username: str | None, why: str) -> Response:
        assert self.authentication is not None
        self.authentication.refuse("the XML-RPC listener", who_is(caller), username, why)
        return _UNAUTHORIZED


def _remember(seen: dict[Any, bool], key: Any, decision: bool) -> bool:
    if len(seen) >= 64:
        seen.clear()
    seen[key] = decision
    return decision


def _is_xml(content_type: bytes | None) -> bool:
    return content_type is not None and content_type.partition(b";")[0].strip().lower() in _XML_TYPES


def _xml(answer: Soon[bytes]) -> Soon[Response]:
    return then(answer, _ok, _XML_HEADERS)


def _ok(body: bytes, headers: bytes) -> Response:
    return Response(b"200 OK", headers, body)


def _rendered(page: Page) -> Response:
    # A page with a script of its own says so in its own headers (its policy names the script).
    headers = getattr(page, "headers", PAGE_HEADERS)
    return Response(
        b"200 OK",
        b"Content-Type: %s\r\nCache-Control: no-store\r\n%s" % (page.content_type, headers),
        page.render(),
    )


def _own_origin(origin: bytes, host: bytes | None) -> bool:
    """Whether ``origin`` is the node's own: the page came from the ``Host`` (already checked) it calls."""
    if host is None:
        return False
    origin, host = origin.lower(), host.strip().lower()
    return origin == b"http://" + host or origin == b"https://" + host


def _host_name(host: bytes) -> bytes:
    """The name in a ``Host`` header, without its port, lower case (IPv6 literals keep their brackets)."""
    host = host.strip().lower()
    if host.startswith(b"["):
        return host.partition(b"]")[0] + b"]"
    return host.partition(b":")[0]


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


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
    allowed_hosts: Iterable[str] = (),
    allowed_origins: Iterable[str] = (),
    node: Any = None,
    role: str = "satellite",
) -> HTTPFactory:
    """
    The factory a node's HTTP listener listens with: calls go to
    ``dispatcher``; bodies over ``max_request_size`` are refused with
    ``413``, documents nesting deeper than ``max_depth`` with a fault; the
    other limits are :class:`HTTPFactory`'s.  ``reactor`` gives time (the
    global one when None).  With ``authentication``, callers prove
    themselves with HTTP Basic as it says.  With ``node`` (a satellite or
    standalone relay, whose ``role`` the status page names), ``GET /``
    shows its status and ``GET /metrics`` tells what it has done.
    """
    if reactor is None:
        from twisted.internet import reactor
    responder = Responder(dispatcher, max_depth, authentication)
    pages: dict[bytes, Page] = {}
    if node is not None:
        pages[b"/"] = StatusPage(node, role)
        pages[b"/status.json"] = StatusJSON(node, role)
        pages[b"/metrics"] = MetricsPage(node_registry(node, responder.calls))
        pages[b"/network.json"] = NetworkJSON(node)
        pages[b"/network"] = network_page()
        pages[b"/methods"] = methods_page()
    routes = Routes(responder, pages, allowed_hosts, allowed_origins)
    admission = Admission(max_connections, "the XML-RPC listener", reactor)
    return HTTPFactory(routes, reactor, admission, max_request_size, idle_timeout, request_timeout)
