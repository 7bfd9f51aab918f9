"""
The rules of a co2 message and of ``host_id``, and a message's encoding.

A message is a dict holding at least ``data`` (any XML-RPC value) and
``host_id``, the identity of the server that sent it:
``<random>@<ip>:<port>``, where ``port`` is the XML-RPC port that server
listens on.  Between nodes it travels as a msgpack map (see
:mod:`co2._values`): :func:`encode_message` makes it, :func:`read_message`
checks what came from elsewhere, :func:`decode_message` reads back what
was checked already.
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from co2._values import check_members, check_text, check_value, pack, unpack

__all__ = [
    "HostId",
    "check_message",
    "decode_message",
    "encode_message",
    "host_matches",
    "make_host_id",
    "parse_host_id",
    "read_message",
]


@dataclass(frozen=True)
class HostId:
    """The three parts of a ``host_id``."""

    nonce: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.nonce}@{self.host}:{self.port}"


def make_host_id(host: str, port: int) -> str:
    """
    A new ``host_id`` for a server reachable at ``host``:``port``.

    The random part is 64 bits, written in decimal as the classic servers did.
    """
    return str(HostId(str(secrets.randbits(64)), host, port))


def parse_host_id(value: object) -> HostId:
    """
    Split a ``host_id`` into its parts.

    Raises ``ValueError`` naming what is wrong when ``value`` is not of the
    form ``<random>@<ip>:<port>``.
    """
    if not isinstance(value, str):
        raise ValueError(f"host_id must be a string, not {type(value).__name__}")
    nonce, at, address = value.partition("@")
    host, colon, port_text = address.rpartition(":")
    if not (at and nonce and colon and host):
        raise ValueError(f"host_id {value!r} is not of the form <random>@<ip>:<port>")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"host_id {value!r} has no numeric port") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"host_id {value!r} has a port out of range")
    return HostId(nonce, host, port)


def _normalise(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def host_matches(host_id: HostId, client_ip: str) -> bool:
    """
    Whether the host part of ``host_id`` is the address ``client_ip``.

    Both are compared as IP addresses, so ``::ffff:127.0.0.1`` matches
    ``127.0.0.1``; a host part that is not an IP address never matches.
    """
    claimed = _normalise(host_id.host)
    return claimed is not None and claimed == _normalise(client_ip)


# The host_ids found well-formed lately: a network has few senders, and
# every message names one of them.
_good_host_ids: set[str] = set()
_GOOD_HOST_IDS = 1024


def _check_host_id(value: object) -> None:
    if type(value) is str and value in _good_host_ids:
        return
    parse_host_id(value)
    assert isinstance(value, str)
    check_text(value)
    if len(_good_host_ids) >= _GOOD_HOST_IDS:
        _good_host_ids.clear()
    _good_host_ids.add(value)


def check_message(message: object) -> dict[str, Any]:
    """
    Check that ``message`` is a struct holding ``data`` and a well-formed
    ``host_id``; return it.  Raises ``ValueError`` saying what is missing.
    """
    if not isinstance(message, dict):
        raise ValueError(f"a message must be a struct, not {type(message).__name__}")
    if "data" not in message or "host_id" not in message:
        missing = [key for key in ("data", "host_id") if key not in message]
        raise ValueError(f"a message must hold {' and '.join(missing)}")
    _check_host_id(message["host_id"])
    return message


def encode_message(message: Mapping[str, Any]) -> bytes:
    """
    The msgpack encoding of ``message``, whose values were checked (by
    :func:`co2._values.check_value` or by coming from a parser).  Safe
    from any thread.
    """
    return pack(message)


def decode_message(body: bytes) -> dict[str, Any]:
    """
    A new dict of the message ``body`` encodes, which this node made or
    checked with :func:`read_message`.
    """
    message: dict[str, Any] = unpack(body)
    return message


def read_message(body: bytes) -> dict[str, Any]:
    """
    The message ``body`` encodes, checked: a map holding ``data`` and a
    well-formed ``host_id``, with string keys and XML-RPC values all
    through.  Raises ``ValueError`` (or ``TypeError``) saying what is wrong.
    """
    try:
        value = unpack(body)
    except ValueError as e:
        raise ValueError(f"the message is not one msgpack value: {str(e) or type(e).__name__}") from None
    message = check_message(value)
    if len(message) == 2:
        # Only data and host_id, and check_message checked host_id.
        check_value(message["data"])
    else:
        check_members(message)
    return message
