"""
Load on one real co2-satellite: 500 XML-RPC connections open at once, each
answered on a kept-alive connection; 50 AMP links from distinct nodes, each
introduced, some delivering, the satellite's plugin getting every message
once and forwarding it to every other link; both loads held together; and
the satellite answering throughout and after.

The figures measured on the way (times, descriptors, resident memory) are
printed; ``pytest -s`` shows them.
"""

from __future__ import annotations

import os
import resource
import secrets
import selectors
import socket
import struct
import time
import xmlrpc.client
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import BIN_DIR, Proc, ProcessStarter
from doubles import RECORDER

from co2._message import decode_message, encode_message
from co2.protocol import PROTOCOL_VERSION, decode_batch, encode_batch, encode_envelope
from co2.testing import write_package

LOCAL = "tcp:0:interface=127.0.0.1"
CONNECTIONS = 500
LINKS = 50
SENDERS = 10
"""How many of the links deliver a batch."""
BATCH = 2
"""Messages in each sender's batch."""
FDS_NEEDED = CONNECTIONS + LINKS + 450
"""Soft descriptor limit the test process (and the satellite, which inherits it) needs."""
TIMEOUT = 20.0
"""Bound on each phase (connecting, answering, linking, delivering, closing)."""
SETTLE = 0.3
"""Seconds to keep reading once everything expected arrived, to catch extras."""

# RECORDER's class, plus a method to read what it received over XML-RPC.
RECORDER_SOURCE = RECORDER + '''
    def x_got(self) -> list:
        """Return the data of every message received, in arrival order."""
        return [message["data"] for message in self.got]
'''


@dataclass
class Loaded:
    """The satellite under load: its process, XML-RPC port and AMP port."""

    proc: Proc
    port: int
    amp_port: int

    @property
    def pid(self) -> int:
        """The satellite's process id."""
        return self.proc.popen.pid


@pytest.fixture(scope="module")
def fd_limit() -> Iterator[int]:
    """Raise the soft RLIMIT_NOFILE to FDS_NEEDED for the module, or skip; restore it after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < FDS_NEEDED:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {FDS_NEEDED} descriptors needed")
    if soft != resource.RLIM_INFINITY and soft < FDS_NEEDED:
        resource.setrlimit(resource.RLIMIT_NOFILE, (FDS_NEEDED, hard))
    try:
        yield resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.fixture(scope="module")
def loaded(fd_limit: int, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loaded]:
    """One co2-satellite with a recorder plugin, XML-RPC and AMP on ephemeral loopback ports."""
    work = tmp_path_factory.mktemp("load")
    write_package(work / "plugins", "rec", {"m": RECORDER_SOURCE})
    config = work / "config.py"
    config.write_text(
        f"plugin_dir = {str(work / 'plugins')!r}\nplugin_list = ['rec']\n"
        f"listen = {LOCAL!r}\namp_listen = {LOCAL!r}\n"
    )
    starter = ProcessStarter()
    try:
        proc = starter(BIN_DIR / "co2-satellite", "--config", config)
        amp_port = proc.wait_amp()
        proc.wait_serving()
        yield Loaded(proc, proc.port, amp_port)
    finally:
        starter.end_all()


# --------------------------------------------------------------------------
# Measuring the satellite


def socket_fds(pid: int) -> int:
    """How many of ``pid``'s open descriptors are sockets (from /proc/PID/fd)."""
    count = 0
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            count += os.readlink(f"/proc/{pid}/fd/{name}").startswith("socket:")
        except FileNotFoundError:  # closed while we looked
            pass
    return count


def rss_mib(pid: int) -> float:
    """Resident memory of ``pid`` in MiB (VmRSS of /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def wait_until(condition: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    """Poll ``condition`` every 50 ms until it holds; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:g}s")
        time.sleep(0.05)


def recorded(loaded: Loaded) -> list[Any]:
    """The data of every message the recorder plugin received, asked over XML-RPC."""
    with loaded.proc.proxy(TIMEOUT) as client:
        got: Any = client.rec.m.got()
    return list(got)


def still_serves(loaded: Loaded) -> None:
    """A new XML-RPC client, on a new connection, gets the satellite's methods."""
    with loaded.proc.proxy(TIMEOUT) as client:
        listed: Any = client.system.listMethods()
    assert "rec.m.got" in listed


# --------------------------------------------------------------------------
# XML-RPC over plain sockets

LIST_METHODS = xmlrpc.client.dumps((), "system.listMethods").encode()
REQUEST = (
    b"POST /RPC2 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(LIST_METHODS), LIST_METHODS)
)


def open_connections(port: int, count: int) -> list[socket.socket]:
    """Open ``count`` TCP connections to ``port`` on loopback; each socket times out after TIMEOUT."""
    opened: list[socket.socket] = []
    try:
        for _ in range(count):
            opened.append(socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT))
    except BaseException:
        close_all(opened)
        raise
    return opened


def close_all(sockets: list[socket.socket]) -> None:
    """Close every socket of ``sockets``."""
    for sock in sockets:
        sock.close()


def read_response(sock: socket.socket, deadline: float) -> tuple[bytes, bytes]:
    """One HTTP response from ``sock``, read by ``deadline``: its head and its body."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += _recv(sock, deadline)
    head, _, body = data.partition(b"\r\n\r\n")
    length = [
        int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    ]
    assert length, f"no Content-Length in {head!r}"
    while len(body) < length[0]:
        body += _recv(sock, deadline)
    assert len(body) == length[0], "more bytes than the one response asked for"
    return head, body


def _recv(sock: socket.socket, deadline: float) -> bytes:
    """The next bytes from ``sock``; fails on EOF or at ``deadline``."""
    sock.settimeout(max(0.01, deadline - time.monotonic()))
    chunk = sock.recv(65536)
    assert chunk, "the satellite closed the connection"
    return chunk


def check_answer(head: bytes, body: bytes) -> None:
    """A 200 kept alive, holding the methodResponse of system.listMethods."""
    assert head.startswith(b"HTTP/1.1 200 "), head
    assert b"connection: close" not in head.lower(), head
    params, _ = xmlrpc.client.loads(body)
    methods: Any = params[0]
    assert "rec.m.got" in methods


def serve_all(sockets: list[socket.socket]) -> None:
    """Send one system.listMethods on each socket, then read and check every answer."""
    for sock in sockets:
        sock.sendall(REQUEST)
    deadline = time.monotonic() + TIMEOUT
    for sock in sockets:
        check_answer(*read_response(sock, deadline))


# --------------------------------------------------------------------------
# AMP over plain sockets


def box(*pairs: tuple[bytes, bytes]) -> bytes:
    """An AMP box: for each pair, a 2-byte length and the key, a 2-byte length and the value."""
    fields = b"".join(struct.pack(">H", len(k)) + k + struct.pack(">H", len(v)) + v for k, v in pairs)
    return fields + b"\x00\x00"


def take_box(buffer: bytes) -> tuple[dict[bytes, bytes] | None, bytes]:
    """The first whole box in ``buffer`` (None if there is none yet) and what follows it."""
    fields: dict[bytes, bytes] = {}
    at = 0
    while True:
        if len(buffer) < at + 2:
            return None, buffer
        (size,) = struct.unpack_from(">H", buffer, at)
        at += 2
        if size == 0:
            return fields, buffer[at:]
        if len(buffer) < at + size + 2:
            return None, buffer
        key = buffer[at : at + size]
        (size,) = struct.unpack_from(">H", buffer, at + size)
        at += len(key) + 2
        if len(buffer) < at + size:
            return None, buffer
        fields[key] = buffer[at : at + size]
        at += size


def chunked(fields: dict[bytes, bytes], name: bytes) -> bytes:
    """A Chunked argument: ``name``, then ``name.1``, ``name.2``... joined."""
    parts, index = [fields[name]], 1
    while (key := name + b".%d" % index) in fields:
        parts.append(fields[key])
        index += 1
    return b"".join(parts)


@dataclass
class Link:
    """One AMP connection from the test process to the satellite, as node ``node``."""

    sock: socket.socket
    node: str
    host_id: str
    buffer: bytes = b""
    closed: bool = False
    answers: dict[bytes, dict[bytes, bytes]] = field(default_factory=dict)
    delivered: list[tuple[str, int, dict[str, object]]] = field(default_factory=list)
    """Every envelope the satellite delivered here: (id, hops, message)."""

    def send(self, *pairs: tuple[bytes, bytes]) -> None:
        """Send one box."""
        self.sock.sendall(box(*pairs))

    def hello(self) -> None:
        """Say Hello (asked as ``hello``)."""
        self.send((b"_ask", b"hello"), (b"_command", b"Hello"), (b"node", self.node.encode()),
                  (b"host_id", self.host_id.encode()), (b"version", b"%d" % PROTOCOL_VERSION))

    def feed(self) -> None:
        """Read what has arrived: keep answers, acknowledge Deliver, refuse other asked commands."""
        chunk = self.sock.recv(65536)
        self.closed = not chunk
        self.buffer += chunk
        while True:
            found, self.buffer = take_box(self.buffer)
            if found is None:
                return
            self._handle(found)

    def _handle(self, found: dict[bytes, bytes]) -> None:
        tag = found.get(b"_answer", found.get(b"_error"))
        if tag is not None:
            self.answers[tag] = found
        elif found.get(b"_command") == b"Deliver":
            for message_id, hops, body in decode_batch(chunked(found, b"batch")):
                self.delivered.append((message_id, hops, decode_message(body)))
            self.send((b"_answer", found[b"_ask"]))
        elif b"_ask" in found:  # nothing else is expected to ask anything of a node
            self.send((b"_error", found[b"_ask"]), (b"_error_code", b"UNHANDLED"),
                      (b"_error_description", b"not handled by the test"))


def open_links(port: int, count: int, label: str) -> list[Link]:
    """Open ``count`` AMP connections to ``port``, each a distinct node named after ``label``."""
    sockets = open_connections(port, count)
    return [
        Link(sock, f"{label}{i:02d}-{secrets.token_hex(4)}",
             f"{secrets.randbits(64)}@127.0.0.1:{sock.getsockname()[1]}")
        for i, sock in enumerate(sockets)
    ]


def pump(links: list[Link], done: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    """Read every link as bytes arrive until ``done()``; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        for link in links:
            selector.register(link.sock, selectors.EVENT_READ, link)
        while not done():
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"{what}: not within {timeout:g}s")
            for key, _ in selector.select(min(left, 0.05)):
                link = key.data
                link.feed()
                if link.closed:
                    selector.unregister(link.sock)
                    pytest.fail(f"{what}: the satellite closed the link of {link.node}")


def pump_for(links: list[Link], seconds: float) -> None:
    """Keep reading every link for ``seconds`` (to see what else arrives)."""
    until = time.monotonic() + seconds
    pump(links, lambda: time.monotonic() >= until, "reading", seconds + 1)


def say_hello(links: list[Link]) -> None:
    """Every link says Hello; each must be answered with this protocol version."""
    for link in links:
        link.hello()
    pump(links, lambda: all(b"hello" in link.answers for link in links), "Hello answered on every link")
    for link in links:
        answer = link.answers[b"hello"]
        assert b"_answer" in answer, answer
        assert answer[b"version"] == b"%d" % PROTOCOL_VERSION


def deliver(link: Link, envelopes: list[tuple[str, dict[str, object]]], ask: bytes) -> None:
    """Send one Deliver on ``link``: each ``(id, message)`` with one hop left, asked as ``ask``."""
    batch = encode_batch([encode_envelope(i, 1, encode_message(m)) for i, m in envelopes])
    assert len(batch) < 0xFFFF
    link.send((b"_ask", ask), (b"_command", b"Deliver"), (b"batch", batch))


def batch_of(link: Link, number: int) -> list[tuple[str, dict[str, object]]]:
    """The BATCH envelopes sender ``number`` delivers: ids and messages of its own."""
    return [
        (f"{link.node}.{k}", {"data": {"link": number, "k": k}, "host_id": link.host_id})
        for k in range(BATCH)
    ]


def probe_all(links: list[Link]) -> None:
    """An unknown command on every link gets UNHANDLED: every link is open and read."""
    for link in links:
        link.send((b"_ask", b"probe"), (b"_command", b"Probe"))
    pump(links, lambda: all(b"probe" in link.answers for link in links), "probe answered on every link")
    for link in links:
        assert link.answers[b"probe"].get(b"_error_code") == b"UNHANDLED", link.answers[b"probe"]


def close_links(links: list[Link]) -> None:
    """Close every link's socket."""
    close_all([link.sock for link in links])


# --------------------------------------------------------------------------
# The tests


def test_500_xmlrpc_connections_at_once(loaded: Loaded) -> None:
    """500 connections open at once each get system.listMethods answered and stay open."""
    before_fds, before_rss = socket_fds(loaded.pid), rss_mib(loaded.pid)
    started = time.monotonic()
    sockets = open_connections(loaded.port, CONNECTIONS)
    try:
        opened = time.monotonic()
        serve_all(sockets)
        served = time.monotonic()
        held_fds, held_rss = socket_fds(loaded.pid), rss_mib(loaded.pid)
        assert held_fds >= CONNECTIONS, f"the satellite holds {held_fds} sockets"
        still_serves(loaded)
        serve_all(sockets)  # the same connections, kept alive, answer again
    finally:
        close_all(sockets)
    wait_until(lambda: socket_fds(loaded.pid) <= before_fds + 5, "the satellite closing the connections")
    still_serves(loaded)
    print(
        f"\n{CONNECTIONS} connections: opened in {opened - started:.3f}s, all answered "
        f"{served - opened:.3f}s later; satellite sockets {before_fds} -> {held_fds}, "
        f"RSS {before_rss:.1f} -> {held_rss:.1f} MiB; after closing: {socket_fds(loaded.pid)} "
        f"sockets, RSS {rss_mib(loaded.pid):.1f} MiB"
    )


def test_50_amp_links_deliver_exactly_once(loaded: Loaded) -> None:
    """50 nodes link at once; batches from 10 reach the plugin once and every other link."""
    got_before = len(recorded(loaded))
    before_fds = socket_fds(loaded.pid)
    ups, downs = loaded.proc.count(r"link node:\S+ up: "), loaded.proc.count(r"link node:\S+ down")
    started = time.monotonic()
    links = open_links(loaded.amp_port, LINKS, "load")
    try:
        say_hello(links)
        linked = time.monotonic()
        wait_until(lambda: loaded.proc.count(r"link node:\S+ up: ") == ups + LINKS, "50 links up in the log")
        held_fds = socket_fds(loaded.pid)
        assert held_fds >= LINKS, f"the satellite holds {held_fds} sockets"

        batches = {i: batch_of(links[i], i) for i in range(SENDERS)}
        for i, envelopes in batches.items():
            deliver(links[i], envelopes, b"batch")
        every = {message_id for envelopes in batches.values() for message_id, _ in envelopes}
        expected = {
            link.node: every - {message_id for message_id, _ in batches.get(i, [])}
            for i, link in enumerate(links)
        }

        def all_arrived() -> bool:
            return all(b"batch" in links[i].answers for i in batches) and all(
                {message_id for message_id, _, _ in link.delivered} >= expected[link.node]
                for link in links
            )

        pump(links, all_arrived, "every batch acknowledged and forwarded to every other link")
        delivered = time.monotonic()
        deliver(links[1], batches[0], b"again")  # the same ids by another link: a duplicate
        pump(links, lambda: b"again" in links[1].answers, "the duplicate batch acknowledged")
        pump_for(links, SETTLE)

        for i in batches:
            assert b"_answer" in links[i].answers[b"batch"], links[i].answers[b"batch"]
        assert b"_answer" in links[1].answers[b"again"], links[1].answers[b"again"]
        for link in links:
            ids = [message_id for message_id, _, _ in link.delivered]
            assert sorted(ids) == sorted(expected[link.node]), f"{link.node} got {ids}"
            assert all(hops == 0 for _, hops, _ in link.delivered)
        got = recorded(loaded)[got_before:]
        sent = [message["data"] for envelopes in batches.values() for _, message in envelopes]
        key = lambda data: (data["link"], data["k"])  # noqa: E731
        assert sorted(got, key=key) == sorted(sent, key=key)

        probe_all(links)
        assert loaded.proc.count(r"link node:\S+ down") == downs, "a link went down"
        still_serves(loaded)
    finally:
        close_links(links)
    wait_until(lambda: loaded.proc.count(r"link node:\S+ down") == downs + LINKS, "50 links down in the log")
    wait_until(lambda: socket_fds(loaded.pid) <= before_fds + 5, "the satellite closing the links")
    still_serves(loaded)
    print(
        f"\n{LINKS} AMP links: connected and introduced in {linked - started:.3f}s; "
        f"{SENDERS * BATCH} messages acknowledged, recorded once and forwarded to the other "
        f"{LINKS - 1} links in {delivered - linked:.3f}s; satellite sockets {before_fds} -> {held_fds}"
    )


def test_both_loads_held_together(loaded: Loaded) -> None:
    """500 kept-alive XML-RPC connections and 50 AMP links at once; the satellite still answers."""
    before_fds, before_rss = socket_fds(loaded.pid), rss_mib(loaded.pid)
    sockets = open_connections(loaded.port, CONNECTIONS)
    links: list[Link] = []
    try:
        serve_all(sockets)
        links = open_links(loaded.amp_port, LINKS, "both")
        say_hello(links)
        held_fds, held_rss = socket_fds(loaded.pid), rss_mib(loaded.pid)
        assert held_fds >= CONNECTIONS + LINKS, f"the satellite holds {held_fds} sockets"
        still_serves(loaded)
        probe_all(links)
        serve_all(sockets)
    finally:
        close_links(links)
        close_all(sockets)
    wait_until(lambda: socket_fds(loaded.pid) <= before_fds + 5, "the satellite closing everything")
    still_serves(loaded)
    print(
        f"\n{CONNECTIONS} connections + {LINKS} links held: satellite sockets {before_fds} -> "
        f"{held_fds}, RSS {before_rss:.1f} -> {held_rss:.1f} MiB"
    )
