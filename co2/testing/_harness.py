"""
:class:`PluginHarness`: one plugin package on an in-memory satellite, for
the tests of a plugin author.

The harness is a real ``satellites.Satellite`` on a :class:`TestReactor`,
loading the package with the satellite's own loader and answering calls
through its own XML-RPC server over an in-memory connection: what a test
sees is what a client of a real satellite would see, without a socket or
the global reactor.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, cast

from twisted.internet.defer import Deferred
from twisted.logger import ILogObserver, LogLevel, formatEvent, globalLogPublisher
from twisted.python.failure import Failure

from co2._config import RESERVED_PACKAGES
from co2._errors import Co2Error, ConfigError, PluginError
from co2._message import check_message, decode_message, encode_message, parse_host_id
from co2._plugin import Co2Plugin
from co2._values import check_members
from co2.testing._memory import MemoryXMLRPCClient, TestReactor

# The one place co2 builds on another co2 package: the harness is a real
# satellite.  Only satellites' public API (see setup.cfg's import-linter contracts).
from satellites import Config, Satellite, make_config, make_server

__all__ = ["HOST_ID", "PEER_HOST_ID", "PluginFailed", "PluginHarness", "Sent"]

HOST_ID = "1@127.0.0.1:2004"
"""The ``host_id`` of a harness's satellite (and of its plugins' ``var_dict``)."""

PEER_HOST_ID = "2@127.0.0.1:2005"
"""The ``host_id`` :meth:`PluginHarness.deliver` gives a message by default."""

_CALLER = ("127.0.0.1", 40000)
_MAX_STEPS = 100_000


class PluginFailed(Co2Error, AssertionError):
    """
    A plugin failed while the harness ran it: ``receive``, ``__exit__``, or
    work on the clock raised, or ``__exit__`` overran ``exit_timeout``.
    The message holds what the satellite logged, tracebacks included;
    ``events`` are those log events.
    """

    def __init__(self, what: str, events: list[dict[str, Any]]) -> None:
        self.events = events
        super().__init__(f"{what}:\n" + _text_of(events, tracebacks=True))


@dataclass(frozen=True)
class Sent:
    """One message a plugin sent: ``sender`` is ``str(plugin)``, ``data`` what it sent."""

    sender: str
    data: Any


def _text_of(events: list[dict[str, Any]], tracebacks: bool = False) -> str:
    lines = []
    for event in events:
        level = event.get("log_level")
        lines.append(
            f"[{event.get('log_namespace', '-')}#{level.name if level else '-'}] {formatEvent(event)}"
        )
        failure = event.get("log_failure")
        if tracebacks and isinstance(failure, Failure):
            lines.append(failure.getTraceback().rstrip())
    return "\n".join(lines)


def _where(path: str | os.PathLike[str], package: str | None) -> tuple[str, str]:
    """The plugin directory and package name that ``path`` (and ``package``) name."""
    where = Path(path).resolve()
    if package is not None:
        return str(where), package
    if not (where / "__init__.py").is_file():
        raise ValueError(
            f"{where} is not a plugin package (it has no __init__.py); give a package "
            "directory, or the plugin directory and the package name"
        )
    return str(where.parent), where.name


def _config_for(
    plugin_dir: str, package: str, var_dict: Mapping[str, Any] | None, settings: Mapping[str, Any] | None
) -> Config:
    """The config of the harness's satellite: ``package`` alone, checked as a satellite would."""
    if package in RESERVED_PACKAGES:
        raise PluginError(package, "the name is reserved: a satellite never loads it")
    unknown: list[str] = []
    config = make_config(
        {
            **(settings or {}),
            "plugin_dir": plugin_dir,
            "plugin_list": [package],
            "plugin_config": {package: dict(var_dict or {})},
        },
        warn=unknown.append,
    )
    if unknown:
        raise ConfigError("<harness>", None, "; ".join(unknown))
    return config


class PluginHarness:
    """
    Load the plugin package at ``path`` (a package directory, or a plugin
    directory with ``package`` naming the package in it) into an in-memory
    satellite, and drive it as a test would.

    ``var_dict`` is merged into each ``X_`` class's ``var_dict``, as the
    package's ``plugin_config`` entry would be; ``settings`` are other
    config settings of the satellite (``call_timeout``, ``exit_timeout``,
    ``max_message_size``...).  Everything runs on :attr:`reactor`, a
    :class:`co2.testing.TestReactor` whose time moves only when the
    harness moves it.

    Raises :class:`co2.PluginError` when the package does not load (its
    message holds the problem and the traceback), and
    :class:`co2.ConfigError` for a setting a satellite would refuse.
    Use it as a context manager, or call :meth:`shutdown` at the end.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        package: str | None = None,
        *,
        var_dict: Mapping[str, Any] | None = None,
        settings: Mapping[str, Any] | None = None,
        host_id: str = HOST_ID,
    ) -> None:
        plugin_dir, self.package = _where(path, package)
        config = _config_for(plugin_dir, self.package, var_dict, settings)
        self.reactor = TestReactor()
        """The clock everything runs on (a :class:`co2.testing.TestReactor`)."""
        self.sent: list[Sent] = []
        """Every message the plugins sent, in order."""
        self.events: list[dict[str, Any]] = []
        """The log events emitted while the harness ran the plugins."""
        self._closed = False
        record = self._record_sent

        class HarnessSatellite(Satellite):
            def send_from(self, plugin: Co2Plugin, data: Any) -> None:
                super().send_from(plugin, data)
                record(plugin, data)

        self.satellite = HarnessSatellite(config, self.reactor, host_id=host_id)
        """The ``satellites.Satellite`` hosting the package."""
        self._load()
        self._client = MemoryXMLRPCClient(
            make_server(
                self.satellite.dispatcher, config.node.max_request_size, self.reactor,
                max_depth=config.front.max_xml_depth,
            ),
            client=_CALLER,
            server=(parse_host_id(host_id).host, parse_host_id(host_id).port),
        )

    def _load(self) -> None:
        """Load the package; raise :class:`co2.PluginError` if it does not load."""
        with self._running("loading the package") as failed:
            failures = self.satellite.load_plugins()
            failed.clear()  # a load failure is raised as PluginError instead
        if failures:
            error = failures[0]
            self.satellite.shutdown()
            self.reactor.advance(0)
            details = f"\n{error.details.rstrip()}" if error.details else ""
            raise PluginError(error.package, f"{error.problem}{details}", error.details)

    # What the harness holds

    @property
    def host_id(self) -> str:
        """The ``host_id`` of the harness's satellite."""
        return self.satellite.host_id

    @property
    def plugins(self) -> list[Co2Plugin]:
        """The package's plugin instances, in load order (empty once shut down)."""
        return list(self.satellite.plugins)

    @property
    def methods(self) -> list[str]:
        """The public names of the package's ``x_`` methods and functions, sorted."""
        return sorted(m.name for package in self.satellite.packages for m in package.methods)

    @property
    def warnings(self) -> list[str]:
        """What loading warned about (such as a package without ``__all__``)."""
        return [w for package in self.satellite.packages for w in package.warnings]

    @property
    def log(self) -> list[str]:
        """:attr:`events` as text, one ``[namespace#level] message`` line each."""
        return _text_of(self.events).splitlines()

    def plugin(self, name: str | None = None) -> Co2Plugin:
        """
        The plugin instance called ``name``: its full name
        (``package.module.X_Class``), ``module.X_Class`` or ``X_Class``.
        Without ``name``, the package's only plugin.  Raises ``LookupError``
        naming the plugins there are.
        """
        plugins = self.plugins
        if name is None:
            found = plugins
        else:
            found = [p for p in plugins if name in (str(p), str(p).split(".", 1)[1],
                                                     type(p).__qualname__)]
        if len(found) != 1:
            names = ", ".join(str(p) for p in plugins) or "none"
            what = "a plugin name" if name is None else f"{name!r}"
            raise LookupError(f"{what} names {len(found)} of the plugins of {self.package} ({names})")
        return found[0]

    def state(self, plugin: str | None = None) -> dict[str, Any]:
        """A copy of the ``self.state`` of :meth:`plugin` ``(plugin)``."""
        return dict(self.plugin(plugin).state.items())

    def sent_by(self, plugin: str | None = None) -> list[Any]:
        """The data each message :meth:`plugin` ``(plugin)`` sent, in order."""
        sender = str(self.plugin(plugin))
        return [sent.data for sent in self.sent if sent.sender == sender]

    def _record_sent(self, plugin: Co2Plugin, data: Any) -> None:
        # As the receivers get it: encoded at the call, then decoded.
        copy = decode_message(encode_message({"data": data, "host_id": self.host_id}))["data"]
        self.sent.append(Sent(str(plugin), copy))

    # Driving the plugins

    def deliver(
        self,
        data: Any,
        *,
        host_id: str = PEER_HOST_ID,
        client_address: tuple[str, int] | list[Any] | None = None,
    ) -> None:
        """
        Give every plugin of the package a message, as one from another
        satellite: each ``receive`` gets ``{'data': data, 'host_id':
        host_id, 'client_address': [ip, port]}`` (by default the address
        ``host_id`` names), in load order.  What they send while receiving
        is delivered to the others too.  Raises ``ValueError`` or
        ``TypeError`` for a message a satellite would refuse, and
        :class:`PluginFailed` if a ``receive`` raised or failed.
        """
        self._check_open()
        message = check_message({"data": data, "host_id": host_id})
        check_members(message)
        if client_address is None:
            parsed = parse_host_id(host_id)
            client_address = [parsed.host, parsed.port]
        with self._running("a plugin failed to receive a message"):
            self.satellite.relay.inject(message, "harness", list(client_address))
            self._run_due()

    def call(self, method: str, *params: Any) -> Any:
        """
        Call ``method`` (a public name such as ``ham.spam.call_me``, or a
        satellite's own method such as ``system.methodHelp``) with
        ``params`` through the satellite's XML-RPC server, and return what
        an XML-RPC client would get.  Faults are raised as
        ``xmlrpc.client.Fault`` with the codes of :mod:`co2.faults`.

        An answer that is not ready at once (a Deferred, ``async def``,
        ``@in_thread``) is waited for on the harness's clock, which moves
        to each next timer until the answer comes; a method that never
        answers gets fault -32002 after ``call_timeout`` seconds of that
        clock, as on a satellite.
        """
        self._check_open()
        results: list[Any] = []
        with self._running(f"a plugin failed while {method} ran", raise_on_error=False):
            self._client.call(method, *params).addBoth(results.append)
            self._run_until(lambda: bool(results), f"{method} gave no answer")
        result = results[0]
        if isinstance(result, Failure):
            result.raiseException()
        return result

    def start_call(self, method: str, *params: Any) -> Deferred[Any]:
        """
        Call ``method`` as :meth:`call` does, but run only what is due now
        and return the Deferred of the answer: move time with
        :meth:`advance` to let it come.
        """
        self._check_open()
        with self._running(f"a plugin failed while {method} ran", raise_on_error=False):
            d = self._client.call(method, *params)
            self._run_due()
        return d

    def advance(self, seconds: float) -> None:
        """
        Move the clock ``seconds`` forward, running each timer due on the
        way at its own time.  Raises :class:`PluginFailed` if a plugin
        failed meanwhile.
        """
        if seconds < 0:
            raise ValueError("time only moves forward")
        self._check_open()
        with self._running("a plugin failed while time passed"):
            self._advance_to(self.reactor.seconds() + seconds)

    def shutdown(self) -> None:
        """
        Shut the satellite down: every plugin's ``__exit__``, last loaded
        first, each waited for at most ``exit_timeout`` seconds of the
        harness's clock.  Raises :class:`PluginFailed` if an ``__exit__``
        raised, failed or overran.  A second call does nothing.
        """
        if self._closed:
            return
        self._closed = True
        done: list[Any] = []
        with self._running("a plugin failed to shut down"):
            self.satellite.shutdown().addBoth(done.append)
            self._run_until(lambda: bool(done), "shutdown did not finish")

    def __enter__(self) -> PluginHarness:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if kind is None:
            self.shutdown()
            return
        try:  # the test's own exception is the one to see
            self.shutdown()
        except PluginFailed:
            pass

    # Running the clock

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"the harness of {self.package} is shut down")

    @contextmanager
    def _running(self, what: str, raise_on_error: bool = True) -> Iterator[list[dict[str, Any]]]:
        """Record the log events of the block; raise PluginFailed for its errors."""
        failed: list[dict[str, Any]] = []

        def observe(event: dict[str, Any]) -> None:
            self.events.append(event)
            level = event.get("log_level")
            if level is not None and level >= LogLevel.error:
                failed.append(event)

        observer = cast(ILogObserver, observe)
        globalLogPublisher.addObserver(observer)
        try:
            yield failed
        finally:
            globalLogPublisher.removeObserver(observer)
        if failed and raise_on_error:
            raise PluginFailed(what, failed)

    def _run_due(self) -> None:
        """Run what is due now, and what that makes due now, without moving time."""
        for _ in range(_MAX_STEPS):
            if not self.reactor.due():
                return
            self.reactor.advance(0)
        raise AssertionError(f"the plugins of {self.package} keep scheduling work at once")

    def _next_time(self) -> float | None:
        times = [call.getTime() for call in self.reactor.getDelayedCalls()]
        return min(times) if times else None

    def _advance_to(self, target: float) -> None:
        self._run_due()
        for _ in range(_MAX_STEPS):
            next_time = self._next_time()
            if next_time is None or next_time > target:
                break
            self.reactor.advance(max(0.0, next_time - self.reactor.seconds()))
            self._run_due()
        self.reactor.advance(max(0.0, target - self.reactor.seconds()))
        self._run_due()

    def _run_until(self, done: Callable[[], bool], what: str) -> None:
        self._run_due()
        for _ in range(_MAX_STEPS):
            if done():
                return
            next_time = self._next_time()
            if next_time is None:
                break
            self._advance_to(next_time)
        if not done():
            raise AssertionError(f"{what}: nothing left on the harness's clock to wait for")
