"""
Routing and de-duplication: the router gives each message an id and a
hop limit, passes it on to the outboxes of the links its broadcast tree
goes on (:mod:`relay._tree`; every link but the one it came by while the
network is changing), drops what it has seen before, and notes what is
new for the node's own plugins.  A link that is down, or leads to a node
not on the map, is always given the message: it is sent when the link
comes back, and seen ids drop it where it arrived already.  The end of
the turn, where all that is committed and sent, is :mod:`relay._turn`'s.

Messages travel through the router encoded (a message body is the bytes
of :func:`co2._message.encode_message`): it decodes one only for relay
plugins, and encodes the envelope once per hop, whatever the number of
links it goes to.

Nothing is dropped while its link is up.  When the outbox of a link that
is up holds half its ``outbox_limit`` (or half its ``outbox_bytes``), the
router is *congested*: it takes no more from what feeds it until every
such outbox is down to a quarter.  Batches that arrive over AMP links
meanwhile are parked, unacknowledged, so that each sender's window of
unacknowledged batches fills and it stops sending in turn: the pressure
travels back, link by link, to the plugins that send, whose messages
wait in the relay's send queue (:mod:`relay._relay`).  A batch is parked
only when an outbox it would go to is full, never for its own link's, so
two nodes that send each other more than they can take do not wait on
each other.  The outbox of a link that is down keeps what it owes up to
its limits, the oldest dropped first past them, each drop counted.

With a spool, a message goes into the outboxes only as the turn ends,
just before the commit, so that no link sends what a crash could still
take back: a message that left its first node before that node committed
it could come back to it by another path, be taken for new there, and
reach the plugin that sent it.
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger, LogLevel

from co2._message import check_message, decode_message, encode_message, read_message
from co2._ratelog import RateLimitedLog
from co2._values import check_members
from co2.protocol import encode_envelope
from relay._outbox import Entry, Outbox
from relay._plugins import IRelayPlugin, apply_relay_plugins
from relay._seen import SeenIds
from relay._snapshot import Counters
from relay._spool import Spool
from relay._tree import Topology, origin_of
from relay._turn import Handover, Turn
from relay._watch import Tap

__all__ = ["FROM_LINK", "INBOUND", "LOCAL", "Router", "Sender"]

LOCAL = "local"
"""The source of a message sent by a plugin of this node."""

INBOUND = "node:"
"""The prefix of the key of a link a peer made to this node (then its node id)."""

_log = Logger(namespace="co2.relay")


class _FromLink:
    """The ``sender`` of a message that came over a link: no plugin of this node, and not yet checked."""

    def __repr__(self) -> str:
        return "FROM_LINK"


FROM_LINK: Any = _FromLink()
"""
The ``sender`` the router gives a message that came over a link.  Links
carry messages unopened; the node that opens one (for its plugins or its
relay plugins) checks it then, with :meth:`Router.open_arrived`.
"""


class Sender(Protocol):
    """A live link: it sends what its outbox holds when woken."""

    def wake(self) -> None:
        """Something waits to be sent: send it soon (at the end of this reactor turn)."""

    def send_now(self) -> None:
        """Send what waits now (the router calls this as the turn ends)."""


class Router:
    """
    Routes messages for one node.

    ``handover`` gives each turn's messages to the node's plugins (a
    relay passes a function that does nothing); :attr:`turn` ends each
    turn.  ``spool``, when given, keeps what is owed and what was seen
    across restarts.  ``tap`` keeps the last messages taken, for
    ``co2.watch`` (:mod:`relay._watch`).
    """

    def __init__(
        self,
        reactor: Any,
        handover: Handover,
        *,
        max_hops: int = 16,
        seen_limit: int = 100_000,
        outbox_limit: int = 100_000,
        outbox_bytes: int = 64 * 1024 * 1024,
        spool: Spool | None = None,
        plugins: Sequence[IRelayPlugin] = (),
        forget_after: float = 3600.0,
        tap: Tap | None = None,
        node_id: str = "",
        topology: Topology | None = None,
    ) -> None:
        self.reactor = reactor
        self.topology = topology
        """The map messages are broadcast over; None floods every message."""
        self.max_hops = max_hops
        self.outbox_limit = outbox_limit
        self.outbox_bytes = outbox_bytes
        self.spool = spool
        self.plugins = list(plugins)
        self.forget_after = forget_after
        self.tap = tap if tap is not None else Tap(reactor)
        self._tapped = self.tap.pending
        self.turn = Turn(reactor, handover, spool, ended=self._end_turn, send=self._send_waiting)
        """The end of each turn: the handover to the plugins, the commit, the acknowledgements."""
        self.counters = Counters()
        self.last_message: float | None = None
        """When (wall time) a turn last took a new message."""
        self._taken = 0
        self.limited = RateLimitedLog(_log, reactor)
        """The router's log lines that can repeat (drops, bad messages): a few, then a count."""
        self.outboxes: dict[str, Outbox] = {}
        self.senders: dict[str, Sender] = {}
        self._expiries: dict[str, IDelayedCall] = {}
        # A message id starts with the id of the node that sent it first
        # (its origin, for the broadcast tree) and this process's random part.
        self._boot = f"{node_id}.{secrets.token_hex(4)}" if node_id else secrets.token_hex(8)
        self._counter = itertools.count(1)
        self._seq = itertools.count(1)
        # The outboxes a message from each source goes to, kept until the
        # set of outboxes changes.
        self._targets: dict[str, list[tuple[str, Outbox]]] = {}
        # The node at the other end of each up link (AMP links only), and
        # the outboxes of a message from each source and origin over the
        # tree, kept until the map, the links or the outboxes change.
        self._peers: dict[str, str] = {}
        self._tree_targets: dict[tuple[str, str], list[tuple[str, Outbox]]] = {}
        self._tree_version = -1
        # With a spool: the messages that go into outboxes as the turn ends.
        self._placing: list[tuple[Entry, list[tuple[str, Outbox]]]] = []
        self.seen = SeenIds(seen_limit, self._restore() if spool is not None else ())
        # Flow control: the up links whose outboxes are full, the batches
        # parked meanwhile, and who is told when the router takes again.
        self._high = max(1, outbox_limit // 2)
        self._high_bytes = max(1, outbox_bytes // 2)
        self._full: set[str] = set()
        self._parked: list[tuple[Sequence[tuple[str, int, bytes]], str, list[Any], Deferred[None]]] = []
        self.on_congested: list[Callable[[], None]] = []
        """Called when the router stops taking (an up link's outbox is full)."""
        self.on_relieved: list[Callable[[], None]] = []
        """Called when it takes again, after the batches parked meanwhile are taken."""

    def _restore(self) -> Iterable[str]:
        """Take back from the spool what the links owe; the ids seen."""
        assert self.spool is not None
        state = self.spool.load()
        self._seq = itertools.count(state.next_seq)
        for key in state.links:
            self.outboxes[key] = self._new_outbox(key)
            self._expire_later(key)
        for key, owed in state.owed.items():
            outbox = self.outbox(key)
            for seq, body in owed:
                outbox.put(Entry(seq, body))
            self._expire_later(key)
        return state.seen

    # Outboxes and the links that drain them

    def outbox(self, key: str) -> Outbox:
        """
        The outbox of the link ``key``, made empty if there is none yet.  A
        new link a peer made (``node:``) is noted in the spool: after a
        restart, messages are queued for it before the peer is back.
        """
        outbox = self.outboxes.get(key)
        if outbox is None:
            outbox = self.outboxes[key] = self._new_outbox(key)
            self._routes_changed()
            if self.spool is not None and key.startswith(INBOUND):
                self.spool.add_link(key)
                self.turn.soon()
        return outbox

    def _new_outbox(self, key: str) -> Outbox:
        return Outbox(self.outbox_limit, self.outbox_bytes, lambda entries: self._dropped(key, entries))

    def attach(self, key: str, sender: Sender) -> Outbox:
        """``sender`` now carries link ``key``: it drains the returned outbox."""
        self.senders[key] = sender
        peer = getattr(sender, "peer_node", "")
        if peer:
            self._peers[key] = peer
            self._routes_changed()
        expiry = self._expiries.pop(key, None)
        if expiry is not None and expiry.active():
            expiry.cancel()
        outbox = self.outbox(key)
        if len(outbox):
            sender.wake()
        return outbox

    def detach(self, key: str, sender: Sender) -> None:
        """
        ``sender`` no longer carries link ``key``: whatever it sent and has
        not had acknowledged waits again, in order.
        """
        if self.senders.get(key) is sender:
            del self.senders[key]
            if self._peers.pop(key, None) is not None:
                self._routes_changed()
            self.outboxes[key].rewind()
            self._expire_later(key)
            self._relieve(key)  # what a link that is down owes is bounded by dropping
            # Its parked batches will never be answered: the peer sends them
            # again over its next connection (seen ids drop what was taken).
            self._parked = [parked for parked in self._parked if parked[1] != key]

    def _expire_later(self, key: str) -> None:
        # A node that linked to this one may never come back (one restarted
        # without a spool comes back as a new node): its outbox is kept for
        # forget_after seconds only.  Links to configured peers are kept.
        if key.startswith(INBOUND) and key not in self._expiries:
            self._expiries[key] = self.reactor.callLater(self.forget_after, self._expire, key)

    def _expire(self, key: str) -> None:
        del self._expiries[key]
        if key not in self.senders:
            _log.info("link {key}: its node has been away for {seconds:g}s; forgetting it",
                      key=key, seconds=self.forget_after)
            self.forget(key)

    def forget(self, key: str) -> None:
        """Drop the link ``key`` and everything it owes."""
        self.senders.pop(key, None)
        expiry = self._expiries.pop(key, None)
        if expiry is not None and expiry.active():
            expiry.cancel()
        outbox = self.outboxes.pop(key, None)
        self._peers.pop(key, None)
        self._routes_changed()
        self._relieve(key)
        if outbox is not None and len(outbox):
            _log.warn("link {key}: forgot {count} message(s) it owed", key=key, count=len(outbox))
        if self.spool is not None:
            self.turn.write()
            self.spool.drop_link(key)
            self.turn.soon()

    def acked(self, key: str, number: int) -> None:
        """The peer of link ``key`` acknowledged its batch ``number``."""
        outbox = self.outboxes.get(key)
        if outbox is None:
            return
        entries = outbox.acked(number)
        if self.spool is not None and entries:
            self.turn.write()
            self.spool.remove(key, [entry.seq for entry in entries])
            self.turn.soon()
        if key in self._full and len(outbox) <= self._high // 2 and outbox.size <= self._high_bytes // 2:
            self._relieve(key)

    def _dropped(self, key: str, entries: list[Entry]) -> None:
        self.counters.dropped += len(entries)
        self.limited.emit(
            "outbox full", LogLevel.warn,
            "link {key}: outbox full ({limit} messages or {bytes} bytes); "
            "dropped {count} message(s), the oldest waiting first",
            more="outboxes full: dropped {total:,} more message(s) in {count:,} drop(s) within {seconds:g}s, "
                 "not logged one by one; the last: link {key}",
            sums="count", key=key, limit=self.outbox_limit, bytes=self.outbox_bytes, count=len(entries),
        )
        if self.spool is not None:
            self.turn.write()
            self.spool.remove(key, [entry.seq for entry in entries])

    # Messages

    def new_id(self) -> str:
        """An id no other message has: this process's random part and a counter."""
        return f"{self._boot}.{next(self._counter)}"

    def send(self, message: bytes, client_address: list[Any], sender: Any = None) -> str:
        """
        Route a message that starts here (from ``sender``, a local plugin,
        or None for one accepted by classic ``notify``).  ``message`` is
        its encoding.  Returns its id.
        """
        message_id = self.new_id()
        self.counters.originated += 1
        self.route(message_id, self.max_hops, message, LOCAL, client_address, sender=sender)
        return message_id

    def arrived(
        self, envelopes: Sequence[tuple[str, int, bytes]], key: str, client_address: list[Any]
    ) -> Deferred[None]:
        """
        Route messages that came by link ``key`` from ``client_address``:
        ``(id, hops, message)`` each, as :func:`co2.protocol.decode_batch`
        gives them.  Fires once this node is responsible for them: then
        the link may acknowledge them.  Once the turn holds (the node is
        stopping), the messages are not taken and the Deferred never fires.
        """
        if self.turn.holding:
            return Deferred()
        if self._full and self._full != {key}:
            parked: Deferred[None] = Deferred()
            self._parked.append((envelopes, key, client_address, parked))
            return parked
        return self._take(envelopes, key, client_address)

    def _take(
        self, envelopes: Sequence[tuple[str, int, bytes]], key: str, client_address: list[Any]
    ) -> Deferred[None]:
        self.counters.received += len(envelopes)
        route, max_hops = self.route, self.max_hops
        for message_id, hops, message in envelopes:
            route(message_id, hops if hops < max_hops else max_hops, message, key, client_address, FROM_LINK)
        return self.turn.answer_after_commit()

    def route(
        self,
        message_id: str,
        hops: int,
        message: bytes,
        source: str,
        client_address: list[Any],
        sender: Any = None,
    ) -> bool:
        """
        Route one encoded message unless it was seen before; False for a
        duplicate.  ``source`` is the key of the link it came by, or
        :data:`LOCAL`.
        """
        if not self.seen.add(message_id):
            self.counters.duplicates += 1
            return False
        self.turn.seen(message_id)
        if self.plugins:
            inspected = self._inspect(message, source, sender)
            if inspected is None:
                return True
            message, sender = inspected, None
        self._tapped.extend((message_id, hops, message, source))
        if hops > 0:
            self._forward(message_id, hops - 1, message, source)
        self.turn.local.append((message, client_address, sender))
        return True

    def _inspect(self, body: bytes, source: str, sender: Any) -> bytes | None:
        """
        The message after the relay plugins: ``body`` when they left it as
        it was; None when they stopped it, or when it came over a link and
        is not a message co2 can carry (the plugins see checked messages only).
        """
        if sender is FROM_LINK:
            message = self.open_arrived(body, source)
            if message is None:
                return None
        else:
            message = decode_message(body)
        passed = apply_relay_plugins(self.plugins, message, source)
        if passed is None:
            return None
        if _same(passed, message):
            return body
        try:
            check_members(check_message(passed))
        except (TypeError, ValueError) as e:
            _log.error(
                "relay plugins made of a message from {source} one co2 cannot carry ({why}); "
                "passing the message on as it was", source=source, why=e,
            )
            return body
        return encode_message(passed)

    def open_arrived(self, body: bytes, source: str) -> dict[str, Any] | None:
        """
        The message ``body`` that came over a link (``source``), opened and
        checked: None, counted as ``invalid`` and logged, when it is not a
        message co2 can carry.
        """
        try:
            return read_message(body)
        except (TypeError, ValueError) as e:
            self.counters.invalid += 1
            self.limited.emit(
                "invalid message", LogLevel.warn,
                "a message from {source} is not one co2 can carry ({why}); dropped",
                more="dropped {count:,} more message(s) co2 cannot carry within {seconds:g}s, "
                     "not logged one by one; the last from {source}: {why}",
                source=source, why=e,
            )
            return None

    def _routes_changed(self) -> None:
        self._targets.clear()
        self._tree_targets.clear()

    def _forward(self, message_id: str, hops: int, message: bytes, source: str) -> None:
        targets = self._targets.get(source)
        if targets is None:
            targets = self._targets[source] = [
                (key, outbox) for key, outbox in self.outboxes.items() if key != source
            ]
        topology = self.topology
        if topology is not None and targets and topology.settled:
            if topology.version != self._tree_version:
                self._tree_targets.clear()
                self._tree_version = topology.version
            origin = origin_of(message_id)
            pruned = self._tree_targets.get((source, origin))
            if pruned is None:
                pruned = self._over_tree(topology, origin, source, targets)
                self._tree_targets[source, origin] = pruned
            targets = pruned
        if not targets:
            return
        entry = Entry(next(self._seq), encode_envelope(message_id, hops, message))
        high, high_bytes = self._high, self._high_bytes
        if self.spool is None:
            for key, outbox in targets:
                outbox.put(entry)
                if len(outbox) >= high or outbox.size >= high_bytes:
                    self._filled(key)
        else:
            self._placing.append((entry, targets))
            placing = len(self._placing)
            for key, outbox in targets:
                if len(outbox) + placing >= high or outbox.size >= high_bytes:
                    self._filled(key)

    def _over_tree(
        self, topology: Topology, origin: str, source: str, flooded: list[tuple[str, Outbox]]
    ) -> list[tuple[str, Outbox]]:
        """
        The outboxes of ``flooded`` a message from ``origin`` that came by
        ``source`` goes to over the tree: the up links to this node's
        children, and every link that is down or leads off the map.  All
        of ``flooded`` when the map does not place this node in the tree,
        or when the message did not come from this node's parent there.
        """
        branch = topology.branch(origin)
        came_from = "" if source == LOCAL else self._peers.get(source)
        if branch is None or came_from != branch[0]:
            return flooded
        children, peers, mapped = branch[1], self._peers, topology.neighbours
        return [
            (key, outbox) for key, outbox in flooded
            if (peer := peers.get(key)) is None or peer in children or peer not in mapped
        ]

    def _place(self) -> None:
        """Put the turn's forwarded messages into their outboxes, and note them for the spool."""
        placing, self._placing = self._placing, []
        outboxes = self.outboxes
        for entry, targets in placing:
            # An outbox forgotten since the message was taken gets nothing.
            kept = [key for key, outbox in targets if outboxes.get(key) is outbox and outbox.put(entry)]
            if kept:
                self.turn.owed(entry.seq, entry.body, kept)

    # Flow control

    @property
    def parked(self) -> int:
        """How many batches wait, unanswered, for the router to take again."""
        return len(self._parked)

    @property
    def congested(self) -> bool:
        """Whether the router takes nothing more from what feeds it: an up link's outbox is full."""
        return bool(self._full)

    def _filled(self, key: str) -> None:
        if key in self.senders and key not in self._full:
            self._full.add(key)
            if len(self._full) == 1:
                for call in list(self.on_congested):
                    call()

    def _relieve(self, key: str) -> None:
        if key not in self._full:
            return
        self._full.discard(key)
        if self._full:
            return
        # Take what was parked, in order, until an outbox fills again.
        while self._parked and not (self._full and self._full != {self._parked[0][1]}):
            envelopes, source, client_address, parked = self._parked.pop(0)
            self._take(envelopes, source, client_address).chainDeferred(parked)
        if not self._full:
            for call in list(self.on_relieved):
                call()

    # The end of each turn

    def _end_turn(self) -> None:
        counters = self.counters
        taken = counters.originated + counters.received + counters.notified - counters.duplicates
        if taken != self._taken:
            self._taken, self.last_message = taken, time.time()
        self.tap.end_turn()
        if self.spool is not None:
            self._place()

    def _send_waiting(self) -> None:
        outboxes = self.outboxes
        for key, sender in list(self.senders.items()):
            if outboxes[key].waiting:
                sender.send_now()

    def close(self) -> None:
        """Flush and acknowledge what is pending, and close the spool."""
        self.turn.close()
        for expiry in self._expiries.values():
            if expiry.active():
                expiry.cancel()
        self._expiries.clear()
        self.tap.close()
        self.limited.close()


def _same(passed: dict[str, Any], message: dict[str, Any]) -> bool:
    """Whether relay plugins passed on ``message`` as it was (each plugin gets a copy)."""
    return passed is message or (
        passed.keys() == message.keys() and all(passed[key] is message[key] for key in passed)
    )
