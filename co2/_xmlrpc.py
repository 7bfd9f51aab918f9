"""
XML-RPC encoding and decoding as co2 speaks it.

Besides the base types it reads and writes ``<nil/>`` and ``<i8>``
(integers outside 32 bits are written as ``i8``).  Base64 values are
``bytes`` and dateTime values are ``datetime.datetime``.  A document with a
DOCTYPE is refused, which rules out entity expansion and external entities.

Each direction has two paths.  The quick path handles the documents and
values that make up nearly all traffic (what this module and
``xmlrpc.client`` write, and the usual variations in layout) with one
regular expression and a loop, or with plain string formatting.  Whatever
it does not recognise it hands, whole, to the exact path: expat feeding
``xmlrpc.client.Unmarshaller``, and ``xmlrpc.client.Marshaller``.  The
quick path only ever answers when the exact path would answer the same, so
results, errors and fault codes are those of the exact path for every
input.
"""

from __future__ import annotations

import base64
import math
import re
import xmlrpc.client
from collections.abc import Callable, Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any

from co2._values import ASCII_NOT_XML, LONG_TEXT
from co2._xmlrpc_exact import (
    INT32,
    INT64,
    NOT_XML,
    XMLRPCParseError,
    check_text,
    escape_exactly,
    marshal_exactly,
    parse_call_exactly,
    parse_response_exactly,
    value_exactly,
)

__all__ = [
    "XMLRPCParseError",
    "dump_call",
    "dump_fault",
    "dump_response",
    "dump_value",
    "parse_call",
    "parse_response",
]

DEFAULT_MAX_DEPTH = 256
"""How deeply elements may nest in a request by default."""


class _Unhandled(Exception):
    """Raised inside a quick path for anything it leaves to the exact path."""


# --------------------------------------------------------------------------
# Encoding: the quick path.  It writes what the exact path writes, byte for
# byte, for the built-in types; anything else raises _Unhandled.

# Containers nest at most this deep on the quick path; deeper ones, and
# structures that contain themselves, go to the exact path, which refuses
# the latter with TypeError instead of recursing without end.
_QUICK_DEPTH = 64

# Characters that stop a string being written as it is.
_SPECIAL = re.compile("[&<>\r\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


# Long ASCII text is looked through with one memchr per character that
# matters (in C), rather than by the regex, one character at a time.
_MARKUP = ("&", "<", ">", "\r")


def _escape(text: str) -> str:
    """``text`` as character data; characters XML cannot carry are _Unhandled."""
    # isalnum() is the cheap test that most names and words pass.
    if text.isalnum():
        return text
    if len(text) >= LONG_TEXT and text.isascii():
        if any(map(text.__contains__, ASCII_NOT_XML)):
            raise _Unhandled
        return escape_exactly(text) if any(map(text.__contains__, _MARKUP)) else text
    if _SPECIAL.search(text) is None:
        return text
    if NOT_XML.search(text) is not None:
        raise _Unhandled
    return escape_exactly(text)


def _dump(value: Any, write: Callable[[str], object], depth: int) -> None:
    """Write ``value`` as a ``<value>`` element; the most common types are tested first."""
    kind = type(value)
    if kind is str:
        write(f"<value><string>{value if value.isalnum() else _escape(value)}</string></value>\n")
    elif kind is int and -INT32 <= value < INT32:
        write(f"<value><int>{value}</int></value>\n")
    elif kind is dict:
        _dump_struct(value, write, depth)
    elif kind is list or kind is tuple:
        _dump_array(value, write, depth)
    else:
        write(_other_element(value))


def _other_element(value: Any) -> str:
    """A scalar other than a string or a 32-bit int, as a ``<value>`` element."""
    kind = type(value)
    if kind is bool:
        return "<value><boolean>1</boolean></value>\n" if value else "<value><boolean>0</boolean></value>\n"
    if kind is float:
        if not math.isfinite(value):
            raise _Unhandled
        return f"<value><double>{value!r}</double></value>\n"
    if value is None:
        return "<value><nil/></value>"
    if kind is int and -INT64 <= value < INT64:
        return f"<value><i8>{value}</i8></value>\n"
    if kind is bytes or kind is bytearray:
        return f"<value><base64>\n{base64.encodebytes(value).decode('ascii')}</base64></value>\n"
    if kind is datetime:
        return f"<value><dateTime.iso8601>{_iso8601(value)}</dateTime.iso8601></value>\n"
    raise _Unhandled


def _iso8601(value: datetime) -> str:
    """``value`` as xmlrpc.client writes a dateTime: no fraction, no zone."""
    return (
        f"{value.year:04d}{value.month:02d}{value.day:02d}"
        f"T{value.hour:02d}:{value.minute:02d}:{value.second:02d}"
    )


def _name(key: Any) -> str:
    """A struct's key as character data; a key that is not a string is _Unhandled."""
    if type(key) is not str:
        raise _Unhandled
    return _escape(key)


def _dump_struct(value: dict[Any, Any], write: Callable[[str], object], depth: int) -> None:
    """Write a dict with string keys as a struct."""
    if depth >= _QUICK_DEPTH:
        raise _Unhandled
    depth += 1
    write("<value><struct>\n")
    for key, item in value.items():
        name = key if type(key) is str and key.isalnum() else _name(key)
        # Small strings and ints, the usual members, are written in one go.
        kind = type(item)
        if kind is int and -INT32 <= item < INT32:
            write(f"<member>\n<name>{name}</name>\n<value><int>{item}</int></value>\n</member>\n")
        elif kind is str and item.isalnum():
            write(f"<member>\n<name>{name}</name>\n<value><string>{item}</string></value>\n</member>\n")
        else:
            write(f"<member>\n<name>{name}</name>\n")
            _dump(item, write, depth)
            write("</member>\n")
    write("</struct></value>\n")


def _dump_array(value: list[Any] | tuple[Any, ...], write: Callable[[str], object], depth: int) -> None:
    """Write a list or tuple as an array."""
    if depth >= _QUICK_DEPTH:
        raise _Unhandled
    depth += 1
    write("<value><array><data>\n")
    for item in value:
        _dump(item, write, depth)
    write("</data></array></value>\n")


def _value_element(value: Any) -> str:
    """``value`` as a ``<value>`` element."""
    parts: list[str] = []
    try:
        _dump(value, parts.append, 0)
    except _Unhandled:
        return value_exactly(value)
    return "".join(parts)


def _params_block(values: Iterable[Any]) -> str:
    """``values`` as a ``params`` block."""
    values = tuple(values)
    parts = ["<params>\n"]
    write = parts.append
    try:
        for value in values:
            write("<param>\n")
            _dump(value, write, 0)
            write("</param>\n")
    except _Unhandled:
        return marshal_exactly(values)
    write("</params>\n")
    return "".join(parts)


_HEADER = "<?xml version='1.0'?>\n"


def dump_response(value: Any) -> bytes:
    """
    Encode ``value`` as a ``methodResponse``.

    Raises ``TypeError``, ``OverflowError`` or ``ValueError`` when ``value``
    holds something XML-RPC cannot carry.
    """
    element = _value_element(value)
    return (
        f"{_HEADER}<methodResponse>\n<params>\n<param>\n{element}"
        "</param>\n</params>\n</methodResponse>\n"
    ).encode()


def dump_value(value: Any) -> bytes:
    """
    Encode ``value`` as a bare ``<value>`` element, to be placed inside a
    larger document; raises as :func:`dump_response` does.
    """
    return _value_element(value).encode()


def dump_fault(code: int, message: str) -> bytes:
    """Encode a fault response; raises as :func:`dump_response` does."""
    element = _value_element({"faultCode": code, "faultString": message})
    return f"{_HEADER}<methodResponse>\n<fault>\n{element}</fault>\n</methodResponse>\n".encode()


def dump_call(method: str, params: tuple[Any, ...]) -> bytes:
    """
    Encode a ``methodCall``; raises as :func:`dump_response` does, and with
    ``ValueError`` for a method name XML cannot carry.
    """
    check_text(method)
    block = _params_block(params)
    return (
        f"{_HEADER}<methodCall>\n<methodName>{escape_exactly(method)}</methodName>\n"
        f"{block}</methodCall>\n"
    ).encode()


# --------------------------------------------------------------------------
# Decoding: the quick path.
#
# It reads documents built only from the XML-RPC elements, without
# attributes, namespaces, comments, processing instructions, CDATA or a
# DOCTYPE, in UTF-8, with whitespace between the elements and character
# data free of '>' and of raw CRs (whose normalisation expat would apply).
# Within those it follows xmlrpc.client.Unmarshaller exactly; any document
# outside them goes to the exact path, whole.

# Whitespace between elements, which the unmarshaller ignores.
_W = "[ \t\r\n]*+"
# Character data taken as it is, apart from entity and character references.
_T = "[^<>\x00-\x08\x0b\x0c\x0e-\x1f\r]*+"
_TYPES = (
    r"int|string|i4|double|boolean|i8|nil|base64|dateTime\.iso8601"
    r"|float|i1|i2|biginteger|bigdecimal"
)

# One token: a value (with the <member><name> or <param> that opens it, and
# for a scalar the </member> or </param> that closes it) and the run of
# container ends after it; or everything from the first thing not
# understood on.  An array's start is the token that matches none of tag,
# open ("s" for a struct) and plain (an untyped value's text, with the "<"
# after it, so that it is never empty).  Optional parts are written as
# alternatives with an empty one, and each group is a slot in every tuple
# findall makes: both keep the engine's work per token small.
_TOKEN = re.compile(
    rf"<(?:(?P<m>m)ember>{_W}<name>(?P<key>{_T})</name>{_W}<|(?P<p>p)aram>{_W}<|)value>"
    rf"(?:{_W}<(?:(?P<open>s)truct>{_W}|array>{_W}<data>{_W}"
    rf"|(?P<tag>{_TYPES})(?:/>|>(?P<text>{_T})</(?P=tag)>){_W}</value>{_W}"
    rf"(?(m)</member>{_W})(?(p)</param>{_W}))"
    rf"|(?P<plain>{_T}<)/value>{_W}(?(m)</member>{_W})(?(p)</param>{_W}))"
    rf"(?P<ends>(?:(?:</struct>|</data>{_W}</array>){_W}</value>{_W}(?:</member>{_W}|</param>{_W}|))++|)"
    rf"|(?P<rest>(?s:.+))"
)
_END = re.compile(rf"</(s|d)(?:truct>|ata>{_W}</array>){_W}</value>{_W}(?:</(m|p)(?:ember|aram)>{_W})?")

_DECLARATION = (
    rf"<\?xml[ \t\r\n]+version{_W}={_W}(?:'1\.0'|\"1\.0\")"
    rf"(?:[ \t\r\n]+encoding{_W}={_W}(?:'(?i:utf-8)'|\"(?i:utf-8)\"))?"
    rf"(?:[ \t\r\n]+standalone{_W}={_W}(?:'(?:yes|no)'|\"(?:yes|no)\"))?{_W}\?>"
)
_CALL_START = re.compile(
    rf"(?:{_DECLARATION})?{_W}<methodCall>{_W}<methodName>({_T})</methodName>{_W}(<params>{_W})?"
)
_RESPONSE_START = re.compile(rf"(?:{_DECLARATION})?{_W}<methodResponse>{_W}<(params|fault)>{_W}")
_CALL_END = re.compile(rf"</params>{_W}</methodCall>{_W}")
_BARE_CALL_END = re.compile(rf"</methodCall>{_W}")
_RESPONSE_END = re.compile(rf"</params>{_W}</methodResponse>{_W}")
_FAULT_END = re.compile(rf"</fault>{_W}</methodResponse>{_W}")

# What holds the values being read.
_NOTHING, _PARAMS, _ARRAY, _STRUCT = range(4)

# Elements above the values of a params block: methodCall or
# methodResponse, params, param, value and a scalar's element.
_TOP_DEPTH = 5

_BOM = b"\xef\xbb\xbf"


def _document(body: bytes) -> str:
    """``body`` as text, if the quick path may read it."""
    if type(body) is not bytes:
        raise _Unhandled
    if body.startswith(_BOM):
        body = body[len(_BOM) :]
    try:
        text = body.decode()
    except UnicodeDecodeError:
        raise _Unhandled from None
    # Two noncharacters XML refuses; cheaper to look for here than in _T.
    if "\ufffe" in text or "\uffff" in text:
        raise _Unhandled
    return text


def _read_values(text: str, start: int, kind: int, max_depth: int) -> tuple[list[Any], str]:
    """
    Read the values of ``text`` from ``start`` into a list held as ``kind``
    (params, a fault's bare value, or nothing); check that each sits where
    it may; return them and the text after the last one.
    """
    # Each array or struct adds three elements (value, array or struct,
    # data or member) above the values it holds.
    most_open = (max_depth - _TOP_DEPTH) // 3
    if most_open < 0:
        raise _Unhandled
    references = "&" in text
    top: list[Any] = []
    holder: Any = top
    stack: list[tuple[Any, int]] = []
    value: Any
    # This loop is the quick path's cost per value, so it keeps to local
    # names and tests for the most frequent tokens first.  ``held`` is what
    # the value holds: _STRUCT or _ARRAY for a container's start, else
    # _NOTHING.
    struct, array, params, nothing = _STRUCT, _ARRAY, _PARAMS, _NOTHING
    scalars, known_ends = _SCALARS, _ENDS
    for m, key, p, opened, tag, inner, plain, ends, rest in _TOKEN.findall(text, start):
        if tag:
            if references:
                inner = _unescape(inner)
            if tag == "string":
                value = inner
            elif tag == "int":
                value = int(inner)
            else:
                value = scalars[tag](inner)
            held = nothing
        elif plain:
            value = _unescape(plain[:-1]) if references else plain[:-1]
            held = nothing
        elif rest:
            if stack:
                raise _Unhandled
            return top, rest
        elif opened:
            value = {}
            held = struct
        else:
            value = []
            held = array
        if m:
            if kind != struct:
                raise _Unhandled
            holder[_unescape(key) if references else key] = value
        elif p:
            if kind != params:
                raise _Unhandled
            holder.append(value)
        elif kind == array:
            holder.append(value)
        else:
            raise _Unhandled
        if held != nothing:
            stack.append((holder, kind))
            if len(stack) > most_open:
                raise _Unhandled
            holder = value
            kind = held
        if ends:
            for closed, outer in known_ends.get(ends) or _ends(ends):
                if kind != closed or not stack:
                    raise _Unhandled
                holder, kind = stack.pop()
                if kind != outer:
                    raise _Unhandled
    raise _Unhandled


# Runs of ends repeat from document to document, so what each means is
# kept: for a bounded number of runs, each of bounded length, so that
# hostile bodies cannot make the table grow without end.
_ENDS: dict[str, tuple[tuple[int, int], ...]] = {}
_ENDS_KEPT = 1024
LONG_TEXTEST_KEPT = 512


def _ends(run: str) -> tuple[tuple[int, int], ...]:
    """
    For each end in ``run``: what it closes (a struct or an array), and what
    must hold that (a struct for ``</member>``, params for ``</param>``,
    else an array).
    """
    holders = {"m": _STRUCT, "p": _PARAMS, "": _ARRAY}
    meaning = tuple(
        (_STRUCT if closed == "s" else _ARRAY, holders[outer]) for closed, outer in _END.findall(run)
    )
    if len(_ENDS) < _ENDS_KEPT and len(run) <= LONG_TEXTEST_KEPT:
        _ENDS[run] = meaning
    return meaning


def _boolean(text: str) -> bool:
    """A boolean, which must be "0" or "1"."""
    if text == "1":
        return True
    if text == "0":
        return False
    raise _Unhandled


def _nil(text: str) -> None:
    """The unmarshaller ignores whatever a nil holds."""
    return None


def _base64(text: str) -> bytes:
    """Base64 data, decoded as the unmarshaller decodes it."""
    return base64.decodebytes(text.encode("ascii"))


_ISO8601 = re.compile("([0-9]{4})([0-9]{2})([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})")


def _datetime(text: str) -> datetime:
    """
    A dateTime as the unmarshaller reads it, with strptime.  For the fixed
    width form strptime accepts exactly what datetime() accepts, so that
    form skips it.
    """
    match = _ISO8601.fullmatch(text)
    if match is None:
        return datetime.strptime(text, "%Y%m%dT%H:%M:%S")
    year, month, day, hour, minute, second = match.groups()
    return datetime(int(year), int(month), int(day), int(hour), int(minute), int(second))


# The scalar types other than string, as the unmarshaller converts them.
_SCALARS: dict[str, Callable[[str], Any]] = {
    "int": int,
    "i4": int,
    "i8": int,
    "i1": int,
    "i2": int,
    "biginteger": int,
    "double": float,
    "float": float,
    "bigdecimal": Decimal,
    "boolean": _boolean,
    "nil": _nil,
    "base64": _base64,
    "dateTime.iso8601": _datetime,
}

_REFERENCE = re.compile("&(?:(lt|gt|amp|quot|apos)|#([0-9]+)|#x([0-9a-fA-F]+));|&")
_NAMED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"', "apos": "'"}


def _unescape(text: str) -> str:
    """``text`` with its references replaced; a malformed one is _Unhandled."""
    if "&" not in text:
        return text
    return _REFERENCE.sub(_referenced, text)


def _referenced(match: re.Match[str]) -> str:
    """The character one reference stands for."""
    name, decimal, hexadecimal = match.groups()
    if name:
        return _NAMED[name]
    if decimal:
        code = int(decimal)
    elif hexadecimal:
        code = int(hexadecimal, 16)
    else:
        raise _Unhandled
    if not _is_xml_char(code):
        raise _Unhandled
    return chr(code)


def _is_xml_char(code: int) -> bool:
    """Whether XML 1.0 may carry the character ``code``."""
    return (
        code in (0x9, 0xA, 0xD)
        or 0x20 <= code <= 0xD7FF
        or 0xE000 <= code <= 0xFFFD
        or 0x10000 <= code <= 0x10FFFF
    )


def _quick_call(body: bytes, max_depth: int) -> tuple[str, tuple[Any, ...]]:
    """:func:`parse_call` by the quick path."""
    text = _document(body)
    start = _CALL_START.match(text)
    if start is None:
        raise _Unhandled
    method = _unescape(start[1])
    if not method:
        raise _Unhandled
    if start[2]:
        params, rest = _read_values(text, start.end(), _PARAMS, max_depth)
        end = _CALL_END
    else:
        params, rest = _read_values(text, start.end(), _NOTHING, max_depth)
        end = _BARE_CALL_END
    if end.fullmatch(rest) is None:
        raise _Unhandled
    return method, tuple(params)


def _quick_response(body: bytes, max_depth: int) -> Any:
    """:func:`parse_response` by the quick path."""
    text = _document(body)
    start = _RESPONSE_START.match(text)
    if start is None:
        raise _Unhandled
    fault = start[1] == "fault"
    # A fault's value stands bare, as an array's values do.
    values, rest = _read_values(text, start.end(), _ARRAY if fault else _PARAMS, max_depth)
    if len(values) != 1 or (_FAULT_END if fault else _RESPONSE_END).fullmatch(rest) is None:
        raise _Unhandled
    (value,) = values
    if fault:
        # Fault() needs faultCode and faultString among the names; anything
        # else makes a parse error, which the exact path words.
        try:
            raise xmlrpc.client.Fault(**value)
        except TypeError:
            raise _Unhandled from None
    return value


# What a conversion may raise on text the exact path refuses.
_REFUSALS = (_Unhandled, ValueError, ArithmeticError)


def parse_call(
    body: bytes, max_depth: int = DEFAULT_MAX_DEPTH
) -> tuple[str, tuple[Any, ...]]:
    """
    Decode a ``methodCall`` into its method name and parameters.

    Raises :class:`XMLRPCParseError` with code -32700 for a body that is not
    XML-RPC, -32600 for one that is not a method call.
    """
    try:
        return _quick_call(body, max_depth)
    except _REFUSALS:
        return parse_call_exactly(body, max_depth)


def parse_response(body: bytes, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """
    Decode a ``methodResponse`` into its value.

    Raises ``xmlrpc.client.Fault`` for a fault response and
    :class:`XMLRPCParseError` for anything that is not a response.
    """
    try:
        return _quick_response(body, max_depth)
    except _REFUSALS:
        return parse_response_exactly(body, max_depth)
