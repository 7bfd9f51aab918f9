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
:class:`Chunked`.  Messages travel in msgpack (:mod:`co2._values`), which
carries every value XML-RPC can; routed calls travel as XML-RPC documents.
``docs/protocol.md`` describes the same protocol for someone writing a
compatible node.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

from twisted.protocols import amp

from co2._errors import ProtocolError
from co2._values import array_header, pack, unpack

__all__ = [
    "MAX_CHUNK",
    "PROTOCOL_VERSION",
    "Announce",
    "BadArguments",
    "BadBatch",
    "Call",
    "Chunked",
    "Deliver",
    "Envelope",
    "Hello",
    "IncompatibleVersion",
    "NodeIdTaken",
    "NotIntroduced",
    "SameNode",
    "Unauthorized",
    "UnexpectedHello",
    "WindowExceeded",
    "decode_batch",
    "decode_envelope",
    "encode_batch",
    "encode_envelope",
]

PROTOCOL_VERSION = 2
"""The version of the protocol this module describes, the only one it speaks."""

MAX_CHUNK = 0xFFFF
"""The largest value one AMP key may carry."""


def _chunks(name: bytes, value: bytes) -> Iterator[tuple[bytes, bytes | memoryview]]:
    """
    The keys and values of a :class:`Chunked` argument ``name`` holding
    ``value``: views of it, which the box joins once, rather than copies.
    """
    if len(value) <= MAX_CHUNK:
        yield name, value
        return
    view = memoryview(value)
    yield name, view[:MAX_CHUNK]
    for index, start in enumerate(range(MAX_CHUNK, len(value), MAX_CHUNK), 1):
        yield name + b".%d" % index, view[start : start + MAX_CHUNK]


class Chunked(amp.Argument):
    """
    Bytes of any length.  The first 65,535 bytes go under the argument's
    own key, each further 65,535 under ``<key>.1``, ``<key>.2`` and so on.
    """

    def toBox(self, name: bytes, strings: Any, objects: Any, proto: Any) -> None:
        value = objects.get(name.decode("ascii"))
        if value is None and self.optional:
            return
        if not isinstance(value, bytes):
            raise TypeError(f"{name!r} must be bytes, not {type(value).__name__}")
        strings.update(_chunks(name, value))

    def fromBox(self, name: bytes, strings: Any, objects: Any, proto: Any) -> None:
        if name not in strings and self.optional:
            objects[name.decode("ascii")] = None
            return
        parts = [strings.pop(name)]
        index = 1
        while (key := name + b".%d" % index) in strings:
            parts.append(strings.pop(key))
            index += 1
        objects[name.decode("ascii")] = b"".join(parts)


class IncompatibleVersion(ProtocolError):
    """The two nodes do not speak the same protocol version."""


class SameNode(ProtocolError):
    """A node connected to itself (its own address is among its peers)."""


class NotIntroduced(ProtocolError):
    """A command other than Hello arrived before Hello."""


class BadBatch(ProtocolError, ValueError):
    """A Deliver batch that is not an array of well-formed envelopes."""


class WindowExceeded(ProtocolError):
    """A peer sent a Deliver while as many of its batches as the window allows were unanswered."""


class BadArguments(ProtocolError, ValueError):
    """
    A command whose arguments are missing, cannot be read as their types,
    or are malformed (such as a node id or ``host_id`` of the wrong form).
    The connection is closed after the answer.
    """


class UnexpectedHello(ProtocolError):
    """A Hello on a link already introduced, or sent by the listening side."""


class Unauthorized(ProtocolError):
    """
    The listening node requires credentials and the Hello gave none, or
    wrong ones.  The connection is closed after the answer.
    """


class NodeIdTaken(ProtocolError):
    """
    The Hello claims the node id of a link already up, and did not prove
    the same identity as that link: the listening node requires
    credentials, and they name another user than those of the link that
    holds the node id.  That link stays up; this connection is closed
    after the answer.  (A node that requires no credentials cannot tell
    peers apart: there a new Hello replaces the link of its node id.)
    """


_LINK_ERRORS: dict[type[Exception], bytes] = {NotIntroduced: b"HELLO_FIRST"}
_FATAL_ERRORS: dict[type[Exception], bytes] = {BadArguments: b"BAD_ARGUMENTS"}


class Hello(amp.Command):
    """
    Sent by the connecting node before anything else: who it is and,
    when the listening node requires it, the user name and password that
    prove it.  The answer says who the listening node is.

    A Hello with the node id of a link already up replaces that link
    when it proves the same user name as that link did (or when the
    listening node requires no credentials); otherwise it is refused
    with :class:`NodeIdTaken`.
    """

    arguments = [
        (b"node", amp.Unicode()),
        (b"host_id", amp.Unicode()),
        (b"version", amp.Integer()),
        (b"username", amp.Unicode(optional=True)),
        (b"password", amp.Unicode(optional=True)),
    ]
    response = [
        (b"node", amp.Unicode()),
        (b"host_id", amp.Unicode()),
        (b"version", amp.Integer()),
    ]
    errors = {
        IncompatibleVersion: b"INCOMPATIBLE_VERSION",
        SameNode: b"SAME_NODE",
        UnexpectedHello: b"UNEXPECTED_HELLO",
    }
    fatalErrors = {**_FATAL_ERRORS, Unauthorized: b"UNAUTHORIZED", NodeIdTaken: b"NODE_ID_TAKEN"}


class Deliver(amp.Command):
    """
    A batch of messages: ``batch`` is a msgpack array of envelopes (see
    :func:`encode_batch`).  The empty answer acknowledges every message of
    the batch.
    """

    arguments = [(b"batch", Chunked())]
    response = []
    errors = {**_LINK_ERRORS, BadBatch: b"BAD_BATCH"}
    fatalErrors = {**_FATAL_ERRORS, WindowExceeded: b"WINDOW_EXCEEDED"}


class Announce(amp.Command):
    """
    The ``x_`` methods ``node`` hosts, as of ``version`` (larger is newer).
    ``hops`` is how many more links the announcement may cross; it holds
    for ``ttl`` seconds unless announced again.  ``methods`` is the names
    joined by newlines, UTF-8.  ``neighbours``, the node ids at the other
    end of ``node``'s up links joined by newlines, draws the map that
    messages are broadcast over (:mod:`relay._tree`); a node that leaves
    it out is flooded to, as before.  ``profile`` is what ``node`` says of
    itself for ``/network.json`` (:mod:`relay._profile`), passed on as it
    came.
    """

    arguments = [
        (b"node", amp.Unicode()),
        (b"host_id", amp.Unicode()),
        (b"version", amp.Integer()),
        (b"hops", amp.Integer()),
        (b"ttl", amp.Float()),
        (b"methods", Chunked()),
        (b"neighbours", Chunked(optional=True)),
        (b"profile", Chunked(optional=True)),
    ]
    response = []
    errors = dict(_LINK_ERRORS)
    requiresAnswer = False
    fatalErrors = dict(_FATAL_ERRORS)


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
    fatalErrors = dict(_FATAL_ERRORS)


class Envelope(NamedTuple):
    """One message as it travels between nodes."""

    id: str
    """The message id."""
    hops: int
    """How many more links the message may cross after this one."""
    message: bytes
    """The message, encoded by :func:`co2._message.encode_message`."""


def encode_envelope(message_id: str, hops: int, message: bytes) -> bytes:
    """
    Encode one envelope: the msgpack array ``[id, hops, message]``, where
    ``message`` is an encoded message, carried as bin.
    """
    return pack((message_id, hops, message))


def encode_batch(envelopes: Sequence[bytes]) -> bytes:
    """
    Join encoded envelopes into the ``batch`` of a :class:`Deliver`: each
    is one msgpack value, so the batch is an array header and them.
    """
    return b"".join((array_header(len(envelopes)), *envelopes))


def decode_batch(batch: bytes) -> Sequence[tuple[str, int, bytes]]:
    """
    The envelopes of a :class:`Deliver` batch, each ``(id, hops,
    message)``.  Raises :class:`BadBatch` naming the first thing wrong
    with the batch or an envelope.  The messages are left as they came
    (bytes): a relay passes them on unopened, and the node that hands one
    to its plugins checks it then, once (:func:`co2._message.read_message`).
    """
    try:
        envelopes = unpack(batch, use_list=False)
    except ValueError as e:
        raise BadBatch(f"the batch is not one msgpack value: {e}") from None
    if type(envelopes) is not tuple:
        raise BadBatch(f"the batch must be an array of envelopes, not {_kind(envelopes)}")
    for envelope in envelopes:
        if type(envelope) is not tuple or len(envelope) != 3:
            raise _bad_envelope(envelope)
        message_id, hops, message = envelope
        if type(message_id) is not str or type(hops) is not int or type(message) is not bytes:
            raise _bad_envelope(envelope)
        if not message_id or hops < 0:
            raise _bad_envelope(envelope)
    return envelopes


def _kind(value: object) -> str:
    return "an array" if type(value) is tuple else type(value).__name__


def _bad_envelope(envelope: object) -> BadBatch:
    """What is wrong with an envelope that is not ``[id, hops, message]``."""
    if type(envelope) is not tuple or len(envelope) != 3:
        return BadBatch(f"an envelope must be an array of 3 items, not {_kind(envelope)}"
                        + (f" of {len(envelope)}" if type(envelope) is tuple else ""))
    message_id, hops, message = envelope
    if type(message_id) is not str or not message_id:
        return BadBatch(f"an envelope's id must be a non-empty string, not {message_id!r}")
    if type(hops) is not int or hops < 0:
        return BadBatch(f"envelope {message_id!r}: hops must be an int >= 0, not {hops!r}")
    return BadBatch(f"envelope {message_id!r}: the message must be bin, not {_kind(message)}")


def decode_envelope(body: bytes) -> Envelope:
    """One envelope encoded by :func:`encode_envelope`, checked; raises :class:`BadBatch`."""
    (envelope,) = decode_batch(encode_batch([body]))
    return Envelope(*envelope)
