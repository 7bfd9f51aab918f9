"""co2.protocol: the Chunked argument and the Deliver batch encoding (version 2, msgpack)."""

from __future__ import annotations

import functools
import re

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import xmlrpc_values
from twisted.protocols import amp

from co2._message import decode_message, encode_message, read_message
from co2._values import DATETIME_EXT
from co2.protocol import (
    MAX_CHUNK,
    BadBatch,
    Chunked,
    Envelope,
    decode_batch,
    decode_envelope,
    encode_batch,
    encode_envelope,
)


class Blob(amp.Command):
    """A command with one Chunked argument between two ordinary ones."""

    arguments = [(b"before", amp.Integer()), (b"blob", Chunked()), (b"after", amp.Unicode())]
    response = []


def through_a_box(value: bytes) -> tuple[dict[bytes, bytes], dict[str, object]]:
    """Serialise ``value`` as Blob's argument, parse the bytes back; the box and the arguments."""
    box = Blob.makeArguments({"before": 7, "blob": value, "after": "end"}, None)
    wire = box.serialize()
    (parsed,) = amp.parseString(wire)
    return parsed, Blob.parseArguments(parsed, None)


@pytest.mark.parametrize("size", [0, 1, MAX_CHUNK, MAX_CHUNK + 1, 200_000])
def test_chunked_round_trips_through_an_amp_box(size):
    """Bytes of any length, around and past AMP's 64 KiB limit, come back unchanged from the wire."""
    value = bytes(i % 251 for i in range(size))
    box, arguments = through_a_box(value)
    assert arguments == {"before": 7, "blob": value, "after": "end"}
    assert all(len(v) <= MAX_CHUNK for v in box.values())
    extra = sorted(k for k in box if k.startswith(b"blob."))
    assert extra == sorted(b"blob.%d" % i for i in range(1, max(1, -(-size // MAX_CHUNK))))


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 3 * MAX_CHUNK + 5), st.binary(min_size=1, max_size=7))
def test_chunked_round_trips_any_length(size, pattern):
    """Any length of any bytes crosses a box unchanged."""
    value = (pattern * (size // len(pattern) + 1))[:size]
    assert through_a_box(value)[1]["blob"] == value


def test_chunked_refuses_what_is_not_bytes():
    """A str given to a Chunked argument is a TypeError naming it."""
    with pytest.raises(TypeError, match="blob"):
        Blob.makeArguments({"before": 1, "blob": "text", "after": ""}, None)


HOST_ID = "1@10.0.0.1:2004"


def message(data: object = 1, **extra: object) -> bytes:
    """An encoded message holding ``data``."""
    return encode_message({"data": data, "host_id": HOST_ID, **extra})


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.text(min_size=1, max_size=12), st.integers(0, 2**63), xmlrpc_values),
                max_size=20))
def test_a_batch_of_envelopes_round_trips(envelopes):
    """Envelopes encoded into a batch decode to the same ids, hops and message bytes."""
    encoded = [encode_envelope(i, hops, message(data)) for i, hops, data in envelopes]
    decoded = decode_batch(encode_batch(encoded))
    assert decoded == tuple(Envelope(i, hops, message(data)) for i, hops, data in envelopes)
    for body, envelope, (_, _, data) in zip(encoded, decoded, envelopes, strict=True):
        assert decode_envelope(body) == envelope
        assert decode_message(envelope[2])["data"] == data


@pytest.mark.parametrize("count", [0, 1, 15, 16, 65535, 65536])
def test_batch_array_headers_use_the_smallest_form(count):
    """The batch header is a fixarray, array 16 or array 32 as msgpack requires, and decodes."""
    body = encode_envelope("x.1", 0, message())
    batch = encode_batch([body] * count)
    form = 0x90 if count < 16 else 0xDC if count < 65536 else 0xDD
    assert batch[0] & (0xF0 if form == 0x90 else 0xFF) == form
    assert len(decode_batch(batch)) == count


def test_an_envelope_is_three_items_the_message_in_bin():
    """The envelope's bytes are exactly the msgpack array [id, hops, bin message]."""
    body = message("hi")
    assert encode_envelope("ab", 5, body) == b"\x93\xa2ab\x05\xc4" + bytes([len(body)]) + body
    assert body == b"\x82\xa4data\xa2hi\xa7host_id\xaf" + HOST_ID.encode()


def raw(value: object) -> bytes:
    """``value`` packed by msgpack as it is, bin for bytes."""
    return msgpack.packb(value, use_bin_type=True)


def batch_of(*envelopes: object) -> bytes:
    """A batch of envelopes given as msgpack values."""
    return raw(list(envelopes))


def bad_message(**fields: object) -> bytes:
    """A message map of ``fields`` over a valid message's, None leaving a field out."""
    value: dict[object, object] = {"data": 1, "host_id": HOST_ID}
    value.update(fields)
    return raw({k: v for k, v in value.items() if v is not None})


MALFORMED = {
    "empty": b"",
    "garbage": b"garbage",
    "truncated": encode_batch([encode_envelope("x.1", 3, message())])[:-1],
    "extra bytes": encode_batch([]) + b"\x00",
    "an xml-rpc batch": b"<?xml version='1.0'?><methodResponse><params><param><value><array><data>"
                        b"</data></array></value></param></params></methodResponse>",
    "not an array": raw({"id": "x"}),
    "an int": raw(42),
    "envelope not an array": batch_of(1),
    "envelope a map": batch_of({"id": "x.1", "hops": 3, "message": message()}),
    "envelope of 2": batch_of(["x.1", 3]),
    "envelope of 4": batch_of(["x.1", 3, message(), 0]),
    "id missing": batch_of([None, 3, message()]),
    "id empty": batch_of(["", 3, message()]),
    "id an int": batch_of([7, 3, message()]),
    "id bin": batch_of([b"x.1", 3, message()]),
    "hops negative": batch_of(["x.1", -1, message()]),
    "hops true": batch_of(["x.1", True, message()]),
    "hops a string": batch_of(["x.1", "3", message()]),
    "hops a float": batch_of(["x.1", 3.0, message()]),
    "message a map": batch_of(["x.1", 3, {"data": 1, "host_id": HOST_ID}]),
    "message a string": batch_of(["x.1", 3, "text"]),
}

# Envelopes well formed around a message that is not one co2 can carry: a
# relay passes them on unopened; the node that opens one refuses it then.
BAD_MESSAGES = {
    "message garbage": batch_of(["x.1", 3, b"\xc1"]),
    "message with extra bytes": batch_of(["x.1", 3, message() + b"\x00"]),
    "message an array": batch_of(["x.1", 3, raw([1, HOST_ID])]),
    "data missing": batch_of(["x.1", 3, bad_message(data=None)]),
    "host_id missing": batch_of(["x.1", 3, bad_message(host_id=None)]),
    "host_id malformed": batch_of(["x.1", 3, bad_message(host_id="nonsense")]),
    "host_id bin": batch_of(["x.1", 3, bad_message(host_id=HOST_ID.encode())]),
    "unknown ext type": batch_of(["x.1", 3, bad_message(data=msgpack.ExtType(9, b"x"))]),
    "msgpack timestamp": batch_of(["x.1", 3, bad_message(data=msgpack.Timestamp(0))]),
    "short datetime ext": batch_of(["x.1", 3, bad_message(data=msgpack.ExtType(DATETIME_EXT, b"\x07"))]),
    "impossible datetime": batch_of(["x.1", 3, bad_message(
        data=msgpack.ExtType(DATETIME_EXT, b"\x07\xe8\x0d\x01\x00\x00\x00"))]),
    "int key": batch_of(["x.1", 3, bad_message(data={1: "one"})]),
    "bin key": batch_of(["x.1", 3, bad_message(data={b"k": "v"})]),
    "nested bin key": batch_of(["x.1", 3, bad_message(data=[{"a": {b"k": 1}}])]),
    "bin key in the message": batch_of(["x.1", 3, raw({"data": 1, "host_id": HOST_ID, b"extra": 1})]),
    "uint64 beyond int64": batch_of(["x.1", 3, bad_message(data=2**63)]),
    "nan": batch_of(["x.1", 3, bad_message(data=float("nan"))]),
    "infinity": batch_of(["x.1", 3, bad_message(data=[float("-inf")])]),
    "control character": batch_of(["x.1", 3, bad_message(data="a\x00b")]),
    "too deep": batch_of(["x.1", 3, bad_message(data=functools.reduce(lambda v, _: [v], range(70), 1))]),
    "second envelope bad": batch_of(["x.1", 3, message()], ["x.2", 3, bad_message(data=None)]),
}


@pytest.mark.parametrize("batch", MALFORMED.values(), ids=MALFORMED.keys())
def test_decode_batch_refuses_what_is_not_a_batch_of_envelopes(batch):
    """Garbage, a wrong shape, or an envelope whose id, hops or message is of the wrong kind is BadBatch."""
    with pytest.raises(BadBatch) as caught:
        decode_batch(batch)
    assert issubclass(BadBatch, ValueError)
    assert str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("batch", BAD_MESSAGES.values(), ids=BAD_MESSAGES.keys())
def test_a_relay_passes_a_message_on_unopened_and_the_node_that_opens_it_refuses_it(batch):
    """decode_batch leaves messages closed (bytes); read_message, where one is opened, refuses a bad one."""
    envelopes = decode_batch(batch)
    bad = [message for _, _, message in envelopes if not _readable(message)]
    assert len(bad) == 1 and type(bad[0]) is bytes


def _readable(message: bytes) -> bool:
    try:
        read_message(message)
    except (TypeError, ValueError) as e:
        assert str(e) and "\n" not in str(e)
        return False
    return True


def test_bad_batch_and_a_bad_message_name_the_problem():
    """The refusals say what is wrong: the envelope's shape, or what the opened message lacks."""
    with pytest.raises(BadBatch, match="message must be bin, not dict"):
        decode_batch(MALFORMED["message a map"])
    (_, _, first), (_, _, second) = decode_batch(BAD_MESSAGES["second envelope bad"])
    read_message(first)
    with pytest.raises(ValueError, match=re.escape("a message must hold data")):
        read_message(second)
    (_, _, ext), = decode_batch(BAD_MESSAGES["unknown ext type"])
    with pytest.raises(ValueError, match="msgpack ext type 9 is not one co2 knows"):
        read_message(ext)
    (_, _, key), = decode_batch(BAD_MESSAGES["bin key"])
    with pytest.raises(TypeError, match="struct keys must be strings, not bytes"):
        read_message(key)


def test_an_empty_batch_is_valid():
    """A batch of no envelopes decodes to no envelopes."""
    assert list(decode_batch(encode_batch([]))) == []


def test_extra_message_keys_are_kept():
    """A message may hold keys besides data and host_id; they are checked and kept."""
    body = message("d", extra={"k": [1, 2]})
    (envelope,) = decode_batch(encode_batch([encode_envelope("x.1", 0, body)]))
    assert decode_message(envelope[2]) == {"data": "d", "host_id": HOST_ID, "extra": {"k": [1, 2]}}


