"""
Who may talk to a node: ``twisted.cred`` checkers, configured the way
``twistd`` does (``--auth memory:alice:secret``, ``file:PATH``, ``unix``)
or by ``auth`` in ``config.py``.

One :class:`Authentication` per node serves both of its doors: HTTP Basic
on the XML-RPC listener (through ``twisted.web.guard``) and the
``Hello`` of AMP links.  Credentials are a user name and a password;
every refusal is logged, at most a few lines every :data:`REPORT_EVERY`
seconds so that a flood of bad attempts cannot flood the log too.
"""

from __future__ import annotations

import base64
import fnmatch
from collections.abc import Iterable, Sequence
from typing import Any

from twisted.cred import checkers, credentials, error, strcred
from twisted.cred.portal import Portal
from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

__all__ = [
    "REPORT_EVERY",
    "Authentication",
    "basic_authorization",
    "make_authentication",
]

REPORT_EVERY = 10.0
"""Seconds over which at most :data:`_REPORTED` refusals are logged one by one."""

_REPORTED = 5

_log = Logger(namespace="co2.auth")


def basic_authorization(username: str, password: str) -> bytes:
    """The value of an HTTP ``Authorization`` header for Basic credentials."""
    token = base64.b64encode(f"{username}:{password}".encode())
    return b"Basic " + token


@implementer(checkers.ICredentialsChecker)
class _AnyOf:
    """
    The node's checkers as one: each is tried in turn, with the user name
    and password as bytes and as text, whichever it expects (Twisted's
    in-memory checker compares text, its password file bytes).  A
    ``Portal`` keeps one checker per kind of credentials, hence this.
    The avatar id it gives is text.
    """

    credentialInterfaces = (credentials.IUsernamePassword,)

    def __init__(self, found: Sequence[checkers.ICredentialsChecker]) -> None:
        self.checkers = list(found)
        self._wants_bytes: dict[int, bool] = {}

    def requestAvatarId(self, given: Any) -> Deferred[Any]:
        forms = [given]
        other = _other_form(given.username, given.password)
        if other is not None:
            forms.append(credentials.UsernamePassword(*other))
        attempts = []
        for checker in self.checkers:
            # The form this checker accepted last is tried first: a refusal
            # costs a Failure, and a checker always wants the same form.
            ordered = forms if self._wants_bytes.get(id(checker), True) == isinstance(
                given.username, bytes) else forms[::-1]
            attempts += [(checker, form) for form in ordered]
        return self._try(attempts).addCallback(_text)

    def _try(self, attempts: list[tuple[Any, Any]]) -> Deferred[Any]:
        (checker, form), rest = attempts[0], attempts[1:]
        d: Deferred[Any] = checker.requestAvatarId(form)
        d.addCallback(self._accepted, checker, form)
        if rest:
            d.addErrback(lambda f: f.trap(error.UnauthorizedLogin) and self._try(rest))
        return d

    def _accepted(self, avatar_id: Any, checker: Any, form: Any) -> Any:
        self._wants_bytes[id(checker)] = isinstance(form.username, bytes)
        return avatar_id


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _other_form(username: bytes | str, password: bytes | str) -> tuple[Any, Any] | None:
    try:
        if isinstance(username, bytes) and isinstance(password, bytes):
            return username.decode("utf-8"), password.decode("utf-8")
        if isinstance(username, str) and isinstance(password, str):
            return username.encode("utf-8"), password.encode("utf-8")
    except UnicodeError:
        pass
    return None


class Authentication:
    """
    The checkers of one node and which XML-RPC methods need credentials.

    ``descriptions`` are ``twisted.cred.strcred`` strings; a name matching
    one of ``protected`` (shell-style patterns, ``*`` for all) may be
    called only with valid credentials.  ``clock`` (a reactor) times the
    refusal reports.
    """

    def __init__(self, descriptions: Iterable[str], protected: Sequence[str], clock: Any) -> None:
        self.descriptions = tuple(descriptions)
        self.checker = _AnyOf([strcred.makeChecker(d) for d in self.descriptions])
        self.protected = tuple(protected)
        self.everything = "*" in self.protected
        self.clock = clock
        self.refused = 0
        self._window_start: float | None = None
        self._in_window = 0

    def needs_credentials(self, names: Iterable[str]) -> bool:
        """Whether calling all of ``names`` needs credentials."""
        if self.everything:
            return True
        return any(fnmatch.fnmatchcase(name, pattern) for name in names for pattern in self.protected)

    def portal(self, realm: Any, anonymous: bool | None = None) -> Portal:
        """
        A portal with this node's checkers for ``realm``; it lets in the
        anonymous too when ``anonymous`` says so (by default: unless every
        method is protected; each call is then checked by name).
        """
        found: list[Any] = [self.checker]
        if not self.everything if anonymous is None else anonymous:
            found.append(checkers.AllowAnonymousAccess())
        return Portal(realm, found)

    def check(self, username: str | bytes, password: str | bytes) -> Deferred[str]:
        """
        Fires with the user name when the password is right; fails with
        ``UnauthorizedLogin`` otherwise.
        """
        outcome = self.verify(username, password)
        if isinstance(outcome, Deferred):
            return outcome
        return fail(outcome) if isinstance(outcome, Failure) else succeed(outcome)

    def verify(self, username: str | bytes, password: str | bytes) -> str | Failure | Deferred[str]:
        """
        What :meth:`check` says, as soon as it is known: the user name, or
        a ``Failure`` at once when the checkers answer at once (as
        ``memory:`` and ``file:`` do), else a Deferred.  A request on the
        XML-RPC fast lane then needs no Deferred of its own.
        """
        given = credentials.UsernamePassword(username, password)  # type: ignore[arg-type]
        d: Deferred[Any] = self.checker.requestAvatarId(given)
        if not d.called:
            return d
        outcome: Any = d.result
        d.addErrback(lambda _: None)  # a refusal is handed over, not left unhandled
        return outcome

    def refuse(self, where: str, who: str, username: str | None, why: str) -> None:
        """Count and log a refusal at ``where`` (a listener) of ``who`` (an address)."""
        self.refused += 1
        now = self.clock.seconds()
        if self._window_start is None or now - self._window_start >= REPORT_EVERY:
            if self._in_window > _REPORTED:
                _log.warn("{where}: {count} more refusal(s) not logged one by one",
                          where=where, count=self._in_window - _REPORTED)
            self._window_start = now
            self._in_window = 0
        self._in_window += 1
        if self._in_window <= _REPORTED:
            user = "" if username is None else f" (user {username[:64]!r})"
            _log.warn("{where}: refused {who}{user}: {why}", where=where, who=who, user=user, why=why)


def login_failure_reason(failure: Failure) -> str:
    """What a failed login says to a log: the checker's words, or a plain default."""
    if failure.check(error.UnauthorizedLogin, error.UnhandledCredentials):
        return failure.getErrorMessage().strip() or "wrong user name or password"
    return f"the checker failed: {failure.getErrorMessage()}"


def make_authentication(
    descriptions: Iterable[str], protected: Sequence[str], clock: Any
) -> Authentication | None:
    """An :class:`Authentication`, or None when no checker is configured (no authentication)."""
    descriptions = tuple(descriptions)
    return Authentication(descriptions, protected, clock) if descriptions else None
