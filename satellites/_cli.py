"""
``co2-satellite`` and ``co2-relay``: options, service, run — each a small
step.
"""

from __future__ import annotations

import dataclasses
import faulthandler
import gc
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any, NoReturn, TextIO

from twisted.application.service import MultiService, Service
from twisted.cred import strcred
from twisted.cred.credentials import IUsernamePassword
from twisted.logger import Logger, globalLogBeginner
from twisted.python import usage
from twisted.python.failure import Failure

from co2._config import BACKBONE_SCHEMES, RESERVED_PACKAGES, auth_description, check_endpoint
from co2._errors import ConfigError
from co2._options import OptionsAnywhere, silence_stdout, versions
from relay import RelayPluginError, SpoolError
from satellites._errors import SatelliteError
from satellites._loader import find_packages
from satellites._logging import LOG_FORMATS, log_observer
from satellites._scaffold import DEFAULT_DIR, ScaffoldError, new_plugin
from satellites._service import NodeParts, StrictLoadError, node_service
from satellites._settings import Config, load_config

__all__ = [
    "CannotStart",
    "CommandOptions",
    "NewPluginOptions",
    "Options",
    "RelayOptions",
    "list_plugins",
    "main",
    "makeService",
    "run",
    "service_for",
]

_log = Logger(namespace="co2.satellite")

EXIT_USAGE = 2
EXIT_FAILURE = 1


class NodeOptions(strcred.AuthOptionMixin, usage.Options):
    """
    What the command lines of ``co2-satellite`` and ``co2-relay`` (and
    of ``twistd`` with either) share.

    ``--auth`` (as often as needed), ``--help-auth`` and
    ``--help-auth-type`` are ``twisted.cred``'s, as in every ``twistd``
    plugin; the ``--auth`` given replace ``auth`` of the config.
    """

    synopsis = "[--config PATH] [--listen ENDPOINT] [--auth CHECKER]... [--log-format text|json]"
    supportedInterfaces = [IUsernamePassword]
    optParameters = [
        ["config", "c", "config.py", "the config file (a Python module)"],
        ["listen", "l", None, "XML-RPC endpoint, overriding `listen` of the config"],
        ["log-format", None, "text", "how the log is written to stdout: text or json (one object per line)"],
    ]

    config: Config
    config_error: ConfigError | None = None
    """Under twistd, the config's error, said by :func:`makeService` (twistd would print its help first)."""
    program = ""
    role = ""

    def getSynopsis(self) -> str:
        if self.parent is None:
            return f"Usage: {self.program} {self.synopsis}"
        return f"{self.parent.getSynopsis()} {self.program} {self.synopsis}"

    def opt_version(self) -> NoReturn:
        """Print co2's version, then Twisted's, and exit"""
        sys.stdout.write(versions())
        sys.exit(0)

    def opt_auth(self, description: str) -> None:
        """Require a user name and password that this checker accepts (see --help-auth); repeatable"""
        try:
            checked = auth_description(description, os.getcwd())
        except ValueError as e:
            raise usage.UsageError(f"--auth: {e}") from None
        self.setdefault("auth", []).append(checked)

    def postOptions(self) -> None:
        if self["log-format"] not in LOG_FORMATS:
            raise usage.UsageError(
                f"--log-format: expected one of {', '.join(LOG_FORMATS)}, got {self['log-format']!r}"
            )
        warnings: list[str] = []
        try:
            config = load_config(self["config"], warn=warnings.append)
            if self["listen"] is not None:
                try:
                    check_endpoint(self["listen"])
                except ValueError as e:
                    raise ConfigError("--listen", None, str(e)) from None
                front = dataclasses.replace(config.front, listen=self["listen"])
                config = dataclasses.replace(config, front=front)
            if self.get("auth"):
                auth = dataclasses.replace(config.auth, auth=tuple(self["auth"]))
                config = dataclasses.replace(config, auth=auth)
        except ConfigError as e:
            if self.parent is not None:
                # Under twistd, which would print its whole help before a
                # usage error: the one line comes from makeService, exit 2.
                self.config_error = e
                return
            raise usage.UsageError(str(e)) from None
        self.config_error = None
        self.config = config
        self.warnings = warnings


class Options(NodeOptions):
    """The command line of ``co2-satellite`` (and ``twistd co2-satellite``)."""

    synopsis = (
        "[--config PATH] [--listen ENDPOINT] [--auth CHECKER]... [--strict] [--list-plugins] "
        "[--log-format text|json]"
    )
    longdesc = (
        "Run a co2 satellite: load the plugin packages named in the config "
        "and answer XML-RPC calls for them.  "
        "`co2-satellite new-plugin NAME [--dir DIR]` writes a new plugin package instead."
    )
    optFlags = [
        ["strict", None, "exit (status 2) if any plugin package fails to load"],
        ["list-plugins", None, "list the plugin packages found and exit"],
    ]
    program = "co2-satellite"
    role = "satellite"


class RelayOptions(NodeOptions):
    """The command line of ``co2-relay`` (and ``twistd co2-relay``): no plugins, so no plugin options."""

    longdesc = (
        "Run a standalone co2 relay: a hub that links satellites and other "
        "relays and passes their messages and calls on; it loads no plugins."
    )
    program = "co2-relay"
    role = "relay"


def list_plugins(config: Config, out: TextIO) -> None:
    """Write the plugin packages of ``config.host.plugin_dir``, enabled ones marked."""
    host = config.host
    found = find_packages(host.plugin_dir)
    enabled = set(host.plugin_list)
    out.write(f"plugin packages in {host.plugin_dir}:\n")
    rows = []
    for package in found:
        if package.name in RESERVED_PACKAGES:
            mark = "reserved"
        else:
            mark = "enabled" if package.name in enabled else "disabled"
        rows.append((package.name, mark, package.description))
    names = {p.name for p in found}
    rows += [(n, "missing", "(in plugin_list, not found)") for n in host.plugin_list if n not in names]
    width = max((len(name) for name, _, _ in rows), default=0)
    for name, mark, description in rows:
        out.write(f"  {name:<{width}}  {mark:<8}  {description}\n")


class CannotStart(SatelliteError):
    """The node cannot be made; ``status`` is the exit status to use."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def service_for(options: NodeOptions, reactor: Any) -> NodeParts:
    """
    The node ``options`` describe, on ``reactor``.  Raises
    :class:`CannotStart`: status 2 for a relay plugin that cannot be
    loaded (the config names it), 1 for a spool that cannot be opened.
    """
    try:
        return node_service(options.config, reactor, strict=bool(options.get("strict")), role=options.role)
    except RelayPluginError as e:
        raise CannotStart(EXIT_USAGE, f"{options.config.path or '<config>'}: relay_plugins: {e}") from None
    except SpoolError as e:
        raise CannotStart(EXIT_FAILURE, str(e)) from None


def makeService(options: NodeOptions) -> Service:
    """
    The service for ``twistd co2-satellite`` and ``twistd co2-relay``.  A
    start that fails makes twistd exit 1 with one line saying why.
    """
    from twisted.internet import reactor

    if options.config_error is not None:
        print(f"twistd {options.program}: {options.config_error}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)
    if options.get("list-plugins"):
        list_plugins(options.config, sys.stdout)
        raise SystemExit(0)
    for warning in options.warnings:
        _log.warn("{warning}", warning=warning)
    if options["log-format"] != LOG_FORMATS[0]:
        _log.warn("--log-format is not applied under twistd: twistd writes the log")
    try:
        node = service_for(options, reactor)
    except CannotStart as e:
        print(f"{options.program}: {e}", file=sys.stderr)
        raise SystemExit(e.status) from None
    # twistd leaves SIGHUP alone (it rotates its log on SIGUSR1): a
    # satellite under twistd reloads its changed plugins on it too.
    reactor.callWhenRunning(install_reload_signal, node, reactor)
    # twistd ends a run its reactor's own handlers stopped by raising the
    # signal again; a satellite that shut down cleanly exits 0 instead, as
    # co2-satellite does: its handlers stop the reactor themselves.
    reactor.callWhenRunning(install_stop_signals, reactor)
    return _UnderTwistd(node, options.program, reactor)


class _UnderTwistd(MultiService):
    """
    A node run by twistd.  twistd starts it before its reactor runs, and a
    service whose start raises is how twistd is told that it failed: it
    then exits 1.  A start that fails later (an endpoint that binds only
    once the reactor runs) is logged and stops the reactor.
    """

    def __init__(self, node: NodeParts, program: str, reactor: Any) -> None:
        super().__init__()
        assert node.service is not None
        self.node = node
        self.program = program
        self.reactor = reactor
        node.service.setServiceParent(self)

    def startService(self) -> None:
        super().startService()
        assert self.node.service is not None
        started = self.node.service.started
        if not started.called:
            started.addCallbacks(_freeze_heap, self._failed_later)
            return
        outcome: list[Any] = []
        started.addBoth(outcome.append)
        if isinstance(outcome[0], Failure):
            raise SystemExit(f"{self.program}: {outcome[0].getErrorMessage()}")
        _freeze_heap()

    def _failed_later(self, failure: Failure) -> None:
        _log.failure("failed to start", failure)
        self.reactor.callWhenRunning(self.reactor.stop)


def install_reload_signal(node: NodeParts, reactor: Any) -> None:
    """
    Make SIGHUP reload every plugin package of ``node`` whose files
    changed.  The handler only schedules the reload in the reactor's
    thread (``callFromThread``), so the signal interrupts nothing.
    """
    if not hasattr(signal, "SIGHUP"):
        return

    def hangup(signum: int, frame: object) -> None:
        reactor.callFromThread(reload_changed, node)

    signal.signal(signal.SIGHUP, hangup)


def reload_changed(node: NodeParts) -> None:
    """What SIGHUP does: reload the changed plugin packages (each outcome is logged)."""
    if node.satellite is None or node.service is None or not node.service.running:
        return
    _log.info("SIGHUP: reloading the plugin packages whose files changed")
    node.satellite.reload_changed()


def install_stop_signals(reactor: Any) -> None:
    """
    Make SIGTERM and SIGINT stop ``reactor`` (a clean shutdown) through
    handlers of co2's own, in place of the reactor's, which would have
    twistd raise the signal again once it is done and so exit by it.
    """

    def stop(signum: int, frame: object) -> None:
        reactor.callFromThread(reactor.stop)

    for name in ("SIGTERM", "SIGINT"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), stop)


def run(node: NodeParts, reactor: Any) -> int:
    """Run ``node`` on ``reactor`` until a signal stops it; the exit status."""
    service = node.service
    assert service is not None
    status = [0]

    def failed(failure: Any) -> None:
        status[0] = EXIT_USAGE if failure.check(StrictLoadError) else EXIT_FAILURE
        print(f"co2-{node.role}: {failure.getErrorMessage()}", file=sys.stderr)
        reactor.stop()

    def start() -> None:
        service.privilegedStartService()
        service.startService()

    def stop() -> Any:
        plugins = len(node.satellite.plugins) if node.satellite is not None else 0
        _watchdog(node.config.host.exit_timeout * (plugins + 1) + 5)
        if service.running:
            return service.stopService()
        return None

    service.started.addCallbacks(_freeze_heap, failed)
    reactor.callWhenRunning(install_reload_signal, node, reactor)
    reactor.callWhenRunning(start)
    reactor.addSystemEventTrigger("before", "shutdown", stop)
    reactor.run()
    return status[0]


def _freeze_heap(result: object = None) -> None:
    """
    Leave what start-up made (Twisted, the plugins) out of every later
    garbage collection: it lives as long as the process, and scanning it
    again and again would only lengthen the pauses of a busy node.
    """
    gc.collect()
    gc.freeze()


def _watchdog(seconds: float) -> None:
    """
    Make the process exit (status 1) if shutdown takes over ``seconds``,
    writing where every thread was to standard error: the standard
    library's ``faulthandler`` does it from a thread of its own, whatever
    the main thread is stuck in.
    """
    faulthandler.dump_traceback_later(seconds, exit=True)


def _begin_logging(config: Config, out: TextIO, log_format: str = LOG_FORMATS[0]) -> None:
    observer = log_observer(log_format, config.node.log_level_constant, out)
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)


class NewPluginOptions(OptionsAnywhere):
    """The command line of ``co2-satellite new-plugin``."""

    synopsis = "NAME [--dir DIR]"
    longdesc = (
        "Write a new plugin package NAME into DIR (default: `plugin` in the current "
        "directory): __init__.py, NAME.py with an X_ class, and tests/test_NAME.py, "
        "which runs it with co2.testing.PluginHarness."
    )
    optParameters = [
        ["dir", "d", DEFAULT_DIR, "the plugin directory to write the package into (made if missing)"],
    ]

    def parseArgs(self, *names: str) -> None:
        if len(names) != 1:
            raise usage.UsageError(f"expected one NAME, the new package's name; got {len(names)}")
        self["name"] = names[0]

    def getSynopsis(self) -> str:
        return f"Usage: co2-satellite new-plugin {self.synopsis}"


class CommandOptions(Options):
    """``co2-satellite``'s own command line: :class:`Options` and the ``new-plugin`` command."""

    subCommands = [
        ["new-plugin", None, lambda: _NewPluginCommand(), "write a new plugin package (new-plugin --help)"],
    ]

    def postOptions(self) -> None:
        if self.subCommand is None:
            super().postOptions()


class _NewPluginCommand(NewPluginOptions):
    def parseOptions(self, options: Sequence[str] | None = None) -> None:
        try:
            super().parseOptions(options)
        except usage.UsageError as e:
            raise usage.UsageError(f"new-plugin: {e}") from None


def new_plugin_main(argv: Sequence[str], out: TextIO, err: TextIO) -> int:
    """``co2-satellite new-plugin ARGV``: write the package; the exit status."""
    options = NewPluginOptions()
    try:
        options.parseOptions(list(argv))
    except usage.UsageError as e:
        print(f"co2-satellite: new-plugin: {e}", file=err)
        return EXIT_USAGE
    return write_new_plugin(options, out, err)


def write_new_plugin(options: NewPluginOptions, out: TextIO, err: TextIO) -> int:
    """Write the package ``options`` name; the exit status."""
    try:
        package = new_plugin(options["name"], options["dir"])
    except ScaffoldError as e:
        print(f"co2-satellite: new-plugin: {e}", file=err)
        return EXIT_USAGE
    name = options["name"]
    out.write(
        f"wrote plugin package {name} in {package.resolve()}\n"
        f"  test it:  {_this_python()} -m pytest {package}\n"
        f"  load it:  add {name!r} to plugin_list (and the directory as plugin_dir) in the config\n"
    )
    return 0


def _this_python() -> str:
    """The Python co2 runs in (the virtualenv's), as a path that works from here: it has co2 and pytest."""
    python = sys.executable or "python"
    relative = os.path.relpath(python)
    return relative if not relative.startswith("..") else python


def main(argv: Sequence[str] | None = None, options_class: type[NodeOptions] = CommandOptions) -> NoReturn:
    """The ``co2-satellite`` command (``co2-relay`` with :class:`RelayOptions`)."""
    try:
        _main(argv, options_class)
    except BrokenPipeError:
        # What reads our output went away (`--help | head`): nothing more to say, and no traceback.
        silence_stdout()
        sys.exit(EXIT_FAILURE)


def _main(argv: Sequence[str] | None, options_class: type[NodeOptions]) -> NoReturn:
    args = list(sys.argv[1:] if argv is None else argv)
    options = options_class()
    program = options.program
    try:
        options.parseOptions(args)
    except usage.UsageError as e:
        print(f"{program}: {e}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    if options.subCommand == "new-plugin":
        sys.exit(write_new_plugin(options.subOptions, sys.stdout, sys.stderr))
    for warning in options.warnings:
        print(f"{program}: warning: {warning}", file=sys.stderr)
    if options.get("list-plugins"):
        list_plugins(options.config, sys.stdout)
        sys.exit(0)
    _begin_logging(options.config, sys.stdout, options["log-format"])
    if any(peer.startswith(BACKBONE_SCHEMES) for peer in options.config.relay.peers):
        # nats-py runs on asyncio: the reactor must be Twisted's asyncio one.
        from twisted.internet import asyncioreactor

        asyncioreactor.install()
    from twisted.internet import reactor

    try:
        service = service_for(options, reactor)
    except CannotStart as e:
        print(f"{program}: {e}", file=sys.stderr)
        sys.exit(e.status)
    sys.exit(run(service, reactor))
