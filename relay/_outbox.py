"""
What a link owes its peer: a bounded queue of encoded messages, some sent
and awaiting acknowledgement, the rest waiting.

When a message would take an outbox past its count or byte limit, the
oldest waiting messages are dropped to make room (the newest data is
usually what a peer wants most); each drop is counted.  Messages already
sent are never dropped: they wait for their acknowledgement.

An entry is queued, taken and acknowledged without any work per entry in
Python beyond appending it: the waiting entries sit in a list beside the
running total of their sizes, so a batch of up to so many bytes is found
by bisection and cut out by slicing, and a batch's size is kept with it.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable
from itertools import accumulate
from typing import NamedTuple

__all__ = ["Entry", "Outbox"]

_COMPACT_AFTER = 4096
"""Entries taken from the front of the waiting list before it is shortened."""


class Entry(NamedTuple):
    """One message owed: its sequence number on this node and its encoding."""

    seq: int
    body: bytes


class Outbox:
    """
    The queue of one link.  ``on_drop`` is called with the entries dropped
    to make room.
    """

    __slots__ = (
        "_base", "_bytes", "_count", "_ends", "_head", "_next_batch", "_sent", "_sent_bytes",
        "_sent_count", "_total", "_waiting", "dropped", "limit", "limit_bytes", "on_drop",
    )

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
        # The waiting entries are _waiting[_head:].  _ends[i] is the size of
        # every entry up to and including _waiting[i], counted from the
        # start of the list; _base counts those before _head, _total all.
        self._waiting: list[Entry] = []
        self._ends: list[int] = []
        self._head = 0
        self._base = 0
        self._total = 0
        self._sent: dict[int, tuple[list[Entry], int]] = {}
        self._next_batch = 0
        self._count = 0
        self._bytes = 0
        self._sent_count = 0
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
        return len(self._waiting) - self._head

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
        size = len(entry.body)
        if self._count < self.limit and self._bytes + size <= self.limit_bytes:
            self._append(entry, size)
            return True
        return self._make_room(entry, size)

    def _append(self, entry: Entry, size: int) -> None:
        self._total += size
        self._waiting.append(entry)
        self._ends.append(self._total)
        self._count += 1
        self._bytes += size

    def _make_room(self, entry: Entry, size: int) -> bool:
        # Dropping waiting entries helps only if the entry then fits beside
        # those in flight.
        if self._sent_count >= self.limit or self._sent_bytes + size > self.limit_bytes:
            self._report([entry])
            return False
        drop = self._count - self.limit + 1
        excess = self._bytes + size - self.limit_bytes
        if excess > 0:
            # The fewest oldest waiting entries whose sizes add up to excess.
            last = bisect_left(self._ends, self._base + excess, self._head)
            drop = max(drop, last - self._head + 1)
        dropped = self._waiting[self._head : self._head + drop] if drop > 0 else []
        if dropped:
            self._count -= len(dropped)
            self._bytes -= self._advance(self._head + len(dropped))
        self._append(entry, size)
        self._report(dropped)
        return True

    def _report(self, dropped: list[Entry]) -> None:
        if dropped:
            self.dropped += len(dropped)
            self.on_drop(dropped)

    def _advance(self, head: int) -> int:
        """Move the front of the waiting entries to ``head``; returns the bytes passed over."""
        waiting, ends = self._waiting, self._ends
        passed = ends[head - 1] - self._base
        if head == len(waiting):
            waiting.clear()
            ends.clear()
            self._head = self._base = self._total = 0
        elif head > _COMPACT_AFTER and 2 * head > len(waiting):
            self._base = ends[head - 1]
            del waiting[:head], ends[:head]
            self._head = 0
        else:
            self._base = ends[head - 1]
            self._head = head
        return passed

    def take(self, max_bytes: int) -> tuple[int, list[Entry]]:
        """
        Mark waiting entries as sent, oldest first, up to ``max_bytes``
        (at least one when any waits); returns the batch's number and its
        entries (empty when nothing waits).
        """
        head = self._head
        if head == len(self._waiting):
            return -1, []
        end = max(bisect_right(self._ends, self._base + max_bytes, head), head + 1)
        batch = self._waiting[head:end]
        size = self._advance(end)
        number = self._next_batch
        self._next_batch += 1
        self._sent[number] = (batch, size)
        self._sent_count += len(batch)
        self._sent_bytes += size
        return number, batch

    def acked(self, number: int) -> list[Entry]:
        """The batch ``number`` arrived: forget its entries and return them."""
        batch, size = self._sent.pop(number, ([], 0))
        self._count -= len(batch)
        self._bytes -= size
        self._sent_count -= len(batch)
        self._sent_bytes -= size
        return batch

    def rewind(self) -> None:
        """The link went down: whatever was sent and not acknowledged waits again, in order."""
        if not self._sent:
            return
        resend = [entry for number in sorted(self._sent) for entry in self._sent[number][0]]
        self._sent.clear()
        self._sent_count = self._sent_bytes = 0
        self._refill(resend + self._waiting[self._head :])

    def _refill(self, entries: list[Entry]) -> None:
        self._waiting = entries
        self._ends = list(accumulate(len(entry.body) for entry in entries))
        self._head = self._base = 0
        self._total = self._ends[-1] if entries else 0

    def clear(self) -> list[Entry]:
        """Forget everything owed; returns it."""
        self.rewind()
        entries = self._waiting[self._head :]
        self._refill([])
        self._count = self._bytes = 0
        return entries
