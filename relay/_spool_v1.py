"""
Spools written by co2 versions whose protocol was version 1 (spool schema
version 1): there a message body was the envelope as an XML-RPC
``<value>`` struct.  :func:`upgrade_bodies` rewrites them in the msgpack
envelope of protocol version 2, in place.
"""

from __future__ import annotations

import sqlite3
import xmlrpc.client

from twisted.logger import Logger

from co2._message import check_message, encode_message
from co2._values import check_members
from co2._xmlrpc import parse_response
from co2.protocol import encode_envelope

__all__ = ["envelope_from_v1", "upgrade_bodies"]

_log = Logger(namespace="co2.relay")

_START = b"<?xml version='1.0'?>\n<methodResponse>\n<params>\n<param>\n"
_END = b"</param>\n</params>\n</methodResponse>\n"


def envelope_from_v1(body: bytes) -> bytes:
    """
    The protocol-2 envelope of ``body``, an envelope as schema 1 stored it.
    Raises ``ValueError`` for a body that is not one.
    """
    try:
        value = parse_response(_START + body + _END)
    except xmlrpc.client.Fault as fault:
        raise ValueError(f"a fault, not an envelope: {fault.faultString}") from None
    if not isinstance(value, dict):
        raise ValueError(f"an envelope is a struct, not {type(value).__name__}")
    message_id, hops, message = value.get("id"), value.get("hops"), value.get("message")
    if type(message_id) is not str or not message_id:
        raise ValueError("an envelope needs a non-empty string id")
    if type(hops) is not int or hops < 0:
        raise ValueError(f"envelope {message_id!r}: hops must be an int >= 0")
    try:
        check_members(check_message(message))
    except TypeError as e:
        raise ValueError(f"envelope {message_id!r}: {e}") from None
    assert isinstance(message, dict)
    return encode_envelope(message_id, hops, encode_message(message))


def upgrade_bodies(db: sqlite3.Connection, path: str) -> None:
    """
    Rewrite every body of the schema-1 spool open in ``db`` (inside the
    caller's transaction).  A body that cannot be read is dropped, with
    what owed it, and counted in a warning naming ``path``.
    """
    converted: list[tuple[bytes, int]] = []
    lost: list[tuple[int]] = []
    for seq, body in db.execute("SELECT seq, body FROM messages").fetchall():
        try:
            converted.append((envelope_from_v1(bytes(body)), seq))
        except ValueError:
            lost.append((seq,))
    db.executemany("UPDATE messages SET body = ? WHERE seq = ?", converted)
    db.executemany("DELETE FROM owed WHERE seq = ?", lost)
    db.executemany("DELETE FROM messages WHERE seq = ?", lost)
    _log.info("spool {path}: rewrote {count} message(s) in the format of protocol version 2",
              path=path, count=len(converted))
    if lost:
        _log.warn("spool {path}: dropped {count} message(s) that could not be read", path=path,
                  count=len(lost))
