"""
The end of each reactor turn, where a node becomes responsible for what
the turn brought.

The router notes what a turn does as it routes: the messages for the
node's own plugins, the ids it has now seen and the messages it now owes
its links.  One *flush* ends the turn: the plugins receive their
messages (and what they send as they receive them), then, when there is
a spool, one transaction commits everything the turn changed: the ids
seen, what each link owes, and what the plugins wrote to their
``self.state``.  Only then do the links send, and the batches that
brought the messages are acknowledged at the start of the next turn.

So a message is acknowledged only once this node is responsible for it:
a node killed before the commit has neither delivered nor seen it, and
its sender, not acknowledged, sends it again; a node killed after it has
done both.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall

from co2._state import MemoryStore, StateStore
from relay._spool import Spool

__all__ = ["REPLY_ROUNDS", "Handover", "Local", "Turn"]

Local = tuple[bytes, list[Any], Any]
"""
A message for the node's plugins: ``(message body, client_address,
sender)``; ``sender`` is the plugin of this node that sent it, None for a
message checked as it came in (``notify``), or
:data:`~relay._router.FROM_LINK` for one that came over a link unopened.
"""

Handover = Callable[[list[Local]], None]
"""Hands the messages of one turn, in order, to the node's plugins."""

REPLY_ROUNDS = 16
"""
How many times in one flush the plugins are handed what they sent while
receiving (messages sent in answer to messages, and so on); what is left
waits for the next turn.
"""


class Turn:
    """
    The work of the current turn and its flush.  ``handover`` gives the
    plugins their messages; ``ended`` is called as each flush ends, after
    the plugins and before the commit (the router puts what it forwards
    into outboxes there); ``send`` after the commit (the links send what
    waits).
    """

    def __init__(
        self,
        reactor: Any,
        handover: Handover,
        spool: Spool | None = None,
        *,
        ended: Callable[[], None] = lambda: None,
        send: Callable[[], None] = lambda: None,
    ) -> None:
        self.reactor = reactor
        self.handover = handover
        self.spool = spool
        self._ended = ended
        self._send = send
        self.local: list[Local] = []
        """The messages for the plugins, in the order taken."""
        self.state: StateStore = MemoryStore() if spool is None else _CommittedStore(spool, self.soon)
        """Where the plugins keep ``self.state``: in the spool, committed with the turn that wrote it."""
        # Answers to batches: taken this turn, and flushed but not yet sent.
        self._acks: list[Deferred[None]] = []
        self._acks_due: list[Deferred[None]] = []
        # Spool writes of this turn, made at once before the commit.
        self._seen: list[str] = []
        self._added: list[tuple[int, bytes, list[str]]] = []
        self._flush_call: IDelayedCall | None = None
        self._ack_call: IDelayedCall | None = None
        self._flushing = False
        self._holding = False

    # What the router notes as it routes

    def seen(self, message_id: str) -> None:
        """``message_id`` is new to this node: the commit marks it seen."""
        self.soon()
        if self.spool is not None:
            self._seen.append(message_id)

    def owed(self, seq: int, body: bytes, keys: list[str]) -> None:
        """The commit records that the links ``keys`` owe message ``seq``."""
        self._added.append((seq, body, keys))

    def answer_after_commit(self) -> Deferred[None]:
        """A Deferred that fires once what was taken so far is committed: a link's acknowledgement."""
        d: Deferred[None] = Deferred()
        self._acks.append(d)
        self.soon()
        return d

    def write(self) -> None:
        """Write this turn's notes to the spool now, so that a change made after applies to them."""
        if self.spool is None:
            return
        if self._seen:
            self.spool.mark_seen(self._seen)
            self._seen = []
        if self._added:
            self.spool.add_many(self._added)
            self._added = []

    # The flush

    def soon(self) -> None:
        """Make sure the turn ends with a flush."""
        # What changes while a flush hands messages to the plugins is
        # committed by that flush.
        if self._flush_call is None and not self._flushing:
            self._flush_call = self.reactor.callLater(0, self.flush)

    def flush(self) -> None:
        """
        Hand what arrived to the plugins, commit the spool and send what
        waits; acknowledge what arrived at the start of the next turn.
        """
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()  # called before the end of the turn
        self._flush_call = None
        self._flushing = True
        try:
            self._hand_over()
        finally:
            self._flushing = False
        if self.local:
            self.soon()
        self._ended()
        if self.spool is not None:
            self.write()
            self.spool.commit()
        self._send()
        if self._acks:
            self._acks_due += self._acks
            self._acks = []
            if self._ack_call is None:
                # The answers wait for the next turn, so that what this one
                # forwarded goes out first: they are on no message's path.
                self._ack_call = self.reactor.callLater(0, self.acknowledge)

    def _hand_over(self) -> None:
        """
        Hand the turn's messages to the plugins, then what they sent while
        receiving them, for at most :data:`REPLY_ROUNDS` rounds: each is
        delivered in the turn whose commit marks it seen.
        """
        for _ in range(REPLY_ROUNDS):
            local, self.local = self.local, []
            if not local:
                return
            self.handover(local)

    def acknowledge(self) -> None:
        """Let the links answer the batches of every message flushed so far."""
        if self._ack_call is not None and self._ack_call.active():
            self._ack_call.cancel()  # called before the next turn
        self._ack_call = None
        acks, self._acks_due = self._acks_due, []
        for d in acks:
            d.callback(None)

    # Stopping

    def hold(self) -> None:
        """
        Take no more messages from links (the node is stopping): batches
        that arrive from now on are left unanswered, and their senders
        send them again when the link is next up.  Messages the node's
        own plugins send are still routed.
        """
        self._holding = True

    @property
    def holding(self) -> bool:
        """Whether :meth:`hold` was called: the node takes no more messages from outside."""
        return self._holding

    def close(self) -> None:
        """Flush and acknowledge what is pending and close the spool."""
        if self._flush_call is not None:
            self.flush()
        self.acknowledge()
        if self.spool is not None:
            self.spool.close()


class _CommittedStore:
    """
    The plugins' state in the spool: each write joins the spool's open
    transaction and makes sure the turn ends with a flush, which commits it.
    """

    def __init__(self, spool: Spool, changed: Callable[[], None]) -> None:
        self._spool = spool
        self._changed = changed

    def state_get(self, namespace: str, key: str) -> bytes | None:
        return self._spool.state_get(namespace, key)

    def state_put(self, namespace: str, key: str, value: bytes) -> None:
        self._spool.state_put(namespace, key, value)
        self._changed()

    def state_delete(self, namespace: str, key: str) -> bool:
        deleted = self._spool.state_delete(namespace, key)
        self._changed()
        return deleted

    def state_keys(self, namespace: str) -> list[str]:
        return self._spool.state_keys(namespace)

    def state_items(self, namespace: str) -> list[tuple[str, bytes]]:
        return self._spool.state_items(namespace)

    def state_count(self, namespace: str) -> int:
        return self._spool.state_count(namespace)

    def state_clear(self, namespace: str) -> None:
        self._spool.state_clear(namespace)
        self._changed()
