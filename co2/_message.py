"""
The rules of a co2 message and of ``host_id``.

A message is a dict holding at least ``data`` (any XML-RPC value) and
``host_id``, the identity of the server that sent it:
``<random>@<ip>:<port>``, where ``port`` is the XML-RPC port that server
listens on.
"""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass
from typing import Any

__all__ = [
    "HostId",
    "check_message",
    "host_matches",
    "make_host_id",
    "parse_host_id",
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


def check_message(message: object) -> dict[str, Any]:
    """
    Check that ``message`` is a struct holding ``data`` and a well-formed
    ``host_id``; return it.  Raises ``ValueError`` saying what is missing.
    """
    if not isinstance(message, dict):
        raise ValueError(f"a message must be a struct, not {type(message).__name__}")
    missing = [key for key in ("data", "host_id") if key not in message]
    if missing:
        raise ValueError(f"a message must hold {' and '.join(missing)}")
    parse_host_id(message["host_id"])
    return message
