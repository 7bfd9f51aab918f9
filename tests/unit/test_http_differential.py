"""
co2's HTTP front end against h11, a strict HTTP/1.1 parser of reference.

Request heads are generated with the shapes that smuggling and
desynchronisation are made of (bare CR and LF, obs-fold, control bytes,
doubled or malformed lengths, lengths with chunked, spaces in odd
places, other versions); for each, whenever h11 refuses the first
request, co2 refuses it too, and whenever both take it, they agree on its
method, target and body.  co2 also frames the same bytes the same way
however they are split into reads.
"""

from __future__ import annotations

import re
from typing import Any

import h11
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport

from co2._admission import Admission
from satellites._http import HTTPChannel, HTTPFactory, Request, Response

PEER = IPv4Address("TCP", "127.0.0.1", 40000)
HOST = IPv4Address("TCP", "127.0.0.1", 2004)

Framed = tuple[bytes, bytes, bytes]


class Recorder:
    """Answers every request 200 and notes how each was framed."""

    def __init__(self) -> None:
        self.framed: list[Framed] = []

    def answer(self, request: Request, channel: HTTPChannel) -> Response:
        self.framed.append((request.method, request.target, request.body))
        return Response(b"200 OK", b"", b"")


def co2_frames(data: bytes, cuts: list[int] = ()) -> tuple[list[Framed], bytes]:  # type: ignore[assignment]
    """What co2 framed from ``data`` (split at ``cuts``), and what it wrote back."""
    recorder = Recorder()
    reactor = MemoryReactorClock()
    factory = HTTPFactory(recorder, reactor, Admission(10, "test", reactor), 1 << 20)
    channel = factory.buildProtocol(PEER)
    transport = StringTransport(peerAddress=PEER, hostAddress=HOST)
    channel.makeConnection(transport)
    at = 0
    for cut in [*sorted(set(cuts)), len(data)]:
        if at < cut:
            channel.dataReceived(data[at:cut])
            at = cut
    return recorder.framed, transport.value()


def h11_first(data: bytes) -> Framed | str:
    """The first request as h11 frames it: a triple, ``"refused"`` or ``"incomplete"``."""
    connection = h11.Connection(h11.SERVER)
    connection.receive_data(data)
    method = target = b""
    body = b""
    try:
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                return "incomplete"
            if isinstance(event, h11.Request):
                method, target = event.method, event.target
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return (bytes(method), bytes(target), body)
    except h11.RemoteProtocolError:
        return "refused"


EOL = st.sampled_from([b"\r\n", b"\r\n", b"\r\n", b"\r\n", b"\n", b"\r"])

REQUEST_LINES = st.one_of(
    st.builds(
        lambda method, target, version, eol: method + b" " + target + b" " + version + eol,
        st.sampled_from([b"POST", b"GET", b"HEAD", b"PUT", b"post", b"CONNECT", b"PO ST"]),
        st.sampled_from([b"/", b"/RPC2", b"/a?b=c", b"http://x/RPC2", b"*", b"/a b", b"/\x01", b"//"]),
        st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"http/1.1", b"HTTP/1.10", b"HTTP/1"]),
        EOL,
    ),
    st.sampled_from([
        b"POST  /RPC2 HTTP/1.1\r\n", b"\r\nPOST / HTTP/1.1\r\n", b"POST /\r\n", b" POST / HTTP/1.1\r\n",
    ]),
)

NAMES = st.sampled_from([
    b"Host", b"Host", b"Content-Length", b"Content-Length", b"Transfer-Encoding", b"X-Pad",
    b"Connection", b"Content-Type", b"Expect", b"content-length", b"Host ", b" X", b"X Y", b"", b"X\x00",
])
VALUES = st.one_of(
    st.sampled_from([
        b"127.0.0.1", b"a", b"4", b"0", b"10", b"04", b"4, 4", b"+4", b"-1", b" 4 ", b"4 4",
        b"99999999999999999999",
        b"chunked", b"Chunked", b"gzip, chunked", b"chunked, gzip", b"identity", b"close", b"keep-alive",
        b"text/xml", b"100-continue", b"y\nTransfer-Encoding: chunked", b"y\rTransfer-Encoding: chunked",
        b"a\x00b", b"a\x01b", b"a\x7fb", b"a\tb", b"a\xffb", b"",
    ]),
    st.binary(max_size=6),
)
HEADER_LINES = st.lists(
    st.one_of(
        st.builds(lambda name, value, eol: name + b": " + value + eol, NAMES, VALUES, EOL),
        st.builds(lambda value: b" " + value + b"\r\n", VALUES),  # obs-fold
        st.builds(lambda name, value: name + b":" + value + b"\r\n", NAMES, VALUES),
    ),
    max_size=6,
)
BODIES = st.sampled_from([
    b"", b"abcd", b"abcdefghij", b"4\r\nabcd\r\n0\r\n\r\n", b"0\r\n\r\n", b"4\nabcd\r\n0\r\n\r\n",
    b"4;x=y\r\nabcd\r\n0\r\n\r\n", b"0\r\n\r\nGET /RPC2 HTTP/1.1\r\nHost: a\r\n\r\n",
    b"abcdPOST /RPC2 HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
])


@st.composite
def wild_requests(draw: Any) -> bytes:
    line = draw(REQUEST_LINES)
    host = draw(st.sampled_from([b"Host: 127.0.0.1\r\n", b""]))
    return line + host + b"".join(draw(HEADER_LINES)) + draw(EOL) + draw(BODIES)


@st.composite
def near_valid_requests(draw: Any) -> bytes:
    """A well-formed call, framed by length or chunks, with at most one odd header line among good ones."""
    body = draw(st.binary(max_size=12))
    chunked = draw(st.booleans())
    if chunked:
        framing = b"Transfer-Encoding: chunked\r\n"
        payload = (b"%x\r\n%s\r\n" % (len(body), body) if body else b"") + b"0\r\n\r\n"
    else:
        framing = b"Content-Length: %d\r\n" % (len(body) + draw(st.sampled_from([0, 0, 0, 1, -1])))
        payload = body
    lines = [b"Host: 127.0.0.1\r\n", framing, b"Content-Type: text/xml\r\n"]
    odd = draw(st.one_of(st.none(), HEADER_LINES.map(b"".join)))
    if odd is not None:
        lines.insert(draw(st.integers(0, len(lines))), odd)
    method = draw(st.sampled_from([b"POST", b"GET", b"HEAD"]))
    tail = draw(st.sampled_from([b"", b"POST /RPC2 HTTP/1.1\r\nHost: a\r\n\r\n", b"\r\n"]))
    return method + b" /RPC2 HTTP/1.1\r\n" + b"".join(lines) + b"\r\n" + payload + tail


def requests() -> Any:
    return st.one_of(wild_requests(), near_valid_requests())


def check_against_h11(data: bytes) -> None:
    framed, _ = co2_frames(data)
    reference = h11_first(data)
    if reference == "refused":
        assert not framed, f"h11 refuses {data!r}, co2 framed {framed[0]!r}"
    elif framed:
        assert reference != "incomplete", f"h11 waits for more of {data!r}, co2 framed {framed[0]!r}"
        assert framed[0] == reference


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests())
def test_co2_refuses_what_h11_refuses_and_agrees_on_the_rest(data: bytes) -> None:
    """Where h11 refuses a request co2 refuses it too; where both take it, method, target and body agree."""
    check_against_h11(data)


@settings(max_examples=1000, deadline=None)
@given(requests(), st.lists(st.integers(min_value=0, max_value=200), max_size=5))
def test_the_framing_does_not_depend_on_how_bytes_arrive(data: bytes, cuts: list[int]) -> None:
    """
    The same bytes split into other reads are framed the same and answered with the same statuses (the
    reason given for a refusal may name another of the request's faults).
    """
    split, whole = co2_frames(data, cuts), co2_frames(data)
    assert split[0] == whole[0]
    assert statuses(split[1]) == statuses(whole[1])


def statuses(written: bytes) -> list[bytes]:
    return re.findall(rb"^HTTP/1\.1 (\d{3}) ", written, re.MULTILINE)


def test_the_shapes_of_the_findings_are_checked() -> None:
    """The request that smuggled a call past co2, and its bare-CR twin, are in the differential set."""
    for separator in (b"\n", b"\r"):
        check_against_h11(
            b"POST /RPC2 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 4\r\nX-Pad: y" + separator
            + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nPOST /RPC2 HTTP/1.1\r\nHost: a\r\n\r\n"
        )
        broken = b"POST /RPC2 HTTP/1.1\r\nHost: a\r\nX-Pad: y" + separator + b"Z: 1\r\n\r\n"
        assert co2_frames(broken)[0] == []


def test_an_empty_line_after_a_request_is_refused_however_the_reads_fall() -> None:
    """A request whose final empty line straddles two reads, then a stray CRLF: the stray line is refused."""
    data = (
        b"POST /RPC2 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nContent-Type: text/xml\r\n\r\n\r\n"
    )
    whole = co2_frames(data)
    assert statuses(whole[1]) == [b"200", b"400"]
    for cut in range(1, len(data)):
        assert co2_frames(data, [cut]) == whole
