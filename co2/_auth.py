"""
Who may talk to a node: ``twisted.cred`` checkers, configured the way
``twistd`` does (``--auth memory:alice:secret``, ``file:PATH``, ``unix``)
or by ``auth`` in ``config.py``.

One :class:`Authentication` per node serves both of its doors: HTTP Basic
on the XML-RPC listener (through ``twisted.web.guard``) and the
``Hello`` of AMP links.  Credentials are a user name and a password;
every refusal is logged through a :class:`~co2._ratelog.RateLimitedLog`,
at most a few lines per listener every :data:`REPORT_EVERY` seconds so
that a flood of bad attempts cannot flood the log too: the count of the
others is logged when those seconds end.

A source (a client's IP; every UNIX-socket client is the one source
:data:`LOCAL_SOURCE`) that fails :data:`FAILURES_ALLOWED` logins within
:data:`THROTTLE_WINDOW` seconds is refused unchecked until the window
ends (:class:`LoginThrottled`), so that passwords cannot be guessed at
the speed of the checker.
"""

from __future__ import annotations

import base64
import fnmatch
import math
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from twisted.cred import checkers, credentials, error, strcred
from twisted.cred.portal import Portal
from twisted.internet.defer import Deferred, fail
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure
from zope.interface import implementer

from co2._errors import ProtocolError
from co2._ratelog import RateLimitedLog

__all__ = [
    "FAILURES_ALLOWED",
    "LOCAL_SOURCE",
    "MAX_SOURCES",
    "REPORT_EVERY",
    "THROTTLE_WINDOW",
    "Authentication",
    "LoginThrottled",
    "basic_authorization",
    "login_source",
    "make_authentication",
]

REPORT_EVERY = 10.0
"""
Seconds over which at most :data:`_REPORTED` refusals per listener are
logged one by one; how many others there were is logged when those
seconds end.
"""

FAILURES_ALLOWED = 10
"""
Failed logins (a wrong user name or password) one source may make within
:data:`THROTTLE_WINDOW` seconds; past that, its logins are refused without
being checked until the window ends.
"""

THROTTLE_WINDOW = 10.0
"""Seconds, from a source's first counted failure, over which its failed logins are counted."""

MAX_SOURCES = 10_000
"""Sources whose failed logins are tracked at once; past that, the oldest entry is forgotten."""

LOCAL_SOURCE = "local"
"""The source every client of a UNIX socket counts as: such clients have no address."""

_REPORTED = 5

_log = Logger(namespace="co2.auth")


def login_source(host: str | None) -> str:
    """
    The source whose failed logins are counted together: the client's
    ``host`` (its IP), or :data:`LOCAL_SOURCE` when it has none (a UNIX
    socket).
    """
    return host or LOCAL_SOURCE


class LoginThrottled(error.UnauthorizedLogin, ProtocolError):
    """
    A login refused without being checked: its ``source`` failed
    :data:`FAILURES_ALLOWED` logins within :data:`THROTTLE_WINDOW` seconds,
    and may try again in ``retry_after`` seconds.  A kind of
    ``UnauthorizedLogin``, so that what refuses those refuses this too.
    """

    def __init__(self, source: str, retry_after: float) -> None:
        self.source = source
        self.retry_after = retry_after
        super().__init__(
            f"too many failed logins from {source} ({FAILURES_ALLOWED} within {THROTTLE_WINDOW:g}s); "
            f"try again in {math.ceil(retry_after)}s"
        )


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


@dataclass(slots=True)
class _Failures:
    since: float
    count: int


class _Throttle:
    """
    Failed logins per source, each source's counted over ``window``
    seconds from its first; at most ``most`` sources at once.  Entries are
    kept in the order their windows started, so that the expired and the
    oldest are at the front.
    """

    def __init__(self, clock: Any, allowed: int, window: float, most: int) -> None:
        self.clock = clock
        self.allowed = allowed
        self.window = window
        self.most = most
        self._sources: OrderedDict[str, _Failures] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sources)

    def retry_after(self, source: str) -> float:
        """Seconds until ``source`` may log in again: 0 unless it is throttled."""
        entry = self._sources.get(source)
        if entry is None or entry.count < self.allowed:
            return 0.0
        return max(0.0, entry.since + self.window - self.clock.seconds())

    def failed(self, source: str) -> None:
        """Count a failed login from ``source``."""
        now = self.clock.seconds()
        while self._sources:
            oldest = next(iter(self._sources.values()))
            if now - oldest.since < self.window:
                break
            self._sources.popitem(last=False)
        entry = self._sources.get(source)
        if entry is None:
            self._sources[source] = _Failures(now, 1)
            if len(self._sources) > self.most:
                self._sources.popitem(last=False)
        else:
            entry.count += 1


class Authentication:
    """
    The checkers of one node and which XML-RPC methods need credentials.

    ``descriptions`` are ``twisted.cred.strcred`` strings; a name matching
    one of ``protected`` (shell-style patterns, ``*`` for all) may be
    called only with valid credentials.  ``clock`` (a reactor) times the
    refusal reports and the throttling of sources that fail too often.
    """

    def __init__(self, descriptions: Iterable[str], protected: Sequence[str], clock: Any) -> None:
        self.descriptions = tuple(descriptions)
        self.checker = _AnyOf([strcred.makeChecker(d) for d in self.descriptions])
        self.protected = tuple(protected)
        self.everything = "*" in self.protected
        self.clock = clock
        self.refused = 0
        self.throttle = _Throttle(clock, FAILURES_ALLOWED, THROTTLE_WINDOW, MAX_SOURCES)
        self.refusals = RateLimitedLog(_log, clock, lines=_REPORTED, every=REPORT_EVERY)
        """Where refusals are logged, a few at a time."""

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

    def throttled(self, source: str) -> bool:
        """
        Whether logins from ``source`` (see :func:`login_source`) are
        refused unchecked now, having failed too often lately.
        """
        return self.retry_after(source) > 0

    def retry_after(self, source: str) -> float:
        """
        Seconds until ``source`` may log in again (0 unless it is
        throttled): what an HTTP ``Retry-After`` says, rounded up.
        """
        return self.throttle.retry_after(source)

    def record_failure(self, source: str) -> None:
        """
        Count a failed login from ``source``, for a door that checks
        credentials elsewhere than in :meth:`check` (such as a
        ``twisted.web.guard``).
        """
        self.throttle.failed(source)

    def check(
        self, username: str | bytes, password: str | bytes, source: str | None = None
    ) -> Deferred[str]:
        """
        Fires with the user name when the password is right; fails with
        ``UnauthorizedLogin`` otherwise.  The checkers of ``memory:`` and
        ``file:`` answer at once: the Deferred has fired when it is returned.

        With a ``source`` (see :func:`login_source`), a wrong user name or
        password counts against it, and a source that is throttled fails
        at once with :class:`LoginThrottled`, its credentials unchecked.
        Nothing resets the count but the end of the source's window: a
        right password between guesses does not.
        """
        if source is not None:
            wait = self.retry_after(source)
            if wait > 0:
                return fail(LoginThrottled(source, wait))
        given = credentials.UsernamePassword(username, password)  # type: ignore[arg-type]
        d: Deferred[str] = self.checker.requestAvatarId(given)
        if source is not None:
            d.addErrback(self._failed, source)
        return d

    def _failed(self, failure: Failure, source: str) -> Failure:
        if failure.check(error.UnauthorizedLogin):
            self.throttle.failed(source)
        return failure

    def refuse(self, where: str, who: str, username: str | None, why: str) -> None:
        """
        Count and log a refusal at ``where`` (a listener) of ``who`` (an
        address): the first few of a window one by one, the others as one
        count per listener when the window ends.
        """
        self.refused += 1
        user = "" if username is None else f" (user {username[:64]!r})"
        self.refusals.emit(
            f"refused at {where}", LogLevel.warn, "{where}: refused {who}{user}: {why}",
            more="{where}: {count} more refusal(s) within {seconds:g}s not logged one by one",
            where=where, who=who, user=user, why=why,
        )

    def close(self) -> None:
        """The node stops: the count of refusals not logged yet is logged now, and no timer is left."""
        self.refusals.close()


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
