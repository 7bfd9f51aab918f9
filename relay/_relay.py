"""
The relay every node embeds, and its public API: everything about
messages between nodes goes through a :class:`Relay`.

- a node's identity (``node_id``, ``host_id``);
- :meth:`Relay.originate`: a message a plugin of this node sends;
- :meth:`Relay.accept_notify`: a message a client gives by XML-RPC
  ``notify`` (its checks, the ``host_id`` against the caller, its id and
  hops, and not sending it back to the classic peer it came from);
- :meth:`Relay.inject`: a message as if it came from elsewhere (tests);
- the turn: :meth:`Relay.flush`, :meth:`Relay.hold`, :attr:`Relay.holding`;
- :attr:`Relay.state`, where the node's plugins keep their ``self.state``;
- :meth:`Relay.snapshot`, what the status page and ``/metrics`` show;
- :attr:`Relay.directory`, the methods hosted across the network;
- :attr:`Relay.tap`, the last messages taken, for ``co2.watch``.

The routing itself is the :class:`~relay._router.Router`'s, the end of
each turn the :class:`~relay._turn.Turn`'s; the relay's links run in
:class:`~relay._service.RelayService`.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit
from xmlrpc.client import Fault

from twisted.internet.defer import Deferred
from twisted.logger import Logger, LogLevel

from co2 import __version__, faults
from co2._auth import make_authentication
from co2._config import BACKBONE_SCHEMES
from co2._errors import SendQueueFull
from co2._message import HostId, check_message, decode_message, encode_message, host_matches, parse_host_id
from co2._state import StateStore
from co2._values import check_members, check_value
from relay._directory import Directory
from relay._links import LinkProtocol, LinkStats, max_box_size
from relay._plugins import load_relay_plugins
from relay._router import FROM_LINK, Router
from relay._settings import RelayConfig
from relay._snapshot import LinkView, Snapshot
from relay._spool import Spool
from relay._turn import Handover, Local
from relay._watch import MAX_WAIT, Tap

__all__ = ["Relay"]

_log = Logger(namespace="co2.relay")

_ROUTING = ("id", "hops")
"""What a message from another co2 node holds besides ``data`` and ``host_id``."""


def _nobody(messages: list[Local]) -> None:
    """A standalone relay's handover: it hosts no plugins."""


class Relay:
    """
    Routing for one node.  ``handover`` gives the node's plugins each
    turn's messages; ``local_names`` and ``call_local`` expose the methods
    it hosts to the rest of the network.

    Raises :class:`~relay._spool.SpoolError` when the spool cannot be
    opened and :class:`~relay._plugins.RelayPluginError` when a relay
    plugin cannot be loaded.
    """

    def __init__(
        self,
        config: RelayConfig,
        reactor: Any,
        handover: Handover = _nobody,
        local_names: Callable[[], Iterable[str]] = tuple,
        call_local: Callable[[str, tuple[Any, ...]], Deferred[Any]] | None = None,
    ) -> None:
        self.config = config
        self.reactor = reactor
        node, settings = config.node, config.relay
        spool = Spool(settings.spool, settings.seen_limit) if settings.spool else None
        self.node_id = spool.node_id if spool is not None else secrets.token_hex(8)
        self._host_id = ""
        self.links: dict[str, LinkProtocol] = {}
        # A long poll of co2.watch answers before call_timeout cuts it short.
        self.tap = Tap(reactor, max_wait=min(MAX_WAIT, 0.9 * node.call_timeout))
        """The last messages taken; its ``watch_from`` is ``co2.watch``."""
        self.directory = Directory(
            reactor, self.node_id, local_names, call_local or _no_local_calls,
            max_hops=settings.max_hops, call_timeout=node.call_timeout,
        )
        self.router = Router(
            reactor, handover,
            max_hops=settings.max_hops, seen_limit=settings.seen_limit,
            outbox_limit=settings.outbox_limit, outbox_bytes=settings.outbox_bytes,
            spool=spool,
            forget_after=settings.forget_after,
            plugins=load_relay_plugins(
                settings.relay_plugins, settings.relay_plugin_config, _relay_plugin_dir(config)
            ),
            tap=self.tap,
            node_id=self.node_id,
            topology=self.directory.topology,
        )
        self.authentication = make_authentication(config.auth.auth, config.auth.auth_methods, reactor)
        self.max_box_size = max_box_size(node)
        self.hello_timeout = node.request_timeout
        self.link_stats = LinkStats()
        for peer in settings.peers:
            # What is sent before a link to a peer first comes up waits for it.
            keyed_as_given = _is_classic(peer) or peer.startswith(BACKBONE_SCHEMES)
            self.router.outbox(peer if keyed_as_given else f"peer:{peer}")
        self._thread = threading.get_ident()
        self.started = time.time()
        """When (wall time) this relay was made."""
        self.role = "relay"
        """What the network map calls this node: ``relay``, or ``satellite`` for one that hosts plugins."""
        self.plugin_names: Callable[[], list[str]] = list
        """The names of the node's plugins, for the network map (a satellite gives its own)."""
        self._rates_from: tuple[float, dict[str, tuple[int, int]]] = (self.started, {})
        self.directory.describe = self.profile
        self._own_address: tuple[str, list[Any]] = ("", [])
        # Messages this node's plugins sent while the router was congested.
        self._queue: deque[tuple[bytes, Any, Deferred[None] | None]] = deque()
        self._queued_bytes = 0
        self.on_sending_paused: list[Callable[[], None]] = []
        """Called when the router stops taking: the plugins should pause sending."""
        self.on_sending_resumed: list[Callable[[], None]] = []
        """Called when the send queue is empty again and the router takes: they may resume."""
        self.router.on_congested.append(self._congested)
        self.router.on_relieved.append(self._drain)
        self._classic_peers = [
            (peer, parts.hostname or "", parts.port)
            for peer, parts in ((peer, urlsplit(peer)) for peer in settings.peers if _is_classic(peer))
        ]

    @property
    def host_id(self) -> str:
        """This node's ``host_id``: ``<random>@<ip>:<port>``, naming its XML-RPC listener."""
        return self._host_id

    @host_id.setter
    def host_id(self, value: str) -> None:
        self._host_id = value
        self.directory.host_id = value

    # Messages that start here

    def originate(self, data: Any, sender: Any = None) -> Deferred[None] | None:
        """
        Send ``{'data': data, 'host_id': ...}`` from ``sender`` (a plugin
        of this node, which does not get it back) to every other plugin of
        the network.  Returns a Deferred that fires once the router has
        taken the message: at once, or, while the router is congested, when
        the send queue gets to it.

        Raises ``TypeError`` at once when ``data`` is not an XML-RPC value,
        ``ValueError`` when its message is over ``max_message_size``, and
        :class:`co2.SendQueueFull` when the send queue holds
        ``send_queue_bytes`` already.  Safe to call from a worker thread:
        what is sent is ``data`` as it was at the call (and nothing is
        returned there: Deferreds belong to the reactor's thread).
        """
        try:
            check_value(data)
        except (TypeError, ValueError) as e:
            raise TypeError(f"cannot send {type(data).__name__}: {e}") from None
        message = encode_message({"data": data, "host_id": self.host_id})
        limit = self.config.node.max_message_size
        if len(message) > limit:
            raise ValueError(f"cannot send {len(message)} bytes: over max_message_size ({limit})")
        if threading.get_ident() != self._thread:
            self._room_for(message)
            self.reactor.callFromThread(self._send_or_queue, message, sender, None)
            return None
        if self._queue or self.router.congested:
            self._room_for(message)
        taken: Deferred[None] = Deferred()
        self._send_or_queue(message, sender, taken)
        return taken

    def _room_for(self, message: bytes) -> None:
        limit = self.config.relay.send_queue_bytes
        if self._queued_bytes + len(message) > limit:
            raise SendQueueFull(
                f"the send queue holds {self._queued_bytes} bytes; {len(message)} more would pass "
                f"send_queue_bytes ({limit}): wait for what was sent to be taken"
            )

    def _send_or_queue(self, message: bytes, sender: Any, taken: Deferred[None] | None) -> None:
        """Route ``message`` now, or queue it behind the others while the router is congested."""
        if self._queue or self.router.congested:
            self._queue.append((message, sender, taken))
            self._queued_bytes += len(message)
            return
        self.router.send(message, self._address(), sender)
        if taken is not None:
            taken.callback(None)

    def _send_queued(self, until_congested: bool) -> None:
        """Hand the router the queued messages, in order (stopping once it is congested, if asked)."""
        queue, router = self._queue, self.router
        while queue and not (until_congested and router.congested):
            message, sender, taken = queue.popleft()
            self._queued_bytes -= len(message)
            router.send(message, self._address(), sender)
            if taken is not None:
                taken.callback(None)

    def _drain(self) -> None:
        """The router takes again: hand it the queued messages until it is congested; tell the plugins."""
        self._send_queued(until_congested=True)
        if not self._queue and not self.router.congested:
            for call in list(self.on_sending_resumed):
                call()

    def release_queue(self) -> None:
        """
        The node is stopping: hand the router every queued message now,
        congested or not, so that the outboxes (and the spool, when there is
        one) hold them rather than nobody; past an outbox's limits the
        oldest are dropped and counted, as for a link that is down.
        """
        self._send_queued(until_congested=False)

    def _congested(self) -> None:
        for call in list(self.on_sending_paused):
            call()

    @property
    def queued(self) -> tuple[int, int]:
        """The messages the send queue holds, and their bytes."""
        return len(self._queue), self._queued_bytes

    def _address(self) -> list[Any]:
        # The previous hop of a message sent here is this node itself.
        if self._own_address[0] != self.host_id:
            host = parse_host_id(self.host_id)
            self._own_address = (self.host_id, [host.host, host.port])
        return self._own_address[1]

    def accept_notify(self, caller: tuple[str, int] | None, message: dict[str, Any]) -> bool:
        """
        Accept a message (a struct with ``data`` and ``host_id``) for every
        plugin here and the rest of the network.  Answers at once; the
        plugins receive it afterwards.  A message relayed by another co2
        node also holds its ``id`` and remaining ``hops``.  Fault -32602
        for a message co2 cannot carry, -32000 for a ``host_id`` naming
        another host than the caller's, -32003 while the node is stopping,
        -32006 while it is busy (its router congested).
        """
        # caller, given by the dispatcher, is the (ip, port) the request
        # came from; None for a local (UNIX socket) peer.
        if self.holding:
            raise Fault(faults.SHUTTING_DOWN, "notify: this node is stopping; send the message again later")
        if self.router.congested:
            raise Fault(faults.BUSY, "notify: this node is busy (an outbox is full); send it again later")
        try:
            check_message(message)
            message_id, hops = _routing_of(message)
            check_members(message)
        except (TypeError, ValueError) as e:
            raise Fault(faults.INVALID_PARAMS, f"notify: {e}") from None
        host_id = parse_host_id(message["host_id"])
        if caller is not None and not host_matches(host_id, caller[0]):
            self.router.limited.emit(
                "notify refused: host_id mismatch", LogLevel.warn,
                "notify refused: host_id {host_id!r} does not match the caller {ip}",
                more="notify refused: {count} more host_id(s) not matching the caller within {seconds:g}s, "
                     "not logged one by one; the last: {host_id!r} from {ip}",
                host_id=message["host_id"], ip=caller[0],
            )
            raise Fault(
                faults.HOST_ID_MISMATCH,
                f"host_id names host {host_id.host}, but the request came from {caller[0]}",
            )
        client_address: list[Any] = list(caller) if caller is not None else ["", 0]
        body = encode_message({k: v for k, v in message.items() if k not in _ROUTING})
        limit = self.config.node.max_message_size
        if len(body) > limit:
            raise Fault(faults.INVALID_PARAMS,
                        f"notify: the message is {len(body)} bytes, over max_message_size ({limit})")
        router = self.router
        source = self._classic_peer(host_id) or f"notify from {client_address[0]}"
        hops = min(hops, router.max_hops)
        if router.route(message_id or router.new_id(), hops, body, source, client_address):
            router.counters.notified += 1
        return True

    def _classic_peer(self, host_id: HostId) -> str | None:
        # The classic link to the node that sent this, so it is not sent back.
        for peer, host, port in self._classic_peers:
            if port == host_id.port and (host == host_id.host or host_matches(host_id, host)):
                return peer
        return None

    def read(self, body: bytes, sender: Any) -> dict[str, Any] | None:
        """
        The message ``body`` of a turn's handover, decoded for one plugin.
        One that came over a link (``sender`` is :data:`~relay._router.FROM_LINK`)
        is checked here, the one time this node opens it: None when it is
        not a message co2 can carry (counted as ``invalid``, and logged).
        """
        if sender is FROM_LINK:
            return self.router.open_arrived(body, "a link")
        return decode_message(body)

    def inject(self, message: dict[str, Any], source: str, client_address: list[Any]) -> None:
        """
        Route ``message`` (already checked) as one that came by ``source``
        from ``client_address``, to this node's plugins only.
        """
        router = self.router
        router.route(router.new_id(), 0, encode_message(message), source, client_address)

    # The turn

    def flush(self) -> None:
        """End the turn now: hand what was taken to the plugins, commit, send."""
        self.router.turn.flush()

    def hold(self) -> None:
        """Take no more messages from outside (the node is stopping); see :meth:`relay._turn.Turn.hold`."""
        self.router.turn.hold()

    @property
    def holding(self) -> bool:
        """Whether the node takes no more messages from outside."""
        return self.router.turn.holding

    @property
    def state(self) -> StateStore:
        """Where the node's plugins keep their ``self.state``, committed with each turn."""
        return self.router.turn.state

    # What others read

    def snapshot(self) -> Snapshot:
        """The relay as it is now: its links and counters."""
        router, stats = self.router, self.link_stats
        links = []
        for key, outbox in sorted(router.outboxes.items()):
            peer_node, peer_host_id = stats.peers.get(key, ("", ""))
            links.append(LinkView(
                key=key, up=key in router.senders, queued=len(outbox),
                messages_in=stats.messages_in.get(key, 0), messages_out=stats.messages_out.get(key, 0),
                ups=stats.ups.get(key, 0), peer_node=peer_node, peer_host_id=peer_host_id,
                since=stats.changed.get(key),
            ))
        queued, queued_bytes = self.queued
        flow: dict[str, int | bool] = {
            "congested": router.congested, "parked": router.parked,
            "queued": queued, "queued_bytes": queued_bytes,
        }
        return Snapshot(
            self.node_id, self.host_id, tuple(links), router.counters.as_dict(), flow,
            started=self.started, last_message=router.last_message,
        )

    def profile(self) -> dict[str, Any]:
        """
        What this node says of itself to the network (:mod:`relay._profile`):
        its role, version, plugins, and each link with the node at its other
        end, its state, queue depth and messages a second in and out since
        the last time it said so.
        """
        now, snapshot = time.time(), self.snapshot()
        since, before = self._rates_from
        elapsed = max(now - since, 1e-9)
        links = []
        for link in snapshot.links:
            was_in, was_out = before.get(link.key, (0, 0))
            links.append({
                "peer": link.peer_node, "peer_host_id": link.peer_host_id, "link": link.key,
                "state": "up" if link.up else "down", "queued": link.queued,
                "in_rate": round((link.messages_in - was_in) / elapsed, 1),
                "out_rate": round((link.messages_out - was_out) / elapsed, 1),
            })
        if elapsed >= RATE_WINDOW:  # a look at the map between announcements keeps the window
            counts = {link.key: (link.messages_in, link.messages_out) for link in snapshot.links}
            self._rates_from = (now, counts)
        return {"role": self.role, "version": __version__, "plugins": self.plugin_names(), "links": links}

    def network(self) -> dict[str, Any]:
        """Every node of the network as far as this one knows (``GET /network.json``)."""
        return {"nodes": self.directory.network()}

    def start(self) -> None:
        """Start announcing this node's methods over its links (see :class:`~relay._directory.Directory`)."""
        self.directory.start()

    def close(self) -> None:
        """Commit what is pending and close the spool: the node has stopped."""
        self.release_queue()
        self.directory.stop()
        self.router.close()
        if self.authentication is not None:
            self.authentication.close()


RATE_WINDOW = 5.0
"""The shortest time over which a profile's messages a second are counted."""


def _relay_plugin_dir(config: RelayConfig) -> str | None:
    """Where relay plugins are looked for first: ``relay_plugin_dir``, else beside the config file."""
    if config.relay.relay_plugin_dir is not None:
        return config.relay.relay_plugin_dir
    return os.path.dirname(os.path.abspath(config.path)) if config.path else None


def _is_classic(peer: str) -> bool:
    """Whether ``peer`` is a classic node, reached by XML-RPC ``notify`` (else an AMP endpoint)."""
    return peer.startswith(("http://", "https://"))


def _routing_of(message: dict[str, Any]) -> tuple[str | None, int]:
    message_id, hops = message.get("id"), message.get("hops", 2**31 - 1)
    if message_id is not None and (not isinstance(message_id, str) or not message_id):
        raise ValueError("id, when given, must be a non-empty string")
    if not isinstance(hops, int) or isinstance(hops, bool) or hops < 0:
        raise ValueError("hops, when given, must be an int >= 0")
    return message_id, hops


def _no_local_calls(name: str, params: tuple[Any, ...]) -> Deferred[Any]:
    raise LookupError(f"no method {name!r} here")
