"""
Behaviours of the core that mutation testing (``tests/mutation.py``) found
no test for: each test here fails when the code that makes it so is broken.
"""

from __future__ import annotations

import datetime
import sqlite3
import xmlrpc.client
from typing import Any

import pytest
from twisted.internet.defer import Deferred

import co2._message
from co2._message import (
    check_message,
    decode_message,
    encode_message,
    host_matches,
    make_host_id,
    parse_host_id,
    read_message,
)
from co2._values import MAX_DEPTH, check_members, check_value, pack, unpack
from co2.protocol import Envelope, decode_envelope
from co2.testing import TestReactor
from relay import Entry, Outbox, Router, Spool

HOST_ID = "1@10.0.0.1:2004"


def message(data: Any) -> bytes:
    """An encoded message from 10.0.0.1."""
    return encode_message({"data": data, "host_id": HOST_ID})


def data_in(outbox: Outbox) -> list[Any]:
    """The data of every message waiting in ``outbox``, taking them."""
    return [decode_message(decode_envelope(e.body).message)["data"] for e in outbox.take(1 << 30)[1]]


def entry(seq: int, size: int = 10) -> Entry:
    """An entry of ``size`` bytes."""
    return Entry(seq, b"x" * size)


def nested(levels: int, kind: str) -> object:
    """``levels`` arrays (or structs) nested in one another."""
    value: object = "leaf"
    for _ in range(levels):
        value = [value] if kind == "array" else {"k": value}
    return value


class Link:
    """A sender that records when it is woken and told to send."""

    def __init__(self) -> None:
        self.woken = 0
        self.sent = 0

    def wake(self) -> None:
        self.woken += 1

    def send_now(self) -> None:
        self.sent += 1


def spooled(tmp_path: Any) -> tuple[str, TestReactor, Router]:
    """A router on a fresh spool file: the file's path, the router's reactor, the router."""
    path = str(tmp_path / "spool.db")
    reactor = TestReactor()
    return path, reactor, Router(reactor, lambda turn: None, spool=Spool(path))


def committed(path: str, query: str) -> list[tuple[Any, ...]]:
    """What another connection reads from the spool at ``path``: only what was committed."""
    db = sqlite3.connect(path)
    try:
        return db.execute(query).fetchall()
    finally:
        db.close()


# The router


def test_a_link_made_after_a_source_sent_gets_its_later_messages():
    """A link made after a source has sent receives that source's next messages."""
    router = Router(TestReactor(), lambda turn: None)
    first = router.outbox("peer:a")
    router.send(message(1), ["10.0.0.1", 2004])
    second = router.outbox("peer:b")
    router.send(message(2), ["10.0.0.1", 2004])
    assert data_in(first) == [1, 2]
    assert data_in(second) == [2]


def test_a_forgotten_link_gets_no_more_messages():
    """Once a link is forgotten, its outbox is given nothing more."""
    router = Router(TestReactor(), lambda turn: None)
    kept, gone = router.outbox("peer:a"), router.outbox("peer:b")
    router.send(message(1), ["10.0.0.1", 2004])
    router.forget("peer:b")
    router.send(message(2), ["10.0.0.1", 2004])
    assert data_in(kept) == [1, 2]
    assert data_in(gone) == [1]


def test_forgetting_a_link_that_is_up_stops_its_sender():
    """forget() on a link that is up drops its sender too: later turns neither use it nor fail."""
    reactor = TestReactor()
    router = Router(reactor, lambda turn: None)
    link = Link()
    router.attach("peer:a", link)
    router.forget("peer:a")
    assert router.senders == {}
    router.send(message(1), ["10.0.0.1", 2004])
    reactor.advance(0)
    assert link.sent == 0


def test_forgetting_a_link_cancels_its_expiry():
    """forget() cancels the timer that would forget an absent peer's link later."""
    reactor = TestReactor()
    router = Router(reactor, lambda turn: None, forget_after=10)
    link = Link()
    router.attach("node:b", link)
    router.detach("node:b", link)
    assert len(reactor.getDelayedCalls()) == 1
    router.forget("node:b")
    assert reactor.getDelayedCalls() == []
    reactor.advance(11)  # nothing left to run, so nothing fails
    assert "node:b" not in router.outboxes


def test_attaching_a_link_cancels_its_expiry():
    """A peer that comes back before forget_after keeps its link and what it owes."""
    reactor = TestReactor()
    router = Router(reactor, lambda turn: None, forget_after=10)
    link = Link()
    router.attach("node:b", link)
    router.send(message(1), ["10.0.0.1", 2004])
    reactor.advance(0)
    router.detach("node:b", link)
    router.attach("node:b", link)
    assert reactor.getDelayedCalls() == []
    reactor.advance(11)
    assert data_in(router.outboxes["node:b"]) == [1]


def test_attaching_a_link_that_owes_wakes_it_and_one_that_owes_nothing_does_not():
    """attach() wakes the sender only when its outbox holds something."""
    router = Router(TestReactor(), lambda turn: None)
    idle, busy = Link(), Link()
    router.attach("peer:a", idle)
    assert idle.woken == 0
    router.outbox("peer:b")
    router.send(message(1), ["10.0.0.1", 2004])
    router.attach("peer:b", busy)
    assert busy.woken == 1


def test_an_absent_peer_is_forgotten_after_forget_after_seconds(logged):
    """A peer's link left detached for forget_after seconds is dropped, and the log says why."""
    reactor = TestReactor()
    router = Router(reactor, lambda turn: None, forget_after=10)
    link = Link()
    router.attach("node:b", link)
    router.detach("node:b", link)
    reactor.advance(9)
    assert "node:b" in router.outboxes
    reactor.advance(1)
    assert "node:b" not in router.outboxes
    assert reactor.getDelayedCalls() == []
    assert [e["key"] for e in logged if "has been away" in e.get("log_format", "")] == ["node:b"]


def test_a_link_to_a_configured_peer_never_expires():
    """A detached link the node made itself (not node:) is kept however long it is away."""
    reactor = TestReactor()
    router = Router(reactor, lambda turn: None, forget_after=10)
    link = Link()
    router.attach("peer:a", link)
    router.detach("peer:a", link)
    assert reactor.getDelayedCalls() == []


def test_a_dropped_message_is_no_longer_owed_in_the_spool(tmp_path):
    """When a full outbox drops its oldest messages, the spool forgets them too."""
    path = str(tmp_path / "spool.db")
    reactor = TestReactor()
    router = Router(reactor, lambda turn: None, spool=Spool(path), outbox_limit=2)
    router.outbox("peer:a")
    for data in range(3):
        router.send(message(data), ["10.0.0.1", 2004])
    reactor.advance(0)
    assert router.counters.dropped == 1
    router.close()
    spool = Spool(path)
    owed = spool.load().owed["peer:a"]
    spool.close()
    assert [decode_message(decode_envelope(body).message)["data"] for _, body in owed] == [1, 2]


def test_a_duplicate_acknowledgement_changes_nothing_in_the_spool(tmp_path):
    """An acknowledgement of a batch already acknowledged leaves what is owed as it is."""
    path, reactor, router = spooled(tmp_path)
    outbox = router.outbox("peer:a")
    router.send(message(1), ["10.0.0.1", 2004])
    reactor.advance(0)
    number, _ = outbox.take(1 << 20)
    router.acked("peer:a", number)
    router.send(message(2), ["10.0.0.1", 2004])
    reactor.advance(0)
    router.acked("peer:a", number)
    router.acked("peer:gone", 0)
    reactor.advance(0)
    assert len(outbox) == 1
    router.close()
    spool = Spool(path)
    assert [seq for seq, _ in spool.load().owed["peer:a"]] == [2]
    spool.close()


def test_close_flushes_a_pending_turn(tmp_path):
    """close() hands the plugins what the turn took and commits it before closing the spool."""
    path = str(tmp_path / "spool.db")
    delivered: list[Any] = []
    router = Router(TestReactor(),
        lambda turn: delivered.extend(decode_message(m)["data"] for m, _, _ in turn), spool=Spool(path))
    router.outbox("peer:a")
    message_id = router.send(message("last"), ["10.0.0.1", 2004])
    router.close()
    assert delivered == ["last"]
    spool = Spool(path)
    state = spool.load()
    spool.close()
    assert state.seen == [message_id]
    assert [decode_envelope(body).id for _, body in state.owed["peer:a"]] == [message_id]


def test_close_closes_the_spool_and_answers_the_watchers(tmp_path):
    """close() closes the spool and answers every co2.watch caller still waiting."""
    reactor = TestReactor()
    router = Router(reactor, lambda turn: None, spool=Spool(str(tmp_path / "spool.db")))
    waiting = router.tap.watch(0, 30)
    assert isinstance(waiting, Deferred) and not waiting.called
    router.close()
    assert waiting.called
    assert router.spool is not None and router.spool._closed


def test_close_cancels_every_pending_call():
    """After close() the router leaves no delayed call behind: no flush, ack or expiry."""
    reactor = TestReactor()
    router = Router(reactor, lambda turn: None, forget_after=10)
    link = Link()
    router.attach("node:b", link)
    router.detach("node:b", link)
    router.arrived([Envelope("x.1", 3, message(1))], "node:c", ["10.0.0.2", 1])
    router.close()
    assert reactor.getDelayedCalls() == []


def test_a_message_goes_one_hop_less_far_each_hop():
    """A forwarded message carries one hop fewer; one that arrives with no hops left is not forwarded."""
    router = Router(TestReactor(), lambda turn: None, max_hops=5)
    outbox = router.outbox("peer:a")
    router.arrived([Envelope("x.1", 3, message(1)), Envelope("x.2", 0, message(2)),
                    Envelope("x.3", 99, message(3))], "node:b", ["10.0.0.2", 1])
    assert [(e.id, e.hops) for e in map(decode_envelope, (x.body for x in outbox.take(1 << 20)[1]))] == [
        ("x.1", 2), ("x.3", 4)]


def test_a_router_has_the_documented_defaults():
    """Without settings, a router has the limits docs/config.md gives."""
    router = Router(TestReactor(), lambda turn: None)
    assert (router.max_hops, router.seen.limit, router.outbox_limit, router.outbox_bytes,
            router.forget_after) == (16, 100_000, 100_000, 64 * 1024 * 1024, 3600.0)
    assert router.outbox("peer:a").limit == 100_000


def test_one_flush_hands_the_plugins_sixteen_rounds_of_replies():
    """Plugins that answer every message are handed their answers 16 times in one flush, no more."""
    rounds: list[int] = []

    def deliver(turn: list[Any]) -> None:
        rounds.append(len(turn))
        router.send(message("again"), ["10.0.0.1", 2004])

    router = Router(TestReactor(), deliver)
    router.send(message("first"), ["10.0.0.1", 2004])
    router.turn.flush()
    assert rounds == [1] * 16


def test_message_ids_are_64_random_bits_and_a_count_from_1():
    """A router's message ids are 16 hex digits of this process, a dot, and 1, 2, 3..."""
    router = Router(TestReactor(), lambda turn: None)
    first, second = router.new_id(), router.send(message(1), ["10.0.0.1", 2004])
    boot, _, count = first.partition(".")
    assert len(boot) == 16 and int(boot, 16) >= 0 and count == "1"
    assert second == f"{boot}.2"


def test_without_a_spool_forwarded_messages_are_numbered_from_1():
    """Without a spool, the entries a router queues are numbered 1, 2, 3... in the order forwarded."""
    router = Router(TestReactor(), lambda turn: None)
    outbox = router.outbox("peer:a")
    for data in range(3):
        router.send(message(data), ["10.0.0.1", 2004])
    assert [e.seq for e in outbox.take(1 << 20)[1]] == [1, 2, 3]


def test_without_a_spool_the_plugins_state_is_kept_in_memory():
    """A router without a spool keeps the plugins' state in memory, with no turn to end."""
    reactor = TestReactor()
    router = Router(reactor, lambda turn: None)
    router.turn.state.state_put("p", "a", b"1")
    assert router.turn.state.state_get("p", "a") == b"1"
    assert reactor.getDelayedCalls() == []


def test_peers_that_do_not_come_back_after_a_restart_are_forgotten(tmp_path):
    """Links of peers read back from the spool expire after forget_after unless the peer returns."""
    path, reactor, router = spooled(tmp_path)
    router.outbox("node:idle")
    router.outbox("node:owed")
    router.arrived([Envelope("x.1", 3, message(1))], "node:idle", ["10.0.0.2", 1])
    reactor.advance(0)
    router.forget("node:idle")
    router.outbox("node:idle")
    reactor.advance(0)
    router.close()
    db = sqlite3.connect(path)
    with db:  # as a spool written before links were noted: node:owed is known by what it owes only
        db.execute("DELETE FROM links WHERE link = 'node:owed'")
    db.close()
    reactor = TestReactor()
    again = Router(reactor, lambda turn: None, spool=Spool(path), forget_after=10)
    assert sorted(again.outboxes) == ["node:idle", "node:owed"]
    assert len(again.outboxes["node:owed"]) == 1
    reactor.advance(10)
    assert again.outboxes == {}
    again.close()


class Keeper:
    """A relay plugin that passes every message on as it was."""

    name = "keeper"

    def inspect(self, message: dict[str, Any], source: str) -> dict[str, Any]:
        return message


class Dropper:
    """A relay plugin that drops every message."""

    name = "dropper"

    def inspect(self, message: dict[str, Any], source: str) -> None:
        return None


def test_a_message_a_relay_plugin_drops_still_counts_as_new():
    """take() answers True for a new message a relay plugin drops, and False when it comes again."""
    router = Router(TestReactor(), lambda turn: None, plugins=[Dropper()])
    assert router.route("x.1", 3, message(1), "node:b", ["10.0.0.2", 1]) is True
    assert router.route("x.1", 3, message(1), "node:b", ["10.0.0.2", 1]) is False


def test_a_message_the_relay_plugins_leave_alone_goes_on_byte_for_byte():
    """A message relay plugins pass on as it was is forwarded as the very bytes that came, not re-encoded."""
    # data 1 written as a 64-bit int: msgpack would write it in one byte.
    body = b"\x82\xa4data\xd3" + (1).to_bytes(8, "big") + b"\xa7host_id\xaf" + HOST_ID.encode()
    assert decode_message(body)["data"] == 1 and encode_message(decode_message(body)) != body
    for plugins in ([Keeper()], [Keeper(), Keeper()]):
        router = Router(TestReactor(), lambda turn: None, plugins=plugins)
        outbox = router.outbox("peer:a")
        router.route("x.1", 3, body, "node:b", ["10.0.0.2", 1])
        assert decode_envelope(outbox.take(1 << 20)[1][0].body).message == body


def test_detaching_a_replaced_sender_leaves_the_new_one():
    """detach() by a sender that no longer carries the link changes nothing."""
    reactor = TestReactor()
    router = Router(reactor, lambda turn: None)
    old, new = Link(), Link()
    outbox = router.attach("node:b", old)
    router.send(message(1), ["10.0.0.1", 2004])
    router.attach("node:b", new)
    outbox.take(1 << 20)
    router.detach("node:b", old)
    assert router.senders["node:b"] is new
    assert outbox.in_flight == 1 and reactor.getDelayedCalls() != []
    router.detach("node:b", new)
    assert "node:b" not in router.senders
    assert outbox.in_flight == 0 and outbox.waiting == 1


def test_the_turn_tells_only_links_with_messages_waiting_to_send():
    """The flush calls send_now on the links whose outbox has messages waiting, and no other."""
    reactor = TestReactor()
    router = Router(reactor, lambda turn: None)
    busy, idle = Link(), Link()
    router.attach("peer:a", busy)
    router.attach("node:b", idle)
    router.arrived([Envelope("x.1", 3, message(1))], "node:b", ["10.0.0.2", 1])
    reactor.advance(0)
    assert (busy.sent, idle.sent) == (1, 0)


def test_forgetting_a_link_that_owes_logs_how_many_it_owed(logged):
    """forget() warns with the count of messages a link owed, and says nothing for one that owed none."""
    router = Router(TestReactor(), lambda turn: None)
    router.outbox("peer:a")
    router.outbox("peer:b")
    router.send(message(1), ["10.0.0.1", 2004])
    router.outbox("peer:c")
    router.forget("peer:c")
    assert not [e for e in logged if e.get("log_namespace") == "co2.relay"]
    router.forget("peer:a")
    warnings = [e for e in logged if e.get("log_namespace") == "co2.relay"]
    assert [(e["key"], e["count"]) for e in warnings] == [("peer:a", 1)]


def test_the_router_counts_what_it_originates_receives_and_drops_as_duplicate():
    """counters count messages sent here, received from links, and duplicates."""
    router = Router(TestReactor(), lambda turn: None)
    router.send(message(1), ["10.0.0.1", 2004])
    router.arrived([Envelope("x.1", 3, message(1)), Envelope("x.1", 3, message(1))], "node:b",
                   ["10.0.0.2", 1])
    counted = {"dropped": 0, "duplicates": 1, "invalid": 0, "notified": 0, "originated": 1, "received": 2}
    assert router.counters.as_dict() == counted
    assert router.route("y.1", 3, message(2), "node:b", ["10.0.0.2", 1]) is True
    assert router.route("y.1", 3, message(2), "node:b", ["10.0.0.2", 1]) is False


def test_calling_flush_directly_leaves_no_flush_to_come():
    """A flush called before the end of the turn cancels the one that was due."""
    reactor = TestReactor()
    router = Router(reactor, lambda turn: None)
    router.send(message(1), ["10.0.0.1", 2004])
    assert len(reactor.getDelayedCalls()) == 1
    router.turn.flush()
    assert reactor.getDelayedCalls() == []


def test_replies_handed_over_within_a_flush_leave_no_flush_to_come():
    """A flush that hands the plugins every reply they sent leaves nothing scheduled."""
    rounds: list[int] = []

    def deliver(turn: list[Any]) -> None:
        rounds.append(len(turn))
        if len(rounds) == 1:
            router.send(message("reply"), ["10.0.0.1", 2004])

    reactor = TestReactor()
    router = Router(reactor, deliver)
    router.send(message("first"), ["10.0.0.1", 2004])
    router.turn.flush()
    assert rounds == [1, 1]
    assert reactor.getDelayedCalls() == []


def test_the_flush_and_the_acks_are_for_the_end_of_this_turn():
    """The router schedules its flush and its acknowledgements with a delay of 0, never less."""
    delays: list[float] = []

    class Recording(TestReactor):
        def callLater(self, delay: float, *args: Any, **kwargs: Any) -> Any:
            delays.append(delay)
            return super().callLater(delay, *args, **kwargs)

    reactor = Recording()
    router = Router(reactor, lambda turn: None)
    router.arrived([Envelope("x.1", 3, message(1))], "node:b", ["10.0.0.2", 1])
    reactor.advance(0)
    assert delays == [0, 0]


def test_replies_beyond_the_rounds_of_a_flush_wait_for_the_next_turn():
    """What plugins send in the last round of a flush is handed to them in the next turn."""
    rounds: list[int] = []

    def deliver(turn: list[Any]) -> None:
        rounds.append(len(turn))
        if len(rounds) <= 16:
            router.send(message("again"), ["10.0.0.1", 2004])

    reactor = TestReactor()
    router = Router(reactor, deliver)
    router.send(message("first"), ["10.0.0.1", 2004])
    router.turn.flush()
    assert len(rounds) == 16
    reactor.advance(0)
    assert len(rounds) == 17


def test_a_new_inbound_link_is_committed_by_the_turn(tmp_path):
    """A link a peer made is in the spool, committed, once the turn it was made in ends."""
    path, reactor, router = spooled(tmp_path)
    router.outbox("node:b")
    router.outbox("peer:a")
    reactor.advance(0)
    assert committed(path, "SELECT link FROM links") == [("node:b",)]
    router.forget("node:b")
    reactor.advance(0)
    assert committed(path, "SELECT link FROM links") == []
    router.close()


def test_an_acknowledgement_is_committed_by_the_turn(tmp_path):
    """What a peer acknowledged is no longer owed in the spool once the turn ends."""
    path, reactor, router = spooled(tmp_path)
    outbox = router.outbox("peer:a")
    router.send(message(1), ["10.0.0.1", 2004])
    reactor.advance(0)
    assert committed(path, "SELECT link FROM owed") == [("peer:a",)]
    number, _ = outbox.take(1 << 20)
    router.acked("peer:a", number)
    reactor.advance(0)
    assert committed(path, "SELECT link FROM owed") == []
    router.close()


def test_the_plugins_state_is_committed_by_the_turn_that_wrote_it(tmp_path):
    """With a spool, each write to the plugins' state ends its turn with a commit."""
    path, reactor, router = spooled(tmp_path)
    state = router.turn.state
    query = "SELECT namespace, key, value FROM state ORDER BY namespace, key"
    state.state_put("p", "a", b"1")
    state.state_put("p", "b", b"2")
    state.state_put("q", "c", b"3")
    assert committed(path, query) == []
    reactor.advance(0)
    assert committed(path, query) == [("p", "a", b"1"), ("p", "b", b"2"), ("q", "c", b"3")]
    assert state.state_get("p", "a") == b"1" and state.state_get("p", "z") is None
    assert state.state_keys("p") == ["a", "b"]
    assert state.state_items("p") == [("a", b"1"), ("b", b"2")]
    assert state.state_count("p") == 2
    assert state.state_delete("p", "a") is True
    assert state.state_delete("p", "a") is False
    reactor.advance(0)
    assert committed(path, query) == [("p", "b", b"2"), ("q", "c", b"3")]
    state.state_clear("p")
    reactor.advance(0)
    assert committed(path, query) == [("q", "c", b"3")]
    router.close()


# The outbox


def test_an_outbox_at_its_count_limit_drops_exactly_one_per_entry():
    """An outbox holding its limit in entries drops exactly the oldest one to fit a new one."""
    dropped: list[Entry] = []
    outbox = Outbox(3, 1000, dropped.extend)
    for seq in range(1, 4):
        assert outbox.put(entry(seq))
    assert dropped == [] and len(outbox) == 3
    assert outbox.put(entry(4))
    assert [e.seq for e in dropped] == [1]
    assert len(outbox) == 3 and outbox.size == 30 and outbox.dropped == 1


def test_an_outbox_filled_to_its_byte_limit_exactly_drops_nothing():
    """An entry that brings an outbox to exactly its byte limit is kept with everything else."""
    dropped: list[Entry] = []
    outbox = Outbox(100, 30, dropped.extend)
    assert outbox.put(entry(1, 10))
    assert outbox.put(entry(2, 20))
    assert dropped == [] and outbox.size == 30
    assert outbox.put(entry(3, 1))
    assert [e.seq for e in dropped] == [1]
    assert outbox.size == 21


def test_an_outbox_drops_the_fewest_oldest_entries_behind_those_in_flight():
    """With entries in flight, exactly the fewest oldest waiting entries that make room go."""
    dropped: list[Entry] = []
    outbox = Outbox(100, 100, dropped.extend)
    for seq in range(1, 6):
        outbox.put(entry(seq, 20))
    number, batch = outbox.take(20)
    assert [e.seq for e in batch] == [1]
    assert outbox.put(entry(6, 30))  # 30 bytes too many: entries 2 and 3 (40 bytes) go
    assert [e.seq for e in dropped] == [2, 3]
    assert outbox.size == 90 and len(outbox) == 4 and outbox.waiting == 3
    assert outbox.put(entry(7, 10))  # exactly room for it
    assert [e.seq for e in dropped] == [2, 3]
    assert outbox.put(entry(8, 20))  # 20 too many: entry 4 (20 bytes) exactly
    assert [e.seq for e in dropped] == [2, 3, 4]
    assert outbox.acked(number) == [entry(1, 20)]
    assert [e.seq for e in outbox.take(1 << 20)[1]] == [5, 6, 7, 8]


def test_a_duplicate_acknowledgement_does_not_change_an_outbox():
    """Acknowledging a batch twice, or one never sent, leaves the outbox's count and bytes as they are."""
    outbox = Outbox(100, 1000)
    outbox.put(entry(1, 10))
    outbox.put(entry(2, 20))
    number, _ = outbox.take(10)
    assert outbox.acked(number) == [entry(1, 10)]
    assert (len(outbox), outbox.size, outbox.in_flight) == (1, 20, 0)
    assert outbox.acked(number) == []
    assert outbox.acked(99) == []
    assert (len(outbox), outbox.size, outbox.in_flight, outbox.waiting) == (1, 20, 0, 1)
    # Nor does it make room that is not there: the limits still hold.
    small = Outbox(2, 1000)
    small.put(entry(1))
    n, _ = small.take(10)
    small.acked(n)
    small.acked(n)
    for seq in range(2, 5):
        small.put(entry(seq))
    assert len(small) == 2 and small.dropped == 1


def test_an_entry_that_fits_exactly_beside_those_in_flight_is_kept():
    """When the entries in flight leave exactly room enough, the new entry is kept and waiting ones go."""
    dropped: list[Entry] = []
    outbox = Outbox(2, 30, dropped.extend)
    outbox.put(entry(1, 20))
    outbox.take(20)
    outbox.put(entry(2, 5))
    assert outbox.put(entry(3, 10)) is True
    assert [e.seq for e in dropped] == [2]
    assert (len(outbox), outbox.size) == (2, 30)


def test_put_says_false_for_an_entry_that_cannot_fit():
    """put() returns False, not just something false, for an entry that can never fit."""
    outbox = Outbox(10, 10)
    assert outbox.put(entry(1, 11)) is False
    assert outbox.dropped == 1 and len(outbox) == 0


def test_an_acknowledged_batch_leaves_room_for_new_entries():
    """Once a batch is acknowledged, a full outbox makes room by dropping what waits, not the new entry."""
    outbox = Outbox(2, 20)
    outbox.put(entry(1))
    number, _ = outbox.take(10)
    outbox.acked(number)
    for seq in range(2, 5):
        assert outbox.put(entry(seq))
    assert [e.seq for e in outbox.take(1000)[1]] == [3, 4]


def test_a_rewound_batch_can_be_dropped_to_make_room():
    """After rewind() nothing is in flight: a full outbox drops the entry that waits again."""
    outbox = Outbox(1, 100)
    outbox.put(entry(1))
    outbox.take(10)
    outbox.rewind()
    assert outbox.put(entry(2))
    assert outbox.take(100)[1] == [entry(2)]


def test_bytes_are_counted_right_after_a_rewind_or_a_clear():
    """Entries queued after rewind() or clear() are batched by their sizes and leave the outbox empty."""
    outbox = Outbox(100, 1000)
    for seq in range(1, 4):
        outbox.put(entry(seq))
    outbox.take(20)
    outbox.rewind()
    outbox.put(entry(4))
    number, batch = outbox.take(40)
    assert [e.seq for e in batch] == [1, 2, 3, 4]
    outbox.acked(number)
    assert (len(outbox), outbox.size) == (0, 0)
    outbox.put(entry(5))
    outbox.clear()
    outbox.put(entry(6))
    outbox.put(entry(7))
    number, batch = outbox.take(20)
    assert [e.seq for e in batch] == [6, 7]
    outbox.acked(number)
    assert (len(outbox), outbox.size) == (0, 0)


def test_batches_are_numbered_from_0_in_the_order_taken():
    """take() numbers its batches 0, 1, 2...: never -1, which means nothing was taken."""
    outbox = Outbox(10, 1000)
    for seq in range(1, 4):
        outbox.put(entry(seq))
    assert [outbox.take(10)[0] for _ in range(3)] == [0, 1, 2]
    assert outbox.take(10) == (-1, [])


def test_an_outbox_of_one_entry_replaces_what_waits():
    """With room for one entry, a new one replaces the one waiting, by count or by bytes."""
    by_count = Outbox(1, 1000)
    assert by_count.put(entry(1)) and by_count.put(entry(2))
    assert by_count.dropped == 1 and by_count.take(1000)[1] == [entry(2)]
    by_bytes = Outbox(100, 10)
    assert by_bytes.put(entry(1, 10)) and by_bytes.put(entry(2, 10))
    assert by_bytes.dropped == 1 and by_bytes.take(1000)[1] == [entry(2, 10)]


def test_take_on_an_empty_outbox_gives_nothing():
    """take() with nothing waiting returns batch -1 and no entries, and sends nothing."""
    outbox = Outbox(10, 100)
    assert outbox.take(100) == (-1, [])
    assert outbox.in_flight == 0


def test_clear_returns_everything_owed_in_order():
    """clear() gives back what was in flight then what waited, and leaves the outbox empty."""
    outbox = Outbox(10, 1000)
    for seq in range(1, 5):
        outbox.put(entry(seq))
    outbox.take(10)
    assert [e.seq for e in outbox.clear()] == [1, 2, 3, 4]
    assert (len(outbox), outbox.size, outbox.waiting, outbox.in_flight) == (0, 0, 0, 0)


# Values and messages


@pytest.mark.parametrize("kind", ["array", "struct"])
def test_nesting_exactly_max_depth_is_accepted_and_one_more_refused(kind):
    """Arrays (or structs) nested MAX_DEPTH deep pass the check; MAX_DEPTH + 1 are refused."""
    check_value(nested(MAX_DEPTH, kind))
    with pytest.raises(ValueError, match=f"nests deeper than {MAX_DEPTH} levels"):
        check_value(nested(MAX_DEPTH + 1, kind))
    check_members({"data": nested(MAX_DEPTH, kind), "host_id": HOST_ID})
    with pytest.raises(ValueError, match=f"nests deeper than {MAX_DEPTH} levels"):
        check_members({"data": nested(MAX_DEPTH + 1, kind), "host_id": HOST_ID})


EVERY_TYPE = {
    "data": [1, True, "s", 1.5, datetime.datetime(2024, 1, 2, 3, 4, 5), b"\x00\x01", None, {"k": -1}],
    "host_id": HOST_ID,
}
"""A message holding each XML-RPC type."""

EVERY_TYPE_BYTES = (
    b"\x82"  # map of 2
    b"\xa4data"
    b"\x98"  # array of 8
    b"\x01"  # 1
    b"\xc3"  # true
    b"\xa1s"
    b"\xcb\x3f\xf8\x00\x00\x00\x00\x00\x00"  # float 64: 1.5
    b"\xc7\x07\x01\x07\xe8\x01\x02\x03\x04\x05"  # ext 8, type 1, 7 bytes: 2024-01-02 03:04:05
    b"\xc4\x02\x00\x01"  # bin 8
    b"\xc0"  # nil
    b"\x81\xa1k\xff"  # {"k": -1}
    b"\xa7host_id"
    b"\xaf1@10.0.0.1:2004"
)
"""Its encoding, written out by hand from the msgpack specification."""


def test_a_message_of_every_type_encodes_to_exactly_these_bytes():
    """encode_message gives the documented wire bytes, the dateTime extension type included."""
    assert encode_message(EVERY_TYPE) == EVERY_TYPE_BYTES


def test_binary_and_datetime_objects_encode_as_bytes_and_datetimes_do():
    """xmlrpc.client's Binary and DateTime travel exactly as bytes and datetime do."""
    message = dict(EVERY_TYPE, data=list(EVERY_TYPE["data"]))
    message["data"][4] = xmlrpc.client.DateTime("20240102T03:04:05")
    message["data"][5] = xmlrpc.client.Binary(b"\x00\x01")
    assert encode_message(message) == EVERY_TYPE_BYTES


def test_the_bytes_of_a_message_of_every_type_decode_to_it():
    """decode_message and read_message read the wire bytes back to the message."""
    assert decode_message(EVERY_TYPE_BYTES) == EVERY_TYPE
    assert read_message(EVERY_TYPE_BYTES) == EVERY_TYPE
    assert type(decode_message(EVERY_TYPE_BYTES)["data"][5]) is bytes


def test_an_unknown_extension_type_or_a_short_datetime_is_refused():
    """Reading refuses ext types other than the dateTime one, and a dateTime not 7 bytes long."""
    with pytest.raises(ValueError, match="ext type 2 is not one co2 knows"):
        unpack(b"\xc7\x07\x02\x07\xe8\x01\x02\x03\x04\x05")
    with pytest.raises(ValueError, match="a dateTime holds 7 bytes, not 6"):
        unpack(b"\xc7\x06\x01\x07\xe8\x01\x02\x03\x04")


def test_a_map_key_that_is_not_a_string_is_refused():
    """unpack refuses a map whose key is an int, as its docstring says."""
    with pytest.raises(ValueError, match="int is not allowed for map key"):
        unpack(b"\x81\x01\x02")


def test_read_message_checks_every_member():
    """read_message refuses a bad value in data, and in any other member of the message."""
    with pytest.raises(ValueError, match="does not fit in 64 bits"):
        read_message(pack({"data": 2**64 - 1, "host_id": HOST_ID}))
    with pytest.raises(ValueError, match="XML-RPC cannot carry"):
        read_message(pack({"data": 1, "host_id": HOST_ID, "extra": "\x00"}))
    assert read_message(pack({"data": 1, "host_id": HOST_ID, "extra": [2]}))["extra"] == [2]


@pytest.mark.parametrize(
    ("bad", "refusal"),
    [
        ([], "a message must be a struct, not list"),
        ("data", "a message must be a struct, not str"),
        ({"data": 1}, "a message must hold host_id$"),
        ({"host_id": HOST_ID}, "a message must hold data$"),
        ({}, "a message must hold data and host_id$"),
        ({"data": 1, "host_id": 3}, "host_id must be a string, not int"),
        ({"data": 1, "host_id": []}, "host_id must be a string, not list"),
        ({"data": 1, "host_id": "1@h:-1"}, "has a port out of range"),
        ({"data": 1, "host_id": "nohost"}, "is not of the form <random>@<ip>:<port>"),
        ({"data": 1, "host_id": "1@h:x"}, "has no numeric port"),
        ({"data": 1, "host_id": "1@h:65536"}, "has a port out of range"),
        ({"data": 1, "host_id": "1\x00@h:1"}, "which XML-RPC cannot carry"),
    ],
)
def test_check_message_says_why_it_refuses(bad, refusal):
    """check_message refuses what is not a message, saying what is wrong."""
    with pytest.raises(ValueError, match=refusal):
        check_message(bad)


def test_a_well_formed_host_id_is_accepted_again_from_memory():
    """A host_id checked once is accepted again, and an ill-formed one is refused every time."""
    good = {"data": 1, "host_id": "7@10.0.0.9:65535"}
    assert check_message(good) is good
    assert check_message(dict(good)) == good
    for _ in range(2):
        with pytest.raises(ValueError, match="port out of range"):
            check_message({"data": 1, "host_id": "7@10.0.0.9:65536"})


def test_the_random_part_of_a_host_id_is_64_bits(monkeypatch):
    """make_host_id draws 64 random bits and writes them in decimal."""
    drawn: list[int] = []
    monkeypatch.setattr(co2._message.secrets, "randbits", lambda bits: drawn.append(bits) or 2**bits - 1)
    assert make_host_id("10.0.0.1", 2004) == f"{2**64 - 1}@10.0.0.1:2004"
    assert drawn == [64]


def test_only_a_host_in_both_brackets_loses_them():
    """A host written [like this] loses its brackets; one with a single bracket keeps it."""
    assert parse_host_id("1@[::1]:2").host == "::1"
    assert parse_host_id("1@[a:2").host == "[a"
    assert parse_host_id("1@a]:2").host == "a]"


def test_an_ipv6_host_with_a_zone_matches_the_address_without_it():
    """The zone (after %) of a link-local address is left out when addresses are compared."""
    assert host_matches(parse_host_id("1@fe80::1%eth0:2"), "fe80::1")
    assert host_matches(parse_host_id("1@fe80::1:2"), "fe80::1%eth1")
    assert not host_matches(parse_host_id("1@fe80::2%eth0:2"), "fe80::1")


def test_the_memory_of_well_formed_host_ids_is_bounded(monkeypatch):
    """check_message remembers up to 1024 well-formed host_ids, then starts again."""
    remembered: set[str] = set()
    monkeypatch.setattr(co2._message, "_good_host_ids", remembered)
    for n in range(1024):
        check_message({"data": 1, "host_id": f"{n}@10.0.0.1:1"})
    assert len(remembered) == 1024
    check_message({"data": 1, "host_id": "x@10.0.0.1:1"})
    assert remembered == {"x@10.0.0.1:1"}


def test_the_spool_commit_runs_no_statement_when_nothing_changed(tmp_path):
    """Spool.commit() with nothing written executes nothing at all."""
    spool = Spool(str(tmp_path / "spool.db"))
    statements: list[str] = []
    spool._db.set_trace_callback(statements.append)
    spool.commit()
    assert statements == []
    spool.close()
    with pytest.raises(sqlite3.ProgrammingError):
        spool._db.execute("SELECT 1")
