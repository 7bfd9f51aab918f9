"""Limits of a real co2-satellite's listeners: connections, slow requests, idle connections."""

from __future__ import annotations

import socket
import time
import xmlrpc.client
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conftest import Proc

LOCAL = "tcp:0:interface=127.0.0.1"


def connect(proc: Proc) -> socket.socket:
    return socket.create_connection(("127.0.0.1", proc.port), timeout=10)


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_connections_past_max_connections_get_503(
    satellite: Callable[..., Proc], make_config: Callable[..., Path]
) -> None:
    """With max_connections = 2, a third open connection is answered 503; closing one makes room."""
    proc = satellite("--config", make_config(max_connections=2), "--listen", LOCAL)
    proc.wait_serving()
    first, second = connect(proc), connect(proc)
    third = connect(proc)
    assert read_all(third).startswith(b"HTTP/1.1 503 ")
    first.close()
    deadline = time.monotonic() + 10
    while True:
        try:
            answer = xmlrpc.client.ServerProxy(proc.url).co2.get_method_names()
            break
        except (ConnectionError, xmlrpc.client.ProtocolError):
            assert time.monotonic() < deadline, "no room made by closing a connection"
            time.sleep(0.05)
    assert "notify" in answer
    second.close()
    third.close()


def test_a_request_trickled_too_slowly_gets_408(
    satellite: Callable[..., Proc], make_config: Callable[..., Path]
) -> None:
    """A request incomplete request_timeout after its first byte gets 408; the server goes on."""
    proc = satellite("--config", make_config(request_timeout=0.5), "--listen", LOCAL)
    proc.wait_serving()
    slow = connect(proc)
    slow.sendall(b"POST /RPC2 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n<?xml")
    started = time.monotonic()
    answer: Any = read_all(slow)
    assert answer.startswith(b"HTTP/1.1 408 ") and time.monotonic() - started < 5
    assert xmlrpc.client.ServerProxy(proc.url).system.listMethods()


def test_an_idle_connection_is_closed(
    satellite: Callable[..., Proc], make_config: Callable[..., Path]
) -> None:
    """A connection with no request for idle_timeout seconds is closed by the server."""
    proc = satellite("--config", make_config(idle_timeout=0.5), "--listen", LOCAL)
    proc.wait_serving()
    idle = connect(proc)
    started = time.monotonic()
    assert read_all(idle) == b""
    assert time.monotonic() - started < 5
