"""
The AMP protocol between co2 nodes, declared as command schemas.

A link is one AMP connection between two nodes.  The node that connects
sends :class:`Hello` first; until the answer arrives neither side accepts
any other command.  Then either side may send:

- :class:`Deliver` — a batch of messages; the answer acknowledges all of
  them (the receiver has taken responsibility for them);
- :class:`Announce` — which ``x_`` methods a node hosts;
- :class:`Call` — a method call routed toward the node that hosts it.

Values larger than AMP's 65,535-byte limit are carried by
:class:`Chunked`; structured values travel as XML-RPC documents, so any
value XML-RPC can carry crosses a link unchanged.  ``docs/protocol.md``
describes the same protocol for someone writing a compatible node.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from twisted.protocols import amp

from co2._message import check_message
from co2._xmlrpc import dump_value, parse_response

__all__ = [
    "MAX_CHUNK",
    "PROTOCOL_VERSION",
    "Announce",
    "BadBatch",
    "Call",
    "Chunked",
    "Deliver",
    "Envelope",
    "Hello",
    "IncompatibleVersion",
    "NotIntroduced",
    "SameNode",
    "decode_batch",
    "decode_envelope",
    "encode_batch",
    "encode_envelope",
]

PROTOCOL_VERSION = 1
"""The version of the protocol this module describes."""

MAX_CHUNK = 0xFFFF
"""The largest value one AMP key may carry."""


class Chunked(amp.Argument):
    """
    Bytes of any length.  The first 65,535 bytes go under the argument's
    own key, each further 65,535 under ``<key>.1``, ``<key>.2`` and so on.
    """

    def toBox(self, name: bytes, strings: Any, objects: Any, proto: Any) -> None:
        value = objects[name.decode("ascii")]
        if not isinstance(value, bytes):
            raise TypeError(f"{name!r} must be bytes, not {type(value).__name__}")
        strings[name] = value[:MAX_CHUNK]
        for index, start in enumerate(range(MAX_CHUNK, len(value), MAX_CHUNK), 1):
            strings[name + b".%d" % index] = value[start : start + MAX_CHUNK]

    def fromBox(self, name: bytes, strings: Any, objects: Any, proto: Any) -> None:
        parts = [strings.pop(name)]
        index = 1
        while (key := name + b".%d" % index) in strings:
            parts.append(strings.pop(key))
            index += 1
        objects[name.decode("ascii")] = b"".join(parts)


class IncompatibleVersion(Exception):
    """The two nodes share no protocol version."""


class SameNode(Exception):
    """A node connected to itself (its own address is among its peers)."""


class NotIntroduced(Exception):
    """A command other than Hello arrived before Hello."""


class BadBatch(ValueError):
    """A Deliver batch that is not an array of envelopes."""


_LINK_ERRORS: dict[type[Exception], bytes] = {NotIntroduced: b"HELLO_FIRST"}


class Hello(amp.Command):
    """
    Sent by the connecting node before anything else: who it is.  The
    answer says who the listening node is.
    """

    arguments = [
        (b"node", amp.Unicode()),
        (b"host_id", amp.Unicode()),
        (b"version", amp.Integer()),
    ]
    response = [
        (b"node", amp.Unicode()),
        (b"host_id", amp.Unicode()),
        (b"version", amp.Integer()),
    ]
    errors = {
        IncompatibleVersion: b"INCOMPATIBLE_VERSION",
        SameNode: b"SAME_NODE",
    }


class Deliver(amp.Command):
    """
    A batch of messages: ``batch`` is an XML-RPC ``methodResponse`` whose
    value is an array of envelope structs (see :func:`encode_envelope`).
    The empty answer acknowledges every message of the batch.
    """

    arguments = [(b"batch", Chunked())]
    response = []
    errors = {**_LINK_ERRORS, BadBatch: b"BAD_BATCH"}


class Announce(amp.Command):
    """
    The ``x_`` methods ``node`` hosts, as of ``version`` (larger is newer).
    ``hops`` is how many more links the announcement may cross; it holds
    for ``ttl`` seconds unless announced again.  ``methods`` is the names
    joined by newlines, UTF-8.
    """

    arguments = [
        (b"node", amp.Unicode()),
        (b"host_id", amp.Unicode()),
        (b"version", amp.Integer()),
        (b"hops", amp.Integer()),
        (b"ttl", amp.Float()),
        (b"methods", Chunked()),
    ]
    response = []
    errors = dict(_LINK_ERRORS)
    requiresAnswer = False


class Call(amp.Command):
    """
    A method call for ``node``: ``request`` is an XML-RPC ``methodCall``
    document; ``hops`` is how many more links it may cross.  The answer's
    ``response`` is an XML-RPC ``methodResponse``: the result or a fault.
    """

    arguments = [
        (b"node", amp.Unicode()),
        (b"hops", amp.Integer()),
        (b"request", Chunked()),
    ]
    response = [(b"response", Chunked())]
    errors = dict(_LINK_ERRORS)


@dataclass(frozen=True)
class Envelope:
    """One message as it travels between nodes."""

    id: str
    hops: int
    message: dict[str, Any]


_BATCH_START = b"<?xml version='1.0'?>\n<methodResponse>\n<params>\n<param>\n<value><array><data>\n"
_BATCH_END = b"</data></array></value>\n</param>\n</params>\n</methodResponse>\n"


def encode_envelope(message_id: str, hops: int, message: dict[str, Any]) -> bytes:
    """
    Encode one envelope: the struct ``{id, hops, message}`` as an XML-RPC
    ``<value>``.  Raises ``TypeError``/``ValueError``/``OverflowError``
    for a message XML-RPC cannot carry.
    """
    return dump_value({"id": message_id, "hops": hops, "message": message})


def encode_batch(envelopes: Iterable[bytes]) -> bytes:
    """Join encoded envelopes into the ``batch`` of a :class:`Deliver`."""
    return _BATCH_START + b"".join(envelopes) + _BATCH_END


def _envelope(value: object) -> Envelope:
    if not isinstance(value, dict):
        raise BadBatch("an envelope must be a struct")
    message_id, hops, message = value.get("id"), value.get("hops"), value.get("message")
    if not isinstance(message_id, str) or not message_id:
        raise BadBatch("an envelope needs a non-empty string id")
    if not isinstance(hops, int) or isinstance(hops, bool) or hops < 0:
        raise BadBatch(f"envelope {message_id!r}: hops must be an int >= 0")
    try:
        check_message(message)
    except ValueError as e:
        raise BadBatch(f"envelope {message_id!r}: {e}") from None
    assert isinstance(message, dict)
    return Envelope(message_id, hops, message)


def decode_batch(batch: bytes) -> list[Envelope]:
    """The envelopes of a :class:`Deliver` batch; raises :class:`BadBatch`."""
    try:
        values = parse_response(batch)
    except Exception as e:
        raise BadBatch(f"not an XML-RPC response: {e}") from None
    if not isinstance(values, list):
        raise BadBatch("the batch must be an array")
    return [_envelope(value) for value in values]


def decode_envelope(body: bytes) -> Envelope:
    """One envelope encoded by :func:`encode_envelope`; raises :class:`BadBatch`."""
    (envelope,) = decode_batch(encode_batch([body]))
    return envelope
