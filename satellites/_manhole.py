"""
The manhole: an SSH server on loopback that opens a Python shell inside
the running node (``twisted.conch``'s ``ColoredManhole``), with the
satellite, its relay, its config and the reactor in its namespace.

Users prove themselves with a password from a ``user:password`` file,
or with a key from an ``authorized_keys`` file; there is no other way
in.  The server's own key is kept in a file, made on first use, so that
clients can recognise the server from one start to the next.
"""

from __future__ import annotations

import os
from typing import Any, cast

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from twisted.conch.checkers import InMemorySSHKeyDB, SSHPublicKeyChecker
from twisted.conch.insults import insults
from twisted.conch.interfaces import IConchUser
from twisted.conch.manhole import ColoredManhole
from twisted.conch.manhole_ssh import ConchFactory, TerminalRealm, TerminalSession
from twisted.conch.ssh.keys import Key
from twisted.cred.checkers import FilePasswordDB
from twisted.cred.portal import Portal

from satellites._ssh import check_loopback, read_authorized_keys

__all__ = ["check_loopback", "host_key", "manhole_factory", "read_authorized_keys"]

def host_key(path: str) -> Key:
    """The server's key at ``path``, made (ed25519, readable by its owner only) when missing."""
    if not os.path.exists(path):
        private = ed25519.Ed25519PrivateKey.generate()
        pem = private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        )
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as f:
            f.write(pem)
    return Key.fromFile(path)


class _Session(TerminalSession):
    """
    A manhole session that also takes what Twisted's leaves out: a
    terminal resized, and the end of the client's input (``ssh`` with
    its input from a pipe), which ends the session instead of failing.
    """

    _shell: Any = None
    _protocol: Any = None

    def openShell(self, proto: Any) -> None:
        self._protocol = proto
        self._shell = self.chainedProtocolFactory()
        self.transportFactory(
            proto, self._shell, IConchUser(self.original), self.width, self.height
        )

    def windowChanged(self, newWindowSize: Any) -> None:
        height, width = newWindowSize[:2]
        terminal = getattr(self._shell, "terminalProtocol", None)
        if terminal is not None:
            terminal.terminalSize(width, height)

    def eofReceived(self) -> None:
        if self._protocol is not None:
            self._protocol.loseConnection()


def manhole_factory(
    namespace: dict[str, Any],
    key: Key,
    passwords: str | None = None,
    authorized_keys: dict[str, list[Key]] | None = None,
) -> ConchFactory:
    """
    An SSH server factory whose sessions are Python shells on ``namespace``.
    ``passwords`` is a ``user:password`` file (read at each login);
    ``authorized_keys`` maps user names to the keys they may log in with.
    """
    found: list[Any] = []
    if passwords is not None:
        found.append(FilePasswordDB(passwords))
    if authorized_keys:
        found.append(SSHPublicKeyChecker(InMemorySSHKeyDB(
            {user.encode(): keys for user, keys in authorized_keys.items()}
        )))
    if not found:
        raise ValueError("the manhole needs manhole_passwords or manhole_keys")
    realm: Any = TerminalRealm()
    realm.sessionFactory = _Session
    realm.chainedProtocolFactory = lambda: insults.ServerProtocol(ColoredManhole, namespace)
    factory = ConchFactory(Portal(realm, found))
    # Twisted's own manhole keeps Key objects here too, whatever the annotations say.
    kind = key.sshType()
    factory.publicKeys = cast(Any, {kind: key.public()})
    factory.privateKeys = cast(Any, {kind: key})
    return factory
