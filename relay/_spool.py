"""
The spool: what a node owes its peers, kept on disk across restarts.

When the ``spool`` setting names a file, a node keeps in an SQLite database
there the messages each link still owes its peer (not yet acknowledged), the
ids of the messages it has already seen, and its own stable identity.  The
database runs in WAL mode with ``synchronous=NORMAL``: once :meth:`Spool.commit`
returns, a crash of the process (even ``kill -9``) loses nothing.

Writes are grouped: every write method works inside an open transaction that
:meth:`Spool.commit` ends, so a router commits once per reactor turn.  The
spool is used from the reactor thread only.

A message body is stored as its link sends it: an envelope encoded by
:func:`co2.protocol.encode_envelope`.  A spool of the older layout (schema
version 1, whose bodies were XML-RPC) is rewritten when it is opened.

It also names the links peers made to the node (``node:`` links), owing
anything or not: a node that restarts keeps queueing messages for a peer
that has not reconnected yet, as it did before it stopped.

The spool also holds the plugins' ``self.state`` (a :class:`co2._state.StateStore`):
packed values by plugin and key, written inside the same transaction as the
rest, so they are committed with the turn that wrote them.  The ``state``
and ``links`` tables are created when a spool without them is opened:
spools written before they existed open as they are, and a co2 that does
not know them leaves them alone.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from relay._errors import RelayError
from relay._spool_v1 import upgrade_bodies

__all__ = ["Spool", "SpoolError", "SpoolState"]

SCHEMA_VERSION = 2
"""The layout written now: a message body is a protocol-2 envelope (msgpack)."""

_UPGRADABLE = "1"
"""The older layout that is rewritten in place when opened (see ``relay/_spool_v1.py``)."""

_STATE = (
    "CREATE TABLE IF NOT EXISTS state (namespace TEXT NOT NULL, key TEXT NOT NULL,"
    " value BLOB NOT NULL, PRIMARY KEY (namespace, key)) WITHOUT ROWID"
)
"""The plugins' values: each plugin's namespace is ``str(plugin)``."""

_LINKS = "CREATE TABLE IF NOT EXISTS links (link TEXT PRIMARY KEY) WITHOUT ROWID"
"""The links peers made to this node that it still queues messages for."""

_SCHEMA = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE messages (seq INTEGER PRIMARY KEY, body BLOB NOT NULL)",
    "CREATE TABLE owed (link TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (link, seq))",
    "CREATE INDEX owed_seq ON owed (seq)",
    "CREATE TABLE seen (n INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE)",
    # A body goes with the last link that owes it, whichever way that row is deleted.
    "CREATE TRIGGER owed_gone AFTER DELETE ON owed"
    " WHEN NOT EXISTS (SELECT 1 FROM owed WHERE seq = OLD.seq)"
    " BEGIN DELETE FROM messages WHERE seq = OLD.seq; END",
    _STATE,
    _LINKS,
)


class SpoolError(RelayError):
    """
    The spool file cannot be opened, created or read.

    ``str()`` names the path and the problem.
    """


@dataclass
class SpoolState:
    """Everything a node reads back from its spool when it starts."""

    node_id: str
    """This node's stable identity."""
    seen: list[str] = field(default_factory=list)
    """Message ids already seen, oldest first (at most ``seen_limit``)."""
    owed: dict[str, list[tuple[int, bytes]]] = field(default_factory=dict)
    """Link key -> ``(seq, body)`` pairs it still owes, by ascending ``seq``."""
    next_seq: int = 1
    """One more than the highest ``seq`` ever stored (1 for a new spool)."""
    links: list[str] = field(default_factory=list)
    """The links noted by :meth:`Spool.add_link`, owing anything or not, sorted."""


class Spool:
    """
    The SQLite database at ``path`` holding what a node owes and has seen.

    Opens the database, or creates it (and missing parent directories) with
    a new random ``node_id``.  Raises :class:`SpoolError` when the path
    cannot be used: a directory, a file that is not a co2 spool, a spool
    written by a newer co2, or an OS error.  Any later database failure is
    raised as :class:`SpoolError` too.
    """

    def __init__(self, path: str, seen_limit: int = 100_000) -> None:
        self.path = path
        self.seen_limit = seen_limit
        self._closed = False
        self._max_seq = 0
        self._max_seq_dirty = False
        self._seen_dirty = False
        try:
            parent = os.path.dirname(os.path.abspath(path))
            os.makedirs(parent, exist_ok=True)
        except OSError as e:
            raise SpoolError(f"spool {path}: {e.strerror or e}") from e
        with self._guard():
            self._db = sqlite3.connect(path, isolation_level=None)
        try:
            with self._guard():
                self._open()
        except SpoolError:
            self._db.close()
            raise

    def _open(self) -> None:
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        if not self._tables():
            self._create()
        if "meta" not in self._tables():
            raise SpoolError(f"spool {self.path}: the database is not a co2 spool")
        meta = self._meta()
        if meta.get("schema_version") == _UPGRADABLE:
            self._upgrade()
            meta = self._meta()
        version = meta.get("schema_version")
        if version != str(SCHEMA_VERSION):
            raise SpoolError(
                f"spool {self.path}: schema version {version} is not one this co2 understands "
                f"({_UPGRADABLE} or {SCHEMA_VERSION}); run the co2 that wrote it or choose a new "
                "spool path"
            )
        tables = self._tables()
        if "state" not in tables:
            self._db.execute(_STATE)
        if "links" not in tables:
            self._db.execute(_LINKS)
        self._max_seq = int(meta.get("max_seq", "0"))

    def _meta(self) -> dict[str, str]:
        return dict(self._db.execute("SELECT key, value FROM meta").fetchall())

    def _upgrade(self) -> None:
        """Rewrite a spool of the older layout, unless another opener did so first."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            if self._meta().get("schema_version") == _UPGRADABLE:
                upgrade_bodies(self._db, self.path)
                self._db.execute(
                    "UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),)
                )
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise

    def _tables(self) -> set[str]:
        """The names of the tables, indexes and triggers in the database."""
        return {row[0] for row in self._db.execute("SELECT name FROM sqlite_master")}

    def _create(self) -> None:
        """Lay out a new spool, unless another opener did so first."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            if not self._tables():
                for statement in _SCHEMA:
                    self._db.execute(statement)
                self._db.executemany(
                    "INSERT INTO meta (key, value) VALUES (?, ?)",
                    [
                        ("schema_version", str(SCHEMA_VERSION)),
                        ("node_id", secrets.token_hex(8)),
                        ("max_seq", "0"),
                    ],
                )
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """Raise any database or OS failure as a :class:`SpoolError` naming the path."""
        try:
            yield
        except (sqlite3.Error, OSError) as e:
            raise SpoolError(f"spool {self.path}: {e}") from e

    def _write(self) -> sqlite3.Connection:
        """The connection, inside a transaction (begun now if none is open)."""
        if not self._db.in_transaction:
            self._db.execute("BEGIN")
        return self._db

    @property
    def node_id(self) -> str:
        """This node's stable identity."""
        with self._guard():
            row = self._db.execute("SELECT value FROM meta WHERE key = 'node_id'").fetchone()
        return str(row[0])

    def load(self) -> SpoolState:
        """Read back the node's identity, the ids it has seen and what each link owes."""
        with self._guard():
            db = self._db
            (node_id,) = db.execute("SELECT value FROM meta WHERE key = 'node_id'").fetchone()
            seen = [
                row[0]
                for row in db.execute(
                    "SELECT id FROM (SELECT n, id FROM seen ORDER BY n DESC LIMIT ?) ORDER BY n",
                    (self.seen_limit,),
                )
            ]
            owed: dict[str, list[tuple[int, bytes]]] = {}
            rows = db.execute(
                "SELECT owed.link, owed.seq, messages.body FROM owed "
                "JOIN messages ON messages.seq = owed.seq ORDER BY owed.link, owed.seq"
            )
            for link, seq, body in rows:
                owed.setdefault(link, []).append((seq, bytes(body)))
            (highest,) = db.execute("SELECT MAX(seq) FROM messages").fetchone()
            links = [str(row[0]) for row in db.execute("SELECT link FROM links ORDER BY link")]
        return SpoolState(str(node_id), seen, owed, max(self._max_seq, highest or 0) + 1, links)

    def add(self, seq: int, body: bytes, links: Iterable[str]) -> None:
        """
        Record that each of ``links`` owes the message ``seq``.

        The body is stored once however many links owe it; with no links
        nothing is stored.  Adding a ``seq`` already stored adds the links to
        it and keeps the newest body.
        """
        self.add_many([(seq, body, links)])

    def add_many(self, messages: Iterable[tuple[int, bytes, Iterable[str]]]) -> None:
        """:meth:`add` each ``(seq, body, links)`` of ``messages``, in order."""
        bodies: list[tuple[int, bytes]] = []
        owed: list[tuple[str, int]] = []
        for seq, body, links in messages:
            rows = [(link, seq) for link in links]
            if rows:
                bodies.append((seq, body))
                owed += rows
        if not bodies:
            return
        with self._guard():
            db = self._write()
            db.executemany(
                "INSERT INTO messages (seq, body) VALUES (?, ?) "
                "ON CONFLICT (seq) DO UPDATE SET body = excluded.body",
                bodies,
            )
            db.executemany("INSERT OR IGNORE INTO owed (link, seq) VALUES (?, ?)", owed)
        highest = max(seq for seq, _ in bodies)
        if highest > self._max_seq:
            self._max_seq = highest
            self._max_seq_dirty = True

    def remove(self, link: str, seqs: Iterable[int]) -> None:
        """Forget that ``link`` owes ``seqs``; a body no link owes any more goes too."""
        rows = [(link, seq) for seq in seqs]
        if rows:
            with self._guard():
                self._write().executemany("DELETE FROM owed WHERE link = ? AND seq = ?", rows)

    def add_link(self, link: str) -> None:
        """Note that ``link`` exists, so that it is known again after a restart."""
        with self._guard():
            self._write().execute("INSERT OR IGNORE INTO links (link) VALUES (?)", (link,))

    def drop_link(self, link: str) -> None:
        """Forget ``link`` and everything it owes; bodies no link owes any more go too."""
        with self._guard():
            db = self._write()
            db.execute("DELETE FROM owed WHERE link = ?", (link,))
            db.execute("DELETE FROM links WHERE link = ?", (link,))

    def mark_seen(self, ids: Iterable[str]) -> None:
        """
        Record message ids as seen.

        An id already recorded keeps its place.  Only the newest
        ``seen_limit`` ids are kept; older ones are trimmed at the next commit.
        """
        rows = [(i,) for i in ids]
        if rows:
            with self._guard():
                self._write().executemany("INSERT OR IGNORE INTO seen (id) VALUES (?)", rows)
            self._seen_dirty = True

    # The plugins' state (co2._state.StateStore): reads see this process's
    # writes not yet committed, as they share the connection.

    def state_get(self, namespace: str, key: str) -> bytes | None:
        """The packed value of ``key`` in ``namespace``, or None."""
        with self._guard():
            row = self._db.execute(
                "SELECT value FROM state WHERE namespace = ? AND key = ?", (namespace, key)
            ).fetchone()
        return None if row is None else bytes(row[0])

    def state_put(self, namespace: str, key: str, value: bytes) -> None:
        """Set ``key`` of ``namespace`` to the packed ``value``, until the next commit."""
        with self._guard():
            self._write().execute(
                "INSERT INTO state (namespace, key, value) VALUES (?, ?, ?) "
                "ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value",
                (namespace, key, value),
            )

    def state_delete(self, namespace: str, key: str) -> bool:
        """Remove ``key`` of ``namespace``; False when there was none."""
        with self._guard():
            cursor = self._write().execute(
                "DELETE FROM state WHERE namespace = ? AND key = ?", (namespace, key)
            )
        return cursor.rowcount > 0

    def state_keys(self, namespace: str) -> list[str]:
        """The keys of ``namespace``, sorted."""
        with self._guard():
            rows = self._db.execute(
                "SELECT key FROM state WHERE namespace = ? ORDER BY key", (namespace,)
            ).fetchall()
        return [str(row[0]) for row in rows]

    def state_items(self, namespace: str) -> list[tuple[str, bytes]]:
        """The keys of ``namespace`` with their packed values, sorted by key."""
        with self._guard():
            rows = self._db.execute(
                "SELECT key, value FROM state WHERE namespace = ? ORDER BY key", (namespace,)
            ).fetchall()
        return [(str(key), bytes(value)) for key, value in rows]

    def state_count(self, namespace: str) -> int:
        """How many keys ``namespace`` holds."""
        with self._guard():
            (count,) = self._db.execute(
                "SELECT COUNT(*) FROM state WHERE namespace = ?", (namespace,)
            ).fetchone()
        return int(count)

    def state_clear(self, namespace: str) -> None:
        """Remove every key of ``namespace``."""
        with self._guard():
            self._write().execute("DELETE FROM state WHERE namespace = ?", (namespace,))

    def commit(self) -> None:
        """Make every write since the last commit durable; cheap when there is none."""
        if self._closed or not self._db.in_transaction:
            return
        with self._guard():
            if self._max_seq_dirty:
                self._db.execute("UPDATE meta SET value = ? WHERE key = 'max_seq'", (str(self._max_seq),))
            if self._seen_dirty:
                # Ids only ever go in at the top and out at the bottom, so the
                # rowids are contiguous and this keeps exactly the newest ones.
                self._db.execute(
                    "DELETE FROM seen WHERE n <= (SELECT MAX(n) FROM seen) - ?", (self.seen_limit,)
                )
            self._db.execute("COMMIT")
        self._max_seq_dirty = self._seen_dirty = False

    def close(self) -> None:
        """Commit and close the database; closing again does nothing."""
        if self._closed:
            return
        try:
            self.commit()
        finally:
            self._closed = True
            self._db.close()
