"""
A relay plugin that lets through only messages whose ``data`` has a given
shape, and drops the rest.

Name it in a node's config, with its options::

    relay_plugins = ["relay.shape"]
    relay_plugin_config = {
        "relay.shape": {"accept": ["struct"], "require": ["temperature"]},
    }

Options:

``accept``
    The XML-RPC types ``data`` may have, out of ``int`` (``i8`` included),
    ``boolean``, ``string``, ``double``, ``dateTime.iso8601``, ``base64``,
    ``struct``, ``array`` and ``nil``.  By default all of them.  Only the
    type of ``data`` itself counts, not of what it holds.  Data of a Python
    type XML-RPC cannot carry has no type name and is always dropped.

``require``
    Keys that ``data`` must hold.  When given, ``data`` must be a struct, so
    ``accept`` must list ``struct``.

Any other option, or a value of the wrong kind, stops the node at start-up
with an error that names the option.
"""

from __future__ import annotations

import datetime
import xmlrpc.client
from collections.abc import Collection, Mapping
from typing import Any

from zope.interface import implementer

from relay._plugins import IRelayPlugin

__all__ = ["TYPE_NAMES", "ShapeFilter", "relay_plugin", "type_name"]

TYPE_NAMES = (
    "int", "boolean", "string", "double", "dateTime.iso8601", "base64", "struct", "array", "nil",
)
"""The XML-RPC type names ``accept`` may list."""

# bool before int: True is an int to Python but a boolean to XML-RPC.
_PYTHON_TYPES: tuple[tuple[type | tuple[type, ...], str], ...] = (
    (bool, "boolean"),
    (int, "int"),
    (str, "string"),
    (float, "double"),
    ((datetime.datetime, xmlrpc.client.DateTime), "dateTime.iso8601"),
    ((bytes, bytearray, xmlrpc.client.Binary), "base64"),
    (dict, "struct"),
    ((list, tuple), "array"),
    (type(None), "nil"),
)


def type_name(value: object) -> str | None:
    """The XML-RPC type name of ``value``, or ``None`` if XML-RPC has none for it."""
    for python_type, name in _PYTHON_TYPES:
        if isinstance(value, python_type):
            return name
    return None


def _names(option: str, value: object) -> tuple[str, ...]:
    """``value`` checked to be a list of strings."""
    if (
        isinstance(value, str | bytes | Mapping)
        or not isinstance(value, Collection)
        or not all(isinstance(v, str) for v in value)
    ):
        raise ValueError(f"the shape relay plugin's {option!r} must be a list of strings, not {value!r}")
    return tuple(value)


@implementer(IRelayPlugin)
class ShapeFilter:
    """
    Passes the messages whose ``data`` is of a type in ``accept`` and, when
    ``require`` is not empty, is a struct holding every key of ``require``;
    drops the others.  ``passed`` and ``dropped`` count them.

    Raises ``ValueError`` naming the option when either is not a list of
    strings, ``accept`` lists an unknown type name or nothing at all, or
    ``require`` is given while ``accept`` leaves out ``struct``.
    """

    name = "shape"

    def __init__(self, accept: Collection[str] = TYPE_NAMES, require: Collection[str] = ()) -> None:
        accept = _names("accept", accept)
        require = _names("require", require)
        unknown = [n for n in accept if n not in TYPE_NAMES]
        if unknown:
            raise ValueError(
                f"the shape relay plugin's 'accept' lists unknown type names {unknown}; "
                f"use some of {list(TYPE_NAMES)}"
            )
        if not accept:
            raise ValueError(
                "the shape relay plugin's 'accept' is empty, so it would drop every message; "
                "list at least one type name, or leave 'accept' out to allow all"
            )
        if require and "struct" not in accept:
            raise ValueError(
                "the shape relay plugin's 'require' needs struct data, "
                "but 'accept' does not list 'struct'"
            )
        self.accept = frozenset(accept)
        self.require = tuple(require)
        self.passed = 0
        self.dropped = 0

    def matches(self, data: object) -> bool:
        """Whether a message holding ``data`` passes."""
        if type_name(data) not in self.accept:
            return False
        if not self.require:
            return True
        return isinstance(data, dict) and all(key in data for key in self.require)

    def inspect(self, message: dict[str, Any], source: str) -> dict[str, Any] | None:
        """Return ``message`` if its ``data`` matches, else ``None``; count it."""
        if self.matches(message["data"]):
            self.passed += 1
            return message
        self.dropped += 1
        return None

    def __repr__(self) -> str:
        return f"<ShapeFilter accept={sorted(self.accept)} require={list(self.require)}>"


def relay_plugin(options: Mapping[str, Any]) -> ShapeFilter:
    """
    A :class:`ShapeFilter` configured by ``options`` (``accept``, ``require``).

    Raises ``ValueError`` naming the option that is unknown or of the wrong kind.
    """
    unknown = sorted(set(options) - {"accept", "require"})
    if unknown:
        raise ValueError(
            f"the shape relay plugin has no option {', '.join(map(repr, unknown))}; "
            "its options are 'accept' and 'require'"
        )
    return ShapeFilter(**options)
