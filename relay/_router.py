"""
The routing engine: gives each message an id and a hop limit, floods it to
every outbox but the one of the link it came by, drops what it has seen
before, and hands what is new to the node's own plugins.

Each reactor turn ends with one *flush*: the spool (when there is one)
commits what the turn changed, then the links that brought messages are
acknowledged and the local plugins receive them.  So a message is
acknowledged only once this node is responsible for it, and a node never
hands its plugins a message it could later take for new.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from co2.protocol import Envelope, encode_envelope
from relay._outbox import Entry, Outbox
from relay._plugins import IRelayPlugin, apply_relay_plugins
from relay._seen import SeenIds
from relay._spool import Spool

__all__ = ["INBOUND", "LOCAL", "Deliver", "Router", "Sender"]

LOCAL = "local"
"""The source of a message sent by a plugin of this node."""

INBOUND = "node:"
"""The prefix of the key of a link a peer made to this node (then its node id)."""

_log = Logger(namespace="co2.relay")

Deliver = Callable[[dict[str, Any], list[Any], Any], None]
"""Hands a message to local plugins: ``(message, client_address, sender)``."""


class Sender(Protocol):
    """A live link: it sends what its outbox holds when woken."""

    def wake(self) -> None:
        """Something was queued: send it soon (within this reactor turn)."""


class Router:
    """
    Routes messages for one node.

    ``deliver`` hands a message to the node's plugins (a relay passes a
    function that does nothing); ``spool``, when given, keeps what is owed
    and what was seen across restarts.
    """

    def __init__(
        self,
        reactor: Any,
        deliver: Deliver,
        *,
        max_hops: int = 16,
        seen_limit: int = 100_000,
        outbox_limit: int = 100_000,
        outbox_bytes: int = 64 * 1024 * 1024,
        spool: Spool | None = None,
        plugins: Sequence[IRelayPlugin] = (),
        forget_after: float = 3600.0,
    ) -> None:
        self.reactor = reactor
        self.deliver = deliver
        self.max_hops = max_hops
        self.outbox_limit = outbox_limit
        self.outbox_bytes = outbox_bytes
        self.spool = spool
        self.plugins = list(plugins)
        self.forget_after = forget_after
        self.outboxes: dict[str, Outbox] = {}
        self.senders: dict[str, Sender] = {}
        self._expiries: dict[str, IDelayedCall] = {}
        self.counters = {"originated": 0, "received": 0, "duplicates": 0, "dropped": 0}
        self._boot = secrets.token_hex(8)
        self._counter = itertools.count(1)
        self._seq = itertools.count(1)
        self._acks: list[Deferred[None]] = []
        self._local: list[tuple[dict[str, Any], list[Any], Any]] = []
        self._flush_call: IDelayedCall | None = None
        seen: Iterable[str] = ()
        if spool is not None:
            state = spool.load()
            seen = state.seen
            self._seq = itertools.count(state.next_seq)
            for key, owed in state.owed.items():
                outbox = self.outbox(key)
                for seq, body in owed:
                    outbox.put(Entry(seq, body))
                self._expire_later(key)
        self.seen = SeenIds(seen_limit, seen)

    # Outboxes and the links that drain them

    def outbox(self, key: str) -> Outbox:
        """The outbox of the link ``key``, made empty if there is none yet."""
        outbox = self.outboxes.get(key)
        if outbox is None:
            outbox = self.outboxes[key] = Outbox(
                self.outbox_limit, self.outbox_bytes, lambda entries: self._dropped(key, entries)
            )
        return outbox

    def attach(self, key: str, sender: Sender) -> Outbox:
        """``sender`` now carries link ``key``: it drains the returned outbox."""
        self.senders[key] = sender
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
            self.outboxes[key].rewind()
            self._expire_later(key)

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
        if outbox is not None and len(outbox):
            _log.warn("link {key}: forgot {count} message(s) it owed", key=key, count=len(outbox))
        if self.spool is not None:
            self.spool.drop_link(key)
            self._flush_soon()

    def acked(self, key: str, number: int) -> None:
        """The peer of link ``key`` acknowledged its batch ``number``."""
        outbox = self.outboxes.get(key)
        if outbox is None:
            return
        entries = outbox.acked(number)
        if self.spool is not None and entries:
            self.spool.remove(key, [entry.seq for entry in entries])
            self._flush_soon()

    def _dropped(self, key: str, entries: list[Entry]) -> None:
        self.counters["dropped"] += len(entries)
        _log.warn(
            "link {key}: outbox full ({limit} messages or {bytes} bytes); "
            "dropped {count} message(s), the oldest waiting first",
            key=key, limit=self.outbox_limit, bytes=self.outbox_bytes, count=len(entries),
        )
        if self.spool is not None:
            self.spool.remove(key, [entry.seq for entry in entries])

    # Messages

    def new_id(self) -> str:
        """An id no other message has: this process's random part and a counter."""
        return f"{self._boot}.{next(self._counter)}"

    def send(self, message: dict[str, Any], client_address: list[Any], sender: Any = None) -> str:
        """
        Route a message that starts here (from ``sender``, a local plugin,
        or None for one accepted by classic ``notify``).  Returns its id.
        """
        message_id = self.new_id()
        self.counters["originated"] += 1
        self.take(message_id, self.max_hops, message, LOCAL, client_address, sender=sender)
        return message_id

    def arrived(self, envelopes: Iterable[Envelope], key: str, client_address: list[Any]) -> Deferred[None]:
        """
        Route messages that came by link ``key`` from ``client_address``.
        Fires once this node is responsible for them: then the link may
        acknowledge them.
        """
        for envelope in envelopes:
            self.counters["received"] += 1
            hops = min(envelope.hops, self.max_hops)
            self.take(envelope.id, hops, envelope.message, key, client_address)
        d: Deferred[None] = Deferred()
        self._acks.append(d)
        self._flush_soon()
        return d

    def take(
        self,
        message_id: str,
        hops: int,
        message: dict[str, Any],
        source: str,
        client_address: list[Any],
        sender: Any = None,
    ) -> bool:
        """
        Route one message unless it was seen before; False for a duplicate.
        ``source`` is the key of the link it came by, or :data:`LOCAL`.
        """
        if not self.seen.add(message_id):
            self.counters["duplicates"] += 1
            return False
        if self.spool is not None:
            self.spool.mark_seen((message_id,))
        passed = apply_relay_plugins(self.plugins, message, source) if self.plugins else message
        if passed is None:
            self._flush_soon()
            return True
        if hops > 0:
            self._forward(message_id, hops - 1, passed, source)
        self._local.append((passed, client_address, sender))
        self._flush_soon()
        return True

    def _forward(self, message_id: str, hops: int, message: dict[str, Any], source: str) -> None:
        keys = [key for key in self.outboxes if key != source]
        if not keys:
            return
        entry = Entry(next(self._seq), encode_envelope(message_id, hops, message))
        kept = [key for key in keys if self.outboxes[key].put(entry)]
        if self.spool is not None and kept:
            self.spool.add(entry.seq, entry.body, kept)
        for key in kept:
            sender = self.senders.get(key)
            if sender is not None:
                sender.wake()

    # The end of each turn

    def _flush_soon(self) -> None:
        if self._flush_call is None:
            self._flush_call = self.reactor.callLater(0, self.flush)

    def flush(self) -> None:
        """Commit the spool, then acknowledge and deliver what arrived."""
        self._flush_call = None
        if self.spool is not None:
            self.spool.commit()
        acks, self._acks = self._acks, []
        local, self._local = self._local, []
        for d in acks:
            d.callback(None)
        for message, client_address, sender in local:
            self.deliver(message, client_address, sender)

    def close(self) -> None:
        """Flush what is pending and close the spool."""
        if self._flush_call is not None:
            self._flush_call.cancel()
            self.flush()
        for expiry in self._expiries.values():
            if expiry.active():
                expiry.cancel()
        self._expiries.clear()
        if self.spool is not None:
            self.spool.close()
