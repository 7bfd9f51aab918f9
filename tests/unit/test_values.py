"""co2._values: which values co2 carries, and their msgpack encoding."""

from __future__ import annotations

import collections
import datetime
import enum
import re
import threading
import xmlrpc.client

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import NOT_XML, xmlrpc_values

from co2._values import DATETIME_EXT, MAX_DEPTH, check_members, check_text, check_value, pack, unpack
from co2._xmlrpc import dump_response


@settings(max_examples=200, deadline=None)
@given(xmlrpc_values)
def test_any_xmlrpc_value_is_accepted_and_round_trips(value):
    """Every value an XML-RPC parser can give back passes the check and survives pack and unpack."""
    check_value(value)
    assert unpack(pack(value)) == value


def recursive() -> list[object]:
    """A list that holds itself."""
    value: list[object] = [1]
    value.append(value)
    return value


def deep(levels: int) -> object:
    """``levels`` arrays and structs nested in turn."""
    value: object = "leaf"
    for level in range(levels):
        value = [value] if level % 2 else {"k": value}
    return value


class Subclassed(dict):  # type: ignore[type-arg]
    """A dict subclass: XML-RPC refuses it."""


class Colour(enum.IntEnum):
    """An int subclass: XML-RPC refuses it."""

    RED = 1


REFUSED = {
    "nan": float("nan"),
    "infinity": float("inf"),
    "minus infinity in a list": [float("-inf")],
    "2**63": 2**63,
    "-2**63 - 1": -(2**63) - 1,
    "2**70 in a struct": {"n": 2**70},
    "NUL": "a\x00b",
    "escape character": "\x1b[0m",
    "lone surrogate": "\ud800",
    "U+FFFE": "\ufffe",
    "long ASCII with a control character": "x" * 200 + "\x07",
    "control character in a key": {"k\x01": 1},
    "int key": {1: "one"},
    "bytes key": {b"k": "v"},
    "tuple key": {(1, 2): 3},
    "a set": {1, 2},
    "an object": object(),
    "a complex": 1j,
    "a dict subclass": Subclassed(a=1),
    "an IntEnum": Colour.RED,
    "an OrderedDict": collections.OrderedDict(a=1),
    "a date": datetime.date(2024, 1, 2),
    "a malformed DateTime": xmlrpc.client.DateTime("yesterday"),
    "itself": recursive(),
    "too deep": deep(MAX_DEPTH + 1),
    "a lock": threading.Lock(),
}


@pytest.mark.parametrize("value", REFUSED.values(), ids=REFUSED.keys())
def test_what_xmlrpc_cannot_carry_is_refused(value):
    """The check refuses what XML-RPC cannot carry, with a TypeError or ValueError."""
    with pytest.raises((TypeError, ValueError)):
        check_value(value)


@pytest.mark.parametrize(
    "value",
    [v for k, v in REFUSED.items() if k not in ("too deep", "a malformed DateTime", "itself")],
    ids=[k for k in REFUSED if k not in ("too deep", "a malformed DateTime", "itself")],
)
def test_the_check_refuses_what_the_xmlrpc_encoder_refuses(value):
    """Each refusal matches the XML-RPC encoder's (the check is no stricter, no looser)."""
    with pytest.raises((TypeError, ValueError, OverflowError)):
        dump_response(value)


@pytest.mark.parametrize("character", [*NOT_XML, "\ud800", "\udfff"])
def test_every_character_xml_cannot_carry_is_refused_short_or_long(character):
    """In a short string, a long ASCII string or a key, a character XML cannot carry is refused."""
    for value in (character, "x" * 300 + character, {character: 1}):
        with pytest.raises(ValueError, match="XML-RPC cannot carry"):
            check_value(value)


def test_the_deepest_value_allowed_passes():
    """Nesting up to MAX_DEPTH arrays and structs is accepted and round-trips."""
    value = deep(MAX_DEPTH)
    check_value(value)
    assert unpack(pack(value)) == value


def test_the_refusal_names_the_problem():
    """The messages say what is wrong."""
    with pytest.raises(ValueError, match="does not fit in 64 bits"):
        check_value(2**64)
    with pytest.raises(ValueError, match="no double for nan"):
        check_value(float("nan"))
    with pytest.raises(TypeError, match="struct keys must be strings, not int"):
        check_value({1: 2})
    with pytest.raises(TypeError, match="cannot carry set objects"):
        check_value({1})
    with pytest.raises(ValueError, match="nests deeper than 64 levels or holds itself"):
        check_value(recursive())
    with pytest.raises(ValueError, match=r"holds '\\x00' at 1"):
        check_value("a\x00")


class Point:
    """A plain object: XML-RPC carries its attributes as a struct."""

    def __init__(self) -> None:
        self.x = 1
        self.y = [2]


@pytest.mark.parametrize(
    ("sent", "received"),
    [
        ((1, (2, "three")), [1, [2, "three"]]),
        (bytearray(b"\x00\xff"), b"\x00\xff"),
        (xmlrpc.client.Binary(b"\x01\x02"), b"\x01\x02"),
        (xmlrpc.client.DateTime("20240102T03:04:05"), datetime.datetime(2024, 1, 2, 3, 4, 5)),
        (datetime.datetime(2024, 1, 2, 3, 4, 5, 999_999), datetime.datetime(2024, 1, 2, 3, 4, 5)),
        (datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
         datetime.datetime(2024, 1, 2, 3, 4, 5)),
        (Point(), {"x": 1, "y": [2]}),
        ({"a": Point()}, {"a": {"x": 1, "y": [2]}}),
    ],
)
def test_values_arrive_as_an_xmlrpc_parser_gives_them(sent, received):
    """Tuples, bytearrays, Binary, DateTime, datetimes and objects arrive as XML-RPC would give them."""
    check_value(sent)
    assert unpack(pack(sent)) == received
    assert type(unpack(pack(sent))) is type(received)


def test_a_datetime_is_ext_type_1_of_seven_bytes():
    """A dateTime is msgpack ext 8 of type 1: year (2 bytes, big-endian), month, day, hour, minute, second."""
    encoded = pack(datetime.datetime(2024, 12, 31, 23, 59, 58))
    assert encoded == bytes([0xC7, 7, DATETIME_EXT]) + b"\x07\xe8\x0c\x1f\x17\x3b\x3a"
    assert unpack(encoded) == datetime.datetime(2024, 12, 31, 23, 59, 58)


def test_the_types_map_to_msgpack_as_documented():
    """nil, booleans, ints, doubles, str, bin, arrays and maps are msgpack's own."""
    assert pack(None) == b"\xc0"
    assert pack([True, False]) == b"\x92\xc3\xc2"
    assert pack(-(2**63)) == b"\xd3\x80" + bytes(7)
    assert pack(0.5) == b"\xcb\x3f\xe0" + bytes(6)
    assert pack("é") == b"\xa2\xc3\xa9"
    assert pack(b"\x00") == b"\xc4\x01\x00"
    assert pack({"k": []}) == b"\x81\xa1k\x90"


def test_pack_is_safe_from_many_threads():
    """Threads packing at once each get their own value back."""
    results: dict[int, bytes] = {}

    def work(n: int) -> None:
        for _ in range(200):
            results[n] = pack({"n": n, "when": datetime.datetime(2024, 1, 1), "pad": "x" * n})

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {n: unpack(body)["n"] for n, body in results.items()} == {n: n for n in range(8)}


def test_each_member_of_a_message_may_nest_as_deep_as_a_value():
    """check_members allows each member MAX_DEPTH levels, and checks keys like a struct's."""
    check_members({"data": deep(MAX_DEPTH), "extra": deep(MAX_DEPTH)})
    with pytest.raises(ValueError, match="nests deeper"):
        check_members({"data": 1, "extra": deep(MAX_DEPTH + 1)})
    with pytest.raises(TypeError, match="struct keys must be strings"):
        check_members({"data": 1, b"extra": 2})  # type: ignore[dict-item]


_XML_10 = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


@given(
    st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x7F), max_size=40),
    st.integers(min_value=0, max_value=3000),
    st.sampled_from(["", "é", "\x00", "\x1f", "\t", "\n", "\r", "\x0b", "\ufffe", "\ud800"]),
)
def test_check_text_agrees_with_the_xml_character_class_at_every_length(head, pad, tail):
    """Short or long, ASCII or not, check_text refuses exactly what XML 1.0 cannot carry."""
    text = head + "x" * pad + tail
    refused = _XML_10.search(text) is not None
    try:
        check_text(text)
    except ValueError:
        assert refused
    else:
        assert not refused
