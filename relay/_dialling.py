"""
The links this node dials: one ``ClientService`` for each AMP peer, which
reconnects with exponential backoff and jitter, and whose links say Hello
as they connect.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure
from zope.interface import implementer

from co2._ratelog import RateLimitedLog
from co2._tls import client_endpoint
from relay._links import Attempts, LinkOwner, LinkProtocol

__all__ = ["PeerFactory", "peer_service", "retry_policy"]


_log = Logger(namespace="co2.relay")


class PeerFactory(Factory):
    """
    Makes the links a peer service dials, and counts the attempts that
    failed in a row (no connection, a refused Hello, a connection lost
    before Hello was answered) until a link's Hello succeeds.
    """

    noisy = False  # no "Starting factory" line at each attempt: the link's own lines say it

    def __init__(self, owner: LinkOwner, key: str, credentials: tuple[str, str] | None = None) -> None:
        self.owner = owner
        self.key = key
        self.credentials = credentials
        self.attempts = Attempts()

    def buildProtocol(self, addr: Any) -> LinkProtocol:
        link = LinkProtocol(self.owner, self.key, self.credentials)
        link.factory = self
        link.dialled_by = self.attempts
        return link


def retry_policy(initial_delay: float = 0.5, max_delay: float = 30.0) -> Callable[[int], float]:
    """
    The delay before the next attempt after ``failures`` in a row:
    ``initial_delay`` after the first, 1.5 times more after each further
    one, at most ``max_delay``, plus up to 1 s of random jitter.
    """
    backoff = backoffPolicy(initialDelay=initial_delay, maxDelay=max_delay)
    # backoffPolicy(n) waits initialDelay * 1.5 ** n: n = 0 is the initial delay.
    return lambda failures: backoff(failures - 1)


def peer_service(
    owner: LinkOwner,
    peer: str,
    initial_delay: float = 0.5,
    max_delay: float = 30.0,
    *,
    tls_ca: str | None = None,
    credentials: tuple[str, str] | None = None,
) -> ClientService:
    """
    A service that keeps an AMP link to ``peer`` (a client endpoint
    string) up, reconnecting with exponential backoff and jitter; the
    delay starts again from ``initial_delay`` after each connection whose
    Hello succeeded.  ``tls_ca`` is what an ``ssl:`` peer's certificate
    is checked against; ``credentials`` go in the Hello.
    """
    key = f"peer:{peer}"
    owner.router.outbox(key)
    endpoint = _Reporting(client_endpoint(owner.reactor, peer, tls_ca))
    factory = PeerFactory(owner, key, credentials)
    policy = retry_policy(initial_delay, max_delay)
    limited = RateLimitedLog(_log, owner.reactor)

    def retry(_: int) -> float:
        # ClientService counts a connection as made before its Hello and starts
        # counting failures afresh; the factory counts them until a Hello succeeds.
        delay = policy(factory.attempts.failed())
        why, endpoint.why = endpoint.why, None
        if why is not None:
            limited.emit("cannot connect", LogLevel.warn,
                         "link {key}: cannot connect to {peer}: {why}; retrying in {delay:.0f} s",
                         key=key, peer=peer, why=why, delay=delay)
        return delay

    service = ClientService(endpoint, factory, retryPolicy=retry, clock=owner.reactor)
    service.setName(key)
    return service


@implementer(IStreamClientEndpoint)
class _Reporting:
    """An endpoint that keeps why its last connection attempt failed (``why``), for the log."""

    def __init__(self, endpoint: IStreamClientEndpoint) -> None:
        self.endpoint = endpoint
        self.why: str | None = None

    def connect(self, factory: Any) -> Deferred[Any]:
        return self.endpoint.connect(factory).addErrback(self._failed)

    def _failed(self, failure: Failure) -> Failure:
        os_error = getattr(failure.value, "osError", None)  # a ConnectError's errno
        self.why = os.strerror(os_error).lower() if isinstance(os_error, int) else _short(failure)
        return failure


def _short(failure: Failure) -> str:
    """What a failed connection says, without Twisted's class name and trailing period."""
    text = failure.getErrorMessage().strip().rstrip(".")
    return text or type(failure.value).__name__
