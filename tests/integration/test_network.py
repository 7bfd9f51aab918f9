"""
Networks of real ``co2-satellite`` and ``co2-relay`` processes on loopback:
delivery over a ring and a chain, the method directory, relays killed under
a stream, relay plugins, ``twistd co2-relay``, ``co2-relay`` errors and the
shipped three-node network.
"""

from __future__ import annotations

import re
import signal
import socket
import sqlite3
import time
import xmlrpc.client
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

LOCAL = "tcp:0:interface=127.0.0.1"
LINK_UP = r"link \S+ up: "
SETTLE = 0.5
"""Seconds to keep watching for duplicates once every message has arrived."""

RECORDER = '''
from twisted.internet.defer import Deferred

from co2 import Co2Plugin


class X_Recorder(Co2Plugin):
    """Keeps the data of every message it receives and sends on request."""

    def __init__(self, var_dict):
        Co2Plugin.__init__(self, var_dict)
        self.received = []

    def receive(self, data_dict):
        self.received.append(data_dict["data"])

    def x_received(self) -> list:
        """Return the data of every message received, in arrival order."""
        return self.received

    def x_emit(self, n: int, tag: str) -> int:
        """Send {"tag": tag, "i": i} for i in range(n); return n."""
        for i in range(n):
            self.send({"tag": tag, "i": i})
        return n

    def x_send(self, data) -> bool:
        """Send ``data``; return True."""
        self.send(data)
        return True

    def x_hello(self, name: str) -> str:
        """Return a greeting naming this plugin's package."""
        return f"hello {name} from {self.var_dict['package']}"

    def x_fail(self) -> bool:
        """Raise ValueError."""
        raise ValueError("failed on purpose")

    def x_never(self):
        """Return a Deferred that never fires."""
        return Deferred()
'''


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def listen_at(port: int) -> str:
    """The server endpoint string for ``port`` on loopback."""
    return f"tcp:{port}:interface=127.0.0.1"


def peer_at(port: int) -> str:
    """The AMP peer (client endpoint string) for ``port`` on loopback."""
    return f"tcp:host=127.0.0.1:port={port}"


def call(proc: Any, name: str, *args: Any, timeout: float = 20.0) -> Any:
    """Call the XML-RPC method ``name`` of ``proc``, giving up after ``timeout`` seconds."""
    with proc.proxy(timeout) as proxy:
        return getattr(proxy, name)(*args)


def received(proc: Any, package: str) -> list[Any]:
    """What the recorder of ``package`` on ``proc`` has received."""
    return list(call(proc, f"{package}.rec.received"))


def wait_until(probe: Callable[[], Any], what: str, *procs: Any, timeout: float = 15.0) -> Any:
    """Call ``probe`` until it returns something true; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            logs = "\n".join(proc.describe() for proc in procs)
            pytest.fail(f"{what}: not within {timeout}s\n{logs}")
        time.sleep(0.05)


def by_order(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``items`` sorted by tag, then number."""
    return sorted(items, key=lambda item: (str(item.get("tag")), item.get("i", 0)))


def emitted(tag: str, n: int) -> list[dict[str, Any]]:
    """The data ``x_emit(n, tag)`` sends."""
    return [{"tag": tag, "i": i} for i in range(n)]


def owed_in_spool(path: Path) -> int:
    """How many (link, message) pairs the spool at ``path`` owes; 0 before it exists."""
    if not path.exists():
        return 0
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2)
    try:
        return int(db.execute("SELECT COUNT(*) FROM owed").fetchone()[0])
    finally:
        db.close()


class Network:
    """Writes a config per node in ``tmp_path`` and starts nodes from them."""

    def __init__(
        self,
        tmp_path: Path,
        start: Any,
        satellite: Callable[..., Any],
        relay: Callable[..., Any],
        make_config: Callable[..., Path],
        make_plugin: Callable[..., Path],
        plugin_dir: Path,
    ) -> None:
        self.tmp_path = tmp_path
        self._start = start
        self._satellite = satellite
        self._relay = relay
        self._make_config = make_config
        self._make_plugin = make_plugin
        self.plugin_dir = plugin_dir

    def config(self, name: str, **settings: object) -> Path:
        """Write ``<name>.py``, listening for XML-RPC on an ephemeral port unless told."""
        settings.setdefault("listen", LOCAL)
        return self._make_config(filename=f"{name}.py", **settings)

    def relay(self, name: str, **settings: object) -> Any:
        """Start ``co2-relay`` with the config ``<name>.py``."""
        return self._relay("--config", self.config(name, **settings), cwd=self.tmp_path)

    def satellite(self, name: str, package: str, **settings: object) -> Any:
        """Start ``co2-satellite`` with a recorder plugin package named ``package``."""
        if not (self.plugin_dir / package).exists():
            self._make_plugin(package, f"Records messages ({package}).", rec=RECORDER)
        config = self.config(
            name, plugin_dir=str(self.plugin_dir), plugin_list=[package], **settings
        )
        return self._satellite("--config", config, cwd=self.tmp_path)

    def restart(self, proc: Any) -> Any:
        """Start ``proc``'s command again with the same config."""
        return self._start.restart(proc)


@pytest.fixture
def network(
    tmp_path: Path,
    start: Any,
    satellite: Callable[..., Any],
    relay: Callable[..., Any],
    make_config: Callable[..., Path],
    make_plugin: Callable[..., Path],
    plugin_dir: Path,
) -> Network:
    """Starts relays and recorder satellites from configs in ``tmp_path``."""
    return Network(tmp_path, start, satellite, relay, make_config, make_plugin, plugin_dir)


def wait_links(procs: list[Any], count: int) -> None:
    """Wait until each of ``procs`` has logged ``count`` links up."""
    for proc in procs:
        wait_until(lambda proc=proc: proc.count(LINK_UP) >= count, f"{count} links up", proc)


def wait_methods(proc: Any, names: set[str], *procs: Any) -> None:
    """Wait until ``co2.get_method_names`` on ``proc`` lists all of ``names``."""
    wait_until(
        lambda: names <= set(call(proc, "co2.get_method_names")),
        f"{sorted(names)} listed on {proc.url}", proc, *procs,
    )


@dataclass
class Ring:
    """S1-R1-S2-R2-S3-S1: three satellites (rec1..rec3) and two relays."""

    r1: Any
    r2: Any
    s1: Any
    s2: Any
    s3: Any

    @property
    def procs(self) -> list[Any]:
        return [self.r1, self.r2, self.s1, self.s2, self.s3]


def start_ring(network: Network, r1_listen: str = LOCAL, spool: bool = False) -> Ring:
    """
    Start a ring (the relays spooling to ``<name>.spool`` when ``spool``)
    and wait until every link is up and every method is known everywhere.
    """

    def relay(name: str, amp_listen: str) -> Any:
        spooled = {"spool": f"{name}.spool"} if spool else {}
        return network.relay(name, amp_listen=amp_listen, **spooled)

    r1, r2 = relay("r1", r1_listen), relay("r2", LOCAL)
    r1_peer, r2_peer = peer_at(r1.wait_amp()), peer_at(r2.wait_amp())
    s1 = network.satellite("s1", "rec1", amp_listen=LOCAL, peers=[r1_peer])
    s1_peer = peer_at(s1.wait_amp())
    s2 = network.satellite("s2", "rec2", peers=[r1_peer, r2_peer])
    s3 = network.satellite("s3", "rec3", peers=[r2_peer, s1_peer])
    ring = Ring(r1, r2, s1, s2, s3)
    for proc in ring.procs:
        proc.wait_serving()
    wait_links(ring.procs, 2)
    hello = {f"rec{i}.rec.hello" for i in (1, 2, 3)}
    for proc in (s1, s2, s3):
        wait_methods(proc, hello, *ring.procs)
    return ring


def assert_received_once(proc: Any, package: str, expected: list[dict[str, Any]], *procs: Any) -> None:
    """``package`` on ``proc`` receives each of ``expected`` exactly once, and nothing else."""
    wait_until(
        lambda: len(received(proc, package)) >= len(expected),
        f"{len(expected)} messages at {package}", proc, *procs,
    )
    time.sleep(SETTLE)
    assert by_order(received(proc, package)) == by_order(expected)


def test_ring_delivers_each_message_once(network):
    """In a ring of three satellites and two relays, each message reaches every other satellite once."""
    ring = start_ring(network)
    assert call(ring.s1, "rec1.rec.emit", 50, "ring") == 50
    expected = emitted("ring", 50)
    assert_received_once(ring.s2, "rec2", expected, *ring.procs)
    assert_received_once(ring.s3, "rec3", expected, *ring.procs)
    assert received(ring.s1, "rec1") == []


def test_method_directory_routes_calls(network):
    """A satellite lists and calls the methods of satellites across the network, faults included."""
    ring = start_ring(network)
    names = call(ring.s1, "co2.get_method_names")
    assert {"rec2.rec.hello", "rec3.rec.hello", "rec3.rec.fail"} <= set(names)
    assert call(ring.s1, "rec3.rec.hello", "x") == "hello x from rec3"
    assert call(ring.s1, "rec2.rec.hello", "y") == "hello y from rec2"
    assert call(ring.r2, "rec1.rec.hello", "z") == "hello z from rec1"
    with pytest.raises(xmlrpc.client.Fault) as info:
        call(ring.s1, "rec3.rec.fail")
    assert info.value.faultCode == -32500
    assert "ValueError" in info.value.faultString
    assert "Traceback" not in info.value.faultString
    with pytest.raises(xmlrpc.client.Fault) as info:
        call(ring.s1, "rec9.rec.hello", "x")
    assert info.value.faultCode == -32601


def test_remote_call_timeout_and_dead_node(network):
    """A remote call unanswered in call_timeout is -32002; once its node dies it is -32001 or -32601."""
    s1 = network.satellite("s1", "rec1", amp_listen=LOCAL, call_timeout=1)
    s2 = network.satellite("s2", "rec2", peers=[peer_at(s1.wait_amp())])
    s1.wait_serving()
    s2.wait_serving()
    wait_methods(s1, {"rec2.rec.never", "rec2.rec.hello"}, s2)
    began = time.monotonic()
    with pytest.raises(xmlrpc.client.Fault) as info:
        call(s1, "rec2.rec.never", timeout=10)
    assert info.value.faultCode == -32002
    assert time.monotonic() - began < 5
    assert call(s1, "rec2.rec.hello", "x") == "hello x from rec2"

    s2.stop(signal.SIGKILL)
    with pytest.raises(xmlrpc.client.Fault) as info:
        call(s1, "rec2.rec.hello", "x", timeout=10)
    assert info.value.faultCode in (-32001, -32601)
    wait_until(
        lambda: "rec2.rec.hello" not in call(s1, "co2.get_method_names"),
        "the dead node's methods forgotten", s1,
    )
    with pytest.raises(xmlrpc.client.Fault) as info:
        call(s1, "rec2.rec.hello", "x", timeout=10)
    assert info.value.faultCode == -32601


def test_killed_relay_delivers_spooled_messages_once(network, tmp_path):
    """A relay killed with -9 owing messages to a stopped satellite delivers each once after a restart."""
    s2_port, r_port = free_port(), free_port()
    s2 = network.satellite("s2", "rec2", amp_listen=listen_at(s2_port), spool="s2.spool")
    r = network.relay("r", amp_listen=listen_at(r_port), spool="r.spool", peers=[peer_at(s2_port)])
    s1 = network.satellite("s1", "rec1", peers=[peer_at(r_port)])
    for proc in (s2, r, s1):
        proc.wait_serving()
    assert call(s1, "rec1.rec.emit", 1, "probe") == 1
    wait_until(lambda: received(s2, "rec2") == emitted("probe", 1), "the probe at s2", s1, r, s2)
    assert s2.stop() == 0, s2.describe()

    assert call(s1, "rec1.rec.emit", 200, "owed") == 200
    wait_until(lambda: owed_in_spool(tmp_path / "r.spool") >= 200, "200 owed in r's spool", s1, r)
    r.stop(signal.SIGKILL)

    r = network.restart(r)
    s2 = network.restart(s2)
    r.wait_serving()
    s2.wait_serving()
    assert_received_once(s2, "rec2", emitted("owed", 200), s1, r)


def test_ring_survives_a_relay_killed_mid_stream(network):
    """Killing a spooled relay with -9 mid-stream and restarting it still delivers each message once."""
    ring = start_ring(network, r1_listen=listen_at(free_port()), spool=True)
    expected = []
    for chunk in range(30):
        if chunk == 10:
            ring.r1.stop(signal.SIGKILL)
        if chunk == 20:
            ring.r1 = network.restart(ring.r1)
            wait_links([ring.r1], 2)
        tag = f"chunk{chunk:02d}"
        assert call(ring.s1, "rec1.rec.emit", 10, tag) == 10
        expected += emitted(tag, 10)
        time.sleep(0.01)
    assert len(expected) == 300
    assert_received_once(ring.s2, "rec2", expected, *ring.procs)
    assert_received_once(ring.s3, "rec3", expected, *ring.procs)
    assert received(ring.s1, "rec1") == []


def test_twistd_runs_a_relay(twistd_relay, make_config):
    """twistd co2-relay listens for XML-RPC and AMP; SIGTERM stops it with status 0."""
    config = make_config(listen=LOCAL, amp_listen=LOCAL)
    proc = twistd_relay("--config", config)
    proc.wait_serving()
    proc.wait_amp()
    assert "co2 relay " in proc.stdout
    assert "notify" in call(proc, "co2.get_method_names")
    assert proc.stop(signal.SIGTERM) == 0, proc.describe()


def test_relay_bad_setting_exits_2(relay, make_config):
    """co2-relay with a wrong value exits 2 with one line naming the file and the key."""
    config = make_config(listen=LOCAL, max_hops="many")
    proc = relay("--config", config)
    assert proc.wait() == 2, proc.describe()
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.describe()
    assert str(config) in lines[0]
    assert "max_hops" in lines[0]


def test_relay_amp_listen_in_use_exits_1(relay, make_config):
    """co2-relay whose amp_listen port is taken exits 1 naming the endpoint."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        endpoint = listen_at(taken.getsockname()[1])
        proc = relay("--config", make_config(listen=LOCAL, amp_listen=endpoint))
        assert proc.wait() == 1, proc.describe()
    assert endpoint in proc.stderr, proc.describe()


def test_relay_plugin_not_importable_exits_2(relay, make_config):
    """co2-relay with a relay plugin that cannot be imported exits 2 naming it."""
    config = make_config(listen=LOCAL, relay_plugins=["no_such_relay_plugin"])
    proc = relay("--config", config)
    assert proc.wait() == 2, proc.describe()
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.describe()
    assert "no_such_relay_plugin" in lines[0]
    assert "relay_plugins" in lines[0]


def test_relay_plugin_filters_the_path(network):
    """A relay running relay.shape passes on only the messages whose data holds the required key."""
    s2 = network.satellite("s2", "rec2", amp_listen=LOCAL)
    r = network.relay(
        "r", amp_listen=LOCAL, peers=[peer_at(s2.wait_amp())],
        relay_plugins=["relay.shape"],
        relay_plugin_config={"relay.shape": {"accept": ["struct"], "require": ["keep"]}},
    )
    s1 = network.satellite("s1", "rec1", peers=[peer_at(r.wait_amp())])
    for proc in (s2, r, s1):
        proc.wait_serving()
    wait_methods(s1, {"rec2.rec.hello"}, r, s2)
    sent = [{"keep": 1}, {"other": 2}, "keep", [1, 2], {"keep": 3, "tag": "last"}]
    for data in sent:
        assert call(s1, "rec1.rec.send", data) is True
    kept = [{"keep": 1}, {"keep": 3, "tag": "last"}]
    wait_until(lambda: {"keep": 3, "tag": "last"} in received(s2, "rec2"), "the last message", s1, r, s2)
    time.sleep(SETTLE)
    assert received(s2, "rec2") == kept


PORT = re.compile(r"\b(2004|2005|2010|2011)\b")


def test_shipped_network_configs(relay, satellite, repo_root, tmp_path):
    """network/relay.py, alpha.py and beta.py run as a network: shouts reach beta, calls cross the relay."""
    ports: dict[str, str] = {}
    for name in ("relay.py", "alpha.py", "beta.py"):
        text = (repo_root / "network" / name).read_text()
        text = PORT.sub(lambda m: ports.setdefault(m.group(1), str(free_port())), text)
        (tmp_path / name).write_text(text)
    assert set(ports) == {"2004", "2005", "2010", "2011"}
    hub = relay("--config", "relay.py", cwd=tmp_path)
    alpha = satellite("--config", "alpha.py", cwd=tmp_path)
    beta = satellite("--config", "beta.py", cwd=tmp_path)
    procs = (hub, alpha, beta)
    for proc in procs:
        proc.wait_serving()
    assert hub.port == int(ports["2010"])
    wait_links([hub], 2)
    wait_links([alpha, beta], 1)
    wait_methods(hub, {"ham.spam.call_me", "example.example.last"}, *procs)

    assert call(alpha, "example.example.shout", "hi") is True
    wait_until(lambda: call(beta, "example.example.last") == ["hi"], "'hi' at beta", *procs)
    assert call(alpha, "example.example.last") == []
    assert "x" in call(hub, "ham.spam.call_me", "x")
    for spool in ("relay", "alpha", "beta"):
        assert (tmp_path / "var" / f"{spool}.spool").exists()
