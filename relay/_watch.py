"""
A tap on a node's message path, for ``co2 watch``: the last messages the
router took, in a bounded buffer, and ``co2.watch``, which long-polls it.

The router adds every message it takes (new to this node and let
through by the relay plugins) to the tap's :attr:`Tap.pending` list, as
the four items ``id, hops, encoded message, source``: one list extend
per message, nothing decoded, and no new object kept per message (none
that Python's cyclic garbage collector would have to track).  At the end
of each turn it calls :meth:`Tap.end_turn`, which keeps the turn's
messages in the buffer (about the last ``size`` messages, within
``max_bytes`` bytes, the oldest going first) and answers the watchers
waiting.  A message is decoded only when a watcher asks for it.

Messages are numbered in the order taken, from 1.  A watcher passes the
number of the last message it has seen (its *cursor*) and gets those
after it, with the cursor to pass next time; messages that left the
buffer before it asked are counted as *missed*.

A watcher with nothing new to read waits (a *long poll*).  Each waiting
watcher is one entry, found by its Deferred, with one timer: a timeout
or a cancel removes its own entry, and a turn answers them all at once,
so that no waiter costs the others anything.  Waiting is capped, per
caller (:data:`MAX_WAITERS_PER_CALLER`) and per node
(:data:`MAX_WAITERS`): past a cap a watcher is answered at once, as if
its wait had passed, rather than held.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from typing import Any
from xmlrpc.client import Fault

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall

from co2 import faults
from co2._message import decode_message

__all__ = ["MAX_ANSWER", "MAX_WAIT", "MAX_WAITERS", "MAX_WAITERS_PER_CALLER", "Tap", "Tapped"]

MAX_WAIT = 30.0
"""The longest, in seconds, ``co2.watch`` waits for a message before answering."""

MAX_ANSWER = 256
"""The most messages one answer of ``co2.watch`` holds (a watcher behind asks again at once)."""

MAX_WAITERS_PER_CALLER = 16
"""
The most ``co2.watch`` calls one caller may have waiting at once.  A
caller is one HTTP connection (its address and port); the peers of a
UNIX socket count as one caller together.  Past the cap a call that
would wait is answered at once, with no messages and the same cursor.
"""

MAX_WAITERS = 1024
"""
The most ``co2.watch`` calls waiting on one node at once, from all
callers.  Past the cap, too, a call that would wait is answered at once,
with no messages and the same cursor.
"""

_ANSWER_BYTES = 4 * 1024 * 1024

_Answer = dict[str, Any]

Tapped = tuple[str, int, bytes, str]
"""A message as the router hands it over: ``(id, hops, encoded message, source)``."""

_FIELDS = 4


def _size(flat: list[Any]) -> int:
    """The bytes of the encoded messages in ``flat`` (four items per message)."""
    return sum(map(len, flat[2::_FIELDS]))


class Tap:
    """
    The last messages a router took, for watchers: at least the last
    ``size`` (fewer when they hold over ``max_bytes``), and never more
    than twice that.  The buffer is a queue of turns, so that keeping a
    turn costs a copy of its list and the sum of its sizes, and dropping
    one costs nothing per message.

    ``clock`` times the long polls; ``max_wait`` bounds how long one waits
    (a node sets it under its ``call_timeout``, which would otherwise cut
    the call short).
    """

    def __init__(
        self,
        clock: Any,
        size: int = 1000,
        max_bytes: int = 16 * 1024 * 1024,
        max_wait: float = MAX_WAIT,
    ) -> None:
        self.clock = clock
        self.size = size
        self.max_bytes = max_bytes
        self.max_wait = max_wait
        self.pending: list[Any] = []
        """The messages taken this turn, four items each (see :data:`Tapped`); the router extends it."""
        self.last = 0
        """The number of the last message kept (0: none yet)."""
        # Each turn kept: (number of its first message, its messages four
        # items each, their bytes).
        self._turns: deque[tuple[int, list[Any], int]] = deque()
        self._held = 0
        self._bytes = 0
        # Each waiting watcher, by its Deferred: its timer, its caller and
        # its cursor; and how many watchers each caller has waiting.
        self._waiters: dict[Deferred[_Answer], tuple[IDelayedCall, Hashable, int]] = {}
        self._waiting: dict[Hashable, int] = {}

    def record(self, message_id: str, hops: int, message: bytes, source: str) -> None:
        """Note one message taken, as the router does (without the call); it is kept as the turn ends."""
        self.pending.extend((message_id, hops, message, source))

    def end_turn(self) -> None:
        """Keep the turn's messages, dropping the oldest past the bounds, and answer the watchers."""
        pending = self.pending
        if not pending:
            return
        flat = pending.copy()
        pending.clear()
        count = len(flat) // _FIELDS
        first = self.last + 1
        self.last += count
        size = _size(flat)
        if count > self.size or size > self.max_bytes:
            first, flat, size = self._cut(first, flat, size)
            count = len(flat) // _FIELDS
        turns = self._turns
        if flat:
            turns.append((first, flat, size))
            self._held += count
            self._bytes += size
        while turns and (
            self._held - len(turns[0][1]) // _FIELDS >= self.size or self._bytes > self.max_bytes
        ):
            _, dropped, dropped_size = turns.popleft()
            self._held -= len(dropped) // _FIELDS
            self._bytes -= dropped_size
        if self._waiters:
            self._wake()

    def _cut(self, first: int, flat: list[Any], size: int) -> tuple[int, list[Any], int]:
        # A turn over the bounds on its own: its last messages within them
        # are kept, and nothing older, so that what is held has no gap.
        self._turns.clear()
        self._held = self._bytes = 0
        cut = max(0, len(flat) // _FIELDS - self.size)
        size -= _size(flat[: cut * _FIELDS])
        while size > self.max_bytes:
            size -= len(flat[cut * _FIELDS + 2])
            cut += 1
        return first + cut, flat[cut * _FIELDS:], size

    @property
    def first(self) -> int:
        """The number of the oldest message still held (``last + 1`` when none is)."""
        return self._turns[0][0] if self._turns else self.last + 1

    def __len__(self) -> int:
        return self._held

    def since(self, after: int) -> dict[str, Any]:
        """
        The answer for a watcher whose cursor is ``after``: ``messages``
        (each a struct: ``seq``, ``id``, ``hops``, ``source``, ``host_id``,
        ``data``, and ``extra`` when the message holds other members),
        ``next`` (the cursor to pass next) and ``missed`` (how many
        messages after ``after`` the buffer no longer holds).
        """
        if after < 0 or after > self.last:
            # "From now on", or a cursor from before this node restarted.
            after = self.last if after < 0 else 0
        first = self.first
        missed = max(0, first - 1 - after)
        start = max(after + 1, first)
        messages: list[dict[str, Any]] = []
        size = 0
        for turn_first, held, _ in self._turns:
            for seq in range(max(start, turn_first), turn_first + len(held) // _FIELDS):
                if len(messages) >= MAX_ANSWER or (messages and size >= _ANSWER_BYTES):
                    break
                at = (seq - turn_first) * _FIELDS
                message_id, hops, body, source = held[at:at + _FIELDS]
                size += len(body)
                messages.append(_shown(seq, message_id, hops, body, source))
        next_cursor = messages[-1]["seq"] if messages else max(after, start - 1)
        return {"messages": messages, "next": next_cursor, "missed": missed}

    def watch_from(
        self, caller: Hashable, after: int | str = -1, timeout: float | int = MAX_WAIT
    ) -> _Answer | Deferred[_Answer]:
        """
        Return the messages this node took after the cursor ``after``:
        ``{messages, next, missed}``.  When there are none yet, wait up to
        ``timeout`` seconds (at most 30) for the next, then answer, with no
        messages if none came.  ``after`` is the ``next`` of the previous
        answer (an int, or its decimal string); -1 starts from now, 0 from
        the oldest message still held.  Each message is a struct: ``seq``,
        ``id``, ``hops``, ``source`` (the link it came by, or ``local``),
        ``host_id``, ``data``, and ``extra`` for any other members.
        A connection may have 16 calls waiting at once, and the node 1024:
        past either, a call that would wait answers at once, with no
        messages and the same cursor, as if its wait had passed.
        Raises fault -32602 for arguments of the wrong type.
        """
        # ``caller`` (given by the dispatcher, not the client) is who asks,
        # for the caps: see MAX_WAITERS_PER_CALLER.
        cursor = _cursor(after)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout != timeout:
            raise Fault(faults.INVALID_PARAMS, "co2.watch: timeout must be a number of seconds")
        if cursor > self.last:
            cursor = 0  # a cursor from before this node restarted
        elif cursor < 0:
            cursor = self.last
        if (
            cursor < self.last
            or timeout <= 0
            or len(self._waiters) >= MAX_WAITERS
            or self._waiting.get(caller, 0) >= MAX_WAITERS_PER_CALLER
        ):
            return self.since(cursor)
        d: Deferred[_Answer] = Deferred(self._cancelled)
        call = self.clock.callLater(min(float(timeout), self.max_wait), self._timed_out, d)
        self._waiters[d] = (call, caller, cursor)
        self._waiting[caller] = self._waiting.get(caller, 0) + 1
        return d

    def watch(self, after: int | str = -1, timeout: float | int = MAX_WAIT) -> _Answer | Deferred[_Answer]:
        """:meth:`watch_from` for a watcher in this process, counted as caller None, as UNIX peers are."""
        return self.watch_from(None, after, timeout)

    def _forget(self, d: Deferred[_Answer]) -> tuple[IDelayedCall, int]:
        # Remove one waiter: its timer and cursor.
        call, caller, cursor = self._waiters.pop(d)
        left = self._waiting[caller] - 1
        if left:
            self._waiting[caller] = left
        else:
            del self._waiting[caller]
        return call, cursor

    def _timed_out(self, d: Deferred[_Answer]) -> None:
        _, cursor = self._forget(d)
        d.callback(self.since(cursor))

    def _cancelled(self, d: Deferred[_Answer]) -> None:
        # The watcher gave up (its call timed out, or its client left).  A
        # waiter being woken is no longer held: _wake stops its timer and
        # skips it.
        if d in self._waiters:
            call, _ = self._forget(d)
            call.cancel()

    def _wake(self) -> None:
        # All are taken first, so that a watcher answered here may watch
        # again.  Watchers after the same cursor share one answer, made
        # once: and all are after the same one, since a watcher waits only
        # when it has read up to the last message, and each turn that adds
        # one wakes them all.
        waiters, self._waiters = self._waiters, {}
        self._waiting = {}
        answers: dict[int, _Answer] = {}
        for d, (call, _, cursor) in waiters.items():
            call.cancel()
            if d.called:
                continue  # cancelled by a watcher answered before it
            if cursor not in answers:
                answers[cursor] = self.since(cursor)
            d.callback(answers[cursor])

    def close(self) -> None:
        """Keep what is pending and answer every waiting watcher now (the node is stopping)."""
        self.end_turn()
        self._wake()


def _cursor(after: object) -> int:
    if isinstance(after, str):
        try:
            return int(after)
        except ValueError:
            pass
    elif isinstance(after, int) and not isinstance(after, bool):
        return after
    raise Fault(
        faults.INVALID_PARAMS,
        f"co2.watch: after must be a sequence number (an int or its decimal string), not {after!r}"[:200],
    )


def _shown(seq: int, message_id: str, hops: int, body: bytes, source: str) -> dict[str, Any]:
    message = decode_message(body)
    shown = {
        "seq": seq,
        "id": message_id,
        "hops": hops,
        "source": source,
        "host_id": message.pop("host_id", ""),
        "data": message.pop("data", None),
    }
    if message:
        shown["extra"] = message
    return shown
