"""
Relay plugins: code a node runs on every message passing through it.

A node's config names them by module (``relay_plugins``) and gives each its
options (``relay_plugin_config``).  :func:`load_relay_plugins` checks them all
when the node starts; :func:`apply_relay_plugins` runs them on each message
new to the node, before it is delivered or forwarded.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping, Sequence
from typing import Any, cast

from twisted.logger import Logger
from zope.interface import Attribute, Interface
from zope.interface.exceptions import Invalid
from zope.interface.verify import verifyObject

from relay._errors import RelayError

__all__ = ["IRelayPlugin", "RelayPluginError", "apply_relay_plugins", "load_relay_plugins"]

_log = Logger(namespace="co2.relay")


class IRelayPlugin(Interface):
    """
    What a node relies on in a relay plugin.

    A relay plugin module offers a callable ``relay_plugin(options)`` that
    returns an object providing this interface.
    """

    name = Attribute("A short name used in logs.")

    def inspect(message: dict[str, Any], source: str) -> dict[str, Any] | None:
        """
        Look at one message new to this node, before it is delivered to local
        plugins or forwarded.

        ``message`` is a dict holding at least ``data`` and ``host_id``, of
        this plugin's own; its nested values are shared with the other
        relay plugins and must not be changed in place (such a change is
        not passed on).  ``source`` names where it came from: ``'local'`` (sent by a
        plugin of this node) or the name of the link it arrived on (such as
        ``'tcp:host=127.0.0.1:port=2005'`` or ``'notify from 127.0.0.1'``).

        Return the message to pass on (``message`` itself, changed or not, or
        a new dict holding ``data`` and ``host_id``, all XML-RPC values), or
        ``None`` to drop it.
        """


class RelayPluginError(RelayError):
    """
    A relay plugin cannot be loaded.

    ``module`` names it and ``problem`` says what is wrong; ``str()`` is one
    line holding both.
    """

    def __init__(self, module: str, problem: str) -> None:
        self.module = module
        self.problem = problem
        super().__init__(f"relay plugin {module!r}: {problem}")


def _describe(error: BaseException) -> str:
    """``error`` as one line: its type and its message."""
    text = " ".join(str(error).split())
    kind = type(error).__name__
    return f"{kind}: {text}" if text else kind


def _load_one(name: str, options: dict[str, Any]) -> IRelayPlugin:
    try:
        module = importlib.import_module(name)
    except (Exception, SystemExit) as e:
        raise RelayPluginError(name, f"cannot be imported: {_describe(e)}") from None
    factory = getattr(module, "relay_plugin", None)
    if factory is None:
        raise RelayPluginError(name, "has no relay_plugin(options) function; define one")
    if not callable(factory):
        raise RelayPluginError(
            name, f"relay_plugin is a {type(factory).__name__}, not a function of options"
        )
    try:
        plugin = factory(options)
    except (Exception, SystemExit) as e:
        raise RelayPluginError(name, f"relay_plugin(options) failed: {_describe(e)}") from None
    try:
        verifyObject(IRelayPlugin, plugin)
    except Invalid as e:
        raise RelayPluginError(
            name, f"relay_plugin(options) returned no IRelayPlugin: {_describe(e)}"
        ) from None
    if not isinstance(plugin.name, str) or not plugin.name:
        raise RelayPluginError(name, f"the plugin's name is {plugin.name!r}, not a non-empty str")
    return cast(IRelayPlugin, plugin)


def load_relay_plugins(
    names: Sequence[str], configs: Mapping[str, Mapping[str, Any]], directory: str | None = None
) -> list[IRelayPlugin]:
    """
    Import each module of ``names`` and create its plugin, in order.  A
    module is looked for in ``directory`` first (``relay_plugin_dir``, the
    config's own directory unless set), then where Python looks.

    Each module's ``relay_plugin`` is called with a new dict of the options
    ``configs`` holds under the module's name (empty when there are none).
    Raises :class:`RelayPluginError` naming the first module that cannot be
    imported, has no callable ``relay_plugin``, whose ``relay_plugin`` fails,
    or whose plugin does not provide :class:`IRelayPlugin`.
    """
    if directory is None or not names:
        return [_load_one(name, dict(configs.get(name, {}))) for name in names]
    sys.path.insert(0, directory)
    try:
        return [_load_one(name, dict(configs.get(name, {}))) for name in names]
    finally:
        sys.path.remove(directory)


def _is_message(value: object) -> bool:
    return isinstance(value, dict) and "data" in value and "host_id" in value


def apply_relay_plugins(
    plugins: Sequence[IRelayPlugin], message: dict[str, Any], source: str
) -> dict[str, Any] | None:
    """
    Pass ``message`` (from ``source``) through each of ``plugins`` in order.

    Returns the message the last plugin passed on, or ``None`` as soon as one
    drops it.  Each plugin gets a shallow copy, so a plugin that fails leaves
    no change behind: when one raises, or returns something other than a
    dict holding ``data`` and ``host_id``, the failure is logged and the
    message goes on to the next plugin as it was.  With no plugins,
    ``message`` itself is returned at once.
    """
    if not plugins:
        return message
    for plugin in plugins:
        try:
            result = plugin.inspect(dict(message), source)
        except Exception:
            _log.failure(
                "relay plugin {plugin} failed on a message from {source}; passing it on unchanged",
                plugin=plugin.name, source=source,
            )
            continue
        if result is None:
            _log.debug(
                "relay plugin {plugin} dropped a message from {source} (host_id {host_id})",
                plugin=plugin.name, source=source, host_id=message.get("host_id"),
            )
            return None
        if not _is_message(result):
            _log.error(
                "relay plugin {plugin} returned a {kind}, not a dict holding data and host_id; "
                "passing the message from {source} on unchanged",
                plugin=plugin.name, kind=type(result).__name__, source=source,
            )
            continue
        message = result
    return message
