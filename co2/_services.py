"""
The pieces a node's service tree is made of: listeners, and a parent
that starts its children in order and stops them in reverse.

A node is one tree (``docs/architecture.md``): its parts start one after
another, each once the one before is ready, and stop the other way
round, each once the one after it has stopped.  Listeners bind in
``privilegedStartService``, as Twisted's own
``StreamServerEndpointService`` does, so every address is known (and
bound before ``twistd`` sheds privileges) before any part starts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.application.service import MultiService, Service
from twisted.internet import endpoints
from twisted.internet.defer import Deferred, inlineCallbacks, maybeDeferred
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure

from co2._errors import Co2Error

__all__ = ["InOrder", "ListenError", "Listener", "Part"]

_log = Logger(namespace="co2")


class ListenError(Co2Error):
    """A listener's endpoint could not be bound."""


class Part(Service):
    """
    A service whose start finishes later: :attr:`ready` fires once it has,
    or fails with why it could not.  Subclasses start in :meth:`start`.
    """

    ready: Deferred[Any]

    def startService(self) -> None:
        super().startService()
        self.ready = maybeDeferred(self.start)

    def start(self) -> Any:
        """Start; return a Deferred when that finishes later."""


class Listener(Part):
    """
    Listens on ``description`` (a Twisted server endpoint string) while it
    runs, with the factory ``make_factory`` makes as it binds (what fails
    there fails the bind); ``what`` names it in errors and logs.
    """

    def __init__(
        self, reactor: Any, description: str, make_factory: Callable[[], Factory], what: str
    ) -> None:
        self.reactor = reactor
        self.description = description
        self.make_factory = make_factory
        self.what = what
        self.port: IListeningPort | None = None
        self._outcome: IListeningPort | Failure | None = None
        self._waiting: list[Deferred[IListeningPort]] = []
        self._binding = False

    def bind(self) -> Deferred[IListeningPort]:
        """
        Start listening, the first time; fires with the listening port, or
        fails with :class:`ListenError` saying why it could not.
        """
        if not self._binding:
            self._binding = True
            maybeDeferred(self._listen).addBoth(self._listened)
        told: Deferred[IListeningPort] = Deferred()
        if self._outcome is None:
            self._waiting.append(told)
        else:
            self._tell(told)
        return told

    def _listen(self) -> Deferred[IListeningPort]:
        endpoint = endpoints.serverFromString(self.reactor, self.description)
        return endpoint.listen(self.make_factory())

    def _listened(self, result: IListeningPort | Failure) -> None:
        if isinstance(result, Failure):
            why = result.getErrorMessage()
            if "systemd:" in self.description and result.check(IndexError, KeyError):
                # Twisted's own words here are "list index out of range" or the name asked for.
                why = ("systemd passed no such socket (is the node started by its .socket unit, "
                       "with LISTEN_FDS and LISTEN_FDNAMES set?)")
            result = Failure(ListenError(f"cannot listen on {self.description!r} ({self.what}): {why}"))
        else:
            self.port = result
        self._outcome = result
        waiting, self._waiting = self._waiting, []
        for told in waiting:
            self._tell(told)

    def _tell(self, told: Deferred[IListeningPort]) -> None:
        outcome = self._outcome
        assert outcome is not None
        if isinstance(outcome, Failure):
            told.errback(outcome)
        else:
            told.callback(outcome)

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        self.bind().addErrback(lambda _: None)  # told again by ready

    def start(self) -> Deferred[IListeningPort]:
        return self.bind()

    @inlineCallbacks
    def stopService(self) -> Any:
        super().stopService()
        port, self.port = self.port, None
        if port is not None:
            try:
                yield port.stopListening()
            except Exception:
                _log.failure("stopping {what}", Failure(), what=self.what)


class InOrder(MultiService):
    """
    Starts its children one after another, each once the one before is
    ready (a :class:`Part` is ready when its :attr:`Part.ready` fires);
    :attr:`started` fires once all are, or fails with the first failure,
    and the children after it are not started.  Stops them in reverse
    order, each once the one after it has stopped; a failure to stop is
    logged and the next one stops all the same.
    """

    def __init__(self) -> None:
        super().__init__()
        self.started: Deferred[None] = Deferred()

    @property
    def ready(self) -> Deferred[None]:
        """:attr:`started`, as a :class:`Part`'s ``ready``: an ``InOrder`` may be a child of another."""
        return self.started

    def startService(self) -> None:
        Service.startService(self)  # the children start one by one, below
        maybeDeferred(self.start).chainDeferred(self.started)

    def start(self) -> Any:
        """Start the children in order; a subclass may do more first."""
        return self.start_children()

    @inlineCallbacks
    def start_children(self) -> Any:
        """Start the children one after another, each once the one before is ready."""
        for child in list(self):
            if not self.running:
                return
            child.startService()
            if isinstance(child, (Part, InOrder)):
                yield child.ready

    @inlineCallbacks
    def stopService(self) -> Any:
        Service.stopService(self)
        for child in reversed(list(self)):
            if not child.running:
                continue
            try:
                yield child.stopService()
            except Exception:
                _log.failure("stopping {child}", Failure(), child=child.name or type(child).__name__)
