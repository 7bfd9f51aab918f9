"""
A node as a Twisted service tree, rooted at the relay's own service.

``co2-relay`` runs a :class:`RelayService` with only the parts the relay
needs from outside (its HTTP front end, a manhole); a satellite is the
same service with a plugin host among its children::

    RelayService                      (names the node once the front is bound)
     +-- links                        the relay's links (Links)
     |    +-- the AMP listener        amp_listen, when set
     |    +-- peer:...                one per AMP peer (a ClientService)
     |    +-- http://...              one per classic peer (a ClassicLink)
     |    +-- nats://...              one per NATS backbone (a BackboneLink)
     +-- host                         the plugin host (a satellite only)
     +-- front                        the HTTP listener
     +-- manhole                      the SSH manhole, when set

Children start in that order, each once the one before is ready, and
stop in the reverse one: the manhole and the front stop listening, the
plugins receive what was taken and exit, then the links send what waits
and close, and last the relay commits and closes its spool.  Every
listener binds before anything starts (``privilegedStartService``), so
the front's address, which names the node, is known from the start.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import IService
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import inlineCallbacks
from twisted.logger import Logger

from co2._config import BACKBONE_SCHEMES
from co2._message import make_host_id
from co2._services import InOrder, Listener
from relay._classic import ClassicLink
from relay._dialling import peer_service
from relay._links import LinkServerFactory
from relay._relay import Relay

__all__ = ["Links", "RelayService", "advertised_address"]

_log = Logger(namespace="co2.relay")


def advertised_address(address: object) -> tuple[str, int]:
    """
    The ``(ip, port)`` a ``host_id`` names for a listening address: an
    unspecified address (all interfaces) or a UNIX socket is named by
    loopback.
    """
    if isinstance(address, (IPv4Address, IPv6Address)):
        host = address.host
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1" if isinstance(address, IPv4Address) else "::1"
        return host, address.port
    return "127.0.0.1", 0


class Links(InOrder):
    """
    The links of ``relay``: its AMP listener (when ``amp_listen`` is set)
    and one service for each of its ``peers``.  Before they stop, the
    relay ends its turn and the links send what waits.
    """

    def __init__(self, relay: Relay) -> None:
        super().__init__()
        self.relay = relay
        self.setName("links")
        config, reactor = relay.config, relay.reactor
        settings, tls_ca = config.relay, config.node.tls_ca
        self.listener: Listener | None = None
        if settings.amp_listen is not None:
            self.listener = Listener(
                reactor, settings.amp_listen, lambda: LinkServerFactory(relay, config.node.max_connections),
                "the AMP listener",
            )
            self.listener.setServiceParent(self)
        for peer in settings.peers:
            credentials = settings.credentials_for(peer)
            if peer.startswith(BACKBONE_SCHEMES):
                from relay._backbone import BackboneLink  # nats-py: only with a backbone configured

                BackboneLink(relay, peer, credentials, tls_ca).setServiceParent(self)
            elif peer.startswith(("http://", "https://")):
                ClassicLink(
                    relay.router, reactor, peer, lambda: relay.host_id,
                    tls_ca=tls_ca, credentials=credentials, stats=relay.link_stats,
                ).setServiceParent(self)
            else:
                peer_service(relay, peer, tls_ca=tls_ca, credentials=credentials).setServiceParent(self)

    def start(self) -> Any:
        self.relay.start()
        return self.start_children()

    @inlineCallbacks
    def stopService(self) -> Any:
        relay = self.relay
        relay.directory.stop()
        # Whatever the plugins and the last turn queued, and the answers to
        # what it took, are written before the links close.
        relay.release_queue()
        relay.flush()
        relay.router.turn.acknowledge()
        for link in list(relay.links.values()):
            link.send_now()
        yield super().stopService()
        for link in list(relay.links.values()):
            if link.transport is not None:
                link.transport.loseConnection()


class RelayService(InOrder):
    """
    Runs ``relay`` with its links, and the parts given to it: ``front``
    (the HTTP listener, whose address names the node), ``host`` (a
    satellite's plugin host) and ``manhole``.  :attr:`started` fires once
    every part has started, or fails with the first failure (a
    :class:`~co2._services.ListenError` for an endpoint that cannot be
    bound).  ``role`` is what the logs call the node.
    """

    def __init__(
        self,
        relay: Relay,
        front: Listener,
        *,
        host: IService | None = None,
        manhole: Listener | None = None,
        role: str = "relay",
    ) -> None:
        super().__init__()
        self.role = role
        self.relay = relay
        self.front = front
        self.links = Links(relay)
        self.links.setServiceParent(self)
        for name, part in (("host", host), ("front", front), ("manhole", manhole)):
            if part is not None:
                part.setName(name)
                part.setServiceParent(self)

    @inlineCallbacks
    def start(self) -> Any:
        port = yield self.front.bind()
        self.relay.host_id = make_host_id(*advertised_address(port.getHost()))
        yield self.start_children()

    @inlineCallbacks
    def stopService(self) -> Any:
        yield super().stopService()
        self.relay.close()
        _log.info("co2 {role} stopped", role=self.role)
