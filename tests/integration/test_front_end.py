"""
The HTTP front end of a real co2-satellite, from raw sockets: connections
that end are let go, a client that sends or reads nothing in time is cut
off, answers stay within max_response_size, browsers' requests are checked,
and a smuggled request is refused.  Each test reproduces what the previous
listener (a hand-written fast lane handing other requests to twisted.web)
did wrong.
"""

from __future__ import annotations

import select
import shutil
import socket
import time
import xmlrpc.client
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from conftest import REPO_ROOT, Proc

from co2 import faults
from co2.testing import write_package

LOCAL = "tcp:0:interface=127.0.0.1"
TIMEOUT = 5.0
MiB = 1024 * 1024

PROBE = '''
from twisted.internet import reactor
from twisted.internet.task import deferLater

from co2 import Co2Plugin


class X_Probe(Co2Plugin):
    """Methods for the front end's tests: a slow one, a big one, one that leaves a trace."""

    def __init__(self, var_dict):
        Co2Plugin.__init__(self, var_dict)
        self.calls_file = var_dict["calls_file"]

    def x_slow(self, seconds):
        """Answer "slow" after ``seconds``."""
        return deferLater(reactor, seconds, lambda: "slow")

    def x_big(self, size):
        """Return a string of ``size`` bytes."""
        return "x" * size

    def x_record(self, tag):
        """Append ``tag`` to the calls file; return it."""
        with open(self.calls_file, "a") as f:
            f.write(tag + "\\n")
        return tag
'''


# --------------------------------------------------------------------------
# The satellite


def serve(satellite: Callable[..., Proc], tmp_path: Path, **settings: Any) -> Proc:
    """A satellite with the ham and probe plugins and ``settings``, serving on loopback."""
    plugins = tmp_path / "plugins"
    shutil.copytree(REPO_ROOT / "plugin" / "ham", plugins / "ham")
    write_package(plugins, "probe", {"probe": PROBE})
    settings = {
        "plugin_dir": str(plugins),
        "plugin_list": ["ham", "probe"],
        "plugin_config": {"probe": {"calls_file": str(tmp_path / "calls.txt")}},
        "listen": LOCAL,
        **settings,
    }
    config = tmp_path / "config.py"
    config.write_text("".join(f"{name} = {value!r}\n" for name, value in settings.items()))
    proc = satellite("--config", config)
    proc.wait_serving()
    return proc


def recorded(tmp_path: Path) -> list[str]:
    """The tags probe.probe.record was called with, in order."""
    path = tmp_path / "calls.txt"
    return path.read_text().splitlines() if path.exists() else []


def memory(proc: Proc, field: str = "VmHWM") -> int:
    """A memory figure of ``proc`` from /proc (VmHWM: the peak resident memory so far), in bytes."""
    for line in Path(f"/proc/{proc.popen.pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise LookupError(field)


def served(proc: Proc, timeout: float = 10.0) -> list[str]:
    """system.listMethods, asked on new connections until the satellite answers or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return proc.proxy(TIMEOUT).system.listMethods()
        except (OSError, xmlrpc.client.ProtocolError) as e:
            assert time.monotonic() < deadline, f"no new client served within {timeout}s: {e}"
            time.sleep(0.1)


# --------------------------------------------------------------------------
# Raw HTTP


def connect(proc: Proc, timeout: float = TIMEOUT) -> socket.socket:
    return socket.create_connection(("127.0.0.1", proc.port), timeout=timeout)


def call(name: str, *params: Any) -> bytes:
    return xmlrpc.client.dumps(params, name, allow_none=True).encode()


def listmethods_multicall(count: int) -> bytes:
    """A system.multicall of ``count`` system.listMethods."""
    return call("system.multicall", [{"methodName": "system.listMethods", "params": []}] * count)


def post(
    body: bytes,
    *,
    content_type: bytes = b"text/xml",
    host: bytes = b"127.0.0.1",
    extra: bytes = b"",
    close: bool = False,
) -> bytes:
    """A whole ``POST /`` request carrying ``body``; ``extra`` header lines (each ending in CRLF)."""
    return b"POST / HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s%s\r\n%s" % (
        host, content_type, len(body), extra, b"Connection: close\r\n" if close else b"", body,
    )


def get(path: bytes) -> bytes:
    return b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % path


class Response(NamedTuple):
    status: int
    headers: dict[bytes, bytes]
    body: bytes

    def result(self) -> Any:
        """The XML-RPC result in the body (raises its Fault)."""
        assert self.status == 200, self
        ((result,), _) = xmlrpc.client.loads(self.body, use_builtin_types=True)
        return result


class Reader:
    """Reads responses, one after another, from a socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()

    def _more(self) -> None:
        chunk = self.sock.recv(256 * 1024)
        if not chunk:
            raise EOFError(f"the server closed the connection; unread: {bytes(self.buffer[:200])!r}")
        self.buffer += chunk

    def response(self) -> Response:
        """The next response (raises EOFError if the connection closes first)."""
        while (end := self.buffer.find(b"\r\n\r\n")) < 0:
            self._more()
        head = bytes(self.buffer[:end])
        del self.buffer[:end + 4]
        lines = head.split(b"\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get(b"content-length", b"0"))
        while len(self.buffer) < length:
            self._more()
        body = bytes(self.buffer[:length])
        del self.buffer[:length]
        return Response(int(lines[0].split(b" ")[1]), headers, body)

    def closed(self) -> bool:
        """True when the server closes (or resets) the connection with nothing more sent."""
        try:
            self._more()
        except EOFError:
            return not self.buffer
        except ConnectionResetError:
            return True
        return False


def ask(proc: Proc, request: bytes) -> Response:
    """Send ``request`` on a new connection; its response."""
    with connect(proc) as sock:
        sock.sendall(request)
        return Reader(sock).response()


# --------------------------------------------------------------------------
# 1. Connection: close with a big answer


def test_connections_closed_after_a_big_answer_free_their_slot(
    satellite: Callable[..., Proc], tmp_path: Path
) -> None:
    """
    Connections asking ``Connection: close`` of answers over 64 KiB are let
    go, so more of them than max_connections leave room for the next client.
    (The old listener called loseConnection while still the transport's
    producer: such a connection stayed open forever in CLOSE-WAIT, and once
    max_connections of them had been made every client got 503.)
    """
    limit = 3
    proc = serve(satellite, tmp_path, max_connections=limit)
    request = post(listmethods_multicall(200), close=True)
    for n in range(2 * limit + 1):
        with connect(proc) as sock:
            sock.sendall(request)
            response = Reader(sock).response()
            assert response.status == 200, f"request {n + 1}: {response.status} {response.body!r}"
            assert len(response.body) > 64 * 1024
            assert response.headers.get(b"connection", b"").lower() == b"close"
    assert "ham.spam.call_me" in served(proc, timeout=5.0)


# --------------------------------------------------------------------------
# 2. No unbounded buffering while an answer is pending


def test_pipelined_data_is_not_read_while_an_answer_is_pending(
    satellite: Callable[..., Proc], tmp_path: Path
) -> None:
    """
    While a slow call is unanswered, a client that pipelines tens of MB of
    further requests is soon not read: the server's memory hardly grows.
    (The old listener, once a request was to go to twisted.web after the
    pending answer, appended everything the client sent to one buffer,
    without bound.)
    """
    proc = serve(satellite, tmp_path)
    before = memory(proc)
    flood = get(b"/nothing") * (1 * MiB // len(get(b"/nothing")))
    with connect(proc, timeout=1.0) as sock:
        sock.sendall(post(call("probe.probe.slow", 5)))
        sent, started = 0, time.monotonic()
        view = memoryview(flood)
        at = 0
        while sent < 64 * MiB and time.monotonic() - started < 4.0:
            try:
                n = sock.send(view[at:])
            except TimeoutError:
                break  # the server reads no more
            sent += n
            at = (at + n) % len(flood)
        growth = memory(proc) - before
        assert growth < 20 * MiB, f"the server grew {growth / MiB:.1f} MiB as {sent / MiB:.1f} MiB were sent"
        sock.settimeout(10.0)
        assert Reader(sock).response().result() == "slow"


# --------------------------------------------------------------------------
# 3. A client that never reads


def test_a_client_that_never_reads_is_cut_off(satellite: Callable[..., Proc], tmp_path: Path) -> None:
    """
    A client that asks for big answers and reads none of them is aborted
    once it has taken nothing for idle_timeout seconds, and its connection
    slot is given to the next client.  (The old listener stopped reading it
    and waited for it forever: with max_connections = 1, every other client
    got 503.)
    """
    proc = serve(satellite, tmp_path, idle_timeout=2, max_connections=1)
    request = post(call("probe.probe.big", 4 * MiB))
    started = time.monotonic()
    cut_off = None
    with connect(proc, timeout=0.5) as sock:
        while time.monotonic() - started < 10.0:
            try:
                sock.send(request)
            except TimeoutError:
                pass  # the server reads no more
            except (BrokenPipeError, ConnectionResetError):
                cut_off = time.monotonic() - started
                break
            time.sleep(0.05)
        assert cut_off is not None, "the server kept a client that read nothing for 10s (idle_timeout = 2)"
    assert cut_off < 9.0
    assert "ham.spam.call_me" in served(proc, timeout=5.0)


# --------------------------------------------------------------------------
# 4. request_timeout for every request on a connection


def test_request_timeout_holds_for_every_request_of_a_connection(
    satellite: Callable[..., Proc], tmp_path: Path
) -> None:
    """
    After a call and a page on one connection, a request trickled in a byte
    every 0.5 s gets 408 request_timeout seconds after its first byte, and
    the connection closes.  (The old listener stopped timing requests once
    it had handed a connection to twisted.web, as after a GET: the trickle
    was read for as long as it went on.)
    """
    proc = serve(satellite, tmp_path, request_timeout=2, idle_timeout=30)
    with connect(proc) as sock:
        reader = Reader(sock)
        sock.sendall(post(call("system.listMethods")))
        assert "ham.spam.call_me" in reader.response().result()
        sock.sendall(get(b"/status.json"))
        assert reader.response().status == 200
        trickle = post(call("system.listMethods"))
        started = time.monotonic()
        for byte in trickle:
            try:
                sock.send(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                break
            readable, _, _ = select.select([sock], [], [], 0.5)
            if readable or time.monotonic() - started > 8.0:
                break
        try:
            response = reader.response()
        except TimeoutError:
            raise AssertionError(
                f"no answer {time.monotonic() - started:.0f}s after the trickle began (request_timeout = 2)"
            ) from None
        answered = time.monotonic() - started
        assert response.status == 408, response
        assert 1.5 <= answered <= 6.0, f"408 after {answered:.1f}s (request_timeout = 2)"
        assert reader.closed()


# --------------------------------------------------------------------------
# 5. A multicall whose answers would be too big


def test_a_multicall_of_big_answers_is_cut_short(satellite: Callable[..., Proc], tmp_path: Path) -> None:
    """
    A system.multicall of 40 co2.watch, each answering 800 KB of messages,
    answers fault -32005 with max_response_size = 1 MiB, and the server's
    memory does not jump.  (The old listener built the whole 32 MB answer,
    several copies of it at once.)
    """
    proc = serve(satellite, tmp_path, max_response_size=MiB)
    client = proc.proxy(20.0)
    for n in range(8):
        assert client.notify({"data": "x" * 100_000, "host_id": f"{n}front@127.0.0.1:1"}) is True
    assert len(client.co2.watch(0, 0)["messages"]) == 8
    before = memory(proc)
    try:
        answer = client.system.multicall([{"methodName": "co2.watch", "params": [0, 0]}] * 40)
    except xmlrpc.client.Fault as fault:
        assert fault.faultCode == faults.RESPONSE_TOO_LARGE == -32005
    else:
        raise AssertionError(f"the multicall answered {len(answer)} answers, not fault -32005")
    growth = memory(proc) - before
    assert growth < 50 * MiB, f"the server grew {growth / MiB:.1f} MiB"


# --------------------------------------------------------------------------
# 6. Browsers


def test_requests_from_web_pages_are_checked(satellite: Callable[..., Proc], tmp_path: Path) -> None:
    """
    A POST that is not text/xml gets 415, one from an origin not in
    allowed_origins or naming another host gets 403, and none of them runs
    its method; an allowed origin is served; pages say nosniff and carry a
    Content-Security-Policy.  (The old listener ran any POST, whatever its
    Content-Type, Origin or Host: a web page could call a node's methods.)
    """
    proc = serve(satellite, tmp_path, allowed_origins=["http://good.example"])
    record = call("probe.probe.record", "text/plain")
    assert ask(proc, post(record, content_type=b"text/plain", close=True)).status == 415
    record = call("probe.probe.record", "evil origin")
    assert ask(proc, post(record, extra=b"Origin: http://evil.example\r\n", close=True)).status == 403
    record = call("probe.probe.record", "evil host")
    assert ask(proc, post(record, host=b"evil.example:%d" % proc.port, close=True)).status == 403
    record = call("probe.probe.record", "good origin")
    answer = ask(proc, post(record, extra=b"Origin: http://good.example\r\n", close=True))
    assert answer.result() == "good origin"
    record = call("probe.probe.record", "localhost")
    assert ask(proc, post(record, host=b"localhost:%d" % proc.port)).status == 200
    assert recorded(tmp_path) == ["good origin", "localhost"]
    page = ask(proc, get(b"/"))
    assert page.status == 200
    assert page.headers.get(b"x-content-type-options") == b"nosniff"
    assert b"content-security-policy" in page.headers


# --------------------------------------------------------------------------
# 7. Request smuggling


def test_a_smuggled_request_is_refused_and_not_run(satellite: Callable[..., Proc], tmp_path: Path) -> None:
    """
    A request with Content-Length and, after a bare LF, Transfer-Encoding,
    whose chunk holds a second request, gets 400 and nothing else, and the
    hidden call is never made.  (The old listener took the bare LF as part
    of a header's value, framed the request by its Content-Length and ran
    the request hidden in the chunk.)
    """
    proc = serve(satellite, tmp_path)
    hidden = post(call("ham.spam.call_me", "SMUGGLED"))
    size = b"%x\r\n" % len(hidden)
    smuggler = (
        b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml\r\n"
        b"Content-Length: %d\r\nX-Pad: y\nTransfer-Encoding: chunked\r\n\r\n"
        b"%s%s\r\n0\r\n\r\n" % (len(size), size, hidden)
    )
    with connect(proc) as sock:
        sock.sendall(smuggler)
        reader = Reader(sock)
        response = reader.response()
        assert response.status == 400, response
        assert reader.closed(), "more than one response"
    metrics = ask(proc, get(b"/metrics")).body.decode()
    assert 'method="ham.spam.call_me"' not in metrics
    assert "SMUGGLED" not in proc.stdout


# --------------------------------------------------------------------------
# Found while writing these: clients that are not stuck are cut off


def test_a_client_reading_a_big_answer_steadily_gets_all_of_it(
    satellite: Callable[..., Proc], tmp_path: Path
) -> None:
    """
    A client that takes a 16 MiB answer steadily, about 2.5 MiB/s, gets all
    of it with idle_timeout = 2: it never takes nothing for 2 s.  (The old
    listener served it whole; this one aborts it.)
    """
    proc = serve(satellite, tmp_path, idle_timeout=2)
    size = 16 * MiB
    sock = socket.socket()
    # A small receive buffer: the kernel holds little of the answer, the server the rest.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 * 1024)
    sock.settimeout(TIMEOUT)
    with sock:
        sock.connect(("127.0.0.1", proc.port))
        sock.sendall(post(call("probe.probe.big", size)))
        received = bytearray()
        total = None
        started = time.monotonic()
        while (total is None or len(received) < total) and time.monotonic() - started < 20.0:
            try:
                chunk = sock.recv(256 * 1024)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                raise AssertionError(
                    f"cut off {time.monotonic() - started:.1f}s into the answer, "
                    f"{len(received) / MiB:.1f} MiB of {size / MiB:.0f} MiB read at about 2.5 MiB/s"
                )
            received += chunk
            end = received.find(b"\r\n\r\n")
            if total is None and end >= 0:
                head = received[:end].lower()
                total = end + 4 + int(head.partition(b"content-length:")[2].partition(b"\r\n")[0])
            time.sleep(0.1)
        assert total is not None and len(received) == total
        assert received.startswith(b"HTTP/1.1 200 ") and received.endswith(b"</methodResponse>\n")


def test_idle_time_counts_from_the_last_answer(satellite: Callable[..., Proc], tmp_path: Path) -> None:
    """
    With idle_timeout = 4, a connection whose call took 3 s still takes a
    request 2 s after its answer: it has had nothing to do for 2 s only.
    (The old listener closed it too, timing idleness from the last bytes read.)
    """
    proc = serve(satellite, tmp_path, idle_timeout=4)
    with connect(proc) as sock:
        reader = Reader(sock)
        sock.sendall(post(call("probe.probe.slow", 3)))
        assert reader.response().result() == "slow"
        answered = time.monotonic()
        time.sleep(2.0)
        try:
            sock.sendall(post(call("system.listMethods")))
            methods = reader.response().result()
        except (OSError, EOFError) as e:
            raise AssertionError(
                f"the connection was closed {time.monotonic() - answered:.1f}s after its last answer "
                f"(idle_timeout = 4): {e!r}"
            ) from None
        assert "ham.spam.call_me" in methods
