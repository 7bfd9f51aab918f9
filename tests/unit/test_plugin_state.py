"""self.state: a plugin's key-value store, in memory or in the spool, committed with the turn."""

from __future__ import annotations

import datetime
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from co2 import Co2Plugin
from co2._message import decode_message, encode_message
from co2._state import MemoryStore, PluginState, StateStore
from co2.protocol import Envelope
from co2.testing import TestReactor, write_package
from relay import Router, Spool
from satellites import Satellite, make_config

NAMESPACE = "pkg.mod.X_Plugin"


@pytest.fixture(params=["memory", "spool"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateStore]:
    """A store in memory, and one in a spool."""
    if request.param == "memory":
        yield MemoryStore()
    else:
        spool = Spool(str(tmp_path / "spool.db"))
        yield spool
        spool.close()


def rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    """What another connection, seeing only what is committed, reads from the spool at ``path``."""
    db = sqlite3.connect(path)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def die(spool: Spool) -> None:
    """End the spool as a SIGKILL would: the connection goes, the open transaction is not committed."""
    spool._db.close()
    spool._closed = True


class Killed(Exception):
    """The process stops here."""


def die_at_commit(spool: Spool) -> None:
    """Make the spool's next commit a SIGKILL: nothing is committed and nothing runs after it."""

    def killed() -> None:
        die(spool)
        raise Killed()

    spool.commit = killed  # type: ignore[method-assign]


# The mapping


def test_state_is_a_mutable_mapping(store):
    """Set, read, delete, count and iterate (in key order), as a dict of str keys would."""
    state = PluginState(store, NAMESPACE)
    assert len(state) == 0 and list(state) == [] and "a" not in state
    state["b"] = 2
    state["a"] = [1, "x"]
    state.update(c={"k": None})
    assert len(state) == 3
    assert list(state) == ["a", "b", "c"]
    assert dict(state) == {"a": [1, "x"], "b": 2, "c": {"k": None}}
    assert list(state.items()) == [("a", [1, "x"]), ("b", 2), ("c", {"k": None})]
    assert ("b", 2) in state.items() and list(state.values()) == [[1, "x"], 2, {"k": None}]
    assert "a" in state and 7 not in state
    assert state.get("z", 0) == 0 and state.setdefault("b", 5) == 2
    state["b"] = 3
    assert state.pop("b") == 3 and "b" not in state
    with pytest.raises(KeyError):
        state["b"]
    with pytest.raises(KeyError):
        del state["b"]
    with pytest.raises(KeyError):
        state[7]  # type: ignore[index]
    for key in state:  # iterating over a snapshot, so deleting as it goes is fine
        del state[key]
    assert len(state) == 0
    state["x"] = 1
    state.clear()
    assert dict(state) == {}


def test_values_come_back_as_a_message_would_carry_them(store):
    """Values are packed: a read is a copy, tuples are lists, bytearray is bytes, datetimes to the second."""
    state = PluginState(store, NAMESPACE)
    when = datetime.datetime(2026, 11, 22, 4, 40, 4, 999)
    kept = [1, 2]
    state["v"] = {"list": kept, "tuple": (1, "a"), "bytes": bytearray(b"\x00\x01"), "when": when,
                  "float": 1.5, "big": 2**63 - 1, "flag": True, "nothing": None}
    kept.append(3)
    value = state["v"]
    assert value == {"list": [1, 2], "tuple": [1, "a"], "bytes": b"\x00\x01",
                     "when": when.replace(microsecond=0), "float": 1.5, "big": 2**63 - 1,
                     "flag": True, "nothing": None}
    value["list"].append(4)
    assert state["v"]["list"] == [1, 2]


@pytest.mark.parametrize(
    ("key", "value", "error", "says"),
    [
        ("k", {1, 2}, TypeError, "cannot hold set: XML-RPC cannot carry set objects"),
        ("k", object(), TypeError, "cannot hold object"),
        ("k", float("nan"), ValueError, "no double for nan"),
        ("k", 2**64, ValueError, "does not fit in 64 bits"),
        ("k", "a\x00b", ValueError, "send it as bytes"),
        ("k", {1: "x"}, TypeError, "struct keys must be strings"),
        (5, 1, TypeError, "state keys are strings, not int"),
        ("bad\x00key", 1, ValueError, "which XML-RPC cannot carry"),
    ],
)
def test_values_co2_cannot_carry_are_refused(store, key, value, error, says):
    """A value or key co2 cannot carry raises, naming the plugin and the problem; nothing is stored."""
    state = PluginState(store, NAMESPACE)
    with pytest.raises(error) as e:
        state[key] = value
    assert NAMESPACE in str(e.value) and says in str(e.value)
    assert len(state) == 0


def test_namespaces_are_apart(store):
    """Two plugins' states over one store do not see each other's keys, even when they share names."""
    one, two = PluginState(store, "a.m.X_One"), PluginState(store, "a.m.X_Two")
    one["k"] = 1
    two["k"] = 2
    two["only"] = True
    assert dict(one) == {"k": 1} and dict(two) == {"k": 2, "only": True}
    one.clear()
    assert len(one) == 0 and dict(two) == {"k": 2, "only": True}


def test_state_used_from_another_thread_is_refused():
    """A state bound to the reactor thread refuses every use from another thread."""
    state = PluginState(MemoryStore(), NAMESPACE, threading.get_ident())
    state["k"] = 1
    errors: list[BaseException] = []

    def use() -> None:
        try:
            state["k"]
        except RuntimeError as e:
            errors.append(e)

    thread = threading.Thread(target=use)
    thread.start()
    thread.join()
    assert len(errors) == 1 and "reactor thread only" in str(errors[0])


# In the spool


def test_state_in_the_spool_survives_reopening(tmp_path):
    """What was committed is there when the spool is opened again, by the same namespace only."""
    path = tmp_path / "spool.db"
    spool = Spool(str(path))
    PluginState(spool, NAMESPACE)["count"] = 41
    PluginState(spool, "other.m.X")["count"] = 1
    spool.commit()
    spool.close()
    again = Spool(str(path))
    state = PluginState(again, NAMESPACE)
    assert dict(state) == {"count": 41}
    state["count"] += 1
    again.close()  # closing commits
    last = Spool(str(path))
    assert PluginState(last, NAMESPACE)["count"] == 42
    last.close()


def test_uncommitted_writes_are_read_back_but_die_with_the_process(tmp_path):
    """Reads see this process's writes before the commit; a process killed before it loses them."""
    path = tmp_path / "spool.db"
    spool = Spool(str(path))
    state = PluginState(spool, NAMESPACE)
    state["kept"] = 1
    spool.commit()
    state["lost"] = 2
    state["kept"] = 3
    del state["kept"]
    assert dict(state) == {"lost": 2}
    assert rows(path, "SELECT key FROM state") == [("kept",)]  # another reader: the commit only
    die(spool)
    again = Spool(str(path))
    assert dict(PluginState(again, NAMESPACE)) == {"kept": 1}
    again.close()


def test_a_spool_without_the_state_and_links_tables_opens_and_gets_them(tmp_path):
    """A spool written before the state and links tables existed opens with what it held, and gets both."""
    path = tmp_path / "spool.db"
    spool = Spool(str(path))
    spool.add(1, b"owed", ["peer:a"])
    spool.mark_seen(["x.1"])
    spool.close()
    db = sqlite3.connect(path)
    db.execute("DROP TABLE state")
    db.execute("DROP TABLE links")
    db.commit()
    db.close()
    assert rows(path, "SELECT name FROM sqlite_master WHERE name IN ('state', 'links')") == []
    old = Spool(str(path))
    loaded = old.load()
    assert loaded.owed == {"peer:a": [(1, b"owed")]} and loaded.seen == ["x.1"] and loaded.links == []
    PluginState(old, NAMESPACE)["k"] = "v"
    old.add_link("node:b")
    old.close()
    assert rows(path, "SELECT namespace, key FROM state") == [(NAMESPACE, "k")]
    assert Spool(str(path)).load().links == ["node:b"]


# Committed with the turn


def message(data: Any) -> bytes:
    """An encoded message from 10.0.0.2."""
    return encode_message({"data": data, "host_id": "1@10.0.0.2:2004"})


def counting_router(path: Path, reactor: TestReactor) -> Router:
    """A router over the spool at ``path`` whose one plugin counts each message's data in its state."""
    router: Router

    def deliver(turn: list[tuple[bytes, list[Any], Any]]) -> None:
        state = PluginState(router.turn.state, NAMESPACE)
        for body, _, _ in turn:
            key = str(decode_message(body)["data"])
            state[key] = state.get(key, 0) + 1

    router = Router(reactor, deliver, spool=Spool(str(path)))
    return router


BATCH = [Envelope("b.1", 3, message("one")), Envelope("b.2", 3, message("two"))]


def test_receive_time_writes_commit_in_the_turn_that_delivers(tmp_path):
    """The plugin's writes, the seen ids and what is owed are committed together, then acknowledged."""
    path = tmp_path / "spool.db"
    reactor = TestReactor()
    router = counting_router(path, reactor)
    router.outbox("peer:c")
    commits: list[tuple[list[Any], list[Any], list[Any]]] = []
    commit = router.spool.commit

    def observed_commit() -> None:
        commit()
        commits.append((rows(path, "SELECT key, value FROM state"), rows(path, "SELECT id FROM seen"),
                        rows(path, "SELECT link FROM owed")))

    router.spool.commit = observed_commit  # type: ignore[method-assign]
    acked: list[None] = []
    router.arrived(BATCH, "node:b", ["10.0.0.2", 1]).addCallback(acked.append)
    reactor.advance(0)
    assert len(commits) == 1
    state, seen, owed = commits[0]
    assert sorted(key for key, _ in state) == ["one", "two"]
    assert sorted(seen) == [("b.1",), ("b.2",)] and owed == [("peer:c",), ("peer:c",)]
    assert acked == [None]
    router.close()


def test_killed_before_the_commit_the_node_receives_the_batch_again_once(tmp_path):
    """Killed between delivery and commit, a node keeps nothing of the batch, and takes it when sent again."""
    path = tmp_path / "spool.db"
    reactor = TestReactor()
    router = counting_router(path, reactor)
    acked: list[None] = []
    router.arrived(BATCH, "node:b", ["10.0.0.2", 1]).addCallback(acked.append)
    die_at_commit(router.spool)
    with pytest.raises(Killed):
        reactor.advance(0)
    assert acked == []  # the peer will send the batch again

    reactor = TestReactor()
    again = counting_router(path, reactor)
    assert "b.1" not in again.seen
    again.arrived(BATCH, "node:b", ["10.0.0.2", 1]).addCallback(acked.append)
    reactor.advance(0)
    reactor.advance(0)
    assert acked == [None]
    assert dict(PluginState(again.turn.state, NAMESPACE)) == {"one": 1, "two": 1}
    again.close()


def test_killed_after_the_commit_the_node_drops_the_batch_sent_again(tmp_path):
    """Killed after the commit but before its ack left, a node takes the batch sent again as seen."""
    path = tmp_path / "spool.db"
    reactor = TestReactor()
    router = counting_router(path, reactor)
    router.arrived(BATCH, "node:b", ["10.0.0.2", 1])
    router.turn.flush()
    die(router.spool)  # the ack, due at the next turn, never leaves

    reactor = TestReactor()
    again = counting_router(path, reactor)
    acked: list[None] = []
    again.arrived(BATCH, "node:b", ["10.0.0.2", 1]).addCallback(acked.append)
    reactor.advance(0)
    reactor.advance(0)
    assert acked == [None] and again.counters.duplicates == 2
    assert dict(PluginState(again.turn.state, NAMESPACE)) == {"one": 1, "two": 1}
    again.close()


def test_writes_outside_delivery_are_committed_at_the_end_of_the_turn(tmp_path):
    """A write from an x_ method or a timer schedules the turn's flush, which commits it."""
    path = tmp_path / "spool.db"
    reactor = TestReactor()
    router = counting_router(path, reactor)
    state = PluginState(router.turn.state, NAMESPACE)
    state["timer"] = 1
    assert rows(path, "SELECT key FROM state") == []
    assert len(reactor.getDelayedCalls()) == 1
    reactor.advance(0)
    assert rows(path, "SELECT key FROM state") == [("timer",)]
    del state["timer"]
    reactor.advance(0)
    assert rows(path, "SELECT key FROM state") == []
    router.close()


# On a satellite


COUNTER = """
from co2 import Co2Plugin

class X_Counter(Co2Plugin):
    def receive(self, data_dict):
        key = str(data_dict["data"])
        self.state[key] = self.state.get(key, 0) + 1

    def x_note(self, key):
        self.state[key] = True
        return True

    def x_state(self):
        return dict(self.state)
"""


def satellite(plugin_dir: Path, reactor: TestReactor, spool: Path | None = None) -> Satellite:
    """A satellite with the counter plugin, over ``spool`` if given."""
    config = make_config({"plugin_dir": str(plugin_dir), "plugin_list": ["counter"],
                          "spool": str(spool) if spool else None})
    node = Satellite(config, reactor, host_id="1@127.0.0.1:2004")
    node.load_plugins()
    return node


def test_a_plugin_counts_each_message_once_across_a_kill(plugin_dir, tmp_path):
    """A plugin counting in self.state counts a batch once, whether killed before or after the commit."""
    write_package(plugin_dir, "counter", {"m": COUNTER})
    path = tmp_path / "node.spool"
    reactor = TestReactor()
    node = satellite(plugin_dir, reactor, path)
    node.relay.router.arrived(BATCH, "node:b", ["10.0.0.2", 1])
    die_at_commit(node.relay.router.spool)
    with pytest.raises(Killed):
        reactor.advance(0)

    for _ in range(2):  # sent again: once taken, once dropped as seen
        reactor = TestReactor()
        node = satellite(plugin_dir, reactor, path)
        node.relay.router.arrived(BATCH, "node:b", ["10.0.0.2", 1])
        reactor.advance(0)
        assert dict(node.plugins[0].state) == {"one": 1, "two": 1}
        die(node.relay.router.spool)


def test_a_satellite_without_a_spool_keeps_state_in_memory(plugin_dir, reactor):
    """Without a spool, self.state works the same, in memory, named by the plugin."""
    write_package(plugin_dir, "counter", {"m": COUNTER})
    node = satellite(plugin_dir, reactor)
    plugin = node.plugins[0]
    plugin.x_note("k")
    assert dict(plugin.state) == {"k": True}
    assert plugin.state.namespace == "counter.m.X_Counter"  # type: ignore[attr-defined]


def test_a_plugin_may_bring_its_own_state():
    """An instance no satellite made has a state in memory; a plugin may assign its own object."""

    class X_Own(Co2Plugin):
        def __init__(self, var_dict: dict[str, Any]) -> None:
            self.state = {"mine": 1}
            Co2Plugin.__init__(self, var_dict)

    plain = Co2Plugin({})
    plain.state["k"] = [1]
    assert dict(plain.state) == {"k": [1]}
    assert X_Own({}).state == {"mine": 1}
