"""The end of a router's turn: plugins first, then one commit, then the links; and a stopping node."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from doubles import RECORDER

from co2._message import decode_message, encode_message
from co2.protocol import Envelope
from co2.testing import TestReactor, write_package
from relay import Router, Spool
from relay._turn import REPLY_ROUNDS
from satellites import Satellite, make_config

ADDRESS = ["10.0.0.1", 2004]


def message(data: Any) -> bytes:
    """An encoded message from 10.0.0.1."""
    return encode_message({"data": data, "host_id": "1@10.0.0.1:2004"})


def committed_owed(path: Path) -> int:
    """How many owed rows another connection sees in the spool at ``path``."""
    db = sqlite3.connect(path)
    try:
        return int(db.execute("SELECT COUNT(*) FROM owed").fetchone()[0])
    finally:
        db.close()


def test_a_message_enters_no_outbox_before_the_commit(tmp_path):
    """
    With a spool, what a turn forwards is in no outbox until the turn's
    commit: a link woken earlier in the turn (by an ack) finds nothing a
    crash could still take back, so a message cannot leave its first node
    uncommitted and come back to it as new by another path.
    """
    path = tmp_path / "spool.db"
    reactor = TestReactor()
    router = Router(reactor, lambda turn: None, spool=Spool(str(path)))
    outbox = router.outbox("peer:r")
    router.send(message("m"), ADDRESS)
    router.arrived([Envelope("far.1", 3, message("far"))], "node:b", ["10.0.0.2", 1])
    assert outbox.take(1 << 20) == (-1, [])  # a link pumping now sends nothing
    assert len(outbox) == 0
    reactor.advance(0)
    assert committed_owed(path) == 2
    _, entries = outbox.take(1 << 20)
    assert len(entries) == 2
    router.close()


def test_without_a_spool_a_message_is_queued_at_once():
    """Without a spool nothing is committed, so a forwarded message is queued as it is taken."""
    router = Router(TestReactor(), lambda turn: None)
    outbox = router.outbox("peer:r")
    router.send(message("m"), ADDRESS)
    assert len(outbox.take(1 << 20)[1]) == 1


def test_a_message_taken_for_a_link_forgotten_in_the_same_turn_is_not_spooled(tmp_path):
    """A link forgotten between a message's arrival and the commit owes nothing after a restart."""
    path = tmp_path / "spool.db"
    reactor = TestReactor()
    router = Router(reactor, lambda turn: None, spool=Spool(str(path)))
    router.outbox("node:gone")
    router.outbox("peer:r")
    router.send(message("m"), ADDRESS)
    router.forget("node:gone")
    reactor.advance(0)
    router.close()
    state = Spool(str(path)).load()
    assert list(state.owed) == ["peer:r"]


def test_replies_sent_while_receiving_are_delivered_before_the_commit(tmp_path):
    """What a plugin sends as it receives reaches the other plugins in the same turn, before its commit."""
    reactor = TestReactor()
    events: list[str] = []
    router: Router

    def deliver(turn: list[tuple[bytes, list[Any], Any]]) -> None:
        for body, _, _ in turn:
            data = decode_message(body)["data"]
            events.append(f"deliver {data}")
            if data == "ping":
                router.send(message("pong"), ADDRESS, sender="replier")

    router = Router(reactor, deliver, spool=Spool(str(tmp_path / "spool.db")))
    commit = router.spool.commit
    router.spool.commit = lambda: (events.append("commit"), commit())  # type: ignore[method-assign]
    router.arrived([Envelope("x.1", 3, message("ping"))], "node:b", ["10.0.0.2", 1])
    reactor.advance(0)
    assert events == ["deliver ping", "deliver pong", "commit"]
    assert reactor.getDelayedCalls() == []
    router.close()


def test_plugins_that_always_answer_do_not_hold_the_reactor():
    """Replies to replies are delivered for REPLY_ROUNDS rounds in one flush; the rest in the next turn."""
    reactor = TestReactor()
    delivered: list[int] = []
    router: Router

    def deliver(turn: list[tuple[bytes, list[Any], Any]]) -> None:
        for body, _, _ in turn:
            n = decode_message(body)["data"]
            delivered.append(n)
            router.send(message(n + 1), ADDRESS, sender="echo")

    router = Router(reactor, deliver)
    router.send(message(0), ADDRESS)
    router.turn.flush()
    assert delivered == list(range(REPLY_ROUNDS))
    assert len(reactor.getDelayedCalls()) == 1  # the next flush, for what is left
    router.turn.flush()
    assert delivered == list(range(2 * REPLY_ROUNDS))


def test_a_holding_router_takes_nothing_from_links_but_still_routes_local_messages():
    """After hold(), a batch is neither taken nor answered; a local plugin's message still goes out."""
    reactor = TestReactor()
    delivered: list[bytes] = []
    router = Router(reactor, lambda turn: delivered.extend(m for m, _, _ in turn))
    outbox = router.outbox("peer:r")
    router.turn.hold()
    acked: list[None] = []
    router.arrived([Envelope("x.1", 3, message(1))], "node:b", ["10.0.0.2", 1]).addCallback(acked.append)
    router.send(message("bye"), ADDRESS, sender="plugin")
    reactor.advance(0)
    reactor.advance(0)
    assert acked == [] and "x.1" not in router.seen and router.counters.received == 0
    assert len(outbox.take(1 << 20)[1]) == 1
    router.close()
    assert acked == []


def test_a_stopping_satellite_hands_its_plugins_what_it_took_and_then_takes_nothing(plugin_dir, tmp_path):
    """
    Shutdown first delivers what the node took this turn, then leaves what
    links bring unanswered and unseen, to be sent again once it is back:
    nothing is committed as seen with no plugin left to receive it.
    """
    write_package(plugin_dir, "rec", {"m": RECORDER})
    reactor = TestReactor()
    path = tmp_path / "node.spool"
    config = make_config({"plugin_dir": str(plugin_dir), "plugin_list": ["rec"], "spool": str(path)})
    node = Satellite(config, reactor, host_id="1@127.0.0.1:2004")
    node.load_plugins()
    recorder = node.plugins[0]
    before: list[None] = []
    node.relay.router.arrived([Envelope("x.1", 3, message("before"))], "node:b", ["10.0.0.2", 1]).addCallback(
        before.append)
    node.shutdown()
    assert [m["data"] for m in recorder.got] == ["before"]  # type: ignore[attr-defined]
    after: list[None] = []
    node.relay.router.arrived([Envelope("x.2", 3, message("after"))], "node:b", ["10.0.0.2", 1]).addCallback(
        after.append)
    reactor.advance(60)
    node.relay.router.close()
    assert before == [None] and after == []
    state = Spool(str(path)).load()
    assert "x.1" in state.seen and "x.2" not in state.seen


def test_a_restarted_node_queues_for_the_peers_that_linked_to_it_even_owing_them_nothing(tmp_path):
    """
    A relay restarted with nothing owed to node b still queues for b what
    arrives from c before b is back: otherwise it would take the message,
    forward it to nobody, acknowledge it, and b would never get it.
    """
    path = tmp_path / "spool.db"
    reactor = TestReactor()
    router = Router(reactor, lambda turn: None, spool=Spool(str(path)))
    for key in ("node:b", "node:c"):
        router.attach(key, _Link())
    reactor.advance(0)
    router.close()

    reactor = TestReactor()
    again = Router(reactor, lambda turn: None, spool=Spool(str(path)))
    again.attach("node:c", _Link())
    again.arrived([Envelope("c.1", 3, message("from c"))], "node:c", ["10.0.0.3", 1])
    reactor.advance(0)
    assert len(again.outboxes["node:b"]) == 1
    again.close()
    assert [seq for seq, _ in Spool(str(path)).load().owed["node:b"]] == [1]


def test_a_forgotten_peer_is_not_queued_for_after_a_restart(tmp_path):
    """A link forgotten after forget_after stays forgotten when the node restarts."""
    path = tmp_path / "spool.db"
    reactor = TestReactor()
    router = Router(reactor, lambda turn: None, spool=Spool(str(path)), forget_after=10)
    link = _Link()
    router.attach("node:b", link)
    router.detach("node:b", link)
    reactor.advance(11)
    assert "node:b" not in router.outboxes
    router.close()
    again = Router(TestReactor(), lambda turn: None, spool=Spool(str(path)))
    assert "node:b" not in again.outboxes
    again.close()


class _Link:
    """A link that sends nothing."""

    def wake(self) -> None:
        pass

    def send_now(self) -> None:
        pass
