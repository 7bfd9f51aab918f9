"""
The base class of every satellite plugin.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from zope.interface import Attribute, Interface, implementer

from co2._errors import NotAttachedError
from co2._state import MemoryStore, PluginState

__all__ = ["Co2Plugin", "ICo2Plugin", "IPluginHost", "PluginSite", "in_thread"]


class ICo2Plugin(Interface):
    """What a satellite relies on in a loaded plugin instance."""

    var_dict = Attribute("The settings the plugin was created with.")
    state = Attribute("The plugin's own key-value store (a MutableMapping).")

    def receive(data_dict: dict[str, Any]) -> Any:
        """
        Take one message: a dict with ``data``, ``host_id`` and
        ``client_address``.  May return a value, a Deferred or a coroutine.
        """

    def send(data: Any) -> Any:
        """Send ``{'data': data}`` to every other plugin in the network; a Deferred fires once it is taken."""

    def log(message: str) -> None:
        """Log ``message`` at info level under the plugin's name."""

    def debug(message: str) -> None:
        """Log ``message`` at debug level under the plugin's name."""

    def __exit__() -> Any:
        """Release what the plugin holds; called once at shutdown."""


class IPluginHost(Protocol):
    """The part of a satellite a plugin talks to."""

    def send_from(self, plugin: Co2Plugin, data: Any) -> Deferred[None] | None:
        """Send ``{'data': data}`` on behalf of ``plugin``; fires once the node took it."""

    def run_in_thread(
        self, function: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> Deferred[Any]:
        """Run ``function`` in a worker thread; fire with its result."""

    def state_of(self, plugin: Co2Plugin) -> MutableMapping[str, Any]:
        """The store ``plugin`` keeps its ``self.state`` in."""


class PluginSite:
    """
    Where a plugin instance lives: its host and its public name's prefix.

    A satellite sets one (with :func:`attached_to`) while it creates a
    package's plugins, so that ``Co2Plugin.__init__`` can find it.
    """

    def __init__(self, host: IPluginHost, package: str, module: str) -> None:
        self.host = host
        self.package = package
        self.module = module


_current_site: contextvars.ContextVar[PluginSite | None] = contextvars.ContextVar(
    "co2_plugin_site", default=None
)


@contextmanager
def attached_to(site: PluginSite) -> Iterator[None]:
    """Make plugins created inside this block belong to ``site``."""
    token = _current_site.set(site)
    try:
        yield
    finally:
        _current_site.reset(token)


@implementer(ICo2Plugin)
class Co2Plugin:
    """
    Subclass this, name the subclass ``X_Something``, and list its module in
    the package's ``__all__``: a satellite will create one instance of it.

    Methods whose names start with ``x_`` are callable over XML-RPC as
    ``package.module.name`` (``x_`` removed).  Override :meth:`receive` to
    take messages, call :meth:`send` to emit them, override ``__exit__`` to
    clean up at shutdown, and keep what must outlive a restart in
    :attr:`state`.  Subclasses that define ``__init__`` must call
    ``Co2Plugin.__init__(self, var_dict)``.
    """

    def __init__(self, var_dict: Mapping[str, Any]) -> None:
        site = _current_site.get()
        self.var_dict: dict[str, Any] = dict(var_dict)
        self._co2_site = site
        cls = type(self)
        if site is not None:
            self._co2_name = f"{site.package}.{site.module}.{cls.__qualname__}"
        else:
            self._co2_name = f"{cls.__module__}.{cls.__qualname__}"
        self._co2_logger = Logger(namespace=self._co2_name, source=self)

    @property
    def state(self) -> MutableMapping[str, Any]:
        """
        This plugin's own key-value store: ``str`` keys, XML-RPC values
        (checked when set: ``TypeError`` or ``ValueError`` for what co2
        cannot carry), a copy returned at each read.

        On a satellite with a ``spool`` it is kept in the spool and
        committed with the reactor turn that wrote it: what ``receive``
        writes is committed together with the delivery of the message.
        Without a spool, or on an instance no satellite created, it lives
        in memory until the process ends.  Use it from the reactor thread
        only.  A plugin may assign its own object to ``self.state``; co2
        then leaves that alone.
        """
        state: MutableMapping[str, Any] | None = self.__dict__.get("_co2_state")
        if state is None:
            site = getattr(self, "_co2_site", None)
            if site is not None:
                state = site.host.state_of(self)
            else:
                state = PluginState(MemoryStore(), str(self))
            self._co2_state = state
        return state

    @state.setter
    def state(self, value: MutableMapping[str, Any]) -> None:
        self._co2_state = value

    def receive(self, data_dict: dict[str, Any]) -> Any:
        """
        Take one message sent by another plugin or a ``notify`` call.

        ``data_dict`` holds ``data``, ``host_id`` (the sending server) and
        ``client_address`` (``[ip, port]`` of the previous hop).  Return
        quickly: a value, a Deferred, or be ``async def``.  Blocking work
        belongs in a thread (see :func:`co2.in_thread`).  The default
        ignores the message.
        """
        return None

    def send(self, data: Any) -> Deferred[None] | None:
        """
        Send ``{'data': data}`` to every other plugin of the network.

        ``data`` is any value XML-RPC can carry.  The satellite adds its own
        ``host_id``.  Returns a Deferred that fires once the node has taken
        the message (at once unless the network is congested; None when
        called from a worker thread).  Raises :class:`co2.SendQueueFull`
        when the node's send queue is full (``send_queue_bytes``), and
        :class:`co2.NotAttachedError` on an instance no satellite created.
        """
        site = getattr(self, "_co2_site", None)
        if site is None:
            raise NotAttachedError(
                f"{self} was not created by a satellite, so it cannot send; "
                "only plugins a satellite loaded can send"
            )
        return site.host.send_from(self, data)

    def sending_paused(self) -> None:
        """
        Called when the network takes messages more slowly than this node's
        plugins send them: what is sent now waits in the send queue.
        Override it to stop sending until :meth:`sending_resumed`.
        """

    def sending_resumed(self) -> None:
        """Called when the send queue is empty again and the network takes messages."""

    def log(self, message: str) -> None:
        """Log ``message`` at info level, under the plugin's name."""
        self._co2_logger.info("{message}", message=message)

    def debug(self, message: str) -> None:
        """Log ``message`` at debug level, under the plugin's name."""
        self._co2_logger.debug("{message}", message=message)

    def __exit__(self) -> Any:
        """
        Called once, with no arguments, when the satellite shuts down.

        May return a Deferred; the satellite waits for it, within a bound.
        """
        return None

    def __str__(self) -> str:
        name: str | None = getattr(self, "_co2_name", None)
        return name if name is not None else f"{type(self).__module__}.{type(self).__qualname__}"

    def __repr__(self) -> str:
        return f"<{self}>"


F = TypeVar("F", bound=Callable[..., Any])


def in_thread(function: F) -> F:
    """
    Decorate a plugin method (``receive`` or an ``x_`` method) whose work
    blocks: each call then runs in the satellite's thread pool and returns
    a Deferred that fires with the method's result, or fails with its error.

    Code run this way must not touch Twisted APIs other than
    ``reactor.callFromThread``; :meth:`Co2Plugin.send` is safe to call.
    """

    @functools.wraps(function)
    def in_a_thread(*args: Any, **kwargs: Any) -> Deferred[Any]:
        site = None
        if args and isinstance(args[0], Co2Plugin):
            site = getattr(args[0], "_co2_site", None)
        if site is not None:
            return site.host.run_in_thread(function, *args, **kwargs)
        from twisted.internet.threads import deferToThread

        return deferToThread(function, *args, **kwargs)

    return in_a_thread  # type: ignore[return-value]
