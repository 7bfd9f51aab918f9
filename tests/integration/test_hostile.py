"""
Hostile input to a real co2-satellite: bad XML-RPC requests and bad AMP
boxes each get their documented answer, leave no traceback in the answer or
the log, and leave the satellite answering, without its memory ballooning.
"""

from __future__ import annotations

import itertools
import random
import secrets
import socket
import struct
import xmlrpc.client
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import BIN_DIR, REPO_ROOT, Proc, ProcessStarter

LOCAL = "tcp:0:interface=127.0.0.1"
TIMEOUT = 5.0
REQUEST_TIMEOUT = 0.5
MAX_REQUEST_SIZE = 1024 * 1024  # the default
RSS_GROWTH = 50 * 1024 * 1024
_fences = itertools.count(1)


@dataclass
class Hostile:
    """The satellite under attack and what the tests need to know of it."""

    proc: Proc
    amp_port: int
    node_id: str
    rss_before: int


def rss(proc: Proc) -> int:
    """The resident memory of ``proc``, in bytes."""
    status = Path(f"/proc/{proc.popen.pid}/status").read_text()
    (line,) = [line for line in status.splitlines() if line.startswith("VmRSS:")]
    return int(line.split()[1]) * 1024


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hostile]:
    """One satellite with the shipped plugins, an AMP listener and a short request_timeout."""
    config = tmp_path_factory.mktemp("hostile") / "config.py"
    config.write_text(
        f"plugin_dir = {str(REPO_ROOT / 'plugin')!r}\n"
        "plugin_list = ['example', 'ham']\n"
        f"listen = {LOCAL!r}\namp_listen = {LOCAL!r}\n"
        f"request_timeout = {REQUEST_TIMEOUT!r}\n"
    )
    starter = ProcessStarter()
    try:
        proc = starter(BIN_DIR / "co2-satellite", "--config", config)
        amp_port = proc.wait_amp()
        proc.wait_serving()
        answer = fresh_hello(amp_port)
        assert proc.proxy(TIMEOUT).system.listMethods()
        yield Hostile(proc, amp_port, answer[b"node"].decode(), rss(proc))
    finally:
        starter.end_all()


# --------------------------------------------------------------------------
# XML-RPC over raw HTTP


def exchange(port: int, data: bytes) -> bytes:
    """Send ``data`` on a new connection; everything the server sends until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        chunks: list[bytes] = []
        try:
            sock.sendall(data)
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        return b"".join(chunks)


def post(body: bytes, path: bytes = b"/RPC2") -> bytes:
    return (
        b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (path, len(body), body)
    )


def smuggled(separator: bytes) -> bytes:
    """A head framed by Content-Length here and as chunked by other parsers, hiding a second call."""
    hidden = post(call(b"ham.spam.call_me", b"<string>SMUGGLED</string>"))
    return (
        b"POST /RPC2 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml\r\nContent-Length: 4\r\n"
        b"X-Pad: y" + separator
        + b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(hidden), hidden)
    )


def call(name: bytes, *params: bytes) -> bytes:
    """A methodCall of ``name`` whose params are the given ``<value>`` contents."""
    block = b"".join(b"<param><value>%s</value></param>" % p for p in params)
    return (
        b"<?xml version='1.0'?>\n<methodCall><methodName>%s</methodName>"
        b"<params>%s</params></methodCall>" % (name, block)
    )


def to_call_me(*params: bytes) -> bytes:
    """A whole request calling ham.spam.call_me with the given ``<value>`` contents."""
    return post(call(b"ham.spam.call_me", *params))


def answer_of(response: bytes) -> str:
    """What a response says: its HTTP status, the fault code, or that the connection closed."""
    if not response:
        return "closed"
    head, _, body = response.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    if status != 200:
        return str(status)
    try:
        ((result,), _) = xmlrpc.client.loads(body, use_builtin_types=True)
    except xmlrpc.client.Fault as fault:
        return f"fault {fault.faultCode}"
    if isinstance(result, list) and len(result) == 1 and isinstance(result[0], dict):
        return f"multicall fault {result[0]['faultCode']}"
    return "result"


def bomb() -> bytes:
    entities = b'<!ENTITY a0 "lol">' + b"".join(
        b'<!ENTITY a%d "%s">' % (i, b"&a%d;" % (i - 1) * 10) for i in range(1, 10)
    )
    return b"<?xml version='1.0'?><!DOCTYPE m [%s]>" % entities + call(b"ham.spam.call_me", b"&a9;")[21:]


def external_entity() -> bytes:
    return (
        b"<?xml version='1.0'?><!DOCTYPE m [<!ENTITY e SYSTEM 'file:///etc/passwd'>]>"
        + call(b"ham.spam.call_me", b"<string>&e;</string>")[21:]
    )


def deep(levels: int) -> bytes:
    return call(b"ham.spam.call_me", b"<array><data><value>" * levels + b"</value></data></array>" * levels)


def multicall(*calls: bytes) -> bytes:
    structs = b"".join(
        b"<value><struct><member><name>methodName</name><value>%s</value></member>"
        b"<member><name>params</name><value><array><data/></array></value></member></struct></value>" % c
        for c in calls
    )
    return call(b"system.multicall", b"<array><data>%s</data></array>" % structs)


NOTIFY_INFINITY = (
    b"<struct><member><name>data</name><value><double>inf</double></value></member>"
    b"<member><name>host_id</name><value>1@127.0.0.1:2004</value></member></struct>"
)

HTTP_CASES: dict[str, tuple[bytes, str]] = {
    "garbage bytes": (post(random.Random(2004).randbytes(512).replace(b"<", b"")), "fault -32700"),
    "truncated XML": (post(call(b"system.listMethods")[:60]), "fault -32700"),
    "entity expansion bomb": (post(bomb()), "fault -32700"),
    "external entity": (post(external_entity()), "fault -32700"),
    "10,000-deep nesting": (post(deep(10_000)), "fault -32700"),
    "invalid UTF-8": (to_call_me(b"<string>\xff\xfe\xc3(</string>"), "fault -32700"),
    "unknown encoding declared": (
        post(b"<?xml version='1.0' encoding='x-bogus'?>" + call(b"system.listMethods")[21:]),
        "fault -32700",
    ),
    "text codec as encoding": (
        post(b"<?xml version='1.0' encoding='rot13'?>" + call(b"system.listMethods")[21:]),
        "fault -32700",
    ),
    "empty body": (post(b""), "fault -32700"),
    "methodResponse posted": (
        post(b"<methodResponse><params><param><value>1</value></param></params></methodResponse>"),
        "fault -32600",
    ),
    "empty methodName": (post(call(b"")), "fault -32600"),
    "unknown value type": (to_call_me(b"<object>1</object>"), "fault -32700"),
    "int of 5,000 digits": (to_call_me(b"<int>%s</int>" % (b"9" * 5000)), "fault -32700"),
    "int beyond 64 bits": (to_call_me(b"<int>18446744073709551616</int>"), "fault -32602"),
    "i8 beyond 64 bits": (to_call_me(b"<i8>9223372036854775808</i8>"), "fault -32602"),
    "NaN": (to_call_me(b"<double>nan</double>"), "fault -32602"),
    "infinity nested in a struct": (
        to_call_me(b"<struct><member><name>x</name><value><array><data>"
                   b"<value><double>-inf</double></value></data></array></value></member></struct>"),
        "fault -32602",
    ),
    "bigdecimal": (to_call_me(b"<bigdecimal>1.5</bigdecimal>"), "fault -32602"),
    "infinity in notify": (post(call(b"notify", NOTIFY_INFINITY)), "fault -32602"),
    "too few parameters": (post(call(b"example.example.add", b"<int>1</int>")), "fault -32602"),
    "too many parameters": (post(call(b"ham.spam.received", b"<int>1</int>")), "fault -32602"),
    "wrong type to a server method": (post(call(b"system.methodHelp", b"<int>1</int>")), "fault -32602"),
    "wrong type to a plugin": (
        post(call(b"example.example.add", b"<string>a</string>", b"<int>1</int>")),
        "fault -32500",
    ),
    "dunder method": (post(call(b"ham.spam.__init__")), "fault -32601"),
    "private method": (post(call(b"ham.spam._private")), "fault -32601"),
    "__class__ of a package": (post(call(b"ham.__class__")), "fault -32601"),
    "attribute of a method": (post(call(b"ham.spam.call_me.__globals__")), "fault -32601"),
    "x_ name of a method": (post(call(b"ham.spam.x_call_me")), "fault -32601"),
    "nested system.multicall": (post(multicall(b"system.multicall")), "multicall fault -32600"),
    "multicall of a non-array": (post(call(b"system.multicall", b"<int>1</int>")), "fault -32602"),
    "body over max_request_size": (
        b"POST /RPC2 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n" % (MAX_REQUEST_SIZE + 1),
        "413",
    ),
    "chunked body over max_request_size": (
        b"POST /RPC2 HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"%x\r\n%s" % (MAX_REQUEST_SIZE + 1, b"<" * (MAX_REQUEST_SIZE + 1)),
        "413",
    ),
    "GET instead of POST": (b"GET /RPC2 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", "405"),
    "PUT instead of POST": (
        b"PUT / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", "405",
    ),
    "GET of another path": (b"GET /admin HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", "404"),
    "POST to another path": (post(call(b"system.listMethods"), b"/admin"), "404"),
    "malformed Content-Length": (
        b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: -5\r\nConnection: close\r\n\r\n", "400",
    ),
    "head over 16 KiB in one read": (
        b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-Padding: %s\r\n" % (b"p" * 60) * 300
        + b"Content-Length: 0\r\nConnection: close\r\n\r\n",
        "431",
    ),
    "600 header lines": (
        b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X: y\r\n" * 600 + b"Content-Length: 0\r\n\r\n", "431",
    ),
    "smuggling: bare LF before Transfer-Encoding": (
        smuggled(b"\n"), "400",
    ),
    "smuggling: bare CR before Transfer-Encoding": (
        smuggled(b"\r"), "400",
    ),
    "Content-Length with Transfer-Encoding": (
        b"POST /RPC2 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\n", "400",
    ),
    "two differing Content-Lengths": (
        b"POST /RPC2 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", "400",
    ),
    "obs-fold continuation line": (
        b"POST /RPC2 HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: b\r\n c\r\nContent-Length: 0\r\n\r\n", "400",
    ),
    "NUL in a header": (
        b"POST /RPC2 HTTP/1.1\r\nHost: 127.0.0.1\r\nX: a\x00b\r\nContent-Length: 0\r\n\r\n", "400",
    ),
    "control byte in a header": (
        b"POST /RPC2 HTTP/1.1\r\nHost: 127.0.0.1\r\nX: a\x01b\r\nContent-Length: 0\r\n\r\n", "400",
    ),
    "no Host in HTTP/1.1": (b"POST /RPC2 HTTP/1.1\r\nContent-Length: 0\r\n\r\n", "400"),
    "two Host headers": (
        b"POST /RPC2 HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n", "400",
    ),
    "HTTP/2.0 request line": (b"POST /RPC2 HTTP/2.0\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n", "505"),
    "transfer coding other than chunked": (
        b"POST /RPC2 HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", "501",
    ),
    "Expect other than 100-continue": (
        b"POST /RPC2 HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: x\r\nContent-Length: 0\r\n\r\n", "417",
    ),
    "absolute-form target": (
        b"POST http://127.0.0.1/RPC2 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n", "400",
    ),
    "empty line before the request line": (b"\r\n" + post(call(b"system.listMethods")), "400"),
    "two spaces in the request line": (
        b"POST  /RPC2 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n", "400",
    ),
    "text/plain body (a browser form)": (
        post(call(b"ham.spam.call_me", b"<string>csrf</string>")).replace(b"text/xml", b"text/plain"), "415",
    ),
    "form-urlencoded body": (
        post(call(b"ham.spam.call_me", b"<string>csrf</string>")).replace(
            b"text/xml", b"application/x-www-form-urlencoded"
        ), "415",
    ),
    "Origin of another site": (
        post(call(b"ham.spam.call_me", b"<string>csrf</string>")).replace(
            b"Host: 127.0.0.1\r\n", b"Host: 127.0.0.1\r\nOrigin: http://evil.example\r\n"
        ), "403",
    ),
    "Host of another name (DNS rebinding)": (
        post(call(b"system.listMethods")).replace(b"Host: 127.0.0.1", b"Host: evil.example:2004"), "403",
    ),
    "garbage request line": (b"\x00\xff\x10 what\r\n\r\n", "400"),
    "slow headers": (b"POST /RPC2 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le", "408"),
}

# The log is where a plugin's exception goes, with its traceback (docs/plugins.md).
LOGS_A_TRACEBACK = {"wrong type to a plugin"}


def check_still_serving(hostile: Hostile) -> str:
    """The satellite answers a normal call; returns its log up to now."""
    proc = hostile.proc
    assert "system.listMethods" in proc.proxy(TIMEOUT).system.listMethods()
    # A new link logs a line of its own ("link ... up", never rate-limited):
    # everything logged before it is in.
    node = f"fence{next(_fences)}"
    link = AmpLink(hostile.amp_port)
    try:
        link.send(hello(node=node.encode()))
        assert link.reply() is not None
        fence = proc.wait_output(rf"link node:{node} up", TIMEOUT)
    finally:
        link.close()
    return proc.stdout[: fence.start()]


def check_quiet_log(hostile: Hostile, before: int, allow_traceback: bool = False) -> None:
    """Nothing between ``before`` and a fence in the log is a traceback or an unhandled error."""
    logged = check_still_serving(hostile)[before:]
    assert "Unhandled" not in logged and "#critical" not in logged, logged
    assert ("Traceback" in logged) == allow_traceback, logged


@pytest.mark.parametrize("case", list(HTTP_CASES))
def test_a_bad_request_gets_its_documented_answer(hostile: Hostile, case: str) -> None:
    """A hostile XML-RPC request is answered with its documented fault or status, and no traceback."""
    request, expected = HTTP_CASES[case]
    before = len(hostile.proc.stdout)
    response = exchange(hostile.proc.port, request)
    assert answer_of(response) == expected
    assert b"Traceback" not in response and b'File "' not in response
    assert b"root:" not in response
    check_quiet_log(hostile, before, allow_traceback=case in LOGS_A_TRACEBACK)


# --------------------------------------------------------------------------
# AMP over raw sockets


def box(*pairs: tuple[bytes, bytes]) -> bytes:
    """An AMP box of ``pairs``: each a 2-byte length and the key, a 2-byte length and the value."""
    fields = b"".join(struct.pack(">H", len(k)) + k + struct.pack(">H", len(v)) + v for k, v in pairs)
    return fields + b"\x00\x00"


def new_node() -> bytes:
    return secrets.token_hex(8).encode()


def hello(node: bytes | None = None, version: bytes = b"2", ask: bytes = b"hi") -> bytes:
    return box((b"_ask", ask), (b"_command", b"Hello"), (b"node", node or new_node()),
               (b"host_id", b"1@127.0.0.1:2004"), (b"version", version))


def command(name: bytes, *pairs: tuple[bytes, bytes], ask: bytes | None = b"q") -> bytes:
    return box(*((b"_ask", ask),) if ask else (), (b"_command", name), *pairs)


PROBE = command(b"Probe", ask=b"probe")
ANNOUNCE_ARGS = ((b"node", b"0123456789abcdef"), (b"host_id", b"1@127.0.0.1:2004"), (b"version", b"1"),
                 (b"hops", b"0"), (b"ttl", b"60.0"), (b"methods", b"spy.m.x"))


class AmpLink:
    """A raw AMP connection: send bytes, read answer and error boxes."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.buffer = b""
        self.eof = False

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            self.eof = True

    def _read_box(self) -> dict[bytes, bytes] | None:
        fields: dict[bytes, bytes] = {}
        while True:
            key = self._read(self._read_length())
            if key is None:
                return None
            if not key:
                return fields
            value = self._read(self._read_length())
            if value is None:
                return None
            fields[key] = value

    def _read_length(self) -> int:
        data = self._read(2)
        return -1 if data is None else int(struct.unpack(">H", data)[0])

    def _read(self, count: int) -> bytes | None:
        if count < 0:
            return None
        while len(self.buffer) < count and not self.eof:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            self.eof = not chunk
            self.buffer += chunk
        if len(self.buffer) < count:
            return None
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data

    def reply(self) -> dict[bytes, bytes] | None:
        """The next answer or error box (commands the node sends are skipped); None once closed."""
        while (found := self._read_box()) is not None:
            if b"_answer" in found or b"_error" in found:
                return found
        return None

    def close(self) -> None:
        self.sock.close()


def outcome(link: AmpLink, answers: bool) -> str:
    """
    What the node did: its answers or errors, and "closed" if it closed the
    connection.  A probe (an unknown command) then tells whether the
    connection still serves; it is sent at once when no answer is expected.
    """
    said: list[str] = []
    if not answers:
        link.send(PROBE)
    while True:
        found = link.reply()
        if found is None:
            return ", ".join([*said, "closed"])
        if found.get(b"_error") == b"probe":
            assert found[b"_error_code"] == b"UNHANDLED"
            return ", ".join(said) or "no answer"
        assert b"Traceback" not in found.get(b"_error_description", b"")
        said.append(f"error {found[b'_error_code'].decode()}" if b"_error" in found else "answer")
        link.send(PROBE)


def fresh_hello(port: int) -> dict[bytes, bytes]:
    """Hello on a new connection is answered: the node still takes links."""
    link = AmpLink(port)
    try:
        link.send(hello())
        answer = link.reply()
    finally:
        link.close()
    assert answer is not None and b"_answer" in answer and answer[b"version"] == b"2", answer
    return answer


@dataclass
class AmpCase:
    """Bytes to send, what the node should do, and how the sender behaves."""

    data: bytes
    expected: str
    after_hello: bool = False  # say Hello (and have it answered) first
    answers: bool = True  # the node answers or closes, rather than keeping silent
    hang_up: bool = False  # the sender closes its side right after the data


def bad_message_batch() -> bytes:
    # One envelope ["m.1", 3, bin(message)] whose message lacks host_id.
    message = b"\x81\xa4data\xa2hi"
    return b"\x91\x93\xa3m.1\x03\xc4" + bytes([len(message)]) + message


AMP_CASES: dict[str, AmpCase] = {
    "unknown command": AmpCase(command(b"Bogus"), "error UNHANDLED"),
    "command name not ASCII": AmpCase(command(b"Deliv\x80er"), "error UNHANDLED"),
    "Deliver before Hello": AmpCase(command(b"Deliver", (b"batch", b"\x90")), "error HELLO_FIRST"),
    "Announce before Hello": AmpCase(command(b"Announce", *ANNOUNCE_ARGS), "error HELLO_FIRST"),
    "Announce before Hello, unasked": AmpCase(
        command(b"Announce", *ANNOUNCE_ARGS, ask=None), "no answer", answers=False
    ),
    "Call before Hello": AmpCase(
        command(b"Call", (b"node", b"n"), (b"hops", b"1"), (b"request", b"x")), "error HELLO_FIRST"
    ),
    "Hello with another version": AmpCase(hello(version=b"1"), "error INCOMPATIBLE_VERSION"),
    "Hello with a version not a number": AmpCase(hello(version=b"two"), "error BAD_ARGUMENTS, closed"),
    "Hello without node": AmpCase(
        command(b"Hello", (b"host_id", b"1@127.0.0.1:2004"), (b"version", b"2")),
        "error BAD_ARGUMENTS, closed",
    ),
    "Hello with a node id of 65,535 bytes": AmpCase(hello(node=b"a" * 65535), "error BAD_ARGUMENTS, closed"),
    "Hello with a newline in the node id": AmpCase(
        hello(node=b"x\n[co2.relay#info] forged"), "error BAD_ARGUMENTS, closed"
    ),
    "Hello with invalid UTF-8": AmpCase(hello(node=b"\xff\xfe"), "error BAD_ARGUMENTS, closed"),
    "key of 300 bytes": AmpCase(struct.pack(">H", 300) + b"k" * 300, "closed"),
    "more than 256 KiB before Hello": AmpCase(
        command(b"Deliver", *[(b"batch.%d" % i if i else b"batch", b"\0" * 65535) for i in range(5)]),
        "closed",
    ),
    "empty box": AmpCase(b"\x00\x00", "closed"),
    "box without _command": AmpCase(box((b"node", b"x")), "closed"),
    "answer to nothing asked": AmpCase(box((b"_answer", b"zz"), (b"node", b"x")), "closed"),
    "error box to nothing asked": AmpCase(
        box((b"_error", b"zz"), (b"_error_code", b"X"), (b"_error_description", b"d")), "closed"
    ),
    "truncated box, then EOF": AmpCase(b"\x00\x04_ask\x00\x10ab", "closed", hang_up=True),
    "Deliver with a garbage batch": AmpCase(
        command(b"Deliver", (b"batch", b"\xc1\xff garbage")), "error BAD_BATCH", after_hello=True
    ),
    # Links carry messages unopened: the envelope is fine, so the batch is
    # answered; the node drops the message where it opens it (counted invalid).
    "Deliver with a message lacking host_id": AmpCase(
        command(b"Deliver", (b"batch", bad_message_batch())), "answer", after_hello=True
    ),
    "Deliver without batch": AmpCase(command(b"Deliver"), "error BAD_ARGUMENTS, closed", after_hello=True),
    "Call with hops not a number": AmpCase(
        command(b"Call", (b"node", b"n"), (b"hops", b"x"), (b"request", b"x")),
        "error BAD_ARGUMENTS, closed", after_hello=True,
    ),
    "Announce with a NaN ttl": AmpCase(
        command(b"Announce", *ANNOUNCE_ARGS[:4], (b"ttl", b"nan"), (b"methods", b"spy.m.x")),
        "error BAD_ARGUMENTS, closed", after_hello=True,
    ),
    "second Hello": AmpCase(hello(ask=b"again"), "error UNEXPECTED_HELLO", after_hello=True),
}


def run_amp_case(hostile: Hostile, case: AmpCase) -> str:
    link = AmpLink(hostile.amp_port)
    try:
        if case.after_hello:
            link.send(hello())
            answer = link.reply()
            assert answer is not None and b"_answer" in answer
        link.send(case.data)
        if case.hang_up:
            link.sock.shutdown(socket.SHUT_WR)
            return "closed" if link.reply() is None else "answer"
        return outcome(link, case.answers)
    finally:
        link.close()


@pytest.mark.parametrize("case", list(AMP_CASES))
def test_a_bad_box_gets_its_documented_answer(hostile: Hostile, case: str) -> None:
    """A hostile AMP box gets its documented error or a closed connection; links still come up."""
    before = len(hostile.proc.stdout)
    assert run_amp_case(hostile, AMP_CASES[case]) == AMP_CASES[case].expected
    fresh_hello(hostile.amp_port)
    check_quiet_log(hostile, before)


def test_hello_naming_the_node_itself_gets_same_node(hostile: Hostile) -> None:
    """Hello with the listener's own node id is refused with SAME_NODE, the connection kept."""
    before = len(hostile.proc.stdout)
    case = AmpCase(hello(node=hostile.node_id.encode()), "error SAME_NODE")
    assert run_amp_case(hostile, case) == "error SAME_NODE"
    fresh_hello(hostile.amp_port)
    check_quiet_log(hostile, before)


def test_refusals_are_logged_on_one_line(hostile: Hostile) -> None:
    """A refused box is logged as one warning naming the link; a forged line cannot be injected."""
    before = len(hostile.proc.stdout)
    for case in ("Hello with a newline in the node id", "more than 256 KiB before Hello"):
        run_amp_case(hostile, AMP_CASES[case])
    logged = check_still_serving(hostile)[before:]
    assert "refused Hello: node id 'x\\n[co2.relay#info] forged' is not 1 to 64 printable" in logged
    assert "\n[co2.relay#info] forged" not in logged
    assert "more than 262144 bytes before Hello; connection closed" in logged


def test_memory_did_not_balloon(hostile: Hostile) -> None:
    """After every hostile input above, the satellite's resident memory grew by less than 50 MiB."""
    check_still_serving(hostile)
    assert rss(hostile.proc) - hostile.rss_before < RSS_GROWTH

