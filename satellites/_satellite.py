"""
The plugin host, without sockets: loaded plugins, their methods, and the
delivery of messages to them.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, MutableMapping
from typing import Any
from xmlrpc.client import Fault

from twisted.internet.defer import Deferred, ensureDeferred, fail, gatherResults, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorThreads
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from co2 import faults
from co2._config import RESERVED_PACKAGES
from co2._errors import PluginError
from co2._message import decode_message
from co2._plugin import Co2Plugin
from co2._ratelog import RateLimitedLog
from co2._state import PluginState
from relay import Local, Relay
from satellites._dispatch import Dispatcher
from satellites._errors import SatelliteError
from satellites._loader import LoadedPackage, PluginLoader, fingerprint
from satellites._metrics import PluginStats
from satellites._registry import DuplicateMethod, Method, MethodRegistry
from satellites._settings import Config
from satellites._soon import as_deferred, ready

__all__ = ["BUSY_WARNING", "ReloadRefused", "Satellite", "relay_dispatcher"]

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
        self.dispatcher = relay_dispatcher(self.registry, self.relay, config)
        self.host_id = host_id
        self.packages: list[LoadedPackage] = []
        self.failures: list[PluginError] = []
        self.plugins: list[Co2Plugin] = []
        self.reload_failures: dict[str, PluginError] = {}
        self.relay.role = "satellite"
        self.relay.plugin_names = lambda: [str(plugin) for plugin in self.plugins]
        self._loader: PluginLoader | None = None
        self._fingerprints: dict[str, str] = {}
        self._thread = threading.get_ident()
        self.limited = RateLimitedLog(_log, reactor)
        """The plugins' failures, logged a few at a time per plugin, then counted."""
        self.registry.add(Method.of("co2.reload", self.reload))
        self.relay.on_sending_paused.append(lambda: self._tell_plugins("sending_paused"))
        self.relay.on_sending_resumed.append(lambda: self._tell_plugins("sending_resumed"))

    @property
    def host_id(self) -> str:
        """This satellite's ``host_id``: ``<random>@<ip>:<port>``."""
        return self.relay.host_id

    @host_id.setter
    def host_id(self, value: str) -> None:
        self.relay.host_id = value

    def _call_here(self, name: str, params: tuple[Any, ...]) -> Deferred[Any]:
        return self.dispatcher.call(None, name, params)

    # Loading and unloading

    def var_dict_for(self, package: str) -> dict[str, Any]:
        """The settings given to the ``X_`` classes of ``package``."""
        provided = {
            "host_id": self.host_id,
            "package": package,
            "plugin_dir": self.config.host.plugin_dir,
            "package_dir": os.path.join(self.config.host.plugin_dir, package),
        }
        provided.update(self.config.host.plugin_config.get(package, {}))
        return provided

    def load_plugins(self) -> list[PluginError]:
        """
        Load every package of ``plugin_list`` in order.  A package that
        fails is logged with its traceback and left out; the failures are
        returned (and kept in ``failures``).
        """
        self._loader = PluginLoader(self.config.host.plugin_dir, self, self.var_dict_for)
        for package in self.config.host.plugin_list:
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
        # The links may be up already: the network learns the methods now.
        self.relay.directory.changed()
        return self.failures

    def _package_dir(self, package: str) -> str:
        return os.path.join(self.config.host.plugin_dir, package)

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
        if package not in self.config.host.plugin_list:
            raise ReloadRefused(f"{package!r} is not in plugin_list")
        if self._loader is None or self.relay.holding:
            raise ReloadRefused("the satellite is not running its plugins")
        loader = self._loader
        # What was taken before the reload goes to the running version.
        self.relay.flush()
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
        order = {name: index for index, name in enumerate(self.config.host.plugin_list)}
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
        for package in self.config.host.plugin_list:
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
        """One line at warning says what failed and where; the whole traceback is logged at debug."""
        self.failures.append(error)
        where = _innermost_plugin_frame(error.details, self.config.host.plugin_dir)
        _log.warn(
            "plugin package {package} left out: {problem}{where}",
            package=error.package, problem=error.problem, where=f" (at {where})" if where else "",
        )
        if error.details:
            _log.debug("plugin package {package}: {details}", package=error.package, details=error.details)

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
        self.relay.hold()
        self.relay.flush()
        plugins, self.plugins = self.plugins, []
        return ensureDeferred(self._exit_each(list(reversed(plugins)))).addCallback(self._forget)

    def _forget(self, _: object) -> None:
        self.limited.close()
        self.dispatcher.close()
        if self._loader is not None:
            self._loader.forget()

    async def _exit_each(self, plugins: list[Co2Plugin]) -> None:
        bound = self.config.host.exit_timeout
        for plugin in plugins:
            started = self.timer()
            d = maybeDeferred(plugin.__exit__).addCallback(as_deferred)
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

    def send_from(self, plugin: Co2Plugin, data: Any) -> Deferred[None] | None:
        """
        Send ``{'data': data, 'host_id': ...}`` from ``plugin`` to every
        other plugin (see :meth:`relay.Relay.originate`): a Deferred that
        fires once the router has taken it; ``TypeError`` at once when
        ``data`` is not an XML-RPC value, ``ValueError`` when it is too
        large, each naming the plugin; ``co2.SendQueueFull`` past
        ``send_queue_bytes``.
        """
        try:
            return self.relay.originate(data, plugin)
        except (TypeError, ValueError) as e:
            raise type(e)(f"{plugin} {e}") from None

    def _tell_plugins(self, hook: str) -> None:
        """Call ``hook`` (``sending_paused`` or ``sending_resumed``) of each plugin; a failure is logged."""
        for plugin in list(self.plugins):
            try:
                getattr(plugin, hook)()
            except (Exception, SystemExit):
                _log.failure("{plugin}.{hook} raised", level=LogLevel.error, plugin=plugin, hook=hook)

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
        return PluginState(self.relay.state, str(plugin), self._thread)

    # Delivery

    def deliver(self, messages: list[Local]) -> None:
        """
        Hand over a turn's messages, in order: each ``(message, client_address,
        sender)``, ``message`` encoded.  Each plugin but ``sender`` gets its
        own copy (decoded for it alone), with ``client_address`` set.  A
        plugin's failure is logged under its name and touches no other
        plugin.
        """
        read = self.relay.read
        for body, client_address, sender in messages:
            # Opened, and checked if it came over a link, once; then a copy for each plugin.
            first: dict[str, Any] | None = None
            for plugin in self.plugins:
                if plugin is sender:
                    continue
                if first is None:
                    first = read(body, sender)
                    if first is None:
                        break
                    message = first
                else:
                    message = decode_message(body)
                message["client_address"] = list(client_address)
                self._deliver_to(plugin, message)

    def _deliver_to(self, plugin: Co2Plugin, message: dict[str, Any]) -> None:
        started = self.timer()
        failed = False
        try:
            result = plugin.receive(message)
        except (Exception, SystemExit):  # sys.exit() in a plugin stops no other
            self.limited.emit(f"{plugin}.receive raised", LogLevel.error, "{plugin}.receive raised",
                              log_failure=Failure(), plugin=plugin)
            result = None
            failed = True
        took = self.timer() - started
        self.plugin_stats.delivered(str(plugin), took, failed)
        if took > BUSY_WARNING:
            self.limited.emit(
                f"{plugin}.receive busy", LogLevel.warn,
                "{plugin}.receive kept the reactor busy for {took:.2f}s; "
                "run blocking work in a thread (co2.in_thread)",
                plugin=plugin, took=took,
            )
        if not ready(result):
            as_deferred(result).addErrback(self._receive_failed, plugin)

    def _receive_failed(self, failure: Failure, plugin: Co2Plugin) -> None:
        self.plugin_stats.failed_later(str(plugin))
        self.limited.emit(f"{plugin}.receive failed", LogLevel.error, "{plugin}.receive failed",
                          log_failure=failure, plugin=plugin)

    # The server's own XML-RPC methods

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
        if self.relay.holding:
            raise Fault(faults.SHUTTING_DOWN, "co2.reload: this node is stopping")

        def failed(failure: Failure) -> dict[str, Any]:
            if failure.check(ReloadRefused):
                raise Fault(faults.INVALID_PARAMS, f"co2.reload: {failure.getErrorMessage()}")
            error = failure.value
            if isinstance(error, PluginError):
                raise Fault(faults.RELOAD_FAILED, f"co2.reload: {package}: {error.problem}")
            failure.raiseException()

        return self.reload_package(package).addErrback(failed)


def relay_dispatcher(registry: MethodRegistry, relay: Relay, config: Config) -> Dispatcher:
    """
    The dispatcher of a node's XML-RPC calls: the methods of ``registry``,
    those of the rest of the network (``relay``'s directory), and the
    relay's own: ``notify``, ``co2.watch`` and ``co2.get_method_names``.
    """
    dispatcher = Dispatcher(
        registry, relay.directory, relay.reactor, config.node.call_timeout, config.front.max_response_size,
    )
    registry.add(Method.of("notify", relay.accept_notify, takes_caller=True))
    registry.add(Method.of("co2.get_method_names", dispatcher.names))
    registry.add(Method.of("co2.watch", relay.tap.watch_from, takes_caller=True))
    return dispatcher


_FRAME = re.compile(r'^  File "(.+)", line (\d+)', re.M)


def _innermost_plugin_frame(details: str, plugin_dir: str) -> str:
    """The last frame of traceback ``details`` in a file under ``plugin_dir``, as ``path:line`` (or "")."""
    root = os.path.join(os.path.abspath(plugin_dir), "")
    frames = [(path, n) for path, n in _FRAME.findall(details) if os.path.abspath(path).startswith(root)]
    if not frames:
        return ""
    path, n = frames[-1]
    return f"{os.path.relpath(path, root)}:{n}"
