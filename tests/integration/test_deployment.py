"""
``co2-satellite`` deployed as ``docs/deployment.md`` shows: on a socket
passed by systemd's socket activation (done here by hand), and behind a
load balancer that speaks the PROXY protocol (``haproxy:`` endpoints).
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import xmlrpc.client
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import BIN_DIR, CALL_TIMEOUT, REPO_ROOT, Proc, ProcessStarter, eventually

from co2 import faults
from co2.testing import OutputReader

# What systemd does for a service whose socket units it holds, before it
# execs the service: the sockets become fds 3, 4, ..., and LISTEN_FDS,
# LISTEN_FDNAMES and LISTEN_PID (the pid of the process that is to adopt
# them) say so.  Twisted takes the sockets only when LISTEN_FDNAMES names
# as many as LISTEN_FDS counts, as systemd (227 and later) always has it.
# argv: "FD=NAME,FD=NAME...", then the command.
ACTIVATE = """
import fcntl, os, sys
given = [pair.split("=") for pair in sys.argv[1].split(",")]
# Each out of the way first, so that moving one to its place cannot close another.
moved = [fcntl.fcntl(int(fd), fcntl.F_DUPFD, 100) for fd, _ in given]
for fd, _ in given:
    os.close(int(fd))
for place, fd in enumerate(moved, 3):
    os.dup2(fd, place)
    os.close(fd)
os.environ.update(
    LISTEN_FDS=str(len(given)),
    LISTEN_FDNAMES=":".join(name for _, name in given),
    LISTEN_PID=str(os.getpid()),
)
os.execv(sys.argv[2], sys.argv[2:])
"""

# The header haproxy's ``send-proxy`` writes first on each connection.
CLIENT = "203.0.113.7"
PROXY_HEADER = f"PROXY TCP4 {CLIENT} 127.0.0.1 5555 2004\r\n".encode()


class ActivatedProc(Proc):
    """``args`` started as systemd starts a service, given ``sockets`` (name to socket) in order."""

    def __init__(self, args: list[str], cwd: Path, sockets: dict[str, socket.socket]) -> None:
        given = ",".join(f"{s.fileno()}={name}" for name, s in sockets.items())
        self.args = [sys.executable, "-c", ACTIVATE, given, *args]
        self.cwd = cwd
        self.popen = subprocess.Popen(
            self.args, cwd=cwd, env=dict(os.environ, PYTHONUNBUFFERED="1"),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True, pass_fds=[s.fileno() for s in sockets.values()],
        )
        self._stdout = OutputReader(self.popen.stdout)
        self._stderr = OutputReader(self.popen.stderr)
        self.url = ""
        self.port = 0


@pytest.fixture
def activated(start: ProcessStarter) -> Iterator[Callable[..., tuple[Proc, dict[str, int]]]]:
    """
    ``activated(program, *args, names=("xmlrpc",))`` runs ``program
    *args`` (``co2-satellite`` or ``co2-relay``) with a listening socket
    on a free loopback port per name, passed as systemd passes them;
    returns the process and the port of each name.  The process is ended
    afterwards, like every one ``start`` made.
    """
    held: list[socket.socket] = []

    def run(program: str, *args: object, names: Iterable[str] = ("xmlrpc",)) -> tuple[Proc, dict[str, int]]:
        sockets = {name: socket.create_server(("127.0.0.1", 0)) for name in names}
        held.extend(sockets.values())
        proc = ActivatedProc([str(BIN_DIR / program), *map(str, args)], REPO_ROOT, sockets)
        start.started.append(proc)
        ports = {name: s.getsockname()[1] for name, s in sockets.items()}
        for listening in sockets.values():
            listening.close()  # the child holds them now
        return proc, ports

    yield run
    for listening in held:
        listening.close()


def proxied_call(port: int, header: bytes, method: str, *params: Any) -> Any:
    """Call ``method`` on the node at ``port`` over a connection that starts with ``header``."""
    body = xmlrpc.client.dumps(params, method, allow_none=True).encode()
    head = (
        f"POST /RPC2 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: text/xml\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=CALL_TIMEOUT) as connection:
        connection.sendall(header + head + body)
        response = http.client.HTTPResponse(connection)
        response.begin()
        assert response.status == 200, (response.status, response.read())
        (result,), _ = xmlrpc.client.loads(response.read())
    return result


def test_socket_activation_serves_xmlrpc(activated, make_config):
    """On the socket systemd passed (systemd:domain=INET:index=0) a satellite answers; SIGTERM exits 0."""
    config = make_config(plugin_list=["ham"], listen="systemd:domain=INET:index=0")
    proc, ports = activated("co2-satellite", "--config", config)
    assert proc.wait_serving() == f"http://127.0.0.1:{ports['xmlrpc']}/"
    with proc.proxy() as proxy:
        assert proxy.ham.spam.call_me("systemd") == "hello, systemd, from ham.spam.X_Spam"
    assert proc.stop(signal.SIGTERM) == 0, proc.describe()


def test_a_relay_takes_its_sockets_by_name(activated, satellite, make_config):
    """A relay serves XML-RPC and AMP on the sockets named xmlrpc and amp; a satellite links to it there."""
    config = make_config(
        listen="systemd:domain=INET:name=xmlrpc", amp_listen="systemd:domain=INET:name=amp",
        filename="relay.py",
    )
    relay, ports = activated("co2-relay", "--config", config, names=("amp", "xmlrpc"))
    assert relay.wait_serving() == f"http://127.0.0.1:{ports['xmlrpc']}/"
    assert relay.wait_amp() == ports["amp"]
    linked = make_config(
        plugin_list=["ham"], listen="tcp:0:interface=127.0.0.1",
        peers=[f"tcp:host=127.0.0.1:port={ports['amp']}"],
    )
    satellite("--config", linked).wait_serving()
    with relay.proxy() as proxy:
        assert eventually(lambda: "ham.spam.call_me" in proxy.co2.get_method_names(), timeout=10)
        assert proxy.ham.spam.call_me("hub") == "hello, hub, from ham.spam.X_Spam"
    assert relay.stop(signal.SIGTERM) == 0, relay.describe()


def test_haproxy_on_a_socket_from_systemd(activated, make_config):
    """haproxy:systemd:... reads the PROXY header on the socket systemd passed."""
    config = make_config(plugin_list=["ham"], listen="haproxy:systemd:domain=INET:index=0")
    proc, ports = activated("co2-satellite", "--config", config)
    proc.wait_serving()
    answer = proxied_call(ports["xmlrpc"], PROXY_HEADER, "ham.spam.call_me", "both")
    assert answer == "hello, both, from ham.spam.X_Spam"


def test_socket_activation_without_a_socket_fails_the_start(satellite, make_config):
    """A systemd: listen where systemd passed no socket is a runtime failure (exit 1) naming the endpoint."""
    config = make_config(plugin_list=["ham"], listen="systemd:domain=INET:index=0")
    proc = satellite("--config", config)
    assert proc.wait() == 1, proc.describe()
    assert "cannot listen on 'systemd:domain=INET:index=0' (the XML-RPC listener)" in proc.stderr
    assert "systemd passed no such socket" in proc.stderr and "list index" not in proc.stderr


def test_a_systemd_config_runs_by_hand_with_listen(satellite, make_config):
    """--listen overrides a systemd: listen, so the same config runs outside systemd."""
    config = make_config(plugin_list=["ham"], listen="systemd:domain=INET:index=0")
    proc = satellite("--config", config, "--listen", "tcp:0:interface=127.0.0.1")
    proc.wait_serving()
    with proc.proxy() as proxy:
        assert proxy.ham.spam.call_me("x") == "hello, x, from ham.spam.X_Spam"


@pytest.fixture
def proxied(satellite, make_config) -> Proc:
    """A satellite with the ham plugin behind ``haproxy:tcp:0:interface=127.0.0.1``, serving."""
    config = make_config(plugin_list=["ham"], listen="haproxy:tcp:0:interface=127.0.0.1")
    proc: Proc = satellite("--config", config)
    proc.wait_serving()
    return proc


def test_haproxy_calls_work_after_a_proxy_header(proxied):
    """A call on a connection that starts with a PROXY v1 header is answered."""
    answer = proxied_call(proxied.port, PROXY_HEADER, "ham.spam.call_me", "lb")
    assert answer == "hello, lb, from ham.spam.X_Spam"


def test_haproxy_drops_a_connection_without_a_header(proxied):
    """A client that does not start with a PROXY header is disconnected unanswered."""
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        proxied_call(proxied.port, b"", "ham.spam.call_me", "direct")


def test_haproxy_refuses_a_host_id_naming_another_host(proxied):
    """notify whose host_id names neither the PROXY source nor the proxy gets fault -32000."""
    with pytest.raises(xmlrpc.client.Fault) as raised:
        proxied_call(proxied.port, PROXY_HEADER, "notify", {"data": 1, "host_id": "1@198.51.100.9:2004"})
    assert raised.value.faultCode == faults.HOST_ID_MISMATCH


def test_haproxy_caller_is_the_proxy_headers_source(proxied):
    """notify whose host_id names the PROXY header's source is accepted: that is the caller."""
    before = proxied_call(proxied.port, PROXY_HEADER, "ham.spam.received")
    message = {"data": "via the balancer", "host_id": f"1@{CLIENT}:2004"}
    assert proxied_call(proxied.port, PROXY_HEADER, "notify", message) is True
    assert eventually(lambda: proxied_call(proxied.port, PROXY_HEADER, "ham.spam.received") == before + 1)


def test_haproxy_caller_is_not_the_proxy(proxied):
    """notify whose host_id names the proxy's own address (not the client's) is refused with fault -32000."""
    with pytest.raises(xmlrpc.client.Fault) as raised:
        proxied_call(proxied.port, PROXY_HEADER, "notify", {"data": 1, "host_id": "1@127.0.0.1:2004"})
    assert raised.value.faultCode == faults.HOST_ID_MISMATCH
