"""co2.protocol: the Chunked argument and the Deliver batch encoding."""

from __future__ import annotations

import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.protocols import amp

from co2._xmlrpc import dump_fault, dump_response
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


def xml_text(min_size: int = 0, max_size: int = 20) -> st.SearchStrategy[str]:
    """Strings XML can carry."""
    return st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Cn")),
                   min_size=min_size, max_size=max_size)


xmlrpc_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.binary(max_size=20)
    | xml_text()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.datetimes(min_value=datetime.datetime(1000, 1, 1)).map(lambda d: d.replace(microsecond=0)),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(xml_text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(xml_text(1, 12), st.integers(0, 99), xmlrpc_values), max_size=5))
def test_a_batch_of_envelopes_round_trips(envelopes):
    """Envelopes encoded into a batch decode to the same ids, hops and messages."""
    encoded = [encode_envelope(i, hops, {"data": data, "host_id": "1@10.0.0.1:2004"})
               for i, hops, data in envelopes]
    decoded = decode_batch(encode_batch(encoded))
    assert decoded == [Envelope(i, hops, {"data": data, "host_id": "1@10.0.0.1:2004"})
                       for i, hops, data in envelopes]
    for body, envelope in zip(encoded, decoded, strict=True):
        assert decode_envelope(body) == envelope


def envelope(**fields: object) -> bytes:
    """A batch holding one struct with ``fields`` over a valid envelope's."""
    value = {"id": "x.1", "hops": 3, "message": {"data": 1, "host_id": "1@10.0.0.1:2004"}}
    value.update(fields)
    return dump_response([{k: v for k, v in value.items() if v is not None}])


@pytest.mark.parametrize(
    "batch",
    [
        b"",
        b"garbage",
        b"<?xml version='1.0'?><methodResponse><params><param><value>",
        b"<!DOCTYPE x [<!ENTITY a 'b'>]><methodResponse/>",
        dump_response(42),
        dump_response({"id": "x"}),
        dump_fault(1, "no"),
        dump_response([1]),
        dump_response([["x.1", 3, {}]]),
        envelope(id=None),
        envelope(id=""),
        envelope(id=7),
        envelope(hops=None),
        envelope(hops=-1),
        envelope(hops=True),
        envelope(hops="3"),
        envelope(message=None),
        envelope(message="text"),
        envelope(message={"data": 1}),
        envelope(message={"host_id": "1@10.0.0.1:2004"}),
        envelope(message={"data": 1, "host_id": "nonsense"}),
    ],
)
def test_decode_batch_refuses_what_is_not_a_batch_of_envelopes(batch):
    """Garbage, a non-array, a fault or a bad envelope is BadBatch (a ValueError), nothing else."""
    with pytest.raises(BadBatch):
        decode_batch(batch)
    assert issubclass(BadBatch, ValueError)


def test_an_empty_batch_is_valid():
    """A batch of no envelopes decodes to an empty list."""
    assert decode_batch(encode_batch([])) == []
