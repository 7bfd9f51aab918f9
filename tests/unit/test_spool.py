"""relay._spool: what a node owes and has seen survives a restart, even kill -9."""

from __future__ import annotations

import datetime
import os
import re
import select
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
from doubles import format_events
from hypothesis import given, settings
from hypothesis import strategies as st

from co2._message import decode_message
from co2.protocol import decode_envelope
from relay._spool import Spool, SpoolError, SpoolState

ROOT = Path(__file__).resolve().parents[2]


def reopen(path: Path, seen_limit: int = 100_000) -> SpoolState:
    """Open the spool at ``path`` afresh and read it back."""
    spool = Spool(str(path), seen_limit)
    try:
        return spool.load()
    finally:
        spool.close()


def count_messages(path: Path) -> int:
    """How many bodies the spool at ``path`` holds."""
    db = sqlite3.connect(path)
    try:
        return int(db.execute("SELECT COUNT(*) FROM messages").fetchone()[0])
    finally:
        db.close()


def test_new_spool(tmp_path):
    """A new spool is empty, starts at seq 1 and keeps a 16-hex-digit node_id across reopening."""
    path = tmp_path / "deep" / "dir" / "spool.db"
    spool = Spool(str(path))
    state = spool.load()
    spool.close()
    assert spool.path == str(path)
    assert len(state.node_id) == 16 and int(state.node_id, 16) >= 0
    assert state == SpoolState(state.node_id, [], {}, 1)
    assert reopen(path).node_id == state.node_id
    assert Spool(str(tmp_path / "other.db")).load().node_id != state.node_id


def test_add_commit_reopen(tmp_path):
    """Committed messages come back per link in seq order, each body stored once."""
    path = tmp_path / "spool.db"
    spool = Spool(str(path))
    spool.add(3, b"three", ["b", "a"])
    spool.add(1, b"one", ["a"])
    spool.add(2, b"two", [])
    spool.add(5, b"five", ["b"])
    spool.commit()
    spool.close()
    state = reopen(path)
    assert state.owed == {"a": [(1, b"one"), (3, b"three")], "b": [(3, b"three"), (5, b"five")]}
    assert state.next_seq == 6
    assert count_messages(path) == 3


def test_next_seq_survives_removal(tmp_path):
    """next_seq stays above every seq ever stored, even once all are removed."""
    path = tmp_path / "spool.db"
    spool = Spool(str(path))
    spool.add(7, b"x", ["a"])
    spool.commit()
    spool.remove("a", [7])
    spool.close()
    state = reopen(path)
    assert state.owed == {} and state.next_seq == 8


def test_remove_keeps_body_while_owed(tmp_path):
    """A body stays while another link owes it and goes with the last owed row."""
    path = tmp_path / "spool.db"
    spool = Spool(str(path))
    spool.add(1, b"one", ["a", "b"])
    spool.add(2, b"two", ["a"])
    spool.remove("a", [1, 2, 99])
    spool.commit()
    assert spool.load().owed == {"b": [(1, b"one")]}
    assert count_messages(path) == 1
    spool.remove("b", [1])
    spool.close()
    assert reopen(path).owed == {}
    assert count_messages(path) == 0


def test_drop_link(tmp_path):
    """Dropping a link forgets all it owes and the bodies no other link owes."""
    path = tmp_path / "spool.db"
    spool = Spool(str(path))
    spool.add(1, b"one", ["a", "b"])
    spool.add(2, b"two", ["a"])
    spool.add(3, b"three", ["b"])
    spool.drop_link("a")
    spool.close()
    assert reopen(path).owed == {"b": [(1, b"one"), (3, b"three")]}
    assert count_messages(path) == 2


def test_uncommitted_writes_are_invisible(tmp_path):
    """Writes not yet committed are not seen by another opener until commit()."""
    path = tmp_path / "spool.db"
    writer = Spool(str(path))
    writer.add(1, b"one", ["a"])
    writer.commit()
    writer.add(2, b"two", ["a"])
    writer.mark_seen(["m2"])
    assert writer.load().owed == {"a": [(1, b"one"), (2, b"two")]}
    reader = Spool(str(path))
    try:
        assert reader.load().owed == {"a": [(1, b"one")]}
        assert reader.load().seen == []
        writer.commit()
        assert reader.load().owed == {"a": [(1, b"one"), (2, b"two")]}
    finally:
        reader.close()
        writer.close()


KILLED = textwrap.dedent(
    """
    import sys, time
    from relay._spool import Spool
    spool = Spool(sys.argv[1])
    for seq in range(1, 21):
        spool.add(seq, b"body%d" % seq, ["a", "b"] if seq % 2 else ["a"])
    spool.mark_seen(["m%d" % seq for seq in range(1, 21)])
    spool.commit()
    for seq in range(21, 31):
        spool.add(seq, b"lost", ["a"])
    spool.remove("a", [1, 2])
    spool.mark_seen(["lost"])
    print("ready", flush=True)
    time.sleep(60)
    """
)


def test_kill_9_keeps_exactly_what_was_committed(tmp_path):
    """After SIGKILL, reopening shows the committed messages and none of the uncommitted writes."""
    path = tmp_path / "spool.db"
    python_path = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(python_path)}
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED, str(path)], stdout=subprocess.PIPE, env=env, cwd=ROOT
    )
    try:
        assert proc.stdout is not None
        readable, _, _ = select.select([proc.stdout], [], [], 20)
        assert readable, "the spool writer did not get ready within 20 s"
        assert proc.stdout.readline() == b"ready\n"
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=20) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    state = reopen(path)
    assert state.owed == {
        "a": [(seq, b"body%d" % seq) for seq in range(1, 21)],
        "b": [(seq, b"body%d" % seq) for seq in range(1, 21, 2)],
    }
    assert state.seen == [f"m{seq}" for seq in range(1, 21)]
    assert state.next_seq == 21


def test_seen_oldest_first_and_bounded(tmp_path):
    """Seen ids come back oldest first, repeats keep their place, never more than seen_limit."""
    path = tmp_path / "spool.db"
    spool = Spool(str(path), seen_limit=5)
    spool.mark_seen(["a", "b", "c"])
    spool.mark_seen(["a", "d"])
    spool.commit()
    assert spool.load().seen == ["a", "b", "c", "d"]
    spool.mark_seen(["e", "f", "g"])
    assert spool.load().seen == ["c", "d", "e", "f", "g"]
    spool.commit()
    spool.mark_seen([])
    spool.close()
    assert reopen(path, seen_limit=5).seen == ["c", "d", "e", "f", "g"]
    assert reopen(path, seen_limit=2).seen == ["f", "g"]
    db = sqlite3.connect(path)
    try:
        assert db.execute("SELECT COUNT(*) FROM seen").fetchone()[0] == 5
    finally:
        db.close()


def test_commit_and_close_are_cheap_and_idempotent(tmp_path):
    """commit() with nothing pending and a second close() do nothing."""
    path = str(tmp_path / "spool.db")
    spool = Spool(path)
    spool.mark_seen(["a"])
    statements: list[str] = []
    spool._db.set_trace_callback(statements.append)
    spool.commit()
    assert statements[-1] == "COMMIT"
    statements.clear()
    spool.commit()
    assert statements == []  # nothing pending: not even a COMMIT
    spool.mark_seen(["b"])
    spool.close()  # commits what is pending
    spool.close()
    spool.commit()
    assert spool._closed
    again = Spool(path)
    assert again.load().seen == ["a", "b"]
    again.close()


def test_error_for_a_directory(tmp_path):
    """A path that is a directory is a SpoolError naming the path."""
    with pytest.raises(SpoolError, match=re.escape(f"spool {tmp_path}: ")):
        Spool(str(tmp_path))


def test_error_for_a_file_that_is_not_a_database(tmp_path):
    """A file of garbage is a SpoolError naming the path."""
    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is not an sqlite database\x00\xff" * 20)
    with pytest.raises(SpoolError, match=re.escape(f"spool {path}: file is not a database")):
        Spool(str(path))


def test_error_for_another_database(tmp_path):
    """An SQLite database that is not a spool is refused, not written to."""
    path = tmp_path / "other.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE t (x)")
    db.commit()
    db.close()
    with pytest.raises(SpoolError, match="not a co2 spool"):
        Spool(str(path))


def test_error_for_an_unknown_schema_version(tmp_path):
    """A spool from a newer schema version is refused with a SpoolError."""
    path = tmp_path / "spool.db"
    Spool(str(path)).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    with pytest.raises(SpoolError, match=re.escape(
            f"spool {path}: schema version 99 is not one this co2 understands (1 or 2)")):
        Spool(str(path))


V1_BODY = (
    "<value><struct>"
    "<member><name>id</name><value><string>{id}</string></value></member>"
    "<member><name>hops</name><value><int>{hops}</int></value></member>"
    "<member><name>message</name><value><struct>"
    "<member><name>data</name><value>{data}</value></member>"
    "<member><name>host_id</name><value><string>1@10.0.0.1:2004</string></value></member>"
    "</struct></value></member>"
    "</struct></value>\n"
)


def write_v1_spool(path: Path, bodies: dict[int, bytes], owed: list[tuple[str, int]]) -> None:
    """Write a spool as schema version 1 laid it out: XML-RPC envelope bodies."""
    Spool(str(path)).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    db.executemany("INSERT INTO messages (seq, body) VALUES (?, ?)", bodies.items())
    db.executemany("INSERT INTO owed (link, seq) VALUES (?, ?)", owed)
    db.execute("INSERT INTO seen (id) VALUES ('old.1')")
    db.commit()
    db.close()


def test_a_schema_1_spool_is_rewritten_in_the_new_format(tmp_path, logged):
    """Opening a spool of schema 1 converts its XML-RPC bodies to msgpack envelopes; unreadable ones go."""
    path = tmp_path / "spool.db"
    bodies = {
        1: V1_BODY.format(id="a.1", hops=3, data="<string>hello</string>").encode(),
        2: V1_BODY.format(id="a.2", hops=0, data="<array><data><value><i8>8589934592</i8></value>"
                          "<value><dateTime.iso8601>20240102T03:04:05</dateTime.iso8601></value>"
                          "</data></array>").encode(),
        3: b"<value><string>not an envelope</string></value>\n",
    }
    write_v1_spool(path, bodies, [("peer:x", 1), ("peer:x", 2), ("node:y", 2), ("node:y", 3)])
    state = reopen(path)
    assert state.seen == ["old.1"]
    assert set(state.owed) == {"peer:x", "node:y"}
    envelopes = {seq: decode_envelope(body) for seq, body in state.owed["peer:x"]}
    assert [(e.id, e.hops) for e in envelopes.values()] == [("a.1", 3), ("a.2", 0)]
    assert decode_message(envelopes[1].message) == {"data": "hello", "host_id": "1@10.0.0.1:2004"}
    assert decode_message(envelopes[2].message)["data"] == [2**33, datetime.datetime(2024, 1, 2, 3, 4, 5)]
    assert [seq for seq, _ in state.owed["node:y"]] == [2]
    assert count_messages(path) == 2
    assert f"spool {path}: dropped 1 message(s) that could not be read" in format_events(logged)
    db = sqlite3.connect(path)
    try:
        version = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
    finally:
        db.close()
    assert version == "2"
    assert reopen(path).owed == state.owed  # and it is not converted again


def test_error_for_an_unusable_parent(tmp_path):
    """A parent directory that cannot be created is a SpoolError."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SpoolError, match=re.escape(f"spool {blocker / 'spool.db'}: ")):
        Spool(str(blocker / "spool.db"))


LINKS = st.sampled_from(["a", "b", "c"])
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.binary(max_size=8), st.lists(LINKS, max_size=3)),
        st.tuples(st.just("remove"), LINKS, st.lists(st.integers(1, 12), max_size=4)),
        st.tuples(st.just("drop"), LINKS),
        st.tuples(st.just("commit")),
    ),
    max_size=25,
)


@settings(max_examples=60, deadline=None)
@given(OPS)
def test_owed_matches_a_model(ops):
    """Any adds, removes and drops, committed and reopened, leave exactly what a plain model owes."""
    model: dict[str, dict[int, bytes]] = {}
    seq = 0
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "spool.db"
        spool = Spool(str(path))
        for op in ops:
            if op[0] == "add":
                seq += 1
                for link in op[2]:
                    model.setdefault(link, {})[seq] = op[1]
                spool.add(seq, op[1], op[2])
            elif op[0] == "remove":
                for removed in op[2]:
                    model.get(op[1], {}).pop(removed, None)
                spool.remove(op[1], op[2])
            elif op[0] == "drop":
                model.pop(op[1], None)
                spool.drop_link(op[1])
            else:
                spool.commit()
        spool.commit()
        spool.close()
        state = reopen(path)
        expected = {link: sorted(owed.items()) for link, owed in model.items() if owed}
        assert state.owed == expected
        assert count_messages(path) == len({s for owed in model.values() for s in owed})
