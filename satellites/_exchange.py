"""
What the HTTP front end hands its router, and what the router answers:
a framed :class:`Request`, a :class:`Response`, a :class:`Refused` request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple, Protocol

from satellites._errors import SatelliteError
from satellites._soon import Soon

if TYPE_CHECKING:
    from satellites._http import HTTPChannel

__all__ = ["NOTED", "PAGE_HEADERS", "Refused", "Request", "Responding", "Response", "plain"]


class Response(NamedTuple):
    """What a router answers: a status line's code and reason, header lines (each ending in CRLF), a body."""

    status: bytes
    headers: bytes
    body: bytes
    close: bool = False


class Refused(SatelliteError):
    """A request refused while it is framed: answered with ``status`` and ``text``, then closed."""

    def __init__(self, status: bytes, text: str) -> None:
        super().__init__(text)
        self.response = plain(status, text, close=True)


def plain(status: bytes, text: str, headers: bytes = b"", close: bool = False) -> Response:
    """A ``text/plain`` response saying ``text``."""
    return Response(
        status,
        b"Content-Type: text/plain; charset=utf-8\r\n" + PAGE_HEADERS + headers,
        text.encode() + b"\n",
        close,
    )


PAGE_HEADERS = (
    b"X-Content-Type-Options: nosniff\r\n"
    b"Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'\r\n"
)


class Request:
    """
    One request as framed: what routers read of it.  The class holds the
    defaults, so that a request costs only what it was given.
    """

    method = b""
    target = b""
    version = b""
    host: bytes | None = None
    origin: bytes | None = None
    content_type: bytes | None = None
    authorization: bytes | None = None
    expect: bytes | None = None
    keep_alive = True
    body = b""
    _length: bytes | None = None
    _transfer: bytes | None = None

    @property
    def path(self) -> bytes:
        """The target without its query."""
        return self.target.partition(b"?")[0]


# The header lines a request is read for; each may appear once.
NOTED = {
    b"host": "host",
    b"origin": "origin",
    b"content-type": "content_type",
    b"authorization": "authorization",
    b"expect": "expect",
    b"content-length": "_length",
    b"transfer-encoding": "_transfer",
}


class Responding(Protocol):
    """What answers the requests a channel frames (a :class:`satellites._routes.Routes`)."""

    def answer(self, request: Request, channel: HTTPChannel) -> Soon[Response]:
        """
        The response to ``request``, now or later: a Deferred that never
        fails (see :mod:`satellites._soon`).
        """
