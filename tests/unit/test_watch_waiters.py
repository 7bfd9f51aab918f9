"""Waiting ``co2.watch`` calls: each costs the others nothing, they are capped, and every one is answered."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import Clock

from co2._message import encode_message
from co2.testing import MemoryXMLRPCClient
from relay._router import LOCAL
from relay._watch import MAX_WAITERS, MAX_WAITERS_PER_CALLER, Tap

EMPTY_AFTER_4 = {"messages": [], "next": 4, "missed": 0}


def caller(n: int) -> tuple[str, int]:
    """A distinct HTTP connection for each ``n``."""
    return ("192.0.2.1", 10_000 + n)


def filled(clock: Clock, count: int = 4) -> Tap:
    """A tap that holds messages 1 .. ``count``, taken in one turn."""
    tap = Tap(clock)
    for i in range(count):
        tap.record(f"m.{i}", 16, encode_message({"data": i, "host_id": "7@127.0.0.1:2004"}), LOCAL)
    tap.end_turn()
    return tap


def wait(tap: Tap, who: Any, timeout: float = 10) -> Deferred[Any]:
    """A watch by ``who`` that has read everything, so waits; fails the test if it does not."""
    d = tap.watch_from(who, -1, timeout)
    assert isinstance(d, Deferred) and not d.called
    return d


def spied(container: Any) -> tuple[Any, list[int]]:
    """A copy of ``container`` that counts the entries read by iterating it, and that count."""
    visits = [0]
    base = type(container)

    def counting(name: str) -> Any:
        original = getattr(base, name)

        def method(self: Any) -> Any:
            for entry in original(self):
                visits[0] += 1
                yield entry

        return method

    names = [name for name in ("__iter__", "keys", "values", "items") if hasattr(base, name)]
    return type("Spied", (base,), {name: counting(name) for name in names})(container), visits


def test_a_timeout_reads_and_rebuilds_no_other_waiter():
    """Waiters timing out each remove only their own entry: the old code read and rebuilt all the others'."""
    clock = Clock()
    tap = filled(clock)
    early = [wait(tap, caller(n), 5) for n in range(500)]
    late = [wait(tap, caller(n), 9) for n in range(500, 1000)]
    tap._waiters, visits = spied(tap._waiters)
    container = tap._waiters
    clock.advance(5)
    assert all(d.result == EMPTY_AFTER_4 for d in early)
    assert not any(d.called for d in late)
    assert tap._waiters is container and visits == [0]  # O(1) per timeout, not O(n)
    clock.advance(4)
    assert all(d.result == EMPTY_AFTER_4 for d in late)
    assert tap._waiters is container and visits == [0] and not tap._waiters
    assert not clock.getDelayedCalls()


def test_one_caller_has_at_most_max_waiters_per_caller_waiting():
    """Past MAX_WAITERS_PER_CALLER waiting, a caller's watch answers at once, empty, with the same cursor."""
    clock = Clock()
    tap = filled(clock)
    first = [wait(tap, caller(1)) for _ in range(MAX_WAITERS_PER_CALLER)]
    assert tap.watch_from(caller(1), 4, 10) == EMPTY_AFTER_4
    assert [m["data"] for m in tap.watch_from(caller(1), 2, 10)["messages"]] == [2, 3]
    wait(tap, caller(2))  # another caller still waits
    first[0].cancel()
    wait(tap, caller(1))  # a place freed is a place to wait again
    assert tap.watch_from(caller(1), 4, 10) == EMPTY_AFTER_4


def test_the_node_has_at_most_max_waiters_waiting():
    """Past MAX_WAITERS waiting on the node, a new caller's watch answers at once; a timeout frees a place."""
    clock = Clock()
    tap = filled(clock)
    for n in range(MAX_WAITERS):
        wait(tap, caller(n // MAX_WAITERS_PER_CALLER), 5 if n == 0 else 10)
    assert tap.watch_from(caller(-1), -1, 10) == EMPTY_AFTER_4
    clock.advance(5)
    wait(tap, caller(-1))


def test_the_caller_of_an_xmlrpc_call_is_counted(make_node):
    """Over XML-RPC, one connection's calls past the cap answer at once; another connection's still wait."""
    node = make_node()
    one = MemoryXMLRPCClient(node.client.site, client=("192.0.2.1", 40000))
    waiting = [one.call("co2.watch", -1, 10) for _ in range(MAX_WAITERS_PER_CALLER)]
    over = one.call("co2.watch", -1, 10)
    other = MemoryXMLRPCClient(node.client.site, client=("192.0.2.1", 40001)).call("co2.watch", -1, 10)
    node.reactor.advance(0)
    assert over.result == {"messages": [], "next": 0, "missed": 0}
    assert not any(d.called for d in [*waiting, other])
    node.satellite.relay.router.tap.close()
    node.reactor.advance(0)
    assert all(d.called for d in [*waiting, other])


def test_a_cancelled_waiter_is_removed_with_its_timer():
    """Cancelling a waiting watch (its client left) fails it with CancelledError and leaves no timer."""
    clock = Clock()
    tap = filled(clock)
    d = wait(tap, caller(1))
    d.cancel()
    assert isinstance(d.result.value, CancelledError)
    d.addErrback(lambda _: None)
    assert not clock.getDelayedCalls()
    assert not tap._waiters and not tap._waiting
    tap.close()  # nothing left to answer twice


def test_a_turn_wakes_every_waiter():
    """A turn with a message answers every waiter, of every caller, with it, and frees their places."""
    clock = Clock()
    tap = filled(clock)
    waiting = [wait(tap, caller(n % 5)) for n in range(5 * MAX_WAITERS_PER_CALLER)]
    tap.record("m.4", 16, encode_message({"data": 4, "host_id": "7@127.0.0.1:2004"}), LOCAL)
    tap.end_turn()
    assert all([m["data"] for m in d.result["messages"]] == [4] for d in waiting)
    assert not clock.getDelayedCalls()
    assert all(isinstance(tap.watch_from(caller(n), -1, 10), Deferred) for n in range(5))


def test_close_wakes_every_waiter():
    """Closing the tap answers every waiter at once, empty, and leaves no timer."""
    clock = Clock()
    tap = filled(clock)
    waiting = [wait(tap, caller(n % 3)) for n in range(3 * MAX_WAITERS_PER_CALLER)]
    tap.close()
    assert all(d.result == EMPTY_AFTER_4 for d in waiting)
    assert not clock.getDelayedCalls()


@pytest.mark.parametrize("again", [True, False])
def test_a_woken_watcher_may_watch_again_or_cancel_another(again):
    """A watcher answered in a wake may watch again, or cancel a watcher not answered yet, without error."""
    clock = Clock()
    tap = filled(clock)
    first, second = wait(tap, caller(1)), wait(tap, caller(1))
    later: list[Any] = []
    first.addCallback(lambda _: later.append(tap.watch_from(caller(1), -1, 10)) if again else second.cancel())
    tap.record("m.4", 16, encode_message({"data": 4, "host_id": "7@127.0.0.1:2004"}), LOCAL)
    tap.end_turn()
    if again:
        assert second.result["next"] == 5
        assert not later[0].called and tap._waiting == {caller(1): 1}
        assert len(clock.getDelayedCalls()) == 1
    else:
        assert isinstance(second.result.value, CancelledError)
        second.addErrback(lambda _: None)
        assert not clock.getDelayedCalls()
