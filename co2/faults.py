"""
XML-RPC fault codes used by co2.

The first group follows the interoperability convention for XML-RPC fault
codes; the second lies in the range it sets aside for server-specific errors
(-32099 .. -32000).
"""

from __future__ import annotations

from xmlrpc.client import Fault

__all__ = [
    "APPLICATION_ERROR",
    "BUSY",
    "CALL_TIMEOUT",
    "HOST_ID_MISMATCH",
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "METHOD_NOT_FOUND",
    "NODE_UNREACHABLE",
    "PARSE_ERROR",
    "RELOAD_FAILED",
    "RESPONSE_TOO_LARGE",
    "SHUTTING_DOWN",
    "Fault",
    "describe_exception",
]

PARSE_ERROR = -32700
"""The request body is not well-formed XML-RPC."""

INVALID_REQUEST = -32600
"""Well-formed XML that is not a method call (or a nested multicall)."""

METHOD_NOT_FOUND = -32601
"""No method of that name is callable here."""

INVALID_PARAMS = -32602
"""The method exists, but the parameters do not fit it."""

INTERNAL_ERROR = -32603
"""The server failed; for example a result that XML-RPC cannot carry."""

APPLICATION_ERROR = -32500
"""A plugin raised: the fault string holds its type and message."""

HOST_ID_MISMATCH = -32000
"""A ``notify`` whose ``host_id`` names a host other than the caller's IP."""

NODE_UNREACHABLE = -32001
"""The node hosting a remote method cannot be reached."""

CALL_TIMEOUT = -32002
"""A remote method did not answer in time."""

SHUTTING_DOWN = -32003
"""The node is stopping and takes no more messages: send it again later."""

RELOAD_FAILED = -32004
"""``co2.reload`` could not load the package's new code; the old version still runs."""

RESPONSE_TOO_LARGE = -32005
"""The answer would be over the node's ``max_response_size`` (a multicall is cut short as soon as it is)."""

BUSY = -32006
"""The node takes no more messages for now (an outbox of a link that is up is full): send it again later."""


def describe_exception(error: BaseException) -> str:
    """
    Say what an exception was, for a client: its type and message only.

    Never includes a traceback.
    """
    name = type(error).__name__
    message = str(error)
    return f"{name}: {message}" if message else name
