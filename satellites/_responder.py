"""
The HTTP side of a node: an XML-RPC resource and the site serving it.

A request body over the configured size is refused with ``413`` as soon as
its length is known, before anything is parsed or buffered.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any
from xmlrpc.client import Fault

from twisted.cred.checkers import ANONYMOUS
from twisted.cred.error import LoginFailed
from twisted.cred.portal import IRealm
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.guard import BasicCredentialFactory, HTTPAuthSessionWrapper
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET, Request, Site
from zope.interface import implementer

from co2 import faults
from co2._auth import Authentication
from co2._xmlrpc import DEFAULT_MAX_DEPTH, XMLRPCParseError, dump_fault, dump_response, parse_call
from satellites._dispatch import Caller, Dispatcher, Encoded
from satellites._metrics import UNREADABLE, CallStats

__all__ = [
    "REALM",
    "XMLRPC_PATHS",
    "NeedsCredentials",
    "Responder",
    "XMLRPCResource",
    "basic_user",
    "guarded",
    "make_site",
    "refusal_413",
    "site_root",
    "who_is",
]

XMLRPC_PATHS = (b"/", b"/RPC2")
"""The paths XML-RPC calls may be posted to."""

_log = Logger(namespace="co2.xmlrpc")


def caller_of(request: Request) -> Caller:
    """The ``(ip, port)`` a request came from, or None for a UNIX socket peer."""
    address = request.getClientAddress()
    if isinstance(address, (IPv4Address, IPv6Address)):
        return (address.host, address.port)
    return None


class NeedsCredentials(Exception):
    """An anonymous request calls a method that only users may call."""


class Responder:
    """
    Turns the body of an XML-RPC request into the body of its response,
    through a :class:`Dispatcher`.  Every HTTP front end of a node uses
    this one piece.  With ``authentication``, an anonymous request that
    calls a protected method (itself, or inside ``system.multicall``) is
    refused with :class:`NeedsCredentials` before anything is called.
    """

    def __init__(
        self,
        dispatcher: Dispatcher,
        max_depth: int = DEFAULT_MAX_DEPTH,
        authentication: Authentication | None = None,
    ) -> None:
        self.dispatcher = dispatcher
        self.max_depth = max_depth
        self.authentication = authentication
        self.calls = CallStats()

    def respond(self, body: bytes, caller: Caller, anonymous: bool = False) -> bytes | Deferred[bytes]:
        """
        The ``methodResponse`` to ``body`` from ``caller``: bytes when it
        is ready at once, else a Deferred that fires with them (never
        fails).  Every error becomes a fault, except a protected call by
        an ``anonymous`` caller: :class:`NeedsCredentials` is raised.
        """
        calls = self.calls
        try:
            name, params = parse_call(body, self.max_depth)
        except XMLRPCParseError as e:
            calls.answered(UNREADABLE, e.code)
            return dump_fault(e.code, str(e))
        except Exception:
            # A reader's bug must not cost the client its answer.
            _log.failure("unexpected failure reading a request")
            calls.answered(UNREADABLE, faults.INTERNAL_ERROR)
            return dump_fault(faults.INTERNAL_ERROR, "internal error")
        if anonymous and self.authentication is not None:
            if self.authentication.needs_credentials(_names_called(name, params)):
                raise NeedsCredentials(name)
        try:
            result = self.dispatcher.invoke(caller, name, params)
        except Fault as fault:
            answer = _fault_response(fault)
            calls.answered(name, _code_of(fault))
            return answer
        except Exception:
            _log.failure("unexpected failure calling {name}", name=name)
            calls.answered(name, faults.INTERNAL_ERROR)
            return dump_fault(faults.INTERNAL_ERROR, "internal error")
        if isinstance(result, Deferred):
            return result.addCallbacks(
                self._response, self._failure_response, callbackArgs=(name,), errbackArgs=(name,)
            )
        return self._response(result, name)

    def _response(self, result: Any, name: str) -> bytes:
        if type(result) is Encoded:
            self.calls.answered(name, 0)
            return result
        try:
            answer = dump_response(result)
        except (TypeError, ValueError, OverflowError) as e:
            _log.error("{name} returned what XML-RPC cannot carry: {error}", name=name, error=e)
            self.calls.answered(name, faults.INTERNAL_ERROR)
            return dump_fault(faults.INTERNAL_ERROR, f"{name} returned what XML-RPC cannot carry: {e}")
        self.calls.answered(name, 0)
        return answer

    def _failure_response(self, failure: Failure, name: str) -> bytes:
        if isinstance(failure.value, Fault):
            self.calls.answered(name, _code_of(failure.value))
            return _fault_response(failure.value)
        _log.failure("unexpected failure", failure)
        self.calls.answered(name, faults.INTERNAL_ERROR)
        return dump_fault(faults.INTERNAL_ERROR, "internal error")


def _code_of(fault: Fault) -> int:
    code = fault.faultCode
    return code if type(code) is int else faults.INTERNAL_ERROR


def _names_called(name: str, params: tuple[Any, ...]) -> list[str]:
    """The method ``name`` and, for a multicall, every method it calls."""
    names = [name]
    if name == "system.multicall" and params and isinstance(params[0], list):
        for call in params[0]:
            if isinstance(call, dict) and isinstance(call.get("methodName"), str):
                names.append(call["methodName"])
    return names


def _fault_response(fault: Fault) -> bytes:
    try:
        return dump_fault(int(fault.faultCode), str(fault.faultString))
    except (TypeError, ValueError, OverflowError):
        _log.error("a fault XML-RPC cannot carry: {fault!r}", fault=fault)
        return dump_fault(faults.INTERNAL_ERROR, "internal error")


class XMLRPCResource(Resource):
    """
    Answers XML-RPC ``POST`` requests through a :class:`Responder`.  Behind
    :func:`guarded`, each request is rendered by a :class:`_UserView` that
    knows whether the caller gave credentials.
    """

    isLeaf = True

    def __init__(
        self,
        dispatcher: Dispatcher,
        max_depth: int = DEFAULT_MAX_DEPTH,
        authentication: Authentication | None = None,
    ) -> None:
        super().__init__()
        self.responder = Responder(dispatcher, max_depth, authentication)

    def render_GET(self, request: Request) -> bytes:
        request.setResponseCode(http.NOT_ALLOWED)
        request.setHeader(b"allow", b"POST")
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return b"This is a co2 XML-RPC endpoint: POST a methodCall to / or /RPC2.\n"

    def render_POST(self, request: Request, anonymous: bool = False) -> Any:
        if request.path not in XMLRPC_PATHS:
            request.setResponseCode(http.NOT_FOUND)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"No XML-RPC endpoint here: POST to / or /RPC2.\n"
        assert request.content is not None
        try:
            answer = self.responder.respond(request.content.read(), caller_of(request), anonymous)
        except NeedsCredentials:
            return _challenge(request)
        if not isinstance(answer, Deferred):
            return self._answer(request, answer)
        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))
        answer.addCallback(lambda payload: None if gone else self._finish(request, payload))
        answer.addErrback(lambda f: _log.failure("answering a request", f))
        return NOT_DONE_YET

    def _answer(self, request: Request, payload: bytes) -> bytes:
        request.setHeader(b"content-type", b"text/xml; charset=utf-8")
        request.setHeader(b"content-length", b"%d" % len(payload))
        return payload

    def _finish(self, request: Request, payload: bytes) -> None:
        request.write(self._answer(request, payload))
        request.finish()


class _UserView(Resource):
    """The XML-RPC resource as one caller, with or without credentials, sees it."""

    isLeaf = True

    def __init__(self, resource: XMLRPCResource, anonymous: bool) -> None:
        super().__init__()
        self.resource = resource
        self.anonymous = anonymous

    def render_GET(self, request: Request) -> bytes:
        return self.resource.render_GET(request)

    def render_POST(self, request: Request) -> Any:
        return self.resource.render_POST(request, self.anonymous)


@implementer(IRealm)
class _Realm:
    """A realm whose avatars are resources: ``view`` makes one for each user (``ANONYMOUS`` included)."""

    def __init__(self, view: Callable[[Any], Resource]) -> None:
        self.view = view

    def requestAvatar(self, avatar_id: Any, mind: Any, *interfaces: Any) -> tuple[Any, Any, Any]:
        if IResource not in interfaces:
            raise NotImplementedError("only resources here")
        return IResource, self.view(avatar_id), lambda: None


REALM = b"co2"
"""The realm HTTP Basic challenges name."""

UNAUTHORIZED_TEXT = b"This method needs a user name and password (HTTP Basic).\n"


def _challenge(request: Request) -> bytes:
    request.setResponseCode(http.UNAUTHORIZED)
    request.setHeader(b"www-authenticate", b'Basic realm="%s"' % REALM)
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    return UNAUTHORIZED_TEXT


def basic_user(header: bytes | None) -> str | None:
    """The user name an ``Authorization: Basic`` header gives, if it can be read."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(b" ")
    if scheme.lower() != b"basic":
        return None
    try:
        given = BasicCredentialFactory(REALM).decode(token.strip(), None)
    except LoginFailed:
        return None
    username = given.username
    return username.decode("utf-8", "replace") if isinstance(username, bytes) else str(username)


class _Guard(HTTPAuthSessionWrapper):
    """
    ``twisted.web.guard``'s Basic authentication in front of a resource:
    the XML-RPC one (callers without credentials may call what is not
    protected) or another that users only may see.  Each request it
    answers ``401`` is counted and logged.
    """

    def __init__(self, resource: Resource, authentication: Authentication) -> None:
        if isinstance(resource, XMLRPCResource):
            xmlrpc = resource
            realm = _Realm(lambda user: _UserView(xmlrpc, anonymous=user is ANONYMOUS))
            portal = authentication.portal(realm)
        else:
            portal = authentication.portal(_Realm(lambda user: resource), anonymous=False)
        super().__init__(portal, [BasicCredentialFactory(REALM)])
        self.authentication = authentication

    def render(self, request: Request) -> Any:
        self._watch(request)
        return super().render(request)

    def getChildWithDefault(self, path: bytes, request: Request) -> Any:
        self._watch(request)
        return super().getChildWithDefault(path, request)

    def _watch(self, request: Request) -> None:
        def finished(_: object) -> None:
            if request.code == http.UNAUTHORIZED:
                header = request.getHeader(b"authorization")
                why = "wrong user name or password" if header else "no credentials given"
                self.authentication.refuse(
                    "the XML-RPC listener", who_is(caller_of(request)), basic_user(header), why
                )

        request.notifyFinish().addBoth(finished)


def who_is(caller: Caller) -> str:
    """How a log line names ``caller``."""
    return f"{caller[0]}:{caller[1]}" if caller is not None else "a local client"


def guarded(resource: XMLRPCResource, authentication: Authentication | None) -> Any:
    """``resource`` behind HTTP Basic authentication, when there is any."""
    if authentication is None:
        return resource
    return _Guard(resource, authentication)


class _Root(Resource):
    """
    The site's root: ``GET /`` (the status page), ``/status.json`` and
    ``/metrics`` when the node has them and, for every other request,
    the XML-RPC resource, which answers ``POST /`` and ``/RPC2``.
    """

    def __init__(self, xmlrpc: Any, pages: dict[bytes, Any]) -> None:
        super().__init__()
        self.xmlrpc = xmlrpc
        self.pages = pages

    def getChild(self, path: bytes, request: Request) -> Any:
        if not request.postpath and request.method in (b"GET", b"HEAD"):
            page = self.pages.get(path)
            if page is not None:
                return page
        return self.xmlrpc

    def render(self, request: Request) -> Any:
        return self.xmlrpc.render(request)


def site_root(
    resource: XMLRPCResource,
    authentication: Authentication | None,
    metrics: Resource | None = None,
    status: tuple[Resource, Resource] | None = None,
) -> Any:
    """
    What a node's site serves: ``resource``, and ``metrics`` and the
    ``status`` page and JSON when given, each behind HTTP Basic when
    ``authentication`` protects it (``/metrics`` when the name
    ``metrics`` matches ``auth_methods``, the status when ``status`` does).
    """
    pages: dict[bytes, Any] = {}
    if metrics is not None:
        pages[b"metrics"] = _guard_page("metrics", metrics, authentication)
    if status is not None:
        page, data = status
        pages[b""] = _guard_page("status", page, authentication)
        pages[b"status.json"] = _guard_page("status", data, authentication)
    if not pages:
        return guarded(resource, authentication)
    return _Root(guarded(resource, authentication), pages)


def _guard_page(name: str, page: Resource, authentication: Authentication | None) -> Any:
    if authentication is not None and authentication.needs_credentials([name]):
        return _Guard(page, authentication)
    return page


class LimitedRequest(Request):
    """A request whose body may not exceed ``max_size`` bytes."""

    max_size = 1024 * 1024
    _refused = False
    _received = 0

    def gotLength(self, length: int | None) -> None:
        if length is not None and length > self.max_size:
            self._refuse()
        else:
            super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self._refused:
            return
        self._received += len(data)
        if self._received > self.max_size:
            self._refuse()
        else:
            super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if not self._refused:
            super().requestReceived(command, path, version)

    def _refuse(self) -> None:
        self._refused = True
        self.content = io.BytesIO()
        assert self.channel is not None and self.channel.transport is not None
        self.channel.transport.write(refusal_413(self.max_size))
        self.channel.loseConnection()


def refusal_413(max_size: int) -> bytes:
    """The whole response refusing a request body over ``max_size`` bytes."""
    text = b"Request body over %d bytes refused.\n" % max_size
    return (
        b"HTTP/1.1 413 Content Too Large\r\nContent-Type: text/plain\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(text), text)
    )


class Co2Site(Site):
    """A site that writes no access log line per request."""

    def log(self, request: http.Request) -> None:
        pass


def make_site(resource: Any, max_request_size: int, reactor: Any = None) -> Site:
    """
    A site serving ``resource`` that refuses bodies over ``max_request_size``;
    ``reactor`` times out idle connections (the global one when None).
    """
    request_factory = type("LimitedRequest", (LimitedRequest,), {"max_size": max_request_size})
    site = Co2Site(resource, requestFactory=request_factory, reactor=reactor)
    site.displayTracebacks = False
    site.noisy = False
    return site
