"""
The plugin host, without sockets: loaded plugins, their methods, and the
delivery of messages to them.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, MutableMapping
from typing import Any
from urllib.parse import urlsplit
from xmlrpc.client import Fault

from twisted.internet.defer import Deferred, ensureDeferred, fail, gatherResults, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorThreads
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from co2 import faults
from co2._config import RESERVED_PACKAGES, Config
from co2._errors import PluginError
from co2._message import (
    HostId,
    check_message,
    decode_message,
    encode_message,
    host_matches,
    parse_host_id,
)
from co2._plugin import Co2Plugin
from co2._state import PluginState
from co2._values import check_members, check_value
from relay._relay import Relay
from relay._router import Local, Router
from satellites._dispatch import Caller, Dispatcher, settle
from satellites._errors import SatelliteError
from satellites._loader import LoadedPackage, PluginLoader, fingerprint
from satellites._metrics import PluginStats
from satellites._registry import DuplicateMethod, Method, MethodRegistry

__all__ = ["BUSY_WARNING", "ReloadRefused", "Satellite"]

BUSY_WARNING = 1.0
"""Seconds a plugin's ``receive`` may hold the reactor before it is warned about."""

_log = Logger(namespace="co2.satellite")


class ReloadRefused(SatelliteError):
    """
    A package that cannot be reloaded here: not in ``plugin_list``, a
    reserved name, or a satellite that is not running its plugins.
    """


class Satellite:
    """
    Hosts the plugins named in a config and answers for them.

    ``reactor`` gives time and threads; ``timer`` measures how long a
    ``receive`` keeps the reactor busy.  Call :meth:`load_plugins` once the
    ``host_id`` is known, and :meth:`shutdown` at the end.
    """

    def __init__(
        self,
        config: Config,
        reactor: Any,
        host_id: str = "",
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.reactor = reactor
        self.timer = timer
        self.registry = MethodRegistry()
        self.relay = Relay(config, reactor, self.deliver, self.registry.plugin_names, self._call_here)
        self.plugin_stats = PluginStats()
        self.dispatcher = Dispatcher(
            self.registry, self.relay.directory, reactor, config.call_timeout, config.max_response_size
        )
        self.host_id = host_id
        self.packages: list[LoadedPackage] = []
        self.failures: list[PluginError] = []
        self.plugins: list[Co2Plugin] = []
        self.reload_failures: dict[str, PluginError] = {}
        self._loader: PluginLoader | None = None
        self._fingerprints: dict[str, str] = {}
        self._thread = threading.get_ident()
        self._address_of: tuple[str, list[Any]] = ("", [])
        self._classic_peers = [
            (peer, parts.hostname or "", parts.port)
            for peer, parts in ((peer, urlsplit(peer)) for peer in config.peers)
            if parts.scheme in ("http", "https")
        ]
        self.registry.add(Method.of("notify", self.notify, takes_caller=True))
        self.registry.add(Method.of("co2.get_method_names", self.get_method_names))
        self.registry.add(Method.of("co2.reload", self.reload))
        self.registry.add(Method.of("co2.watch", self.router.tap.watch_from, takes_caller=True))

    @property
    def host_id(self) -> str:
        """This satellite's ``host_id``: ``<random>@<ip>:<port>``."""
        return self.relay.host_id

    @host_id.setter
    def host_id(self, value: str) -> None:
        self.relay.host_id = value

    @property
    def router(self) -> Router:
        """The router of the embedded relay."""
        return self.relay.router

    def _call_here(self, name: str, params: tuple[Any, ...]) -> Deferred[Any]:
        return self.dispatcher.call(None, name, params)

    # Loading and unloading

    def var_dict_for(self, package: str) -> dict[str, Any]:
        """The settings given to the ``X_`` classes of ``package``."""
        provided = {
            "host_id": self.host_id,
            "package": package,
            "plugin_dir": self.config.plugin_dir,
            "package_dir": os.path.join(self.config.plugin_dir, package),
        }
        provided.update(self.config.plugin_config.get(package, {}))
        return provided

    def load_plugins(self) -> list[PluginError]:
        """
        Load every package of ``plugin_list`` in order.  A package that
        fails is logged with its traceback and left out; the failures are
        returned (and kept in ``failures``).
        """
        self._loader = PluginLoader(self.config.plugin_dir, self, self.var_dict_for)
        for package in self.config.plugin_list:
            if package in RESERVED_PACKAGES:
                _log.warn(
                    "plugin package {package!r} skipped: the name is reserved "
                    "(reserved: {reserved})",
                    package=package, reserved=", ".join(sorted(RESERVED_PACKAGES)),
                )
                continue
            self._fingerprints[package] = fingerprint(self._package_dir(package))
            try:
                loaded = self._loader.load(package)
                self.registry.add_all(loaded.methods)
            except PluginError as e:
                self._failed(e)
                continue
            except DuplicateMethod as e:
                self._loader.exit_all(loaded.plugins)
                self._failed(PluginError(package, str(e)))
                continue
            for warning in loaded.warnings:
                _log.warn("{warning}", warning=warning)
            self.packages.append(loaded)
            self.plugins.extend(loaded.plugins)
            _log.info(
                "loaded plugin package {package}: {plugins} plugin(s), {methods} method(s)",
                package=package, plugins=len(loaded.plugins), methods=len(loaded.methods),
            )
        return self.failures

    def _package_dir(self, package: str) -> str:
        return os.path.join(self.config.plugin_dir, package)

    def reload_package(self, package: str) -> Deferred[dict[str, Any]]:
        """
        Load ``package`` anew from its files and put it in place of the
        running version, in one go between two deliveries: its methods and
        receivers are replaced, the network's directory is told, then the
        old instances get their ``__exit__`` (each bounded by
        ``exit_timeout``; a failing one is logged).  A package that failed
        to load at start is loaded.

        Fires, once the old instances have exited, with ``{"package",
        "plugins", "methods"}`` (the new plugins' names and the package's
        method names).  Fails with :class:`ReloadRefused` for a package
        that is not in ``plugin_list``, is reserved, or when the satellite
        is not running; with :class:`co2.PluginError` when the new code
        does not load (an import error, an ``__init__`` that raises, a
        method name taken by another package): then nothing has changed
        and the old version still runs.
        """
        try:
            summary, old = self._reload(package)
        except (ReloadRefused, PluginError):
            return fail()
        done = ensureDeferred(self._exit_each(list(reversed(old))))
        return done.addCallback(lambda _: summary)

    def _reload(self, package: str) -> tuple[dict[str, Any], list[Co2Plugin]]:
        if package in RESERVED_PACKAGES:
            raise ReloadRefused(f"{package!r} is a reserved name; no plugin package has it")
        if package not in self.config.plugin_list:
            raise ReloadRefused(f"{package!r} is not in plugin_list")
        if self._loader is None or self.router.holding:
            raise ReloadRefused("the satellite is not running its plugins")
        loader = self._loader
        # What was taken before the reload goes to the running version.
        self.router.flush()
        self._fingerprints[package] = fingerprint(self._package_dir(package))
        try:
            with loader.fresh_modules(package):
                loaded = loader.load(package)
                try:
                    self.registry.replace_owner(package, loaded.methods)
                except DuplicateMethod as e:
                    loader.exit_all(loaded.plugins)
                    raise PluginError(package, str(e)) from None
        except PluginError as e:
            self._reload_failed(e)
            raise
        # The swap: from here on every message goes to the new instances.
        old = next((p for p in self.packages if p.name == package), None)
        order = {name: index for index, name in enumerate(self.config.plugin_list)}
        self.packages = sorted(
            [p for p in self.packages if p.name != package] + [loaded], key=lambda p: order[p.name]
        )
        self.plugins = [plugin for p in self.packages for plugin in p.plugins]
        self.failures = [f for f in self.failures if f.package != package]
        self.reload_failures.pop(package, None)
        self.relay.directory.changed()
        for warning in loaded.warnings:
            _log.warn("{warning}", warning=warning)
        _log.info(
            "reloaded plugin package {package}: {plugins} plugin(s), {methods} method(s)",
            package=package, plugins=len(loaded.plugins), methods=len(loaded.methods),
        )
        summary = {
            "package": package,
            "plugins": [str(p) for p in loaded.plugins],
            "methods": sorted(m.name for m in loaded.methods),
        }
        return summary, [] if old is None else old.plugins

    def _reload_failed(self, error: PluginError) -> None:
        if any(p.name == error.package for p in self.packages):
            self.reload_failures[error.package] = error
            _log.error(
                "reload of plugin package {package} failed; the running version is kept: "
                "{problem}\n{details}",
                package=error.package, problem=error.problem, details=error.details,
            )
        else:
            self.failures = [f for f in self.failures if f.package != error.package]
            self._failed(error)

    def reload_changed(self) -> Deferred[list[Any]]:
        """
        Reload every package of ``plugin_list`` (loaded, or failed at start)
        whose ``.py`` files changed since it was last loaded or tried; log
        each outcome.  Fires with the outcomes, in ``plugin_list`` order:
        the summary of :meth:`reload_package`, the ``PluginError`` of a
        failed reload, or None for an unchanged package.  Never fails.
        """
        outcomes: list[Deferred[Any]] = []
        for package in self.config.plugin_list:
            if package in RESERVED_PACKAGES or package not in self._fingerprints:
                continue
            if fingerprint(self._package_dir(package)) == self._fingerprints[package]:
                _log.info("plugin package {package} unchanged; not reloaded", package=package)
                outcomes.append(succeed(None))
                continue
            d = self.reload_package(package)
            d.addErrback(lambda failure: failure.value)  # already logged
            outcomes.append(d)
        return gatherResults(outcomes)

    def _failed(self, error: PluginError) -> None:
        self.failures.append(error)
        _log.error(
            "plugin package {package} left out: {problem}\n{details}",
            package=error.package, problem=error.problem, details=error.details,
        )

    def shutdown(self) -> Deferred[None]:
        """
        Call every plugin's ``__exit__`` in reverse load order, each bounded
        by ``exit_timeout`` when it returns a Deferred.  Fires when all are
        done; never fails.

        First the plugins receive what the node has taken so far, and the
        node stops taking messages from its links: what arrives from then
        on is left unacknowledged, to be sent again once the node is back,
        rather than committed as seen with no plugin left to receive it.
        """
        self.router.hold()
        self.router.flush()
        plugins, self.plugins = self.plugins, []
        return ensureDeferred(self._exit_each(list(reversed(plugins)))).addCallback(self._forget)

    def _forget(self, _: object) -> None:
        if self._loader is not None:
            self._loader.forget()

    async def _exit_each(self, plugins: list[Co2Plugin]) -> None:
        bound = self.config.exit_timeout
        for plugin in plugins:
            started = self.timer()
            d = maybeDeferred(plugin.__exit__).addCallback(settle)
            took = self.timer() - started
            if took > bound:
                _log.warn("{plugin}.__exit__ held the reactor for {took:.1f}s (bound {bound}s)",
                          plugin=plugin, took=took, bound=bound)
            d.addTimeout(bound, self.reactor)
            try:
                await d
            except (Exception, SystemExit):  # sys.exit() in a plugin stops no other
                _log.failure("{plugin}.__exit__ failed or took over {bound}s",
                             plugin=plugin, bound=bound)

    # What plugins call (IPluginHost)

    def send_from(self, plugin: Co2Plugin, data: Any) -> None:
        """
        Send ``{'data': data, 'host_id': ...}`` from ``plugin`` to every
        other plugin.  Raises ``TypeError`` at once when ``data`` is not an
        XML-RPC value.  Safe to call from a worker thread; what is sent is
        ``data`` as it was at the call.
        """
        try:
            check_value(data)
        except (TypeError, ValueError) as e:
            raise TypeError(f"{plugin} cannot send {type(data).__name__}: {e}") from None
        message = encode_message({"data": data, "host_id": self.host_id})
        if len(message) > self.config.max_message_size:
            raise ValueError(
                f"{plugin} cannot send {len(message)} bytes: over max_message_size "
                f"({self.config.max_message_size})"
            )
        if threading.get_ident() != self._thread:
            self.reactor.callFromThread(self._send, plugin, message)
        else:
            self._send(plugin, message)

    def _send(self, plugin: Co2Plugin, message: bytes) -> None:
        self.router.send(message, self._own_address(), plugin)

    def _own_address(self) -> list[Any]:
        # The previous hop of a message sent here is this satellite itself.
        if self._address_of[0] != self.host_id:
            host = parse_host_id(self.host_id)
            self._address_of = (self.host_id, [host.host, host.port])
        return self._address_of[1]

    def run_in_thread(
        self, function: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> Deferred[Any]:
        """Run ``function`` in the reactor's thread pool; fire with its result."""
        threads: IReactorThreads = self.reactor
        return deferToThreadPool(self.reactor, threads.getThreadPool(), function, *args, **kwargs)

    def state_of(self, plugin: Co2Plugin) -> MutableMapping[str, Any]:
        """
        ``plugin``'s ``self.state``: its namespace (``str(plugin)``) in the
        router's store, in the spool when there is one, usable from the
        reactor thread only.
        """
        return PluginState(self.router.state, str(plugin), self._thread)

    # Delivery

    def deliver(self, messages: list[Local]) -> None:
        """
        Hand over a turn's messages, in order: each ``(message, client_address,
        sender)``, ``message`` encoded.  Each plugin but ``sender`` gets its
        own copy (decoded for it alone), with ``client_address`` set.  A
        plugin's failure is logged under its name and touches no other
        plugin.
        """
        for body, client_address, sender in messages:
            for plugin in self.plugins:
                if plugin is not sender:
                    message = decode_message(body)
                    message["client_address"] = list(client_address)
                    self._deliver_to(plugin, message)

    def _deliver_to(self, plugin: Co2Plugin, message: dict[str, Any]) -> None:
        started = self.timer()
        failed = False
        try:
            result = plugin.receive(message)
        except (Exception, SystemExit):  # sys.exit() in a plugin stops no other
            _log.failure("{plugin}.receive raised", level=LogLevel.error, plugin=plugin)
            result = None
            failed = True
        took = self.timer() - started
        self.plugin_stats.delivered(str(plugin), took, failed)
        if took > BUSY_WARNING:
            _log.warn(
                "{plugin}.receive kept the reactor busy for {took:.2f}s; "
                "run blocking work in a thread (co2.in_thread)",
                plugin=plugin, took=took,
            )
        result = settle(result)
        if isinstance(result, Deferred):
            result.addErrback(self._receive_failed, plugin)

    def _receive_failed(self, failure: Failure, plugin: Co2Plugin) -> None:
        self.plugin_stats.failed_later(str(plugin))
        _log.failure("{plugin}.receive failed", failure, LogLevel.error, plugin=plugin)

    # The server's own XML-RPC methods

    def notify(self, caller: Caller, message: dict[str, Any]) -> bool:
        """
        Accept a message (a struct with ``data`` and ``host_id``) for every
        plugin here and the rest of the network.  Answers at once; the
        plugins receive it afterwards.  A message relayed by another co2
        node also holds its ``id`` and remaining ``hops``.
        """
        if self.router.holding:
            raise Fault(faults.SHUTTING_DOWN, "notify: this node is stopping; send the message again later")
        try:
            check_message(message)
            message_id, hops = _routing_of(message)
            check_members(message)
        except (TypeError, ValueError) as e:
            raise Fault(faults.INVALID_PARAMS, f"notify: {e}") from None
        host_id = parse_host_id(message["host_id"])
        if caller is not None and not host_matches(host_id, caller[0]):
            _log.warn(
                "notify refused: host_id {host_id!r} does not match the caller {ip}",
                host_id=message["host_id"], ip=caller[0],
            )
            raise Fault(
                faults.HOST_ID_MISMATCH,
                f"host_id names host {host_id.host}, but the request came from {caller[0]}",
            )
        client_address: list[Any] = list(caller) if caller is not None else ["", 0]
        body = encode_message({k: v for k, v in message.items() if k not in _ROUTING})
        if len(body) > self.config.max_message_size:
            raise Fault(faults.INVALID_PARAMS, f"notify: the message is {len(body)} bytes, "
                        f"over max_message_size ({self.config.max_message_size})")
        source = self._classic_peer(host_id) or f"notify from {client_address[0]}"
        self.router.take(message_id or self.router.new_id(), min(hops, self.config.max_hops),
                         body, source, client_address)
        return True

    def _classic_peer(self, host_id: HostId) -> str | None:
        # The classic link to the node that sent this, so it is not sent back.
        for peer, host, port in self._classic_peers:
            if port == host_id.port and (host == host_id.host or host_matches(host_id, host)):
                return peer
        return None

    def get_method_names(self) -> list[str]:
        """Return the names of every method callable here, sorted: those of
        this satellite and those hosted elsewhere in the network."""
        return self.dispatcher.names()

    def reload(self, package: str) -> Deferred[dict[str, Any]]:
        """
        Reload the plugin package ``package`` from its files, without
        stopping the satellite; return ``{package, plugins, methods}`` of
        the new version.  Fault -32602 for a package not in plugin_list (or
        reserved), -32004 when the new code does not load (the old version
        keeps running), -32003 when the node is stopping.
        """
        if not isinstance(package, str):
            raise Fault(faults.INVALID_PARAMS, "co2.reload takes a package name (a string)")
        if self.router.holding:
            raise Fault(faults.SHUTTING_DOWN, "co2.reload: this node is stopping")

        def failed(failure: Failure) -> dict[str, Any]:
            if failure.check(ReloadRefused):
                raise Fault(faults.INVALID_PARAMS, f"co2.reload: {failure.getErrorMessage()}")
            error = failure.value
            if isinstance(error, PluginError):
                raise Fault(faults.RELOAD_FAILED, f"co2.reload: {package}: {error.problem}")
            failure.raiseException()

        return self.reload_package(package).addErrback(failed)


_ROUTING = ("id", "hops")


def _routing_of(message: dict[str, Any]) -> tuple[str | None, int]:
    message_id, hops = message.get("id"), message.get("hops", 2**31 - 1)
    if message_id is not None and (not isinstance(message_id, str) or not message_id):
        raise ValueError("id, when given, must be a non-empty string")
    if not isinstance(hops, int) or isinstance(hops, bool) or hops < 0:
        raise ValueError("hops, when given, must be an int >= 0")
    return message_id, hops
