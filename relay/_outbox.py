"""
What a link owes its peer: a bounded queue of encoded messages, some sent
and awaiting acknowledgement, the rest waiting.

When a message would take an outbox past its count or byte limit, the
oldest waiting messages are dropped to make room (the newest data is
usually what a peer wants most); each drop is counted.  Messages already
sent are never dropped: they wait for their acknowledgement.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Entry", "Outbox"]


@dataclass(frozen=True)
class Entry:
    """One message owed: its sequence number on this node and its encoding."""

    seq: int
    body: bytes


class Outbox:
    """
    The queue of one link.  ``on_drop`` is called with the entries dropped
    to make room.
    """

    def __init__(
        self,
        limit: int,
        limit_bytes: int,
        on_drop: Callable[[list[Entry]], None] = lambda entries: None,
    ) -> None:
        self.limit = limit
        self.limit_bytes = limit_bytes
        self.on_drop = on_drop
        self.dropped = 0
        self._waiting: deque[Entry] = deque()
        self._sent: dict[int, list[Entry]] = {}
        self._next_batch = 0
        self._count = 0
        self._bytes = 0
        self._sent_bytes = 0

    def __len__(self) -> int:
        return self._count

    @property
    def size(self) -> int:
        """Bytes owed."""
        return self._bytes

    @property
    def waiting(self) -> int:
        """How many entries are not yet sent."""
        return len(self._waiting)

    @property
    def in_flight(self) -> int:
        """How many batches are sent and not yet acknowledged."""
        return len(self._sent)

    def put(self, entry: Entry) -> bool:
        """
        Queue ``entry`` after everything owed.  Returns False when it
        cannot fit even beside the entries in flight alone: then it is
        dropped, and nothing else is.
        """
        # Dropping waiting entries helps only if the entry then fits.
        room = (self._count - len(self._waiting) < self.limit
                and self._sent_bytes + len(entry.body) <= self.limit_bytes)
        dropped: list[Entry] = []
        while room and self._waiting and (
            self._count >= self.limit or self._bytes + len(entry.body) > self.limit_bytes
        ):
            dropped.append(self._forget(self._waiting.popleft()))
        fits = self._count < self.limit and self._bytes + len(entry.body) <= self.limit_bytes
        if fits:
            self._waiting.append(entry)
            self._count += 1
            self._bytes += len(entry.body)
        else:
            dropped.append(entry)
        if dropped:
            self.dropped += len(dropped)
            self.on_drop(dropped)
        return fits

    def _forget(self, entry: Entry) -> Entry:
        self._count -= 1
        self._bytes -= len(entry.body)
        return entry

    def take(self, max_bytes: int) -> tuple[int, list[Entry]]:
        """
        Mark waiting entries as sent, oldest first, up to ``max_bytes``
        (at least one when any waits); returns the batch's number and its
        entries (empty when nothing waits).
        """
        batch: list[Entry] = []
        size = 0
        while self._waiting and (not batch or size + len(self._waiting[0].body) <= max_bytes):
            entry = self._waiting.popleft()
            batch.append(entry)
            size += len(entry.body)
        if not batch:
            return -1, batch
        number = self._next_batch
        self._next_batch += 1
        self._sent[number] = batch
        self._sent_bytes += size
        return number, batch

    def acked(self, number: int) -> list[Entry]:
        """The batch ``number`` arrived: forget its entries and return them."""
        batch = self._sent.pop(number, [])
        for entry in batch:
            self._forget(entry)
            self._sent_bytes -= len(entry.body)
        return batch

    def rewind(self) -> None:
        """The link went down: whatever was sent and not acknowledged waits again, in order."""
        resend = [entry for number in sorted(self._sent) for entry in self._sent[number]]
        self._sent.clear()
        self._sent_bytes = 0
        self._waiting.extendleft(reversed(resend))

    def clear(self) -> list[Entry]:
        """Forget everything owed; returns it."""
        self.rewind()
        entries = list(self._waiting)
        self._waiting.clear()
        self._count = 0
        self._bytes = 0
        return entries
