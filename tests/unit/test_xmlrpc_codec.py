"""The XML-RPC codec: the quick paths against the exact ones, hostile bodies, encoding rules."""

from __future__ import annotations

import datetime
import xmlrpc.client
from decimal import Decimal
from typing import Any
from xmlrpc.client import Fault

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import xml_text, xmlrpc_values

from co2 import faults
from co2._xmlrpc import (
    DEFAULT_MAX_DEPTH,
    XMLRPCParseError,
    _quick_call,
    _quick_response,
    _Unhandled,
    dump_call,
    dump_fault,
    dump_response,
    dump_value,
    parse_call,
    parse_response,
)
from co2._xmlrpc_exact import parse_call_exactly, parse_response_exactly, value_exactly

# --------------------------------------------------------------------------
# Strategies and helpers.

# Text XML can carry (a CR included, since the codec must keep it), and any value.
XML_TEXT = xml_text(max_size=12)
VALUES = xmlrpc_values


CALL_HEAD = b"<?xml version='1.0'?><methodCall><methodName>m</methodName><params><param>"
CALL_TAIL = b"</param></params></methodCall>"


def call_with(value_xml: bytes) -> bytes:
    """A methodCall whose one parameter is ``value_xml``."""
    return CALL_HEAD + value_xml + CALL_TAIL


def exactly(value: Any) -> str:
    """A form of ``value`` that differs whenever a type, an order or a value differs."""
    return repr(value)


def outcome(parse: Any, body: bytes, *args: Any) -> tuple[Any, ...]:
    """What parsing ``body`` gives: a value, a parse error's code and message, or a fault."""
    try:
        return ("value", exactly(parse(body, *args)))
    except XMLRPCParseError as e:
        return ("error", e.code, str(e))
    except Fault as e:
        return ("fault", exactly(e.faultCode), exactly(e.faultString))


def refusal(body: bytes, parse: Any = parse_call) -> XMLRPCParseError:
    """The parse error ``body`` gets."""
    with pytest.raises(XMLRPCParseError) as e:
        parse(body)
    return e.value


def quick_reads(read: Any, body: bytes) -> bool:
    """Whether the quick path answers for ``body`` rather than handing it on."""
    try:
        read(body, DEFAULT_MAX_DEPTH)
    except _Unhandled:
        return False
    except Fault:
        pass
    return True


def writers(value: Any) -> list[bytes]:
    """``value`` as each writer writes it: a call and a response from this module and from xmlrpc.client."""
    documents = [dump_call("a.b", (value,)), dump_response(value)]
    try:
        documents.append(xmlrpc.client.dumps((value,), "c.d", allow_none=True).encode())
        documents.append(xmlrpc.client.dumps((value,), methodresponse=True, allow_none=True).encode())
    except OverflowError:
        pass  # xmlrpc.client writes no ints beyond 32 bits
    return documents


# --------------------------------------------------------------------------
# Properties.


@given(VALUES)
def test_any_value_decodes_as_xmlrpc_client_decodes_it(value):
    """Whatever dumps or dump_call writes, parse_call reads exactly as xmlrpc.client.loads does."""
    bodies = [dump_call("a.b", (value, 1))]
    try:
        bodies.append(xmlrpc.client.dumps((value, 1), "a.b", allow_none=True).encode())
    except OverflowError:
        pass
    for body in bodies:
        params, method = xmlrpc.client.loads(body, use_builtin_types=True)
        assert exactly(parse_call(body)) == exactly((method, params))


@given(VALUES)
def test_any_value_round_trips(value):
    """Any value comes back unchanged, type for type, from a call, a response and a bare value."""
    assert exactly(parse_call(dump_call("m.n", (value, value)))) == exactly(("m.n", (value, value)))
    assert exactly(parse_response(dump_response(value))) == exactly(value)
    wrapped = b"<methodResponse><params><param>" + dump_value(value) + b"</param></params></methodResponse>"
    assert exactly(parse_response(wrapped)) == exactly(value)


@given(st.integers(-(2**63), 2**63 - 1), XML_TEXT)
def test_any_fault_round_trips(code, message):
    """A fault response is raised as Fault with its code and string."""
    with pytest.raises(Fault) as e:
        parse_response(dump_fault(code, message))
    assert (e.value.faultCode, e.value.faultString) == (code, message)


@given(VALUES)
def test_the_quick_encoder_writes_what_the_exact_one_writes(value):
    """For the built-in types the quick encoder's bytes are the marshaller's, byte for byte."""
    assert dump_value(value) == value_exactly(value).encode()


@given(VALUES)
def test_the_quick_reader_takes_what_the_writers_write(value):
    """Documents from this module and from xmlrpc.client need no fallback (a CR aside)."""
    for body in writers(value):
        if b"\r" not in body:
            read = _quick_call if b"<methodCall>" in body else _quick_response
            assert quick_reads(read, body)


PIECES = st.sampled_from([
    b"<", b">", b"/", b"&", b";", b"#", b"!", b"?", b" ", b"\n", b"\r", b"\t", b"\x00", b"\xff",
    b"\xef\xbb\xbf", b"\xef\xbf\xbe", b"\xc3\xa9", b"x", b"0", b"1", b"-", b".", b"T", b":", b"'", b'"',
    b"value", b"int", b"i8", b"struct", b"member", b"name", b"string", b"nil", b"param", b"array",
    b"data", b"fault", b"ex:", b" xmlns:ex='u'", b" xmlns='u'", b"&lt;", b"&#13;", b"&#x41;", b"&amp;",
    b"&bogus;", b"&#0;", b"<!--x-->", b"<![CDATA[x]]>", b"<?pi x?>", b"<!DOCTYPE x>", b"]]>",
    b"<value>", b"</value>", b"<int>", b"</int>", b"<string>", b"</string>", b"<nil/>", b"<string/>",
    b"<member>", b"</member>", b"<name>", b"</name>", b"<struct>", b"</struct>", b"<array>",
    b"<data>", b"</data>", b"</array>", b"<param>", b"</param>", b"<params>", b"</params>",
    b"<boolean>", b"</boolean>", b"<double>", b"</double>", b"<base64>", b"</base64>",
    b"<dateTime.iso8601>", b"</dateTime.iso8601>", b"<bigdecimal>", b"</bigdecimal>", b"<foo>",
    b"</foo>", b"<fault>", b"</fault>", b"<methodName>", b"</methodName>", b"<value/>",
    b"<?xml version='1.0' encoding='latin-1'?>",
]) | st.binary(min_size=1, max_size=3)


@st.composite
def mutated_documents(draw: Any) -> bytes:
    """A document written by one of the writers, then cut, added to and overwritten at random."""
    value = draw(VALUES)
    bodies = [*writers(value), dump_fault(draw(st.integers(-40000, 5)), draw(XML_TEXT))]
    body = bytearray(draw(st.sampled_from(bodies)))
    for _ in range(draw(st.integers(1, 4))):
        start = draw(st.integers(0, len(body)))
        operation = draw(st.sampled_from(["delete", "insert", "replace"]))
        if operation == "insert":
            body[start:start] = draw(PIECES)
        else:
            end = draw(st.integers(start, min(len(body), start + 12)))
            body[start:end] = b"" if operation == "delete" else draw(PIECES)
    return bytes(body)


MAX_DEPTHS = st.sampled_from([DEFAULT_MAX_DEPTH, 4, 5, 8, 9, 11, 12])


def assert_paths_agree(body: bytes, max_depth: int) -> None:
    """parse_call and parse_response answer as their exact paths do."""
    assert outcome(parse_call, body, max_depth) == outcome(parse_call_exactly, body, max_depth)
    assert outcome(parse_response, body, max_depth) == outcome(parse_response_exactly, body, max_depth)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_documents(), MAX_DEPTHS)
def test_quick_and_exact_paths_agree_on_mutated_documents(body, max_depth):
    """On any byte mutation of a valid document both paths give the same value, fault or error."""
    assert_paths_agree(body, max_depth)


ELEMENTS = st.sampled_from([
    "value", "value", "value", "struct", "member", "member", "name", "array", "data", "int",
    "string", "nil", "boolean", "double", "param", "params", "fault", "base64", "dateTime.iso8601",
    "i4", "i8", "bigdecimal", "foo",
])
TEXTS = st.sampled_from([
    "", "", "1", "0", "x", " ", "\n", "-5", "1.5", "aGk=", "20260102T03:04:05", "&lt;", "&#13;", "nan", "é",
])
SPACE = st.sampled_from(["", "", "\n", " \n "])


def elements(children: Any) -> Any:
    """An element from the XML-RPC vocabulary holding ``children``, with whitespace around them."""
    return st.builds(
        lambda name, kids, space: f"<{name}>{space}{''.join(kids)}</{name}>",
        ELEMENTS, st.lists(children, max_size=3), SPACE,
    )


LEAVES = st.builds(lambda name, text: f"<{name}>{text}</{name}>", ELEMENTS, TEXTS) | st.builds(
    lambda name: f"<{name}/>", ELEMENTS
)
TREES = st.recursive(LEAVES, elements, max_leaves=12)


@settings(max_examples=300)
@given(TREES, st.sampled_from(["methodCall", "methodResponse"]), st.booleans(), MAX_DEPTHS)
def test_quick_and_exact_paths_agree_on_any_arrangement_of_elements(tree, root, named, max_depth):
    """Documents made of XML-RPC elements in any arrangement get the same answer from both paths."""
    name = "<methodName>m</methodName>" if named else ""
    body = f"<?xml version='1.0'?><{root}>{name}{tree}</{root}>".encode()
    assert_paths_agree(body, max_depth)


@given(st.text(st.characters(blacklist_categories=("Cs",)), max_size=20))
def test_datetimes_read_as_strptime_reads_them(text):
    """Any dateTime text gives the value, or the refusal, that the exact path gives."""
    element = f"<dateTime.iso8601>{xmlrpc.client.escape(text)}</dateTime.iso8601>"
    body = call_with(f"<value>{element}</value>".encode())
    assert_paths_agree(body, DEFAULT_MAX_DEPTH)


@given(st.sampled_from(["20260102T03:04:05", "00010101T00:00:00", "99991231T23:59:59"]).flatmap(
    lambda good: st.lists(st.tuples(st.integers(0, 16), st.sampled_from("0123456789T: -")), max_size=3).map(
        lambda edits: _edit(good, edits)
    )
))
def test_near_valid_datetimes_read_as_strptime_reads_them(text):
    """dateTimes one digit away from valid (month 13, day 30 of February...) agree on both paths."""
    body = call_with(f"<value><dateTime.iso8601>{text}</dateTime.iso8601></value>".encode())
    assert_paths_agree(body, DEFAULT_MAX_DEPTH)


def _edit(text: str, edits: list[tuple[int, str]]) -> str:
    """``text`` with characters overwritten at the given positions."""
    chars = list(text)
    for position, char in edits:
        if position < len(chars):
            chars[position] = char
    return "".join(chars)


def _valid_value(children: Any) -> Any:
    """A well-formed ``<value>`` holding an array or a struct of ``children``, spaced out."""

    def array(items: list[str], space: str) -> str:
        inside = "".join(items)
        return f"<value><array>{space}<data>{space}{inside}</data>{space}</array>{space}</value>{space}"

    def struct(items: list[tuple[str, str]], space: str) -> str:
        members = "".join(
            f"<member>{space}<name>{name}</name>{space}{item}</member>{space}" for name, item in items
        )
        return f"<value>{space}<struct>{space}{members}</struct>{space}</value>{space}"

    names = st.sampled_from(["", "a", "k&amp;", "x y"])
    return st.builds(array, st.lists(children, max_size=3), SPACE) | st.builds(
        struct, st.lists(st.tuples(names, children), max_size=3), SPACE
    )


VALID_LEAVES = st.sampled_from([
    "<value></value>\n", "<value> </value>", "<value>x</value>", "<value>&lt;</value>", "<value/>",
    "<value><string></string></value>\n", "<value><string/></value>", "<value><int>7</int></value>\n",
    "<value> <nil/> </value>\n", "<value><boolean>1</boolean></value>",
])
VALID_VALUES = st.recursive(VALID_LEAVES, _valid_value, max_leaves=10)


@settings(max_examples=300)
@given(st.lists(VALID_VALUES, max_size=3), SPACE, MAX_DEPTHS)
def test_untyped_values_and_containers_are_told_apart(values, space, max_depth):
    """Empty and untyped values, empty arrays and structs, nested any way, read as on the exact path."""
    params = "".join(f"<param>{space}{value}</param>{space}" for value in values)
    body = f"<methodCall><methodName>m</methodName><params>{space}{params}</params></methodCall>".encode()
    assert outcome(parse_call, body, max_depth) == outcome(parse_call_exactly, body, max_depth)
    if max_depth == DEFAULT_MAX_DEPTH and b"<value/>" not in body:
        assert quick_reads(_quick_call, body)


# --------------------------------------------------------------------------
# Reading: what documents mean.


def test_the_benchmark_call_and_a_multicall_of_it_are_read():
    """A small struct call, and a multicall of a hundred of them, come back whole."""
    call = {"methodName": "bench.calls.add", "params": [{"x": 1, "y": 2}]}
    assert parse_call(dump_call("bench.calls.add", ({"x": 1, "y": 2},))) == (
        "bench.calls.add", ({"x": 1, "y": 2},)
    )
    assert parse_call(dump_call("system.multicall", ([call] * 100,))) == ("system.multicall", ([call] * 100,))


def test_a_value_without_a_type_is_a_string():
    """<value>text</value> is the string, spaces kept; an empty or self-closed value is ""."""
    assert parse_call(call_with(b"<value>  x </value>")) == ("m", ("  x ",))
    assert parse_call(call_with(b"<value></value>")) == ("m", ("",))
    assert parse_call(call_with(b"<value/>")) == ("m", ("",))
    assert parse_call(call_with(b"<value>\n</value>")) == ("m", ("\n",))


def test_every_scalar_type_is_read():
    """Each scalar element, and its aliases, reads as xmlrpc.client reads it."""
    cases = {
        b"<int>-7</int>": -7, b"<i4>7</i4>": 7, b"<i8>8589934592</i8>": 8589934592, b"<i1>1</i1>": 1,
        b"<i2>2</i2>": 2, b"<biginteger>99999999999999999999</biginteger>": 99999999999999999999,
        b"<int> 3 </int>": 3, b"<boolean>1</boolean>": True, b"<boolean>0</boolean>": False,
        b"<double>-1.5e3</double>": -1500.0, b"<float>2</float>": 2.0, b"<double>nan</double>": float("nan"),
        b"<bigdecimal>1.50</bigdecimal>": Decimal("1.50"), b"<string>s</string>": "s", b"<string/>": "",
        b"<base64>aGk=\n</base64>": b"hi", b"<nil/>": None, b"<nil>ignored</nil>": None,
        b"<dateTime.iso8601>20260102T03:04:05</dateTime.iso8601>": datetime.datetime(2026, 1, 2, 3, 4, 5),
        b"<dateTime.iso8601>2026012T3:4:5</dateTime.iso8601>": datetime.datetime(2026, 1, 2, 3, 4, 5),
    }
    for element, expected in cases.items():
        (got,) = parse_call(call_with(b"<value>" + element + b"</value>"))[1]
        assert exactly(got) == exactly(expected), element


def test_references_are_replaced():
    """Entity and character references in names and text become their characters."""
    body = call_with(
        b"<value><struct><member><name>a&amp;b</name><value><string>&lt;&gt;&quot;&apos;&#13;&#x41;&#0065;"
        b"</string></value></member></struct></value>"
    )
    assert parse_call(body) == ("m", ({"a&b": "<>\"'\rA\x41"},))
    assert parse_call(b"<methodCall><methodName>a&amp;b</methodName></methodCall>") == ("a&b", ())


def test_whitespace_between_elements_is_ignored():
    """Indentation, CRLFs and tabs between elements change nothing."""
    body = (
        b'<?xml version="1.0" encoding="UTF-8"?>\r\n<methodCall>\n\t<methodName>m</methodName>\n <params>\r\n'
        b"  <param>\n   <value>\n    <array>\n     <data>\n      <value> <i4>1</i4> </value>\n"
        b"      <value><struct>\n <member> <name>k</name> <value><nil/></value> </member>\n"
        b" </struct></value>\n"
        b"     </data>\n    </array>\n   </value>\n  </param>\n </params>\n</methodCall>\n"
    )
    assert parse_call(body) == ("m", ([1, {"k": None}],))
    assert quick_reads(_quick_call, body)


def test_a_bom_and_encoding_declarations_are_honoured():
    """A UTF-8 BOM is skipped, and a declared encoding (Latin-1, UTF-16) decodes the body."""
    assert parse_call(b"\xef\xbb\xbf" + call_with(b"<value>x</value>")) == ("m", ("x",))
    assert quick_reads(_quick_call, b"\xef\xbb\xbf" + call_with(b"<value>x</value>"))
    latin = (
        b"<?xml version='1.0' encoding='ISO-8859-1'?><methodCall><methodName>m</methodName><params><param>"
        b"<value>caf\xe9</value>" + CALL_TAIL
    )
    assert parse_call(latin) == ("m", ("caf\xe9",))
    utf16 = "<?xml version='1.0' encoding='utf-16'?><methodCall><methodName>m</methodName></methodCall>"
    assert parse_call(utf16.encode("utf-16")) == ("m", ())
    mislabelled = b"<?xml version='1.0' encoding='utf-8'?>" + call_with(b"<value>caf\xe9</value>")[21:]
    assert refusal(mislabelled).code == faults.PARSE_ERROR


def test_a_namespace_prefix_on_a_tag_is_dropped():
    """ex:nil, ex:i8 and prefixed containers read as their local names, declared or not."""
    assert parse_call(call_with(b"<value><ex:nil xmlns:ex='urn:x'/></value>")) == ("m", (None,))
    assert parse_call(call_with(b"<value><ex:i8>5</ex:i8></value>")) == ("m", (5,))
    body = call_with(
        b"<value><ex:struct xmlns:ex='u'><ex:member><ex:name>k</ex:name><ex:value>v</ex:value>"
        b"</ex:member></ex:struct></value>"
    )
    assert parse_call(body) == ("m", ({"k": "v"},))
    assert parse_call(b"<methodCall xmlns='urn:x'><methodName>m</methodName></methodCall>") == ("m", ())


def test_comments_cdata_and_processing_instructions_are_read_as_expat_reads_them():
    """Comments and PIs vanish, CDATA is text: the body goes to the exact path and reads as before."""
    assert parse_call(call_with(b"<value><string><![CDATA[a<b]]></string></value>")) == ("m", ("a<b",))
    assert parse_call(call_with(b"<value><int>1<!-- one --></int></value>")) == ("m", (1,))
    assert parse_call(call_with(b"<value><string>a<?pi x?>b</string></value>")) == ("m", ("ab",))
    assert parse_call(b"<!-- hello -->" + call_with(b"<value>x</value>")[21:]) == ("m", ("x",))


def test_malformed_structure_gets_the_codes_it_always_got():
    """A member without a name, a value outside a param, a bad int... keep their codes and messages."""
    cases = {
        call_with(b"<value><struct><member><value><int>1</int></value></member></struct></value>"):
            "bad value: IndexError: list index out of range",
        call_with(b"<value><int>twelve</int></value>"):
            "bad value: ValueError: invalid literal for int() with base 10: 'twelve'",
        call_with(b"<value><boolean>2</boolean></value>"): "bad value: TypeError: bad boolean value",
        call_with(b"<value><int>1</int></value"): None,
        call_with(b"<value><struct><member><name>a</name><value>1</value></struct></value>"): None,
    }
    for body, message in cases.items():
        error = refusal(body)
        assert error.code == faults.PARSE_ERROR, body
        if message is not None:
            assert str(error) == message
    # A stray value outside a <param> is read by the unmarshaller all the same.
    stray = b"<methodCall><methodName>m</methodName><params><value>1</value></params></methodCall>"
    assert parse_call(stray) == ("m", ("1",))


MISPLACED = {
    "unclosed struct": (call_with(b"<value><struct>")[:-len(CALL_TAIL)] + b"</params></methodCall>", None),
    "struct closed as array": (call_with(b"<value><struct></data></array></value>"), None),
    "array closed as struct": (call_with(b"<value><array><data></struct></value>"), None),
    "one end too many": (
        call_with(b"<value><array><data></data></array></value></data></array></value>"), None
    ),
    "member closed by param": (
        CALL_HEAD + b"<value><struct><member><name>a</name><value><array><data></data></array></value>"
        b"</param></params></methodCall>",
        None,
    ),
    "array item closed by member": (
        call_with(b"<value><array><data><value><array><data></data></array></value></member></data></array></value>"),
        None,
    ),
    "member never closed": (
        call_with(b"<value><struct><member><name>a</name><value><struct></struct></value></struct></value>"),
        None,
    ),
    "member in an array": (
        call_with(b"<value><array><data><member><name>a</name><value>1</value></member></data></array></value>"),
        ("m", (["a", "1"],)),
    ),
    "struct in a member in an array": (
        call_with(b"<value><array><data><member><name>a</name><value><struct></struct></value></member>"
                  b"</data></array></value>"),
        ("m", (["a", {}],)),
    ),
    "param in an array": (
        call_with(b"<value><array><data><param><value>1</value></param></data></array></value>"),
        ("m", (["1"],)),
    ),
    "value bare in a struct": (call_with(b"<value><struct><value>1</value></struct></value>"), None),
    "stray ampersand": (call_with(b"<value>a & b</value>"), None),
    "reference to a surrogate": (call_with(b"<value>&#xD800;</value>"), None),
    "value after the params": (
        b"<methodCall><methodName>m</methodName><params></params><value>1</value></methodCall>", ("m", ("1",))
    ),
}


@pytest.mark.parametrize("name", sorted(MISPLACED))
def test_misplaced_elements_read_as_the_unmarshaller_reads_them(name):
    """Elements out of place give the unmarshaller's value, or a -32700, on the quick path as on the exact."""
    body, expected = MISPLACED[name]
    assert outcome(parse_call, body) == outcome(parse_call_exactly, body, DEFAULT_MAX_DEPTH)
    if expected is None:
        assert refusal(body).code == faults.PARSE_ERROR
    else:
        assert parse_call(body) == expected


def test_a_fault_is_not_a_request():
    """A fault given to parse_call is -32600 "a fault is not a request"."""
    error = refusal(dump_fault(3, "boom"))
    assert (error.code, str(error)) == (faults.INVALID_REQUEST, "a fault is not a request")


def test_a_call_needs_a_method_name():
    """No methodName, or an empty one, is -32600."""
    for body in [
        b"<methodCall><params><param><value>1</value></param></params></methodCall>",
        b"<methodCall><methodName></methodName></methodCall>",
        dump_response(1),
    ]:
        error = refusal(body)
        assert (error.code, str(error)) == (faults.INVALID_REQUEST, "no methodName: not a methodCall")


def test_responses_give_their_value_or_raise_their_fault():
    """parse_response returns the one value, raises Fault, and refuses anything else with -32700."""
    assert parse_response(dump_response([1, "a"])) == [1, "a"]
    with pytest.raises(Fault) as e:
        parse_response(dump_fault(-32601, "no such method"))
    assert (e.value.faultCode, e.value.faultString) == (-32601, "no such method")
    for body in [
        dump_call("m", (1,)),
        b"<methodResponse><params></params></methodResponse>",
        b"<methodResponse><params><param><value>1</value></param><param><value>2</value></param>"
        b"</params></methodResponse>",
        b"<methodResponse><fault><value><struct><member><name>faultCode</name><value><int>1</int></value>"
        b"</member></struct></value></fault></methodResponse>",
    ]:
        assert refusal(body, parse_response).code == faults.PARSE_ERROR


def test_unknown_elements_in_a_value_are_parse_errors():
    """An unknown type element or a bad bigdecimal is -32700, not an exception of another kind."""
    error = refusal(call_with(b"<value><foo>1</foo></value>"))
    assert (error.code, str(error)) == (faults.PARSE_ERROR, "not an XML-RPC value: unknown tag 'foo'")
    assert refusal(call_with(b"<value><bigdecimal>x</bigdecimal></value>")).code == faults.PARSE_ERROR
    unknown = b"<methodResponse><params><param><value><foo/></value></param></params></methodResponse>"
    assert refusal(unknown, parse_response).code == faults.PARSE_ERROR


# --------------------------------------------------------------------------
# Reading: hostile bodies.

DOCTYPES = {
    "doctype": (
        b"<?xml version='1.0'?><!DOCTYPE methodCall><methodCall><methodName>m</methodName></methodCall>"
    ),
    "entity bomb": (
        b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">'
        b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>'
        b"<methodCall><methodName>&c;</methodName></methodCall>"
    ),
    "external entity": (
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
        b"<methodCall><methodName>x</methodName><params><param><value>&e;</value></param></params></methodCall>"
    ),
}


@pytest.mark.parametrize("name", sorted(DOCTYPES))
def test_a_doctype_is_refused(name):
    """A DOCTYPE, with or without entities, is -32700 "a DOCTYPE is not allowed" for calls and responses."""
    for parse in (parse_call, parse_response):
        error = refusal(DOCTYPES[name], parse)
        assert (error.code, str(error)) == (faults.PARSE_ERROR, "a DOCTYPE is not allowed")


def deep(levels: int) -> bytes:
    """A call whose parameter is arrays nested ``levels`` deep."""
    return call_with(b"<value><array><data>" * levels + b"</data></array></value>" * levels)


def test_nesting_deeper_than_the_limit_is_refused_without_recursion():
    """100,000 nested arrays are -32700 "elements nest deeper than 256", with no RecursionError."""
    error = refusal(deep(100_000))
    assert (error.code, str(error)) == (faults.PARSE_ERROR, "elements nest deeper than 256")
    response = b"<methodResponse><params><param>" + deep(100_000)[len(CALL_HEAD):-len(CALL_TAIL)] + (
        b"</param></params></methodResponse>"
    )
    assert str(refusal(response, parse_response)) == "elements nest deeper than 256"


def test_nesting_up_to_the_limit_is_read_on_both_sides_of_it():
    """The limit counts elements as expat meets them: a body exactly at max_depth is read, one over is not."""
    body = deep(3)  # methodCall, params, param, then 3 x (value, array, data): 12 deep
    assert parse_call(body, 12) == ("m", ([[[]]],))
    assert str(refusal(body, lambda b: parse_call(b, 11))) == "elements nest deeper than 11"


def test_deep_nesting_under_a_high_limit_is_read_without_recursion():
    """With a limit above it, 100,000 nested arrays are read, on both paths, with no RecursionError."""
    body = deep(100_000)
    for parse in (parse_call, parse_call_exactly):
        method, (value,) = parse(body, 10**6)
        levels = 0
        while value:
            (value,) = value
            levels += 1
        assert (method, levels) == ("m", 99_999)


def test_text_xml_cannot_carry_is_refused():
    """A NUL, a raw U+FFFE or bad UTF-8 in a body is -32700 on both paths."""
    for body in [
        call_with(b"<value>a\x00b</value>"),
        call_with(b"<value>\xef\xbf\xbe</value>"),
        call_with(b"<value>\xff</value>"),
        call_with(b"<value>&#0;</value>"),
        call_with(b"<value>a]]>b</value>"),
    ]:
        assert refusal(body).code == faults.PARSE_ERROR
        assert outcome(parse_call, body) == outcome(parse_call_exactly, body, DEFAULT_MAX_DEPTH)


def test_the_quick_path_hands_on_what_it_does_not_read():
    """Markup declarations, comments, attributes, namespaces and other encodings go to the exact path."""
    for body in [
        DOCTYPES["entity bomb"],
        b"<!-- c -->" + call_with(b"<value>x</value>")[21:],
        call_with(b"<value><![CDATA[x]]></value>"),
        call_with(b"<value a='1'>x</value>"),
        call_with(b"<value><ex:nil xmlns:ex='u'/></value>"),
        b"<?xml version='1.0' encoding='latin-1'?>" + call_with(b"<value>x</value>")[21:],
        call_with(b"<value>a\rb</value>"),
        deep(100),
    ]:
        assert not quick_reads(_quick_call, body)


# --------------------------------------------------------------------------
# Writing.


def test_writing_keeps_the_header_and_element_structure():
    """Responses, faults and calls start with the XML declaration and have the usual elements."""
    assert dump_response(7) == (
        b"<?xml version='1.0'?>\n<methodResponse>\n<params>\n<param>\n<value><int>7</int></value>\n"
        b"</param>\n</params>\n</methodResponse>\n"
    )
    assert dump_fault(3, "x").startswith(b"<?xml version='1.0'?>\n<methodResponse>\n<fault>\n<value><struct>")
    assert dump_call("m", ()) == (
        b"<?xml version='1.0'?>\n<methodCall>\n<methodName>m</methodName>\n<params>\n</params>\n"
        b"</methodCall>\n"
    )
    assert dump_value({"a": [1]}) == (
        b"<value><struct>\n<member>\n<name>a</name>\n<value><array><data>\n<value><int>1</int></value>\n"
        b"</data></array></value>\n</member>\n</struct></value>\n"
    )


def test_each_type_has_its_element():
    """None, bools, i8, bytes, datetimes, wrappers and sequences get their XML-RPC elements."""
    cases = {
        None: b"<value><nil/></value>",
        True: b"<value><boolean>1</boolean></value>\n",
        False: b"<value><boolean>0</boolean></value>\n",
        2**31 - 1: b"<value><int>2147483647</int></value>\n",
        -(2**31): b"<value><int>-2147483648</int></value>\n",
        2**31: b"<value><i8>2147483648</i8></value>\n",
        -(2**63): b"<value><i8>-9223372036854775808</i8></value>\n",
        1.5: b"<value><double>1.5</double></value>\n",
        b"hi": b"<value><base64>\naGk=\n</base64></value>\n",
        datetime.datetime(2026, 1, 2, 3, 4, 5, 6): (
            b"<value><dateTime.iso8601>20260102T03:04:05</dateTime.iso8601></value>\n"
        ),
        (1,): b"<value><array><data>\n<value><int>1</int></value>\n</data></array></value>\n",
    }
    for value, element in cases.items():
        assert dump_value(value) == element, value
    assert dump_value(bytearray(b"hi")) == cases[b"hi"]
    assert dump_value(xmlrpc.client.Binary(b"hi")) == cases[b"hi"]
    assert dump_value(xmlrpc.client.DateTime("20260102T03:04:05")) == (
        b"<value><dateTime.iso8601>20260102T03:04:05</dateTime.iso8601></value>\n"
    )
    assert dump_value([1]) == dump_value((1,))


def test_a_cr_survives_in_strings_and_names():
    """A CR is written as &#13; in a string and in a struct's name, so it arrives as a CR."""
    assert dump_value("a\rb") == b"<value><string>a&#13;b</string></value>\n"
    assert b"<name>k&#13;</name>" in dump_value({"k\r": 1})
    # A Binary inside sends the whole value through xmlrpc.client's marshaller.
    assert b"<name>k&#13;</name>" in dump_value({"k\r": xmlrpc.client.Binary(b"x")})
    assert parse_response(dump_response({"k\r": "v\r\n"})) == {"k\r": "v\r\n"}


def test_markup_characters_are_escaped():
    """&, < and > in strings and names are written as references."""
    assert dump_value({"<&>": "a<b&c>d"}) == (
        b"<value><struct>\n<member>\n<name>&lt;&amp;&gt;</name>\n<value><string>a&lt;b&amp;c&gt;d</string>"
        b"</value>\n</member>\n</struct></value>\n"
    )


@pytest.mark.parametrize("value, error, message", [
    (float("nan"), ValueError, "XML-RPC has no double for nan"),
    (float("inf"), ValueError, "XML-RPC has no double for inf"),
    (2**63, OverflowError, "integer 9223372036854775808 does not fit in 64 bits"),
    (-(2**63) - 1, OverflowError, "does not fit in 64 bits"),
    ("a\x00b", ValueError, "string holds '\\x00' at 1, which XML cannot carry"),
    ({"\ufffe": 1}, ValueError, "which XML cannot carry"),
    ({1: "a"}, TypeError, "dictionary key must be string"),
    (object(), TypeError, "cannot marshal <class 'object'> objects"),
    ({1, 2}, TypeError, "cannot marshal <class 'set'> objects"),
    (Decimal("1.5"), TypeError, "cannot marshal"),
    ([[1, float("inf")]], ValueError, "XML-RPC has no double for inf"),
], ids=repr)
def test_what_xmlrpc_cannot_carry_is_refused(value, error, message):
    """Values XML-RPC has no form for raise the same errors and messages as the marshaller."""
    for dump in (dump_value, dump_response, lambda v: dump_call("m", (v,)), lambda v: dump_fault(1, v)):
        with pytest.raises(error) as e:
            dump(value)
        assert message in str(e.value)


def test_recursive_structures_are_refused_with_type_error():
    """A list or dict that contains itself raises TypeError, not RecursionError."""
    items: list[Any] = [1]
    items.append(items)
    table: dict[str, Any] = {}
    table["self"] = [table]
    with pytest.raises(TypeError, match="cannot marshal recursive sequences"):
        dump_response(items)
    with pytest.raises(TypeError, match="cannot marshal recursive"):
        dump_value(table)


def test_deep_but_finite_structures_are_written():
    """Nesting beyond the quick encoder's depth is still written, by the marshaller."""
    value: list[Any] = []
    for _ in range(200):
        value = [value]
    assert parse_response(dump_response(value), 1000) == value


def test_instances_are_written_as_the_marshaller_writes_them():
    """An instance with attributes is a struct of them, as xmlrpc.client writes it."""

    class Point:
        def __init__(self) -> None:
            self.x = 1
            self.y = [2]

    assert parse_response(dump_response(Point())) == {"x": 1, "y": [2]}


def test_a_method_name_xml_cannot_carry_is_refused():
    """dump_call refuses a NUL in the method name instead of writing a body no parser reads."""
    with pytest.raises(ValueError, match="XML cannot carry"):
        dump_call("a\x00b", ())
    assert parse_call(dump_call("a&<b>\r", ())) == ("a&<b>\r", ())


@given(
    st.integers(min_value=0, max_value=2000),
    st.lists(st.sampled_from(["&", "<", ">", "\r", "\n", "\t", "é", "\x00", "\x1f", "]]>", "x"]), max_size=4),
)
def test_long_text_is_written_as_the_exact_encoder_writes_it(pad, specials):
    """Long text, with markup, with what XML cannot carry, or plain: written as the exact path writes it."""
    text = "word " * (pad // 5) + "".join(specials)
    try:
        expected = value_exactly(text).encode()
    except (TypeError, ValueError):
        with pytest.raises((TypeError, ValueError)):
            dump_value(text)
        return
    assert dump_value(text) == expected
