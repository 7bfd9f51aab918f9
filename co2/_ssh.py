"""
What the manhole's settings need checked before anything starts: that it
listens on loopback only, and that its ``authorized_keys`` files hold keys.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from co2._tls import parameters

__all__ = ["check_loopback", "read_authorized_keys"]

_LOOPBACK_KINDS = ("tcp", "tcp6")


def check_loopback(description: str) -> None:
    """
    Raise ``ValueError`` unless the server endpoint ``description`` listens
    on loopback only: ``tcp:``/``tcp6:`` with an ``interface`` that is a
    loopback address, or a ``unix:`` socket.
    """
    params = parameters(description)
    kind = (params[0][1] if params else "").lower()
    if kind == "unix":
        return
    if kind not in _LOOPBACK_KINDS:
        raise ValueError(f"{description!r}: the manhole listens on tcp: with a loopback interface, or unix:")
    interface = next((value for name, value in params[1:] if name == "interface"), "")
    try:
        loopback = ipaddress.ip_address(interface).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(
            f"{description!r}: the manhole listens on loopback only (interface=127.0.0.1 or ::1)"
        )


def read_authorized_keys(path: str) -> list[Any]:
    """The public keys of an ``authorized_keys`` file; ``ValueError`` names a bad line."""
    from twisted.conch.ssh.keys import BadKeyError, Key

    found = []
    with open(path, "rb") as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith(b"#"):
                continue
            try:
                found.append(Key.fromString(line))
            except (BadKeyError, ValueError) as e:
                raise ValueError(f"{path}, line {number}: not a public key ({e})") from None
    if not found:
        raise ValueError(f"{path}: holds no public key")
    return found
