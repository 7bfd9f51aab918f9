"""
The links this node dials: one ``ClientService`` for each AMP peer, which
reconnects with exponential backoff and jitter, and whose links say Hello
as they connect.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet.protocol import Factory

from co2._tls import client_endpoint
from relay._links import Attempts, LinkOwner, LinkProtocol

__all__ = ["peer_service", "retry_policy"]


class _PeerFactory(Factory):
    """
    Makes the links a peer service dials, and counts the attempts that
    failed in a row (no connection, a refused Hello, a connection lost
    before Hello was answered) until a link's Hello succeeds.
    """

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
    endpoint = client_endpoint(owner.reactor, peer, tls_ca)
    factory = _PeerFactory(owner, key, credentials)
    policy = retry_policy(initial_delay, max_delay)
    # ClientService counts a connection as made before its Hello and starts
    # counting failures afresh; the factory counts them until a Hello succeeds.
    service = ClientService(
        endpoint,
        factory,
        retryPolicy=lambda _: policy(factory.attempts.failed()),
        clock=owner.reactor,
    )
    service.setName(key)
    return service
