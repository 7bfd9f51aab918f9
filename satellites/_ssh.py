"""
What the manhole's settings need checked before anything starts: that it
listens on loopback only, and that its ``authorized_keys`` files hold keys.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from twisted.internet.endpoints import serverFromString
from twisted.internet.protocol import Factory
from twisted.internet.testing import MemoryReactor
from twisted.python.failure import Failure

from co2._tls import parameters

__all__ = ["check_loopback", "read_authorized_keys"]

# The kinds of endpoint that can listen on loopback only.  Any other (ssl:
# would read its key files; systemd: and plugins listen where they like)
# is refused before Twisted parses it.
_LOOPBACK_KINDS = ("tcp", "tcp6", "unix")

_WANTED = "the manhole listens on loopback only: tcp:PORT:interface=127.0.0.1 (or ::1), or unix:PATH"


def check_loopback(description: str) -> None:
    """
    Raise ``ValueError`` naming ``description`` unless that server
    endpoint listens on loopback only: ``tcp:``/``tcp6:`` bound to a
    loopback address, or a ``unix:`` socket.

    The string is read by Twisted's own parser and "listened" on a
    ``MemoryReactor``, and the address checked is the one Twisted recorded
    it would bind: ``interface=`` given twice binds the last, no
    ``interface`` binds every one.  A string Twisted cannot read is a
    ``ValueError`` too, never Twisted's own exception.
    """
    kind = parameters(description)[0][1].lower()
    if kind not in _LOOPBACK_KINDS:
        raise ValueError(f"{description!r}: {_WANTED}")
    reactor = MemoryReactor()
    failed: list[Failure] = []
    try:
        serverFromString(reactor, description).listen(Factory()).addErrback(failed.append)
    except Exception as e:  # endpoint parsers raise many kinds of error
        failed.append(Failure(e))
    if failed:
        why = failed[0].getErrorMessage()
        raise ValueError(f"{description!r} is not an endpoint Twisted can read ({why}); {_WANTED}")
    bound = [interface for _, _, _, interface in reactor.tcpServers]
    if reactor.unixServers and not bound:
        return
    if len(bound) == 1 and not reactor.unixServers and _is_loopback(bound[0]):
        return
    where = ", ".join(repr(interface) if interface else "every interface" for interface in bound)
    raise ValueError(f"{description!r}: Twisted would bind {where or 'no TCP interface'}; {_WANTED}")


def _is_loopback(interface: str) -> bool:
    try:
        return ipaddress.ip_address(interface).is_loopback
    except ValueError:  # a host name, or "" for every interface
        return False


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
