"""
XML-RPC values, checked and carried in msgpack.

co2 messages hold XML-RPC values: int (64 bits, signed), boolean, string,
double, dateTime.iso8601, base64, struct, array and nil.  Between co2
nodes they travel as msgpack (``docs/protocol.md``, "Values"):

============================  ======================================
Python                        msgpack
============================  ======================================
``None``                      nil
``bool``                      true / false
``int`` in [-2**63, 2**63)    int
``float`` (finite)            float 64
``str``                       str (UTF-8)
``bytes``, ``bytearray``,     bin
``xmlrpc.client.Binary``
``list``, ``tuple``           array
``dict`` (str keys)           map
``datetime.datetime``,        ext type :data:`DATETIME_EXT`
``xmlrpc.client.DateTime``
============================  ======================================

Decoding gives what an XML-RPC parser gives with ``use_builtin_types``:
``bytes``, naive ``datetime.datetime`` (to the second), ``list`` and
``dict``.  As with ``xmlrpc.client``, an object of another class that has a
``__dict__`` is carried as the struct of its attributes.
"""

from __future__ import annotations

import datetime
import math
import re
import struct
import threading
import xmlrpc.client
from typing import Any

import msgpack

__all__ = [
    "ASCII_NOT_XML",
    "DATETIME_EXT",
    "LONG_TEXT",
    "MAX_DEPTH",
    "array_header",
    "check_members",
    "check_text",
    "check_value",
    "pack",
    "unpack",
]

DATETIME_EXT = 1
"""The msgpack ext type of a dateTime.iso8601 value."""

MAX_DEPTH = 64
"""How many arrays and structs a value may nest (recursive values never end)."""

_isfinite = math.isfinite

_INT_MIN = -(2**63)
_INT_MAX = 2**63 - 1

# year, month, day, hour, minute, second: the fields XML-RPC's dateTime has.
_DATETIME = struct.Struct(">H5B")

# Characters XML 1.0 cannot carry at all, escaped or not.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
ASCII_NOT_XML = tuple(chr(c) for c in range(0x20) if c not in b"\t\n\r")

# From this length on, looking for each character XML cannot carry (each a
# memchr over the text, in C) is a quicker test of ASCII text than
# isprintable(), which looks each character up in a table.
LONG_TEXT = 512

_SCALARS = frozenset({bool, type(None), bytes, bytearray, datetime.datetime, xmlrpc.client.Binary})
# The types xmlrpc.client marshals; it refuses their subclasses.
_KNOWN = frozenset({dict, list, tuple, str, int, float, *_SCALARS, xmlrpc.client.DateTime})


def check_text(text: str) -> None:
    """Check that ``text`` holds only characters XML can carry; raises ``ValueError``."""
    # Each quick test passes only text XML can carry; the regex, slower,
    # has the last word (on tabs, newlines, format characters).
    if len(text) < LONG_TEXT or not text.isascii():
        if text.isprintable():
            return
    elif not any(map(text.__contains__, ASCII_NOT_XML)):
        return
    found = _NOT_XML.search(text)
    if found is not None:
        raise ValueError(
            f"string holds {found.group()!r} at {found.start()}, which XML-RPC cannot carry; "
            "send it as bytes (base64) instead"
        )


def _check(value: Any, depth: int) -> None:
    kind = type(value)
    if kind is dict:
        if depth >= MAX_DEPTH:
            raise ValueError(f"value nests deeper than {MAX_DEPTH} levels or holds itself")
        for key in value:
            if type(key) is not str:
                raise TypeError(f"struct keys must be strings, not {type(key).__name__}")
            if len(key) >= LONG_TEXT or not key.isprintable():
                check_text(key)
        _check_items(value.values(), depth + 1)
    elif kind is list or kind is tuple:
        if depth >= MAX_DEPTH:
            raise ValueError(f"value nests deeper than {MAX_DEPTH} levels or holds itself")
        _check_items(value, depth + 1)
    else:
        _check_items((value,), depth)


def _check_items(items: Any, depth: int) -> None:
    # The leaves a value is mostly made of are checked here, in the loop,
    # without a call each: this walk is paid for every message.
    for item in items:
        kind = type(item)
        if kind is str:
            if len(item) >= LONG_TEXT or not item.isprintable():
                check_text(item)
        elif kind is int:
            if not _INT_MIN <= item <= _INT_MAX:
                raise ValueError(f"integer {item} does not fit in 64 bits")
        elif kind is float:
            if not _isfinite(item):
                raise ValueError(f"XML-RPC has no double for {item!r}")
        elif kind is dict or kind is list or kind is tuple:
            _check(item, depth)
        elif kind in _SCALARS:
            pass
        elif kind is xmlrpc.client.DateTime:
            _datetime_of(item)
        else:
            _check(_attributes(item), depth)


def _attributes(value: Any) -> dict[str, Any]:
    """The struct ``xmlrpc.client`` makes of an object of a class it does not know."""
    kind = type(value)
    if not hasattr(value, "__dict__") or any(base in _KNOWN for base in kind.__mro__):
        raise TypeError(f"XML-RPC cannot carry {kind.__name__} objects")
    return vars(value)


def _datetime_of(value: xmlrpc.client.DateTime) -> datetime.datetime:
    try:
        return datetime.datetime.strptime(str(value.value), "%Y%m%dT%H:%M:%S")
    except ValueError:
        raise ValueError(f"DateTime {value.value!r} is not of the form YYYYMMDDTHH:MM:SS") from None


def check_value(value: Any) -> None:
    """
    Check that ``value`` is an XML-RPC value co2 can carry.

    Raises ``TypeError`` for a type XML-RPC has not (a set, a struct key that
    is not a string) and ``ValueError`` for an int beyond 64 bits, NaN or
    infinity, a string holding a character XML cannot carry, a malformed
    ``DateTime``, or nesting deeper than :data:`MAX_DEPTH` (which is what a
    value that holds itself does).
    """
    _check(value, 0)


def check_members(struct: dict[str, Any]) -> None:
    """
    :func:`check_value` for each member of ``struct`` (such as a message),
    its keys included: each value may nest :data:`MAX_DEPTH` deep.
    """
    _check(struct, -1)


def _datetime_ext(value: datetime.datetime) -> msgpack.ExtType:
    fields = _DATETIME.pack(value.year, value.month, value.day, value.hour, value.minute, value.second)
    return msgpack.ExtType(DATETIME_EXT, fields)


def _default(value: Any) -> Any:
    """What msgpack cannot pack by itself, as something it can."""
    kind = type(value)
    if kind is datetime.datetime:
        return _datetime_ext(value)
    if kind is xmlrpc.client.DateTime:
        return _datetime_ext(_datetime_of(value))
    if kind is xmlrpc.client.Binary:
        return value.data
    return _attributes(value)


# A packer keeps a buffer between calls, so each thread has its own.
_packers = threading.local()


def _packer() -> msgpack.Packer:
    packer = _packers.packer = msgpack.Packer(default=_default, use_bin_type=True, datetime=False)
    return packer


def pack(value: Any) -> bytes:
    """
    ``value`` (already checked by :func:`check_value`) in msgpack.  Safe
    from any thread.
    """
    try:
        packer = _packers.packer
    except AttributeError:
        packer = _packer()
    return packer.pack(value)


def _ext_hook(code: int, data: bytes) -> datetime.datetime:
    if code != DATETIME_EXT:
        raise ValueError(f"msgpack ext type {code} is not one co2 knows")
    if len(data) != _DATETIME.size:
        raise ValueError(f"a dateTime holds {_DATETIME.size} bytes, not {len(data)}")
    return datetime.datetime(*_DATETIME.unpack(data))


def unpack(data: bytes, use_list: bool = True) -> Any:
    """
    The value msgpack ``data`` holds; arrays are lists, or tuples when not
    ``use_list``.  Raises ``ValueError`` for what is not one complete
    msgpack value, a map key that is not a string (or bytes), an unknown
    ext type or a bad dateTime.  The value is not otherwise checked (see
    :func:`check_value`).  No length in ``data`` can make it allocate more
    than ``data`` is long.
    """
    return msgpack.unpackb(data, ext_hook=_ext_hook, raw=False, strict_map_key=True, use_list=use_list)


def array_header(count: int) -> bytes:
    """The msgpack header of an array of ``count`` items; the items follow it."""
    if count < 16:
        return bytes((0x90 | count,))
    if count < 1 << 16:
        return b"\xdc" + count.to_bytes(2, "big")
    return b"\xdd" + count.to_bytes(4, "big")
