"""
Several hosts on one machine: real ``co2-relay`` and ``co2-satellite``
processes, each listening on a loopback address of its own (127.0.0.2,
127.0.0.3, ...; Linux routes all of 127/8 to ``lo``), so that ``host_id``,
``client_address``, the spoofing checks and the links name different hosts.

The star these tests start: a relay on 127.0.0.2, satellites on 127.0.0.3
(plugin package ``left``) and 127.0.0.4 (``right``) that link to it.  Clients
playing a fourth host bind their sockets to 127.0.0.5.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import time
import urllib.error
import urllib.request
import xmlrpc.client
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from conftest import Proc
from test_hostile import AmpLink  # a sibling test module
from test_network import LINK_UP, call, wait_until  # a sibling test module
from twisted.protocols import amp

from co2 import faults, parse_host_id
from co2._message import encode_message
from co2.protocol import PROTOCOL_VERSION, Deliver, Hello, encode_batch, encode_envelope

RELAY_HOST = "127.0.0.2"
LEFT_HOST = "127.0.0.3"
RIGHT_HOST = "127.0.0.4"
CLIENT_HOST = "127.0.0.5"
ELSEWHERE = "127.0.0.9"
"""A host no process here uses, for host_ids that name somebody else."""

TIMEOUT = 15.0
"""Seconds any one wait (a start, links, a message, a call) may take."""
SETTLE = 0.5
"""Seconds to keep watching for duplicates once the expected messages have arrived."""

LOGBOOK = '''
from co2 import Co2Plugin


class X_Logbook(Co2Plugin):
    """Keeps every message it receives, whole, and sends or fails on request."""

    def __init__(self, var_dict):
        Co2Plugin.__init__(self, var_dict)
        self.got = []

    def receive(self, data_dict):
        self.got.append(dict(data_dict))

    def x_got(self) -> list:
        """Return every message received (data, host_id, client_address), in arrival order."""
        return self.got

    def x_send(self, data) -> bool:
        """Send ``data`` to every other plugin; return True."""
        self.send(data)
        return True

    def x_where(self) -> str:
        """Return the host_id of the satellite this plugin runs on."""
        return self.var_dict["host_id"]

    def x_fail(self) -> bool:
        """Raise ValueError."""
        raise ValueError("failed on purpose")
'''


def listen_on(host: str) -> str:
    """A server endpoint on an ephemeral port of ``host``."""
    return f"tcp:0:interface={host}"


def peer_at(host: str, port: int) -> str:
    """The AMP peer (client endpoint string) at ``host``:``port``."""
    return f"tcp:host={host}:port={port}"


def wait_serving_on(proc: Proc, host: str) -> str:
    """Wait until ``proc`` serves XML-RPC on ``host``; set and return its URL."""
    match = proc.wait_output(rf"serving XML-RPC at (http://{re.escape(host)}:(\d+)/)", TIMEOUT)
    proc.url, proc.port = match.group(1), int(match.group(2))
    return proc.url


def wait_amp_on(proc: Proc, host: str) -> int:
    """Wait until ``proc`` listens for AMP links on ``host``; its port."""
    match = proc.wait_output(rf"listening for AMP links at tcp://{re.escape(host)}:(\d+)/", TIMEOUT)
    return int(match.group(1))


def get_json(proc: Proc, path: str) -> Any:
    """``GET path`` of ``proc``'s listener, decoded from JSON."""
    with urllib.request.urlopen(proc.url + path.lstrip("/"), timeout=TIMEOUT) as response:
        return json.load(response)


def host_of(host_id: str) -> tuple[str, int]:
    """The ``(ip, port)`` a ``host_id`` names."""
    parsed = parse_host_id(host_id)
    return parsed.host, parsed.port


class BoundConnection(http.client.HTTPConnection):
    """An HTTP connection whose socket is bound to ``source`` before it connects."""

    def __init__(self, host: str, source: str, timeout: float) -> None:
        super().__init__(host, timeout=timeout, source_address=(source, 0))
        self.local: tuple[str, int] = ("", 0)

    def connect(self) -> None:
        super().connect()
        self.local = self.sock.getsockname()[:2]


class BoundTransport(xmlrpc.client.Transport):
    """An XML-RPC transport whose requests come from the address ``source``."""

    def __init__(self, source: str, timeout: float = TIMEOUT) -> None:
        super().__init__()
        self.source = source
        self.timeout = timeout
        self.connection: BoundConnection | None = None

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        if self.connection is not None and self._connection[0] == host:
            return self.connection
        chost, self._extra_headers, _ = self.get_host_info(host)
        self.connection = BoundConnection(chost, self.source, self.timeout)
        self._connection = host, self.connection
        return self.connection


def notify_from(source: str, proc: Proc, message: dict[str, Any]) -> tuple[Any, tuple[str, int]]:
    """``notify(message)`` to ``proc`` from the address ``source``: the answer and the client's address."""
    transport = BoundTransport(source)
    with xmlrpc.client.ServerProxy(proc.url, transport=transport, allow_none=True) as proxy:
        try:
            answer: Any = proxy.notify(message)
        except xmlrpc.client.Fault as fault:
            answer = fault
    assert transport.connection is not None
    return answer, transport.connection.local


class BoundAmpLink(AmpLink):
    """A raw AMP connection to ``host``:``port`` from the address ``source``."""

    def __init__(self, host: str, port: int, source: str) -> None:
        self.sock = socket.create_connection((host, port), timeout=TIMEOUT, source_address=(source, 0))
        self.buffer = b""
        self.eof = False

    def ask(self, command: type[amp.Command], tag: bytes, **arguments: Any) -> dict[bytes, bytes]:
        """Send ``command`` with ``arguments``; its answer or error box."""
        box = command.makeArguments(arguments, None)
        box[b"_command"] = command.commandName
        box[b"_ask"] = tag
        self.send(box.serialize())
        reply = self.reply()
        assert reply is not None, f"{command.commandName!r}: the connection closed"
        return reply


@dataclass
class Star:
    """A relay on 127.0.0.2 and satellites on 127.0.0.3 (``left``) and 127.0.0.4 (``right``)."""

    relay: Proc
    left: Proc
    right: Proc
    relay_amp: int

    @property
    def procs(self) -> tuple[Proc, Proc, Proc]:
        return self.relay, self.left, self.right


@pytest.fixture
def logbook(make_plugin: Callable[..., Path], plugin_dir: Path) -> Callable[..., dict[str, Any]]:
    """``logbook(package, **settings)``: the settings of a satellite hosting a logbook named ``package``."""

    def settings(package: str, **more: Any) -> dict[str, Any]:
        if not (plugin_dir / package).exists():
            make_plugin(package, f"Keeps the messages it receives ({package}).", log=LOGBOOK)
        return {"plugin_dir": str(plugin_dir), "plugin_list": [package], **more}

    return settings


@pytest.fixture
def star(
    relay: Callable[..., Proc],
    satellite: Callable[..., Proc],
    make_config: Callable[..., Path],
    logbook: Callable[..., dict[str, Any]],
    tmp_path: Path,
) -> Star:
    """The star, every link up and every plugin's methods known at the other satellite."""
    hub = relay("--config", make_config(
        filename="relay.py", listen=listen_on(RELAY_HOST), amp_listen=listen_on(RELAY_HOST),
    ), cwd=tmp_path)
    relay_amp = wait_amp_on(hub, RELAY_HOST)
    peers = [peer_at(RELAY_HOST, relay_amp)]
    left = satellite("--config", make_config(
        filename="left.py", listen=listen_on(LEFT_HOST), peers=peers, **logbook("left"),
    ), cwd=tmp_path)
    right = satellite("--config", make_config(
        filename="right.py", listen=listen_on(RIGHT_HOST), peers=peers, **logbook("right"),
    ), cwd=tmp_path)
    wait_serving_on(hub, RELAY_HOST)
    wait_serving_on(left, LEFT_HOST)
    wait_serving_on(right, RIGHT_HOST)
    star = Star(hub, left, right, relay_amp)
    for proc, links in ((hub, 2), (left, 1), (right, 1)):
        wait_until(partial(links_up, proc, links), f"{links} link(s) up", *star.procs, timeout=TIMEOUT)
    for proc, other in ((left, "right.log.where"), (right, "left.log.where")):
        wait_until(partial(lists, proc, other), f"{other} listed", *star.procs, timeout=TIMEOUT)
    return star


def links_up(proc: Proc, count: int) -> bool:
    """Whether ``proc`` has logged ``count`` links up."""
    return proc.count(LINK_UP) >= count


def lists(proc: Proc, method: str) -> bool:
    """Whether ``co2.get_method_names`` on ``proc`` lists ``method``."""
    return method in call(proc, "co2.get_method_names")


def got(proc: Proc, package: str) -> list[dict[str, Any]]:
    """The messages the logbook ``package`` on ``proc`` has received."""
    return list(call(proc, f"{package}.log.got"))


def wait_got(proc: Proc, package: str, count: int, *procs: Proc) -> list[dict[str, Any]]:
    """Wait until ``package`` on ``proc`` has ``count`` messages, then ``SETTLE``; all it has then."""
    wait_until(lambda: len(got(proc, package)) >= count, f"{count} message(s) at {package}",
               proc, *procs, timeout=TIMEOUT)
    time.sleep(SETTLE)
    return got(proc, package)


# --------------------------------------------------------------------------
# Delivery through the relay


def test_send_crosses_the_relay_once_naming_the_sender_and_the_previous_hop(star: Star) -> None:
    """send() on 127.0.0.3 reaches 127.0.0.4 once, with the sender's host_id and the relay as last hop."""
    left_id = call(star.left, "left.log.where")
    right_id = call(star.right, "right.log.where")
    assert host_of(left_id) == (LEFT_HOST, star.left.port)
    assert host_of(right_id) == (RIGHT_HOST, star.right.port)

    assert call(star.left, "left.log.send", {"from": "left"}) is True
    assert wait_got(star.right, "right", 1, *star.procs) == [
        {"data": {"from": "left"}, "host_id": left_id, "client_address": [RELAY_HOST, star.relay_amp]},
    ]
    assert call(star.right, "right.log.send", {"from": "right"}) is True
    assert wait_got(star.left, "left", 1, *star.procs) == [
        {"data": {"from": "right"}, "host_id": right_id, "client_address": [RELAY_HOST, star.relay_amp]},
    ]
    # Neither sender got its own message back, over the relay or otherwise.
    assert [m["data"] for m in got(star.right, "right")] == [{"from": "left"}]
    assert get_json(star.relay, "/status.json")["counters"]["duplicates"] == 0


# --------------------------------------------------------------------------
# What the nodes show of each other


def test_status_json_shows_each_node_on_its_own_host(star: Star) -> None:
    """/status.json of each node names its own host, and its links up to the peers on the other hosts."""
    relay, left, right = (get_json(proc, "/status.json") for proc in star.procs)
    assert (relay["role"], left["role"], right["role"]) == ("relay", "satellite", "satellite")
    assert host_of(relay["host_id"]) == (RELAY_HOST, star.relay.port)
    assert host_of(left["host_id"]) == (LEFT_HOST, star.left.port)
    assert host_of(right["host_id"]) == (RIGHT_HOST, star.right.port)
    assert len({relay["node_id"], left["node_id"], right["node_id"]}) == 3

    to_relay = f"peer:{peer_at(RELAY_HOST, star.relay_amp)}"
    for status in (left, right):
        assert [(link["link"], link["state"]) for link in status["links"]] == [(to_relay, "up")]
    assert sorted((link["link"], link["state"]) for link in relay["links"]) == sorted(
        [(f"node:{left['node_id']}", "up"), (f"node:{right['node_id']}", "up")]
    )
    # The relay logged where each inbound link came from: the satellites' host_ids.
    for status in (left, right):
        assert star.relay.count(
            rf"link node:{status['node_id']} up: node {status['node_id']} "
            rf"\({re.escape(status['host_id'])}\) at [\d.]+:\d+"
        ) == 1


def test_notify_naming_another_host_is_refused(star: Star) -> None:
    """notify from 127.0.0.5 naming 127.0.0.3 is fault -32000; naming 127.0.0.5 it is taken and relayed."""
    spoofed = {"data": "spoofed", "host_id": f"7@{LEFT_HOST}:{star.left.port}"}
    for proc in star.procs:
        fault, _ = notify_from(CLIENT_HOST, proc, spoofed)
        assert isinstance(fault, xmlrpc.client.Fault), fault
        assert fault.faultCode == faults.HOST_ID_MISMATCH == -32000
        assert LEFT_HOST in fault.faultString and CLIENT_HOST in fault.faultString
        assert "Traceback" not in fault.faultString

    honest = {"data": "honest", "host_id": f"7@{CLIENT_HOST}:2004"}
    answer, client = notify_from(CLIENT_HOST, star.left, honest)
    assert answer is True
    assert client[0] == CLIENT_HOST
    # Messages leave a node in order, so the honest one arriving shows the spoofed ones never went out.
    assert wait_got(star.left, "left", 1, *star.procs) == [
        {"data": "honest", "host_id": honest["host_id"], "client_address": list(client)},
    ]
    assert wait_got(star.right, "right", 1, *star.procs) == [
        {"data": "honest", "host_id": honest["host_id"], "client_address": [RELAY_HOST, star.relay_amp]},
    ]
    for proc in star.procs:
        assert proc.count(
            rf"notify refused: host_id '7@{re.escape(LEFT_HOST)}:\d+' does not match the caller "
            rf"{re.escape(CLIENT_HOST)}"
        ) == 1, proc.describe()


def test_amp_hello_naming_another_host_is_trusted(star: Star) -> None:
    """A Hello from 127.0.0.5 naming 127.0.0.9 brings a link up; what it delivers keeps its host_id."""
    node = "spoofer0123456789"
    claimed = f"7@{ELSEWHERE}:2004"
    link = BoundAmpLink(RELAY_HOST, star.relay_amp, CLIENT_HOST)
    try:
        answer = link.ask(Hello, b"1", node=node, host_id=claimed, version=PROTOCOL_VERSION)
        assert b"_answer" in answer, answer
        relay_status = get_json(star.relay, "/status.json")
        assert answer[b"host_id"].decode() == relay_status["host_id"]
        assert answer[b"node"].decode() == relay_status["node_id"]
        source = link.sock.getsockname()[:2]
        assert source[0] == CLIENT_HOST
        star.relay.wait_output(
            rf"link node:{node} up: node {node} \({re.escape(claimed)}\) at "
            rf"{re.escape(CLIENT_HOST)}:{source[1]}", TIMEOUT,
        )

        message = encode_message({"data": "over amp", "host_id": claimed})
        batch = encode_batch([encode_envelope(f"{node}.1", 15, message)])
        answer = link.ask(Deliver, b"2", batch=batch)
        assert b"_answer" in answer, answer
        relay_status = get_json(star.relay, "/status.json")
        assert (f"node:{node}", "up") in [(x["link"], x["state"]) for x in relay_status["links"]]
        expected = {"data": "over amp", "host_id": claimed, "client_address": [RELAY_HOST, star.relay_amp]}
        assert wait_got(star.left, "left", 1, *star.procs) == [expected]
        assert wait_got(star.right, "right", 1, *star.procs) == [expected]
    finally:
        link.close()


# --------------------------------------------------------------------------
# Calls routed between hosts


def test_methods_of_another_host_are_listed_and_called(star: Star) -> None:
    """The plugin on 127.0.0.4 is listed at 127.0.0.3 and the relay, and runs when called through them."""
    right_id = call(star.right, "right.log.where")
    right_methods = {"right.log.got", "right.log.send", "right.log.where", "right.log.fail"}
    for proc in (star.left, star.relay):
        assert right_methods <= set(call(proc, "co2.get_method_names"))
        assert right_methods <= set(call(proc, "system.listMethods"))
        assert call(proc, "right.log.where") == right_id
        with pytest.raises(xmlrpc.client.Fault) as info:
            call(proc, "right.log.fail")
        assert info.value.faultCode == faults.APPLICATION_ERROR
        assert "ValueError: failed on purpose" in info.value.faultString
    assert host_of(right_id) == (RIGHT_HOST, star.right.port)
    assert call(star.right, "left.log.where") == call(star.left, "left.log.where")
    # A routed call that sends: the message leaves 127.0.0.4 and reaches 127.0.0.3.
    assert call(star.left, "right.log.send", "called from left") is True
    assert wait_got(star.left, "left", 1, *star.procs) == [
        {"data": "called from left", "host_id": right_id, "client_address": [RELAY_HOST, star.relay_amp]},
    ]


# --------------------------------------------------------------------------
# Classic links between hosts


def test_classic_peer_on_another_loopback_host_takes_the_messages(
    satellite: Callable[..., Proc],
    make_config: Callable[..., Path],
    logbook: Callable[..., dict[str, Any]],
    tmp_path: Path,
) -> None:
    """A satellite on 127.0.0.3 whose peer is http://127.0.0.4:P/ gets its messages there, host_id checked."""
    right = satellite("--config", make_config(
        filename="right.py", listen=listen_on(RIGHT_HOST), **logbook("right"),
    ), cwd=tmp_path)
    wait_serving_on(right, RIGHT_HOST)
    left = satellite("--config", make_config(
        filename="left.py", listen=listen_on(LEFT_HOST), peers=[right.url], **logbook("left"),
    ), cwd=tmp_path)
    wait_serving_on(left, LEFT_HOST)
    left_id = parse_host_id(call(left, "left.log.where"))

    assert call(left, "left.log.send", "classic") is True
    # A refused message is dropped for good: fail as soon as the sender says so.
    wait_until(lambda: got(right, "right") or left.count(r"refused message"),
               "the message at 127.0.0.4, or its refusal", left, right, timeout=TIMEOUT)
    assert left.count(r"refused message") == 0, left.describe() + right.describe()
    (arrived,) = wait_got(right, "right", 1, left, right)
    assert arrived["data"] == "classic"
    sender = parse_host_id(arrived["host_id"])
    # The host part may be what the peer saw; the rest is the sender's.
    assert (sender.nonce, sender.port) == (left_id.nonce, left_id.port)
    assert sender.host == arrived["client_address"][0]
