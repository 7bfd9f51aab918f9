"""
The XML-RPC side of a node's HTTP front end: the body of a request in,
the body of its response out, through the node's :class:`Dispatcher`.
"""

from __future__ import annotations

from typing import Any
from xmlrpc.client import Fault

from twisted.cred.error import LoginFailed
from twisted.internet.defer import CancelledError
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.guard import BasicCredentialFactory

from co2 import faults
from co2._auth import Authentication
from co2._xmlrpc import DEFAULT_MAX_DEPTH, XMLRPCParseError, dump_fault, dump_response, parse_call
from satellites._dispatch import Caller, Dispatcher, Encoded, too_large
from satellites._errors import SatelliteError
from satellites._metrics import UNREADABLE, CallStats
from satellites._soon import Soon, then

__all__ = [
    "REALM",
    "UNAUTHORIZED_TEXT",
    "XMLRPC_PATHS",
    "NeedsCredentials",
    "Responder",
    "basic_user",
    "decode_basic",
    "who_is",
]

XMLRPC_PATHS = (b"/", b"/RPC2")
"""The paths XML-RPC calls may be posted to."""

_log = Logger(namespace="co2.xmlrpc")


class NeedsCredentials(SatelliteError):
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

    def respond(self, body: bytes, caller: Caller, anonymous: bool = False) -> Soon[bytes]:
        """
        The ``methodResponse`` to ``body`` from ``caller``: bytes when it
        is ready at once, else a Deferred that fires with them and never
        fails (see :mod:`satellites._soon`).  Every error becomes a fault,
        except a protected call by an ``anonymous`` caller:
        :class:`NeedsCredentials` is raised.
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
        return then(result, self._response, name, failed=self._failure_response)

    def _response(self, result: Any, name: str) -> bytes:
        if type(result) is Encoded:
            answer: bytes = result
        else:
            try:
                answer = dump_response(result)
            except (TypeError, ValueError, OverflowError) as e:
                _log.error("{name} returned what XML-RPC cannot carry: {error}", name=name, error=e)
                self.calls.answered(name, faults.INTERNAL_ERROR)
                return dump_fault(faults.INTERNAL_ERROR, f"{name} returned what XML-RPC cannot carry: {e}")
        limit = self.dispatcher.max_response_size
        if limit is not None and len(answer) > limit:
            self.calls.answered(name, faults.RESPONSE_TOO_LARGE)
            return dump_fault(faults.RESPONSE_TOO_LARGE, too_large(name, limit))
        self.calls.answered(name, 0)
        return answer

    def _failure_response(self, failure: Failure, name: str) -> bytes:
        if failure.check(CancelledError):
            # The client left; no one reads this answer.
            return dump_fault(faults.INTERNAL_ERROR, f"{name}: cancelled, the client has gone")
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


REALM = b"co2"
"""The realm HTTP Basic challenges name."""

UNAUTHORIZED_TEXT = b"This method needs a user name and password (HTTP Basic).\n"


_BASIC = BasicCredentialFactory(REALM)


def decode_basic(header: bytes) -> Any:
    """
    The credentials (``username`` and ``password``) an ``Authorization:
    Basic`` header gives; raises ``LoginFailed`` for any other header.
    """
    scheme, _, token = header.strip().partition(b" ")
    if scheme.lower() != b"basic":
        raise LoginFailed("not HTTP Basic")
    return _BASIC.decode(token.strip(), None)


def basic_user(header: bytes | None) -> str | None:
    """The user name an ``Authorization: Basic`` header gives, if it can be read."""
    if not header:
        return None
    try:
        username = decode_basic(header).username
    except LoginFailed:
        return None
    return username.decode("utf-8", "replace") if isinstance(username, bytes) else str(username)


def who_is(caller: Caller) -> str:
    """How a log line names ``caller``."""
    return f"{caller[0]}:{caller[1]}" if caller is not None else "a local client"


