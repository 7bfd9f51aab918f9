"""
Where each request on a connection begins and ends, and which requests
are refused as they are framed.

llhttp (through ``httptools``), the parser of Node.js, frames every
request in its strict mode: it alone says where a request's head and
body end.  What RFC 9112 asks a server to refuse and llhttp leaves to its
user is refused here: an empty line before the request line, a request
in HTTP/1.1 with no ``Host``, a transfer coding other than ``chunked``, a
version other than 1.0 and 1.1, a head over :data:`MAX_HEAD` bytes or
:data:`MAX_HEADERS` lines, a body over ``max_request_size``, an
``Upgrade``, a target that is not a path.

:class:`Framing` holds no connection: it is fed bytes and tells its
:class:`Framed` (the channel) of each request.
"""

from __future__ import annotations

from typing import Protocol

from httptools import HttpParserError, HttpParserUpgrade, HttpRequestParser

from satellites._exchange import NOTED, Refused, Request

__all__ = ["MAX_HEAD", "MAX_HEADERS", "Framed", "Framing"]

MAX_HEAD = 16 * 1024
"""The longest request head, request line included, in bytes: a longer one gets ``431``."""

MAX_HEADERS = 100
"""The most header lines in one request: more get ``431``."""

_END_OF_HEAD = b"\r\n\r\n"

# The framing of the request under way.
_IDLE, _HEAD, _BODY, _CHUNKED, _DONE = range(5)


class Framed(Protocol):
    """What a :class:`Framing` tells of the requests it frames (an ``HTTPChannel``)."""

    def request_begun(self) -> None:
        """The first byte of a request has come."""

    def request_framed(self, request: Request) -> None:
        """``request`` has come whole."""

    def continue_expected(self) -> None:
        """The head just framed asks for ``100 Continue`` before its body is sent."""


class Framing:
    """
    Frames the requests of one connection for ``framed``: bodies over
    ``max_request_size`` bytes are refused.  Each read is fed so that a
    request's head is measured exactly (a head ends at the first empty
    line) and nothing after a request is fed before the request is whole.
    """

    def __init__(self, framed: Framed, max_request_size: int) -> None:
        self.framed = framed
        self.max_request_size = max_request_size
        self._parser = HttpRequestParser(self)
        self._phase = _IDLE
        self._request = Request()
        self._noted: dict[str, bytes] = {}
        self._url = b""
        self._headers = 0
        self._head_size = 0
        self._tail = b""
        self._line = b""
        self._parts: list[bytes] = []
        self._size = 0
        self._remaining = 0
        self.done = False
        """Whether nothing more is framed: the last request came, or one was refused."""

    def stop(self) -> None:
        """Frame nothing more."""
        self._phase = _DONE
        self.done = True

    def feed(self, data: bytes) -> None:
        """
        Frame what ``data`` holds; raises :class:`Refused` for a request
        to refuse, after which nothing more is framed.
        """
        try:
            self._frame(data)
        except Refused:
            self.stop()
            raise
        except HttpParserUpgrade:  # pragma: no cover - refused at its headers
            self.stop()
            raise Refused(b"400 Bad Request", "Upgrade is refused.") from None
        except HttpParserError as e:
            self.stop()
            cause = e.__context__
            if isinstance(cause, Refused):
                raise cause from None
            if not isinstance(cause, _Ignored):
                raise Refused(b"400 Bad Request", f"Malformed request: {e}.") from None

    def _frame(self, data: bytes) -> None:
        view = memoryview(data)
        at, end = 0, len(data)
        parser = self._parser
        while at < end:
            phase = self._phase
            if phase == _BODY and self._remaining:
                take = min(self._remaining, end - at)
                self._remaining -= take
                parser.feed_data(view[at:at + take])
                at += take
            elif phase == _IDLE or phase == _HEAD:
                at = self._frame_head(data, view, at)
            elif phase != _DONE:
                # A chunked body's end is llhttp's to find; nothing after it is read.
                parser.feed_data(view[at:])
                return
            else:
                return

    def _frame_head(self, data: bytes, view: memoryview, at: int) -> int:
        if self._phase == _IDLE:
            if data[at] in b"\r\n":
                raise Refused(b"400 Bad Request", "An empty line stands before the request line.")
            self._phase = _HEAD
            self.framed.request_begun()
            found = data.find(_END_OF_HEAD, at)
            if found >= 0 and found + 4 - at <= MAX_HEAD:
                # The whole head is in this read, as it nearly always is.
                stop = found + 4
                self._line = data[at:data.find(b"\n", at, stop) + 1]
                self._head_size = stop - at
                self._tail = b""
                self._parser.feed_data(view[at:stop])
                return stop
            self._head_size = 0
            self._tail = b""
            self._line = b""
        stop = -1
        if self._tail:
            # The empty line may begin in an earlier read.
            found = (self._tail + data[at:at + 3]).find(_END_OF_HEAD)
            if found >= 0:
                stop = at + found + 4 - len(self._tail)
        if stop < 0:
            found = data.find(_END_OF_HEAD, at)
            stop = len(data) if found < 0 else found + 4
            if found < 0:
                self._tail = (self._tail + data[max(at, stop - 3):])[-3:]
        self._head_size += stop - at
        if self._head_size > MAX_HEAD:
            raise Refused(b"431 Request Header Fields Too Large", f"A request head over {MAX_HEAD} bytes.")
        if self._line[-1:] != b"\n":
            # The request line as sent, to check that llhttp read it as written.
            line_end = data.find(b"\n", at, stop)
            self._line += data[at:stop if line_end < 0 else line_end + 1]
        self._parser.feed_data(view[at:stop])
        return stop

    # llhttp's callbacks

    # A request's state starts afresh when the one before is complete (no
    # on_message_begin: one call less per request).

    def on_url(self, url: bytes) -> None:
        if self._phase == _DONE:
            raise _Ignored()
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers += 1
        if self._headers > MAX_HEADERS:
            raise Refused(b"431 Request Header Fields Too Large", f"More than {MAX_HEADERS} header lines.")
        noted = NOTED.get(name.lower())
        if noted is not None:
            if noted in self._noted:
                raise Refused(b"400 Bad Request", f"More than one {name.decode('latin-1')} header.")
            self._noted[noted] = value

    def on_headers_complete(self) -> None:
        self._request = request = Request()
        request.__dict__ = self._noted  # the header lines it was read for
        parser = self._parser
        request.method = parser.get_method()
        request.target = self._url
        # The version as the request line spells it (llhttp took only HTTP/d.d).
        request.version = version = self._line[-5:-2]
        if version != b"1.1" and version != b"1.0":
            raise Refused(b"505 HTTP Version Not Supported", "This server speaks HTTP/1.1 and HTTP/1.0.")
        if request.host is None and version == b"1.1":
            raise Refused(b"400 Bad Request", "An HTTP/1.1 request needs a Host header.")
        if self._url[:1] != b"/":
            raise Refused(b"400 Bad Request", "The request target must be a path.")
        if len(self._line) != len(request.method) + len(self._url) + 12:
            # llhttp takes more than one space between the parts; RFC 9112 does not.
            raise Refused(b"400 Bad Request", "Malformed request line: one space between its three parts.")
        if parser.should_upgrade():
            # llhttp would stop framing here, leaving the body unread.
            if request.method == b"CONNECT":
                raise Refused(b"405 Method Not Allowed", "CONNECT is not served here.")
            raise Refused(b"400 Bad Request", "No protocol but HTTP/1.1 is spoken here: Upgrade is refused.")
        request.keep_alive = parser.should_keep_alive()
        if request._transfer is not None:
            if request._transfer.strip().lower() != b"chunked":
                raise Refused(b"501 Not Implemented", "The only transfer coding taken is chunked.")
            self._phase = _CHUNKED
            request.keep_alive = False
        else:
            length = int(request._length) if request._length is not None else 0
            if length > self.max_request_size:
                raise Refused(b"413 Content Too Large", _too_large(self.max_request_size))
            self._phase = _BODY
            self._remaining = length
        if request.expect is not None:
            if request.expect.strip().lower() != b"100-continue":
                raise Refused(b"417 Expectation Failed", "The only expectation met is 100-continue.")
            self.framed.continue_expected()

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > self.max_request_size:
            raise Refused(b"413 Content Too Large", _too_large(self.max_request_size))
        self._parts.append(body)

    def on_message_complete(self) -> None:
        request = self._request
        parts = self._parts
        if parts:
            request.body = parts[0] if len(parts) == 1 else b"".join(parts)
            self._parts = []
        if request.keep_alive:
            self._phase = _IDLE
        else:
            self.stop()
        self._noted = {}
        self._url = b""
        self._headers = self._size = 0
        self.framed.request_framed(request)


class _Ignored(Exception):
    """Raised in llhttp's callback to stop it framing what follows a connection's last request."""


def _too_large(limit: int) -> str:
    return f"Request body over {limit} bytes refused."
