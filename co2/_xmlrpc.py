"""
XML-RPC encoding and decoding as co2 speaks it.

Besides the base types it reads and writes ``<nil/>`` and ``<i8>``
(integers outside 32 bits are written as ``i8``).  Base64 values are
``bytes`` and dateTime values are ``datetime.datetime``.  A document with a
DOCTYPE is refused, which rules out entity expansion and external entities.
"""

from __future__ import annotations

import math
import re
import xmlrpc.client
from collections.abc import Callable
from typing import Any
from xml.parsers import expat

from co2 import faults

__all__ = [
    "XMLRPCParseError",
    "dump_call",
    "dump_fault",
    "dump_response",
    "dump_value",
    "parse_call",
    "parse_response",
]

_INT32 = 2**31
_INT64 = 2**63

DEFAULT_MAX_DEPTH = 256
"""How deeply elements may nest in a request by default."""


class XMLRPCParseError(ValueError):
    """A body that is not an XML-RPC document; ``code`` is the fault code."""

    def __init__(self, code: int, message: str) -> None:
        self.code = code
        super().__init__(message)


# Characters XML 1.0 cannot carry at all, escaped or not.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _check_text(text: str) -> None:
    found = _NOT_XML.search(text)
    if found is not None:
        raise ValueError(
            f"string holds {found.group()!r} at {found.start()}, which XML cannot carry; "
            "send it as bytes (base64) instead"
        )


class _Marshaller(xmlrpc.client.Marshaller):
    """The standard marshaller, plus ``i8`` and a refusal of NaN and infinity."""

    dispatch = dict(xmlrpc.client.Marshaller.dispatch)

    def dump_int(self, value: int, write: Callable[[str], Any]) -> None:
        if -_INT32 <= value < _INT32:
            tag = "int"
        elif -_INT64 <= value < _INT64:
            tag = "i8"
        else:
            raise OverflowError(f"integer {value} does not fit in 64 bits")
        write(f"<value><{tag}>{value}</{tag}></value>\n")

    dispatch[int] = dump_int  # type: ignore[assignment]

    def dump_double(self, value: float, write: Callable[[str], Any]) -> None:
        if not math.isfinite(value):
            raise ValueError(f"XML-RPC has no double for {value!r}")
        write(f"<value><double>{value!r}</double></value>\n")

    dispatch[float] = dump_double  # type: ignore[assignment]

    def dump_unicode(self, value: str, write: Callable[[str], Any], escape: Any = None) -> None:
        _check_text(value)
        # A bare CR would reach the other side as LF: XML normalises line ends.
        text = xmlrpc.client.escape(value).replace("\r", "&#13;")
        write(f"<value><string>{text}</string></value>\n")

    dispatch[str] = dump_unicode  # type: ignore[assignment]

    def dump_struct(self, value: Any, write: Callable[[str], Any], escape: Any = None) -> None:
        for key in value:
            if isinstance(key, str):
                _check_text(key)
        super().dump_struct(value, write)

    dispatch[dict] = dump_struct  # type: ignore[assignment]


class _Unmarshaller(xmlrpc.client.Unmarshaller):
    """The standard unmarshaller, fed text that expat already decoded."""

    def __init__(self) -> None:
        super().__init__(use_builtin_types=True)
        # The base class would decode names a second time unless told that
        # the text arrives decoded.
        self._encoding = None  # type: ignore[assignment]


def _marshal(values: tuple[Any, ...] | xmlrpc.client.Fault) -> str:
    return _Marshaller("utf-8", allow_none=True).dumps(values)


def dump_response(value: Any) -> bytes:
    """
    Encode ``value`` as a ``methodResponse``.

    Raises ``TypeError``, ``OverflowError`` or ``ValueError`` when ``value``
    holds something XML-RPC cannot carry.
    """
    body = _marshal((value,))
    return f"<?xml version='1.0'?>\n<methodResponse>\n{body}</methodResponse>\n".encode()


_VALUE_START = "<params>\n<param>\n"
_VALUE_END = "</param>\n</params>\n"


def dump_value(value: Any) -> bytes:
    """
    Encode ``value`` as a bare ``<value>`` element, to be placed inside a
    larger document; raises as :func:`dump_response` does.
    """
    body = _marshal((value,))
    return body[len(_VALUE_START) : len(body) - len(_VALUE_END)].encode()


def dump_fault(code: int, message: str) -> bytes:
    """Encode a fault response."""
    body = _marshal(xmlrpc.client.Fault(code, message))
    return f"<?xml version='1.0'?>\n<methodResponse>\n{body}</methodResponse>\n".encode()


def dump_call(method: str, params: tuple[Any, ...]) -> bytes:
    """Encode a ``methodCall``; raises as :func:`dump_response` does."""
    body = _marshal(params)
    return (
        f"<?xml version='1.0'?>\n<methodCall>\n<methodName>"
        f"{xmlrpc.client.escape(method)}</methodName>\n{body}</methodCall>\n"
    ).encode()


def _unmarshal(body: bytes, max_depth: int) -> _Unmarshaller:
    unmarshaller = _Unmarshaller()
    parser = expat.ParserCreate()
    depth = 0

    def start(tag: str, attrs: dict[str, str]) -> None:
        nonlocal depth
        depth += 1
        if depth > max_depth:
            raise XMLRPCParseError(
                faults.PARSE_ERROR, f"elements nest deeper than {max_depth}"
            )
        unmarshaller.start(tag, attrs)

    def end(tag: str) -> None:
        nonlocal depth
        depth -= 1
        unmarshaller.end(tag)

    def refuse_doctype(*args: object) -> None:
        raise XMLRPCParseError(faults.PARSE_ERROR, "a DOCTYPE is not allowed")

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = unmarshaller.data
    parser.StartDoctypeDeclHandler = refuse_doctype
    parser.EntityDeclHandler = refuse_doctype
    parser.buffer_text = True
    try:
        parser.Parse(body, True)
    except XMLRPCParseError:
        raise
    except expat.ExpatError as e:
        raise XMLRPCParseError(faults.PARSE_ERROR, f"not well-formed XML: {e}") from None
    except (ValueError, TypeError, OverflowError, IndexError, KeyError) as e:
        raise XMLRPCParseError(
            faults.PARSE_ERROR, f"bad value: {faults.describe_exception(e)}"
        ) from None
    return unmarshaller


def parse_call(
    body: bytes, max_depth: int = DEFAULT_MAX_DEPTH
) -> tuple[str, tuple[Any, ...]]:
    """
    Decode a ``methodCall`` into its method name and parameters.

    Raises :class:`XMLRPCParseError` with code -32700 for a body that is not
    XML-RPC, -32600 for one that is not a method call.
    """
    unmarshaller = _unmarshal(body, max_depth)
    try:
        params = unmarshaller.close()
    except xmlrpc.client.Fault:
        raise XMLRPCParseError(faults.INVALID_REQUEST, "a fault is not a request") from None
    except (xmlrpc.client.ResponseError, IndexError, TypeError) as e:
        raise XMLRPCParseError(
            faults.PARSE_ERROR, f"not an XML-RPC document: {faults.describe_exception(e)}"
        ) from None
    method = unmarshaller.getmethodname()
    if not isinstance(method, str) or not method:
        raise XMLRPCParseError(faults.INVALID_REQUEST, "no methodName: not a methodCall")
    return method, tuple(params)


def parse_response(body: bytes, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """
    Decode a ``methodResponse`` into its value.

    Raises ``xmlrpc.client.Fault`` for a fault response and
    :class:`XMLRPCParseError` for anything that is not a response.
    """
    unmarshaller = _unmarshal(body, max_depth)
    try:
        params = unmarshaller.close()
    except xmlrpc.client.Fault:
        raise
    except (xmlrpc.client.ResponseError, IndexError, TypeError) as e:
        raise XMLRPCParseError(
            faults.PARSE_ERROR, f"not an XML-RPC response: {faults.describe_exception(e)}"
        ) from None
    if unmarshaller.getmethodname() is not None or len(params) != 1:
        raise XMLRPCParseError(faults.PARSE_ERROR, "not a methodResponse with one value")
    return params[0]
