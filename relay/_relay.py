"""
The relay every node embeds: its identity, its router and method
directory, the AMP listener and the links to its peers.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from typing import Any

from twisted.application.service import MultiService
from twisted.internet import endpoints
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger
from twisted.python.failure import Failure

from co2._auth import make_authentication
from co2._config import Config
from relay._classic import ClassicLink
from relay._dialling import peer_service
from relay._directory import Directory
from relay._errors import RelayError
from relay._links import LinkProtocol, LinkServerFactory, LinkStats, max_box_size
from relay._plugins import load_relay_plugins
from relay._router import Deliver, Router
from relay._spool import Spool
from relay._watch import MAX_WAIT, Tap

__all__ = ["AMPListenError", "Relay", "stop_listening"]

_log = Logger(namespace="co2.relay")


class AMPListenError(RelayError):
    """The ``amp_listen`` endpoint could not be bound."""


class Relay(MultiService):
    """
    Routing for one node.  ``deliver`` hands messages to the node's
    plugins; ``local_names`` and ``call_local`` expose the methods it hosts
    to the rest of the network.

    Raises :class:`~relay._spool.SpoolError` when the spool cannot be
    opened and :class:`~relay._plugins.RelayPluginError` when a relay
    plugin cannot be loaded.
    """

    def __init__(
        self,
        config: Config,
        reactor: Any,
        deliver: Deliver,
        local_names: Callable[[], Iterable[str]] = tuple,
        call_local: Callable[[str, tuple[Any, ...]], Deferred[Any]] | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.reactor = reactor
        spool = Spool(config.spool, config.seen_limit) if config.spool else None
        self.node_id = spool.node_id if spool is not None else secrets.token_hex(8)
        self._host_id = ""
        self.links: dict[str, LinkProtocol] = {}
        self.router = Router(
            reactor, deliver,
            max_hops=config.max_hops, seen_limit=config.seen_limit,
            outbox_limit=config.outbox_limit, outbox_bytes=config.outbox_bytes,
            spool=spool,
            forget_after=config.forget_after,
            plugins=load_relay_plugins(config.relay_plugins, config.relay_plugin_config),
            # A long poll of co2.watch answers before call_timeout cuts it short.
            tap=Tap(reactor, max_wait=min(MAX_WAIT, 0.9 * config.call_timeout)),
        )
        self.directory = Directory(
            reactor, self.node_id, local_names, call_local or _no_local_calls,
            max_hops=config.max_hops, call_timeout=config.call_timeout,
        )
        self.authentication = make_authentication(config.auth, config.auth_methods, reactor)
        self.max_box_size = max_box_size(config)
        self.hello_timeout = config.request_timeout
        self.link_stats = LinkStats()
        self.port: IListeningPort | None = None
        for peer in config.peers:
            if peer.startswith(("http://", "https://")):
                ClassicLink(
                    self.router, reactor, peer, lambda: self.host_id,
                    tls_ca=config.tls_ca, credentials=config.credentials_for(peer), stats=self.link_stats,
                ).setServiceParent(self)
            else:
                peer_service(
                    self, peer, tls_ca=config.tls_ca, credentials=config.credentials_for(peer),
                ).setServiceParent(self)

    @property
    def host_id(self) -> str:
        """This node's ``host_id``."""
        return self._host_id

    @host_id.setter
    def host_id(self, value: str) -> None:
        self._host_id = value
        self.directory.host_id = value

    @inlineCallbacks
    def listen(self) -> Any:
        """Listen on ``amp_listen`` if set; fails with :class:`AMPListenError`."""
        if self.config.amp_listen is None:
            return None
        endpoint = endpoints.serverFromString(self.reactor, self.config.amp_listen)
        try:
            self.port = yield endpoint.listen(LinkServerFactory(self, self.config.max_connections))
        except Exception as e:
            raise AMPListenError(f"cannot listen on {self.config.amp_listen!r}: {e}") from None
        return self.port

    def startService(self) -> None:
        super().startService()
        self.directory.start()

    @inlineCallbacks
    def stopService(self) -> Any:
        self.directory.stop()
        # Whatever the last turn queued, and the answers to what it took, are
        # written before the links close.
        self.router.flush()
        self.router.acknowledge()
        for link in list(self.links.values()):
            link.send_now()
        yield super().stopService()
        port, self.port = self.port, None
        yield stop_listening(port, "the AMP listener")
        for link in list(self.links.values()):
            if link.transport is not None:
                link.transport.loseConnection()
        self.router.close()


@inlineCallbacks
def stop_listening(port: IListeningPort | None, what: str) -> Any:
    """Stop ``port`` if there is one; a failure is logged, naming ``what``."""
    if port is not None:
        try:
            yield port.stopListening()
        except Exception:
            _log.failure("stopping {what}", Failure(), what=what)


def _no_local_calls(name: str, params: tuple[Any, ...]) -> Deferred[Any]:
    raise LookupError(f"no method {name!r} here")
