"""
The exact XML-RPC codec, which co2's quick codec (:mod:`co2._xmlrpc`)
falls back on: expat feeding ``xmlrpc.client.Unmarshaller``, and
``xmlrpc.client.Marshaller``, with co2's rules added (``i8``, no NaN or
infinity, no DOCTYPE, bounded nesting, CR kept).  Its results, errors and
fault codes are the reference the quick codec matches.
"""

from __future__ import annotations

import math
import re
import xmlrpc.client
from collections.abc import Callable
from typing import Any
from xml.parsers import expat

from co2 import faults
from co2._errors import ProtocolError

__all__ = [
    "INT32",
    "INT64",
    "NOT_XML",
    "XMLRPCParseError",
    "check_text",
    "escape_exactly",
    "marshal_exactly",
    "parse_call_exactly",
    "parse_response_exactly",
    "value_exactly",
]

INT32 = 2**31
INT64 = 2**63


class XMLRPCParseError(ProtocolError, ValueError):
    """A body that is not an XML-RPC document; ``code`` is the fault code."""

    def __init__(self, code: int, message: str) -> None:
        self.code = code
        super().__init__(message)


# Characters XML 1.0 cannot carry at all, escaped or not.
NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def check_text(text: str) -> None:
    """Raise ``ValueError`` if ``text`` holds a character XML cannot carry."""
    found = NOT_XML.search(text)
    if found is not None:
        raise ValueError(
            f"string holds {found.group()!r} at {found.start()}, which XML cannot carry; "
            "send it as bytes (base64) instead"
        )


def escape_exactly(text: str) -> str:
    """
    ``text`` as character data, for the exact path.

    A bare CR would reach the other side as LF, since XML normalises line
    ends, so it is written as a character reference.
    """
    return xmlrpc.client.escape(text).replace("\r", "&#13;")


# --------------------------------------------------------------------------
# Encoding: the exact path.


class _Marshaller(xmlrpc.client.Marshaller):
    """The standard marshaller, plus ``i8`` and a refusal of NaN and infinity."""

    dispatch = dict(xmlrpc.client.Marshaller.dispatch)

    def dump_int(self, value: int, write: Callable[[str], Any]) -> None:
        """Write an int, as ``i8`` outside 32 bits; refuse more than 64 bits."""
        if -INT32 <= value < INT32:
            tag = "int"
        elif -INT64 <= value < INT64:
            tag = "i8"
        else:
            raise OverflowError(f"integer {value} does not fit in 64 bits")
        write(f"<value><{tag}>{value}</{tag}></value>\n")

    dispatch[int] = dump_int  # type: ignore[assignment]

    def dump_double(self, value: float, write: Callable[[str], Any]) -> None:
        """Write a float; XML-RPC has no NaN or infinity."""
        if not math.isfinite(value):
            raise ValueError(f"XML-RPC has no double for {value!r}")
        write(f"<value><double>{value!r}</double></value>\n")

    dispatch[float] = dump_double  # type: ignore[assignment]

    def dump_unicode(self, value: str, write: Callable[[str], Any], escape: Any = None) -> None:
        """Write a string, refusing characters XML cannot carry."""
        check_text(value)
        write(f"<value><string>{escape_exactly(value)}</string></value>\n")

    dispatch[str] = dump_unicode  # type: ignore[assignment]

    def dump_struct(self, value: Any, write: Callable[[str], Any], escape: Any = None) -> None:
        """Write a struct, refusing names XML cannot carry and keeping a CR in a name."""
        for key in value:
            if isinstance(key, str):
                check_text(key)
        super().dump_struct(value, write, escape=escape_exactly)

    dispatch[dict] = dump_struct  # type: ignore[assignment]


def marshal_exactly(values: tuple[Any, ...]) -> str:
    """``values`` as a ``params`` block, by the exact path."""
    return _Marshaller("utf-8", allow_none=True).dumps(values)


_VALUE_START = "<params>\n<param>\n"
_VALUE_END = "</param>\n</params>\n"


def value_exactly(value: Any) -> str:
    """``value`` as a ``<value>`` element, by the exact path."""
    body = marshal_exactly((value,))
    return body[len(_VALUE_START) : len(body) - len(_VALUE_END)]


# --------------------------------------------------------------------------
# Decoding: the exact path.


class _Unmarshaller(xmlrpc.client.Unmarshaller):
    """The standard unmarshaller, fed text that expat already decoded."""

    def __init__(self) -> None:
        super().__init__(use_builtin_types=True)
        # The base class would decode names a second time unless told that
        # the text arrives decoded.
        self._encoding = None  # type: ignore[assignment]


def _unmarshal(body: bytes, max_depth: int) -> _Unmarshaller:
    """Feed ``body`` through expat to an unmarshaller, refusing DOCTYPEs and deep nesting."""
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
    except (ValueError, TypeError, ArithmeticError, IndexError, KeyError) as e:
        # ArithmeticError: Decimal() refuses a bad bigdecimal with
        # InvalidOperation, which is not a ValueError.
        raise XMLRPCParseError(
            faults.PARSE_ERROR, f"bad value: {faults.describe_exception(e)}"
        ) from None
    except LookupError as e:
        # The XML declaration names an encoding Python has no text codec
        # for (IndexError and KeyError, also LookupErrors, are caught above).
        raise XMLRPCParseError(faults.PARSE_ERROR, f"unsupported encoding: {e}") from None
    except xmlrpc.client.ResponseError as e:
        # The unmarshaller's refusal of an element it does not know inside
        # a <value>.
        detail = e.args[0] if e.args else "unknown element"
        raise XMLRPCParseError(faults.PARSE_ERROR, f"not an XML-RPC value: {detail}") from None
    return unmarshaller


def parse_call_exactly(body: bytes, max_depth: int) -> tuple[str, tuple[Any, ...]]:
    """:func:`parse_call` by the exact path."""
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


def parse_response_exactly(body: bytes, max_depth: int) -> Any:
    """:func:`parse_response` by the exact path."""
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
