"""The router with a spool: what it owes and what it saw survive a restart; acks wait for the commit."""

from __future__ import annotations

from typing import Any

from co2._message import decode_message, encode_message
from co2.protocol import Envelope, decode_envelope
from co2.testing import TestReactor
from relay import Router, Spool


def message(data: Any) -> bytes:
    """An encoded message from 10.0.0.1."""
    return encode_message({"data": data, "host_id": "1@10.0.0.1:2004"})


def data_of(body: bytes) -> Any:
    """The data of an encoded envelope's message."""
    return decode_message(decode_envelope(body).message)["data"]


def router_on(path: str, reactor: TestReactor, delivered: list[Any] | None = None) -> Router:
    """A router over the spool at ``path`` that records what it delivers."""
    out = delivered if delivered is not None else []
    return Router(reactor, lambda turn: out.extend(decode_message(m)["data"] for m, _, _ in turn),
                  spool=Spool(path))


def test_outboxes_and_seen_ids_come_back_from_the_spool(tmp_path):
    """A router made again over the same spool owes the same messages, in order, and knows what it saw."""
    path = str(tmp_path / "spool.db")
    reactor = TestReactor()
    router = router_on(path, reactor)
    router.outbox("peer:a")
    router.outbox("node:b")
    ids = [router.send(message(k), ["10.0.0.1", 2004]) for k in range(3)]
    router.arrived([Envelope("far.1", 4, message("far"))], "node:b", ["10.0.0.2", 40000])
    reactor.advance(0)
    router.outboxes["peer:a"].take(1 << 20)  # in flight when the node stops: owed again
    router.close()

    delivered: list[Any] = []
    again = router_on(path, TestReactor(), delivered)
    owed_a = [decode_envelope(e.body) for e in again.outboxes["peer:a"].take(1 << 20)[1]]
    assert [(e.id, decode_message(e.message)["data"]) for e in owed_a] == list(
        zip([*ids, "far.1"], [0, 1, 2, "far"], strict=True))
    owed_b = [decode_envelope(e.body).id for e in again.outboxes["node:b"].take(1 << 20)[1]]
    assert owed_b == ids  # not the message that came from b
    assert all(i in again.seen for i in [*ids, "far.1"])
    assert not again.route("far.1", 4, message("far"), "node:b", ["10.0.0.2", 40000])
    assert again.counters.duplicates == 1
    assert again.new_id() not in ids
    again.close()


def test_an_acknowledged_message_stays_acknowledged_after_a_restart(tmp_path):
    """What a peer acknowledged is not owed again by the router made over the same spool."""
    path = str(tmp_path / "spool.db")
    reactor = TestReactor()
    router = router_on(path, reactor)
    router.outbox("peer:a")
    for k in range(4):
        router.send(message(k), ["10.0.0.1", 2004])
    reactor.advance(0)
    number, _ = router.outboxes["peer:a"].take(30)  # the first message alone
    router.acked("peer:a", number)
    router.close()
    again = router_on(path, TestReactor())
    owed = [data_of(e.body) for e in again.outboxes["peer:a"].take(1 << 20)[1]]
    assert owed == [1, 2, 3]
    again.close()


def test_arrived_fires_only_after_the_spool_commits(tmp_path):
    """The plugins receive the turn's messages before its commit; the ack waits for the commit."""
    reactor = TestReactor()
    events: list[str] = []
    router = Router(reactor, lambda turn: events.extend("deliver" for _ in turn),
                    spool=Spool(str(tmp_path / "spool.db")))
    commit = router.spool.commit

    def recorded_commit() -> None:
        events.append("commit")
        commit()

    router.spool.commit = recorded_commit  # type: ignore[method-assign]
    router.outbox("peer:a")
    d = router.arrived([Envelope("x.1", 3, message(1)), Envelope("x.2", 3, message(2))],
                       "node:b", ["10.0.0.2", 40000])
    d.addCallback(lambda _: events.append("ack"))
    assert events == []
    reactor.advance(0)
    assert events == ["deliver", "deliver", "commit", "ack"]
    reader = Spool(str(tmp_path / "spool.db"))
    state = reader.load()
    reader.close()
    assert {"x.1", "x.2"} <= set(state.seen)
    assert len(state.owed["peer:a"]) == 2
    router.close()


def test_without_a_spool_the_ack_still_waits_for_the_end_of_the_turn():
    """Without a spool, arrived fires in the turn after the flush, once local delivery is done."""
    reactor = TestReactor()
    events: list[str] = []
    router = Router(reactor, lambda turn: events.extend("deliver" for _ in turn))
    router.arrived([Envelope("x.1", 3, message(1))], "node:b", ["10.0.0.2", 1]).addCallback(
        lambda _: events.append("ack"))
    assert events == []
    router.turn.flush()
    assert events == ["deliver"]
    reactor.advance(0)
    assert events == ["deliver", "ack"]


def test_forwarded_messages_leave_before_the_acks():
    """The flush sends what waits for other links; the answers to the link it came by come after."""
    reactor = TestReactor()
    events: list[str] = []

    class Link:
        def wake(self) -> None:
            events.append("wake")

        def send_now(self) -> None:
            events.append("send")
            router.outboxes["node:c"].take(1 << 20)

    router = Router(reactor, lambda turn: None)
    router.attach("node:c", Link())
    router.arrived([Envelope("x.1", 3, message(1))], "node:b", ["10.0.0.2", 1]).addCallback(
        lambda _: events.append("ack"))
    reactor.advance(0)
    assert events == ["send", "ack"]


def test_closing_acknowledges_what_was_flushed():
    """close() answers every batch taken, even one whose ack was still to come."""
    reactor = TestReactor()
    acked: list[None] = []
    router = Router(reactor, lambda turn: None)
    router.arrived([Envelope("x.1", 3, message(1))], "node:b", ["10.0.0.2", 1]).addCallback(acked.append)
    router.turn.flush()
    assert acked == []
    router.close()
    assert acked == [None]
    assert reactor.getDelayedCalls() == []


def test_only_what_was_flushed_is_acknowledged():
    """A batch that arrives between a flush and its acks waits for its own flush."""
    reactor = TestReactor()
    acked: list[str] = []
    router = Router(reactor, lambda turn: None)
    router.arrived([Envelope("x.1", 3, message(1))], "node:b", ["10.0.0.2", 1]).addCallback(
        lambda _: acked.append("first"))
    router.turn.flush()
    router.arrived([Envelope("x.2", 3, message(2))], "node:b", ["10.0.0.2", 1]).addCallback(
        lambda _: acked.append("second"))
    router.turn.acknowledge()
    assert acked == ["first"]
    reactor.advance(0)
    assert acked == ["first", "second"]
