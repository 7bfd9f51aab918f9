"""
Fuzz co2's entry points for a given time:

    .venv/bin/python tests/fuzz.py --seconds 300 [--target xmlrpc|amp|all] [--seed N]

Hypothesis generates inputs and runs them through a satellite in memory
(no sockets, no global reactor):

- ``xmlrpc``: whole HTTP requests to the XML-RPC listener: random bytes,
  mutated and rearranged XML-RPC calls, hostile heads.  Every answer must
  be one complete HTTP response with a status co2 documents; a 200 must
  hold a methodResponse (a value or a fault with a documented code); no
  answer may hold a traceback; nothing may raise out of the listener or
  log a failure; and a normal call on a new connection must still be
  answered.
- ``amp``: bytes to the AMP listener: random boxes, commands before and
  after Hello, Deliver batches built from random and mutated envelopes.
  Nothing may raise out of the link or log a failure, and a new link's
  Hello must still succeed.

Each target runs in rounds of fresh examples until its share of the time
is over.  A failure prints the input that caused it (shrunk) and the run
exits 1.  This is not part of the test suite: it runs for as long as it
is given.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import xmlrpc.client
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.logger import globalLogPublisher
from twisted.protocols import amp
from twisted.python.failure import Failure

sys.path.insert(0, str(Path(__file__).resolve().parent / "unit"))

from strategies import xml_text, xmlrpc_values

from co2 import faults
from co2._message import encode_message
from co2._xmlrpc import dump_call, parse_response
from co2.protocol import PROTOCOL_VERSION, encode_batch, encode_envelope
from co2.testing import TestReactor
from relay._links import LinkServerFactory
from satellites import Satellite, make_config, make_server

PEER = IPv4Address("TCP", "127.0.0.1", 40000)
HOST_ID = "1234@127.0.0.1:2004"
STATUSES = {200, 400, 403, 404, 405, 408, 411, 413, 414, 415, 417, 429, 431, 501, 503, 505}
FAULT_CODES = {
    faults.PARSE_ERROR, faults.INVALID_REQUEST, faults.METHOD_NOT_FOUND, faults.INVALID_PARAMS,
    faults.INTERNAL_ERROR, faults.APPLICATION_ERROR, faults.HOST_ID_MISMATCH,
    faults.NODE_UNREACHABLE, faults.CALL_TIMEOUT, faults.RESPONSE_TOO_LARGE,
}


class Failed(AssertionError):
    """An input broke one of co2's promises."""


class Failures:
    """Log events that record a failure (a traceback in the log)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self._seen)

    def _seen(self, event: dict[str, Any]) -> None:
        if "log_failure" in event:
            self.events.append(event)

    def check(self, what: str) -> None:
        if self.events:
            failure = self.events[0]["log_failure"]
            self.events.clear()
            raise Failed(f"{what}: a failure was logged: {failure.getTraceback()}")


def satellite() -> Satellite:
    """A satellite with no plugins, on a test reactor."""
    node = Satellite(make_config({"max_request_size": 64 * 1024}), TestReactor(), host_id=HOST_ID)
    node.load_plugins()
    return node


def connection(factory: Any, reactor: TestReactor, pieces: list[bytes], wait: float) -> bytes:
    """
    What a connection to ``factory``'s listener answers to ``pieces``,
    each read in a reactor turn of its own, the connection then left open
    ``wait`` seconds and closed.
    """
    transport = StringTransport(peerAddress=PEER)
    protocol = factory.buildProtocol(PEER)
    if protocol is None:
        raise Failed("the listener refused a connection")
    protocol.makeConnection(transport)
    try:
        for piece in pieces:
            if transport.disconnecting:
                break
            protocol.dataReceived(piece)
            reactor.advance(0)
        reactor.advance(wait)
    finally:
        protocol.connectionLost(Failure(ConnectionDone()))
        reactor.advance(1)
    return transport.value()


# XML-RPC

def http_responses(raw: bytes) -> list[tuple[int, bytes]]:
    """The (status, body) of each complete response in ``raw``; Failed if it is not HTTP."""
    found = []
    while raw:
        head, separator, rest = raw.partition(b"\r\n\r\n")
        if not separator or not head.startswith((b"HTTP/1.1 ", b"HTTP/1.0 ")):
            raise Failed(f"not an HTTP response: {raw[:200]!r}")
        status = int(head.split(b" ")[1])
        length = len(rest)  # without a Content-Length, the body ends with the connection
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
            elif name.strip().lower() == b"transfer-encoding":
                raise Failed(f"a chunked response: {head!r}")
        if status != 100:
            found.append((status, rest[:length]))
        raw = rest[length:]
    return found


def check_answer(status: int, body: bytes) -> None:
    if status not in STATUSES:
        raise Failed(f"undocumented status {status}: {body[:200]!r}")
    if b"Traceback" in body or b'File "' in body:
        raise Failed(f"a traceback in an answer: {body[:500]!r}")
    if status == 200:
        try:
            parse_response(body)
        except xmlrpc.client.Fault as fault:
            if fault.faultCode not in FAULT_CODES:
                raise Failed(f"undocumented fault code {fault.faultCode}: {fault.faultString}") from None


class XMLRPCTarget:
    """The XML-RPC listener of one satellite."""

    def __init__(self) -> None:
        self.node = satellite()
        self.server = make_server(self.node.dispatcher, 64 * 1024, self.node.reactor, request_timeout=5)
        self.failures = Failures()

    def send(self, pieces: list[bytes]) -> list[tuple[int, bytes]]:
        return http_responses(connection(self.server, self.node.reactor, pieces, 10))

    def run(self, pieces: list[bytes]) -> None:
        for status, body in self.send(pieces):
            check_answer(status, body)
        self.failures.check(f"input {pieces!r}")
        answers = self.send([request(dump_call("system.listMethods", ()))])
        if not answers or answers[0][0] != 200 or "notify" not in parse_response(answers[0][1]):
            raise Failed(f"no normal answer after {pieces!r}: {answers!r}")


def request(body: bytes, head: bytes = b"POST /RPC2 HTTP/1.1\r\nHost: 10.0.0.1\r\n") -> bytes:
    return head + b"Content-Type: text/xml\r\nContent-Length: %d\r\n\r\n" % len(body) + body


def mutate(data: bytes, edits: list[tuple[int, int, bytes]]) -> bytes:
    """``data`` with each (position, length deleted, bytes inserted) applied."""
    for position, deleted, inserted in edits:
        at = position % (len(data) + 1)
        data = data[:at] + inserted + data[at + deleted:]
    return data


TAGS = st.sampled_from([
    "value", "struct", "member", "name", "array", "data", "int", "i4", "i8", "string", "double",
    "boolean", "base64", "nil", "dateTime.iso8601", "params", "param", "methodName", "fault",
    "methodCall", "methodResponse", "ex:nil", "bigdecimal",
])
ELEMENTS = st.recursive(
    xml_text(max_size=8).map(xmlrpc.client.escape),
    lambda inner: st.tuples(TAGS, st.lists(inner, max_size=4)).map(
        lambda tag_children: f"<{tag_children[0]}>{''.join(tag_children[1])}</{tag_children[0]}>"
    ),
    max_leaves=20,
)
EDITS = st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 8), st.binary(max_size=8)), max_size=4)
CALLS = st.one_of(
    st.binary(max_size=300),
    st.builds(lambda v, e: mutate(dump_call("system.listMethods", (v,)), e), xmlrpc_values, EDITS),
    st.builds(lambda v, e: mutate(dump_call("notify", (v,)), e), xmlrpc_values, EDITS),
    st.builds(lambda x: b"<?xml version='1.0'?>" + x.encode(), ELEMENTS),
    st.builds(
        lambda name, v: dump_call(name, v),
        st.sampled_from(["system.multicall", "co2.get_method_names", "notify", "system.methodHelp",
                         "__class__", "notify.__init__", "system._method", "x" * 300]),
        st.lists(xmlrpc_values, max_size=3).map(tuple),
    ),
)
HEADS = st.sampled_from([
    b"POST /RPC2 HTTP/1.1\r\nHost: 10.0.0.1\r\n", b"POST / HTTP/1.0\r\n",
    b"GET / HTTP/1.1\r\nHost: 10.0.0.1\r\n",
    b"POST /RPC2 HTTP/1.1\r\nHost: 10.0.0.1\r\nTransfer-Encoding: chunked\r\n",
    b"POST /other HTTP/1.1\r\nHost: 10.0.0.1\r\n",
    b"POST /RPC2 HTTP/1.1\r\nHost: 10.0.0.1\r\nExpect: 100-continue\r\n",
    b"PUT /RPC2 HTTP/1.1\r\nHost: 10.0.0.1\r\n",
    b"POST /RPC2 HTTP/1.1\r\nHost: 10.0.0.1\r\nConnection: close\r\n",
    b"POST /RPC2 HTTP/1.1\r\nHost: evil.example\r\n",
    b"POST /RPC2 HTTP/1.1\r\nHost: 10.0.0.1\r\nOrigin: http://e.x\r\n",
])


@st.composite
def http_inputs(draw: st.DrawFn) -> list[bytes]:
    """A connection's bytes, in the pieces they arrive in."""
    kind = draw(st.integers(0, 3))
    if kind == 0:
        data = draw(st.binary(max_size=500))
    elif kind == 1:
        data = request(draw(CALLS), draw(HEADS))
    elif kind == 2:
        data = b"".join(request(draw(CALLS)) for _ in range(draw(st.integers(1, 4))))
    else:
        data = mutate(request(draw(CALLS), draw(HEADS)), draw(EDITS))
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=3)))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


# AMP

def box(**values: bytes) -> bytes:
    return amp.AmpBox({key.encode(): value for key, value in values.items()}).serialize()


def hello(tag: bytes = b"1") -> bytes:
    return box(_ask=tag, _command=b"Hello", node=b"fuzz", host_id=HOST_ID.encode(),
               version=str(PROTOCOL_VERSION).encode())


ENVELOPES = st.builds(
    lambda id_, hops, data: encode_envelope(id_, hops, encode_message({"data": data, "host_id": HOST_ID})),
    st.text(min_size=1, max_size=12), st.integers(0, 20), xmlrpc_values,
)
BATCHES = st.one_of(
    st.binary(max_size=200),
    st.lists(ENVELOPES, max_size=5).map(encode_batch),
    st.builds(lambda envelopes, edits: mutate(encode_batch(envelopes), edits),
              st.lists(ENVELOPES, min_size=1, max_size=3), EDITS),
)
COMMANDS = st.sampled_from([b"Deliver", b"Announce", b"Call", b"Hello", b"Nope", b""])


@st.composite
def amp_inputs(draw: st.DrawFn) -> list[bytes]:
    """A link's bytes: maybe a Hello, then random and Deliver boxes."""
    pieces = [hello()] if draw(st.booleans()) else []
    for n in range(draw(st.integers(0, 4))):
        kind = draw(st.integers(0, 2))
        if kind == 0:
            pieces.append(draw(st.binary(max_size=200)))
        elif kind == 1:
            pieces.append(box(_ask=b"%d" % (n + 2), _command=b"Deliver", batch=draw(BATCHES)))
        else:
            keys = draw(st.dictionaries(st.binary(min_size=1, max_size=20), st.binary(max_size=50),
                                        max_size=5))
            keys[b"_command"] = draw(COMMANDS)
            pieces.append(mutate(amp.AmpBox(keys).serialize(), draw(EDITS)))
    return pieces


class AMPTarget:
    """The AMP listener of one satellite."""

    def __init__(self) -> None:
        self.node = satellite()
        self.factory = LinkServerFactory(self.node.relay)
        self.failures = Failures()

    def send(self, pieces: list[bytes]) -> bytes:
        return connection(self.factory, self.node.reactor, pieces, 1)

    def run(self, pieces: list[bytes]) -> None:
        self.send(pieces)
        self.failures.check(f"input {pieces!r}")
        answer = self.send([hello(b"h")])
        if b"_answer" not in answer or b"INCOMPATIBLE" in answer:
            raise Failed(f"Hello not answered after {pieces!r}: {answer!r}")


# Running

def fuzz(name: str, strategy: st.SearchStrategy[list[bytes]], target: Any, seconds: float,
         seed: int) -> int:
    """Run rounds of examples against ``target`` for ``seconds``; the examples run."""
    count = [0]

    @settings(max_examples=200, deadline=None, database=None, suppress_health_check=list(HealthCheck),
              phases=(Phase.generate, Phase.shrink))
    @given(strategy)
    def once(pieces: list[bytes]) -> None:
        count[0] += 1
        target.run(pieces)

    end = time.monotonic() + seconds
    shown = time.monotonic()
    rounds = random.Random(seed)
    while time.monotonic() < end:
        # Each round is a fresh batch of examples from its own seed.
        once._hypothesis_internal_use_seed = rounds.getrandbits(64)  # type: ignore[attr-defined]
        once()
        if time.monotonic() - shown >= 10:
            shown = time.monotonic()
            print(f"{name}: {count[0]} inputs, {max(end - shown, 0):.0f}s left", file=sys.stderr)
    return count[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tests/fuzz.py", description=__doc__.splitlines()[1])
    parser.add_argument("--seconds", type=float, default=60.0, help="how long in all (default 60)")
    parser.add_argument("--target", choices=("xmlrpc", "amp", "all"), default="all")
    parser.add_argument("--seed", type=int, default=None, help="to repeat a run")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    targets = [("xmlrpc", http_inputs(), XMLRPCTarget), ("amp", amp_inputs(), AMPTarget)]
    chosen = [t for t in targets if args.target in ("all", t[0])]
    print(f"seed {seed}", file=sys.stderr)
    try:
        for name, strategy, make in chosen:
            ran = fuzz(name, strategy, make(), args.seconds / len(chosen), seed)
            print(f"{name}: {ran} inputs, no failure")
    except Failed as e:
        print(f"FAILED: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
