"""relay._outbox and relay._seen: bounded queues and bounded de-duplication."""

from __future__ import annotations

from unittest import mock

from doubles import format_events as text_of
from hypothesis import given, settings
from hypothesis import strategies as st

import relay._outbox
from co2.testing import TestReactor
from relay import Entry, Outbox, Router, SeenIds


def entry(seq: int, size: int = 10) -> Entry:
    """An entry of ``size`` bytes."""
    return Entry(seq, b"x" * size)


def seqs(entries: list[Entry]) -> list[int]:
    """The sequence numbers of ``entries``."""
    return [e.seq for e in entries]


def drain(outbox: Outbox) -> list[int]:
    """Take and acknowledge everything waiting; the sequence numbers in the order taken."""
    taken = []
    while True:
        number, batch = outbox.take(1 << 30)
        if not batch:
            return taken
        outbox.acked(number)
        taken += seqs(batch)


def test_count_limit_drops_the_oldest_waiting():
    """Past its count limit an outbox drops its oldest waiting entries and counts them."""
    dropped: list[Entry] = []
    outbox = Outbox(3, 1 << 20, dropped.extend)
    for seq in range(1, 6):
        assert outbox.put(entry(seq))
    assert len(outbox) == 3 and outbox.dropped == 2
    assert seqs(dropped) == [1, 2]
    assert drain(outbox) == [3, 4, 5]
    assert len(outbox) == 0 and outbox.size == 0


def test_byte_limit_drops_as_many_as_needed():
    """Past its byte limit an outbox drops the oldest entries until the new one fits."""
    dropped: list[Entry] = []
    outbox = Outbox(100, 100, dropped.extend)
    for seq in range(1, 5):
        outbox.put(entry(seq, 25))
    assert outbox.size == 100
    assert outbox.put(entry(5, 60))
    assert seqs(dropped) == [1, 2, 3]
    assert outbox.size == 85 and outbox.dropped == 3
    assert drain(outbox) == [4, 5]


def test_entries_in_flight_are_never_dropped():
    """Sent, unacknowledged entries stay; when only they remain, the new entry is the one dropped."""
    dropped: list[Entry] = []
    outbox = Outbox(2, 1 << 20, dropped.extend)
    outbox.put(entry(1))
    outbox.put(entry(2))
    number, batch = outbox.take(1 << 20)
    assert seqs(batch) == [1, 2] and outbox.in_flight == 1
    assert not outbox.put(entry(3))
    assert seqs(dropped) == [3] and outbox.dropped == 1
    assert seqs(outbox.acked(number)) == [1, 2]
    assert outbox.put(entry(4))
    assert drain(outbox) == [4]


def test_an_entry_that_can_never_fit_drops_nothing_else():
    """An entry larger than the byte limit is refused; what waits stays."""
    dropped: list[Entry] = []
    outbox = Outbox(10, 100, dropped.extend)
    outbox.put(entry(1, 40))
    outbox.put(entry(2, 40))
    assert not outbox.put(entry(3, 101))
    assert seqs(dropped) == [3]
    assert drain(outbox) == [1, 2]


def test_an_entry_that_cannot_fit_beside_what_is_in_flight_drops_nothing_else():
    """When the bytes in flight leave no room for an entry, it alone is dropped."""
    dropped: list[Entry] = []
    outbox = Outbox(10, 100, dropped.extend)
    outbox.put(entry(1, 70))
    outbox.take(1)
    outbox.put(entry(2, 20))
    assert not outbox.put(entry(3, 40))
    assert seqs(dropped) == [3]
    outbox.rewind()
    assert drain(outbox) == [1, 2]


def test_take_respects_the_batch_size_but_takes_at_least_one():
    """A batch holds entries up to max_bytes, and always the first waiting one."""
    outbox = Outbox(100, 1 << 20)
    for seq, size in enumerate([50, 30, 30, 200, 5], 1):
        outbox.put(entry(seq, size))
    assert [seqs(outbox.take(100)[1]) for _ in range(4)] == [[1, 2], [3], [4], [5]]
    assert outbox.take(100) == (-1, [])
    assert outbox.in_flight == 4 and outbox.waiting == 0


def test_rewind_puts_unacknowledged_batches_back_first_in_order():
    """After rewind, unacknowledged batches come first, in their order, then what still waited."""
    outbox = Outbox(100, 1 << 20)
    for seq in range(1, 8):
        outbox.put(entry(seq))
    first, _ = outbox.take(20)  # 1, 2
    second, _ = outbox.take(20)  # 3, 4
    third, _ = outbox.take(10)  # 5
    outbox.acked(second)
    outbox.rewind()
    assert outbox.in_flight == 0 and len(outbox) == 5
    assert drain(outbox) == [1, 2, 5, 6, 7]
    assert first != third


@settings(max_examples=200, deadline=None)
@given(
    limit=st.integers(1, 6),
    limit_bytes=st.integers(1, 80),
    steps=st.lists(st.one_of(st.integers(0, 30), st.sampled_from(["take", "ack", "rewind"])),
                   max_size=40),
    compact_after=st.sampled_from([0, 1, 3, 4096]),
)
def test_an_outbox_keeps_its_bounds_and_order(limit, limit_bytes, steps, compact_after):
    """Whatever happens, an outbox stays within its limits, counts every drop and byte, and keeps order."""
    with mock.patch.object(relay._outbox, "_COMPACT_AFTER", compact_after):
        check_bounds_and_order(limit, limit_bytes, steps)


def check_bounds_and_order(limit: int, limit_bytes: int, steps: list[int | str]) -> None:
    """Run ``steps`` on an outbox, checking it against a model of what it owes."""
    dropped: list[Entry] = []
    outbox = Outbox(limit, limit_bytes, dropped.extend)
    sent: list[int] = []
    acked: list[int] = []
    owed: dict[int, int] = {}  # seq -> size
    seq = 0
    for step in steps:
        if isinstance(step, int):
            seq += 1
            before = (outbox.in_flight, outbox.waiting, len(dropped))
            if outbox.put(Entry(seq, b"y" * step)):
                owed[seq] = step
            else:
                assert (outbox.in_flight, outbox.waiting, len(dropped)) == (
                    before[0], before[1], before[2] + 1)  # only the new entry went
            assert outbox.in_flight == before[0]
        elif step == "take":
            number, batch = outbox.take(20)
            if batch:
                sent.append(number)
                assert len(batch) == 1 or sum(len(e.body) for e in batch) <= 20
        elif step == "ack" and sent:
            for entry in outbox.acked(sent.pop(0)):
                acked.append(entry.seq)
                del owed[entry.seq]
        elif step == "rewind":
            outbox.rewind()
            sent.clear()
        for entry in dropped:
            owed.pop(entry.seq, None)
        assert len(outbox) <= limit and outbox.size <= limit_bytes
        assert (len(outbox), outbox.size) == (len(owed), sum(owed.values()))
    assert outbox.dropped == len(dropped)
    rest = drain(outbox) if not sent else []
    if not sent:
        kept = acked + rest
        assert sorted(set(kept)) == sorted(kept)  # nothing twice
        assert set(kept) | set(seqs(dropped)) == set(range(1, seq + 1))
        assert rest == sorted(rest)


def test_a_long_queue_drains_in_order_in_batches_of_the_right_size():
    """Thousands of entries of varied sizes leave in order, each batch as full as max_bytes allows."""
    outbox = Outbox(100_000, 1 << 30)
    sizes = [(seq * 37) % 200 for seq in range(10_000)]
    for seq, size in enumerate(sizes):
        outbox.put(entry(seq, size))
    taken: list[int] = []
    while outbox.waiting:
        number, batch = outbox.take(1000)
        size = sum(len(e.body) for e in batch)
        assert size <= 1000 and (not outbox.waiting or size + sizes[len(taken) + len(batch)] > 1000)
        taken += seqs(batch)
        outbox.acked(number)
        if len(taken) % 7 == 0:
            outbox.put(entry(len(sizes), 5))
            sizes.append(5)
    assert taken == list(range(len(sizes)))
    assert len(outbox) == 0 and outbox.size == 0


def test_router_counts_and_logs_drops(logged):
    """A router whose outbox overflows counts the drops and logs which link and how many."""
    reactor = TestReactor()
    router = Router(reactor, lambda *args: None, outbox_limit=2)
    router.outbox("peer:far")
    for k in range(5):
        router.send({"data": k, "host_id": "1@10.0.0.1:2004"}, ["10.0.0.1", 2004])
    reactor.advance(0)
    assert router.counters.dropped == 3
    assert router.outboxes["peer:far"].dropped == 3
    assert len(router.outboxes["peer:far"]) == 2
    text = text_of(logged)
    assert "link peer:far: outbox full (2 messages" in text
    assert "dropped 1 message(s), the oldest waiting first" in text


def test_seen_ids_remember_the_newest_limit():
    """SeenIds reports repeats and forgets the oldest id once past its limit."""
    seen = SeenIds(3)
    assert [seen.add(i) for i in "abca"] == [True, True, True, False]
    assert seen.add("d")
    assert "a" not in seen and len(seen) == 3
    assert [i in seen for i in "bcd"] == [True, True, True]
    assert seen.add("a")  # forgotten, so new again
    assert "b" not in seen


def test_seen_ids_keep_insertion_order_when_a_repeat_is_added():
    """Seeing an id again does not make it newer: eviction follows first sight."""
    seen = SeenIds(2, ["a", "b"])
    assert not seen.add("a")
    seen.add("c")
    assert "a" not in seen and "b" in seen and "c" in seen


@given(st.integers(1, 20), st.lists(st.integers(0, 30), max_size=80))
def test_seen_ids_match_a_model(limit, ids):
    """SeenIds behaves as a list of the newest ``limit`` distinct ids."""
    seen = SeenIds(limit)
    model: list[str] = []
    for n in ids:
        key = str(n)
        assert seen.add(key) == (key not in model)
        if key not in model:
            model.append(key)
            del model[:-limit]
        assert len(seen) == len(model)
        assert all(k in seen for k in model)


def test_seen_ids_start_from_a_list_oldest_first():
    """SeenIds given ids keeps the newest of them."""
    seen = SeenIds(2, ["a", "b", "c"])
    assert "a" not in seen and "b" in seen and "c" in seen
