"""
Authentication between real processes: a relay that requires credentials
from the nodes that link to it and from XML-RPC callers, ``--auth`` on the
command line and through ``twistd``.
"""

from __future__ import annotations

import socket
import xmlrpc.client
from pathlib import Path
from typing import Any

import pytest
from test_network import (  # a sibling test module
    LINK_UP,
    call,
    emitted,
    free_port,
    listen_at,
    network,  # noqa: F401  (the fixture)
    peer_at,
    received,
    wait_until,
)

from co2.protocol import Deliver, encode_batch


def url_with(proc: Any, user: str, password: str) -> str:
    return proc.url.replace("http://", f"http://{user}:{password}@")


def status_of(url: str, method: str, *args: Any) -> int | Any:
    """The result of calling ``method`` at ``url``, or the HTTP status that refused it."""
    try:
        with xmlrpc.client.ServerProxy(url) as proxy:
            return getattr(proxy, method)(*args)
    except xmlrpc.client.ProtocolError as e:
        return e.errcode


def test_a_relay_lets_in_only_the_nodes_with_the_right_password(network: Any, tmp_path: Path) -> None:  # noqa: F811
    (tmp_path / "passwd").write_text("alpha:alpha-pw\nbeta:beta-pw\nadmin:admin-pw\n")
    port = free_port()
    hub = network.relay("hub", amp_listen=listen_at(port), auth="file:passwd")
    hub.wait_serving()
    peers = [peer_at(port)]
    alpha = network.satellite("alpha", "pa", peers=peers, peer_credentials=("alpha", "alpha-pw"))
    beta = network.satellite("beta", "pb", peers=peers, peer_credentials=("beta", "beta-pw"))
    mallory = network.satellite("mallory", "pm", peers=peers, peer_credentials=("beta", "guess"))
    for proc in (alpha, beta, mallory):
        proc.wait_serving()
    wait_until(lambda: hub.count(LINK_UP) >= 2, "two links up at the hub", hub)
    wait_until(lambda: mallory.count(r"Hello failed: .*wrong user name or password") >= 2,
               "mallory retried and was refused again", mallory, hub)
    assert hub.count(r"the AMP listener: refused 127\.0\.0\.1:\d+ \(node \w+\) \(user 'beta'\): "
                     r"wrong user name or password") >= 2

    assert call(alpha, "pa.rec.emit", 3, "a") == 3
    wait_until(lambda: received(beta, "pb") == emitted("a", 3), "beta got alpha's messages", beta)
    assert received(mallory, "pm") == []

    # XML-RPC at the hub: every method needs credentials by default.
    assert status_of(hub.url, "system.listMethods") == 401
    assert status_of(url_with(hub, "admin", "wrong"), "system.listMethods") == 401
    assert "system.listMethods" in status_of(url_with(hub, "admin", "admin-pw"), "system.listMethods")
    assert hub.count(r"the XML-RPC listener: refused 127\.0\.0\.1:\d+: no credentials given") == 1

    # A box before Hello is refused and the hub goes on serving.
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        raw.sendall(b"".join(
            len(k).to_bytes(2, "big") + k + len(v).to_bytes(2, "big") + v
            for k, v in [(b"_command", b"Deliver"), (b"_ask", b"1"),
                         (b"batch", encode_batch([]))]
        ) + b"\x00\x00")
        answer = raw.recv(4096)
    assert b"HELLO_FIRST" in answer and Deliver.commandName == b"Deliver"
    assert call(alpha, "pa.rec.emit", 1, "b") == 1
    wait_until(lambda: received(beta, "pb") == emitted("a", 3) + emitted("b", 1), "beta got more", beta)


@pytest.mark.parametrize("runner", ["satellite", "twistd"])
def test_auth_on_the_command_line(
    request: pytest.FixtureRequest, runner: str, make_config: Any, tmp_path: Path
) -> None:
    """--auth protects the methods auth_methods names, through co2-satellite and twistd alike."""
    config = make_config(listen="tcp:0:interface=127.0.0.1", plugin_list=["ham"],
                         auth_methods=["ham.*"])
    start = request.getfixturevalue(runner)
    proc = start("--config", config, "--auth", "memory:carol:c-pw", cwd=tmp_path)
    proc.wait_serving()
    assert status_of(proc.url, "ham.spam.call_me", "x") == 401
    assert status_of(url_with(proc, "carol", "c-pw"), "ham.spam.call_me", "x").startswith("hello, x")
    assert "ham.spam.call_me" in status_of(proc.url, "system.listMethods")
    assert proc.stop() == 0
    assert proc.count(r"refused 127\.0\.0\.1:\d+: no credentials given") == 1
