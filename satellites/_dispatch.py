"""
Calling registered methods on behalf of XML-RPC clients, and the methods
every node answers: introspection, multicall and capabilities.
"""

from __future__ import annotations

import inspect
from typing import Any, Protocol
from xmlrpc.client import Fault

from twisted.internet.defer import Deferred, fail, gatherResults, maybeDeferred
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from co2 import faults
from co2._xmlrpc import dump_response
from satellites._registry import Method, MethodRegistry

__all__ = ["CAPABILITIES", "Caller", "Dispatcher", "RemoteMethods", "settle"]

Caller = tuple[str, int] | None
"""The ``(ip, port)`` a call came from; None for a local (UNIX socket) peer."""

CAPABILITIES = {
    "faults_interop": {
        "specUrl": "http://xmlrpc-epi.sourceforge.net/specs/rfc.fault_codes.php",
        "specVersion": 20010516,
    },
    "introspection": {
        "specUrl": "http://xmlrpc-c.sourceforge.net/introspection.html",
        "specVersion": 1,
    },
    "multicall": {
        "specUrl": "http://www.xmlrpc.com/discuss/msgReader$1208",
        "specVersion": 1,
    },
    "nil": {
        "specUrl": "http://www.ontosys.com/xml-rpc/extensions.php",
        "specVersion": 20010711,
    },
}

_log = Logger(namespace="co2.xmlrpc")


class RemoteMethods(Protocol):
    """Methods hosted on other nodes (the relay's method directory)."""

    def names(self) -> set[str]:
        """Their names."""

    def host_of(self, name: str) -> str | None:
        """The host_id of the node a call to ``name`` would go to."""

    def call(self, name: str, params: tuple[Any, ...]) -> Deferred[Any]:
        """Call ``name``; fires with its result or fails with a ``Fault``."""


def _shown(name: str) -> str:
    return repr(name if len(name) <= 100 else name[:100] + "...")


def settle(result: Any) -> Any:
    """
    What a plugin returned, made waitable: a coroutine (from ``async def``)
    becomes a Deferred; a Deferred or plain value is returned as it is.
    """
    return Deferred.fromCoroutine(result) if inspect.iscoroutine(result) else result


class Dispatcher:
    """
    Calls methods of a :class:`MethodRegistry` and turns every outcome into
    a result or an ``xmlrpc.client.Fault``; registers the ``system.*``
    methods in it.
    """

    def __init__(
        self,
        registry: MethodRegistry,
        remote: RemoteMethods | None = None,
    ) -> None:
        self.registry = registry
        self.remote = remote
        for method in (
            Method.of("system.listMethods", self.list_methods),
            Method.of("system.methodHelp", self.method_help),
            Method.of("system.methodSignature", self.method_signature),
            Method.of("system.multicall", self.multicall, takes_caller=True),
            Method.of("system.getCapabilities", self.get_capabilities),
        ):
            registry.add(method)

    def call(self, caller: Caller, name: str, params: tuple[Any, ...]) -> Deferred[Any]:
        """
        Call ``name`` with ``params``.

        Fires with the result, or fails with a ``Fault``: -32601 for an
        unknown name, -32602 for parameters that do not fit, -32500 for an
        exception a plugin raised (a ``Fault`` it raised is kept as it is),
        -32603 for a failure of the server's own methods.
        """
        method = self.registry.get(name)
        if method is None and self.remote is not None and name in self.remote.names():
            return self.remote.call(name, params)
        if method is None:
            return fail(
                Fault(faults.METHOD_NOT_FOUND, f"no method {_shown(name)} here")
            )
        try:
            method.check_params(params)
        except TypeError as e:
            return fail(Fault(faults.INVALID_PARAMS, f"{name}: {e}"))
        args = (caller, *params) if method.takes_caller else params
        d = maybeDeferred(method.function, *args)
        d.addCallback(settle)
        d.addErrback(self._fault, method)
        return d

    def _fault(self, failure: Failure, method: Method) -> Failure:
        if failure.check(Fault):
            return failure
        if method.owner:
            _log.failure(
                "{method} (plugin {owner}) raised", failure, LogLevel.error,
                method=method.name, owner=method.owner,
            )
            code = faults.APPLICATION_ERROR
        else:
            _log.failure("{method} failed", failure, method=method.name)
            code = faults.INTERNAL_ERROR
        assert failure.value is not None
        return Failure(Fault(code, faults.describe_exception(failure.value)))

    def names(self) -> list[str]:
        """The names of every method callable here (hosted here or elsewhere), sorted."""
        names = set(self.registry.names())
        if self.remote is not None:
            names.update(self.remote.names())
        return sorted(names)

    def list_methods(self) -> list[str]:
        """Return the names of every method callable here, sorted."""
        return self.names()

    def method_help(self, name: str) -> str:
        """Return the documentation of the method ``name``."""
        if (
            isinstance(name, str) and name not in self.registry
            and self.remote is not None and name in self.remote.names()
        ):
            return f"{name} is hosted on {self.remote.host_of(name)}"
        method = self._method(name)
        return method.help

    def method_signature(self, name: str) -> list[list[str]] | str:
        """
        Return the signatures of the method ``name``: a list of
        ``[return type, parameter types...]``, or ``"undef"``.
        """
        if (
            isinstance(name, str) and name not in self.registry
            and self.remote is not None and name in self.remote.names()
        ):
            return "undef"
        return self._method(name).signature

    def get_capabilities(self) -> dict[str, dict[str, Any]]:
        """Return the XML-RPC conventions this server follows."""
        return CAPABILITIES

    def _method(self, name: object) -> Method:
        method = self.registry.get(name) if isinstance(name, str) else None
        if method is None:
            raise Fault(faults.INVALID_PARAMS, f"no method {_shown(str(name))} here")
        return method

    def multicall(self, caller: Caller, calls: list[Any]) -> Deferred[list[Any]]:
        """
        Make many calls in one request: ``calls`` is an array of structs
        ``{methodName, params}``; the answer holds, in order, ``[result]``
        or a fault struct for each.  Calls may not nest.
        """
        if not isinstance(calls, list):
            raise Fault(faults.INVALID_PARAMS, "system.multicall takes an array of calls")
        return gatherResults([self._one_of_many(caller, call) for call in calls])

    def _one_of_many(self, caller: Caller, call: Any) -> Deferred[Any]:
        if not isinstance(call, dict):
            d = fail(Fault(faults.INVALID_REQUEST, "each call must be a struct"))
        else:
            name, params = call.get("methodName"), call.get("params", [])
            if not isinstance(name, str) or not isinstance(params, list):
                d = fail(Fault(
                    faults.INVALID_REQUEST,
                    "each call needs a string methodName and an array params",
                ))
            elif name == "system.multicall":
                d = fail(
                    Fault(faults.INVALID_REQUEST, "system.multicall may not be nested")
                )
            else:
                d = self.call(caller, name, tuple(params))
                d.addCallback(_checked_result, name)
        d.addCallbacks(lambda result: [result], _fault_struct)
        return d


def _checked_result(result: Any, name: str) -> Any:
    try:
        dump_response(result)
    except (TypeError, ValueError, OverflowError) as e:
        raise Fault(
            faults.INTERNAL_ERROR, f"{name} returned what XML-RPC cannot carry: {e}"
        ) from None
    return result


def _fault_struct(failure: Failure) -> dict[str, Any]:
    failure.trap(Fault)
    fault = failure.value
    assert isinstance(fault, Fault)
    return {"faultCode": fault.faultCode, "faultString": fault.faultString}
