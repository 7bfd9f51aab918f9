"""
Calling registered methods on behalf of XML-RPC clients, and the methods
every node answers: introspection, multicall and capabilities.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol
from xmlrpc.client import Fault

from twisted.internet.defer import CancelledError, Deferred, fail, gatherResults
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from co2 import faults
from co2._ratelog import RateLimitedLog
from co2._values import check_value
from co2._xmlrpc import dump_value
from satellites._registry import Method, MethodRegistry
from satellites._soon import Soon, as_deferred, ready, then

__all__ = ["CAPABILITIES", "Caller", "Dispatcher", "Encoded", "RemoteMethods"]

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

    def call(self, name: str, params: tuple[Any, ...], method: str | None = None) -> Deferred[Any]:
        """Call ``name`` (or ``method`` on the node hosting ``name``); its result, or a ``Fault``."""


def _shown(name: str) -> str:
    return repr(name if len(name) <= 100 else name[:100] + "...")


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
        clock: Any = None,
        call_timeout: float | None = None,
        max_response_size: int | None = None,
    ) -> None:
        self.registry = registry
        self.remote = remote
        self.max_response_size = max_response_size
        """The longest answer, in bytes, a call may have (None: no bound); see :meth:`multicall`."""
        # A plugin method still unanswered after call_timeout seconds (by
        # clock) gives its caller fault -32002; without a clock, no bound.
        self.clock = clock
        self.call_timeout = call_timeout
        self._limited = RateLimitedLog(_log, clock) if clock is not None else None
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
        try:
            return as_deferred(self.invoke(caller, name, params))
        except Fault:
            return fail()

    def invoke(self, caller: Caller, name: str, params: tuple[Any, ...]) -> Soon[Any]:
        """
        Call ``name`` with ``params`` as :meth:`call` does, but give a
        result that is ready now as it is (see :mod:`satellites._soon`),
        and raise the ``Fault`` of a call that fails at once; only a call
        that is not done yet gives a Deferred.  This spares the common,
        synchronous call any Deferred.
        """
        method = self.registry.get(name)
        if method is None:
            if self.remote is not None and name in self.remote.names():
                return self.remote.call(name, params)
            raise Fault(faults.METHOD_NOT_FOUND, f"no method {_shown(name)} here")
        arity = method.arity
        if arity is None or not arity[0] <= len(params) <= arity[1]:
            try:
                method.check_params(params)
            except TypeError as e:
                raise Fault(faults.INVALID_PARAMS, f"{name}: {e}") from None
        if method.owner and params:
            _check_params(name, params)
        try:
            if method.takes_caller:
                result = method.function(caller, *params)
            else:
                result = method.function(*params)
        except Fault:
            raise
        except (Exception, SystemExit):  # sys.exit() in a plugin stops no server
            fault = self._fault(Failure(), method).value
            assert isinstance(fault, Fault)
            raise fault from None
        if ready(result):
            return result
        later = as_deferred(result)
        later.addErrback(self._fault, method)
        if not later.called and self.clock is not None and self.call_timeout is not None:
            later.addTimeout(self.call_timeout, self.clock, self._timed_out(method))
        return later

    def _timed_out(self, method: Method) -> Callable[[Any, float], Any]:
        def timed_out(result: Any, timeout: float) -> Any:
            self._emit(
                f"{method.name} timed out", LogLevel.warn,
                "{method} (plugin {owner}) gave no answer within {timeout:g}s (call_timeout); "
                "its caller got fault -32002",
                method=method.name, owner=method.owner or "none", timeout=timeout,
            )
            return Failure(Fault(
                faults.CALL_TIMEOUT, f"{method.name}: no answer within {timeout:g}s"
            ))

        return timed_out

    def _fault(self, failure: Failure, method: Method) -> Failure:
        if failure.check(Fault, CancelledError):
            return failure  # a cancelled call's client has gone: nothing to log
        if method.owner:
            self._emit(f"{method.name} raised", LogLevel.error, "{method} (plugin {owner}) raised",
                       log_failure=failure, method=method.name, owner=method.owner)
            code = faults.APPLICATION_ERROR
        else:
            self._emit(f"{method.name} failed", LogLevel.critical, "{method} failed",
                       log_failure=failure, method=method.name)
            code = faults.INTERNAL_ERROR
        assert failure.value is not None
        return Failure(Fault(code, faults.describe_exception(failure.value)))

    def close(self) -> None:
        """Log what the rate-limited lines held back, and leave no timer: the node stops."""
        if self._limited is not None:
            self._limited.close()

    def _emit(self, kind: str, level: LogLevel, format: str, **fields: Any) -> None:
        """Log a line a method's calls may repeat: a few per method, then a count (with a clock)."""
        if self._limited is None:
            _log.emit(level, format, **fields)
        else:
            self._limited.emit(kind, level, format, **fields)

    def names(self) -> list[str]:
        """The names of every method callable here (hosted here or elsewhere), sorted."""
        names = set(self.registry.names())
        if self.remote is not None:
            names.update(self.remote.names())
        return sorted(names)

    def list_methods(self) -> list[str]:
        """Return the names of every method callable here, sorted."""
        return self.names()

    def _hosted_elsewhere(self, name: object) -> bool:
        """Whether ``name`` is a method of another node, not of this one."""
        return (
            isinstance(name, str) and name not in self.registry
            and self.remote is not None and name in self.remote.names()
        )

    def method_help(self, name: str) -> str | Deferred[str]:
        """Return the documentation of the method ``name`` (asked of its node when it is hosted elsewhere)."""
        if self.remote is not None and self._hosted_elsewhere(name):
            hosted = f"{name} is hosted on {self.remote.host_of(name)}"
            return self.remote.call(name, (name,), "system.methodHelp").addCallbacks(
                lambda help: f"{help}\n\n({hosted})" if isinstance(help, str) and help else hosted,
                lambda failure: hosted,
            )
        method = self._method(name)
        return method.help

    def method_signature(self, name: str) -> list[list[str]] | str | Deferred[Any]:
        """
        Return the signatures of the method ``name``: a list of
        ``[return type, parameter types...]``, or ``"undef"`` (asked of its
        node when it is hosted elsewhere).
        """
        if self.remote is not None and self._hosted_elsewhere(name):
            asked = self.remote.call(name, (name,), "system.methodSignature")
            return asked.addErrback(lambda failure: "undef")
        return self._method(name).signature

    def get_capabilities(self) -> dict[str, dict[str, Any]]:
        """Return the XML-RPC conventions this server follows."""
        return CAPABILITIES

    def _method(self, name: object) -> Method:
        method = self.registry.get(name) if isinstance(name, str) else None
        if method is None:
            raise Fault(faults.INVALID_PARAMS, f"no method {_shown(str(name))} here")
        return method

    def multicall(self, caller: Caller, calls: list[Any]) -> Soon[Encoded]:
        """
        Make many calls in one request: ``calls`` is an array of structs
        ``{methodName, params}``; the answer holds, in order, ``[result]``
        or a fault struct for each.  Calls may not nest.  Once the answers
        known pass ``max_response_size``, they are let go and the whole
        multicall answers fault -32005; calls not yet made are not made.
        """
        if not isinstance(calls, list):
            raise Fault(faults.INVALID_PARAMS, "system.multicall takes an array of calls")
        limit = self.max_response_size
        gathered = _Gathered(limit)
        for call in calls:
            gathered.take(self._one_of_many(caller, call))
            if gathered.over:
                raise Fault(faults.RESPONSE_TOO_LARGE, too_large("system.multicall", gathered.limit or 0))
        return gathered.result()

    def _one_of_many(self, caller: Caller, call: Any) -> Soon[bytes]:
        # Each answer is encoded once, as soon as it is known.
        if not isinstance(call, dict):
            return _fault_value(Fault(faults.INVALID_REQUEST, "each call must be a struct"))
        name, params = call.get("methodName"), call.get("params", [])
        if not isinstance(name, str) or not isinstance(params, list):
            return _fault_value(Fault(
                faults.INVALID_REQUEST, "each call needs a string methodName and an array params",
            ))
        if name == "system.multicall":
            return _fault_value(Fault(faults.INVALID_REQUEST, "system.multicall may not be nested"))
        try:
            result = self.invoke(caller, name, tuple(params))
        except Fault as fault:
            return _fault_value(fault)
        return then(result, _result_value, name, failed=_failure_value)


class _Gathered:
    """The answers of one multicall as they come, holding no more than ``limit`` bytes of them."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.answers: list[Any] = []
        self.size = 0
        self.over = False
        self._waiting: list[Deferred[None]] = []

    def take(self, answer: Soon[bytes]) -> None:
        """Hold the next answer, now or once it comes."""
        index = len(self.answers)
        self.answers.append(b"")
        waiting = then(answer, self._got, index)
        if waiting is not None:  # None: taken now; else the Deferred to wait for, or to cancel
            self._waiting.append(waiting)

    def _got(self, encoded: bytes, index: int) -> None:
        if self.over:
            return
        self.answers[index] = encoded
        self.size += len(encoded)
        if self.limit is not None and self.size > self.limit:
            self.over = True
            self.give_up()

    def give_up(self) -> None:
        # What is held goes now; calls still under way are cancelled.
        self.answers = []
        for waiting in self._waiting:
            waiting.cancel()

    def result(self) -> Soon[Encoded]:
        if not self._waiting:
            return _array_response(self.answers)

        def done(outcome: object) -> Any:
            if self.over:
                raise Fault(faults.RESPONSE_TOO_LARGE, too_large("system.multicall", self.limit or 0))
            if isinstance(outcome, Failure):
                return outcome
            return _array_response(self.answers)

        gathered: Deferred[Any] = gatherResults(self._waiting, consumeErrors=True)
        return gathered.addBoth(done)


def too_large(name: str, limit: int) -> str:
    """What a fault says of an answer over ``max_response_size``."""
    return f"the answer to {name} would be over max_response_size ({limit} bytes)"


def _check_params(name: str, params: tuple[Any, ...]) -> None:
    """
    Raise fault -32602 when ``params``, as parsed, hold what co2 cannot
    carry (and so a plugin could neither return nor send): an int beyond
    64 bits, NaN or an infinity, a ``bigdecimal``.
    """
    try:
        check_value(params)
    except (TypeError, ValueError) as e:
        raise Fault(faults.INVALID_PARAMS, f"{name}: {e}") from None


class Encoded(bytes):
    """A whole ``methodResponse``, already encoded: sent as it is."""


_ARRAY_START = b"<?xml version='1.0'?>\n<methodResponse>\n<params>\n<param>\n<value><array><data>\n"
_ARRAY_END = b"</data></array></value>\n</param>\n</params>\n</methodResponse>\n"


def _array_response(values: list[Any]) -> Encoded:
    return Encoded(_ARRAY_START + b"".join(values) + _ARRAY_END)


_ONE_START = b"<value><array><data>\n"
_ONE_END = b"</data></array></value>\n"


def _result_value(result: Any, name: str) -> bytes:
    # A call's answer is the array [result].
    try:
        return _ONE_START + dump_value(result) + _ONE_END
    except (TypeError, ValueError, OverflowError) as e:
        return _fault_value(Fault(
            faults.INTERNAL_ERROR, f"{name} returned what XML-RPC cannot carry: {e}"
        ))


def _failure_value(failure: Failure, name: str) -> bytes:
    failure.trap(Fault)
    assert isinstance(failure.value, Fault)
    return _fault_value(failure.value)


def _fault_value(fault: Fault) -> bytes:
    return dump_value({"faultCode": fault.faultCode, "faultString": fault.faultString})
