"""Plugin isolation: a plugin that raises, blocks or never answers harms no other plugin."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any
from xmlrpc.client import Fault

import pytest
from doubles import format_events as text_of
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IProtocol
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from co2 import faults
from co2._xmlrpc import dump_call, parse_response
from co2.testing import write_package

GOOD = """
from co2 import Co2Plugin

class X_Good(Co2Plugin):
    def __init__(self, var_dict):
        Co2Plugin.__init__(self, var_dict)
        self.got = []
        self.exited = False

    def receive(self, data_dict):
        self.got.append(data_dict["data"])

    def x_ping(self):
        return "pong"

    def x_send(self, data):
        self.send(data)
        return True

    def __exit__(self):
        self.exited = True
"""

RAISER = """
from co2 import Co2Plugin

class X_Raiser(Co2Plugin):
    def __init__(self, var_dict):
        Co2Plugin.__init__(self, var_dict)
        self.calls = 0

    def receive(self, data_dict):
        self.calls += 1
        raise RuntimeError("receive exploded")

    def x_boom(self):
        raise RuntimeError("x_boom exploded")

    def __exit__(self):
        raise RuntimeError("__exit__ exploded")
"""

BAD_SENDER = """
from co2 import Co2Plugin

class X_BadSender(Co2Plugin):
    def __init__(self, var_dict):
        Co2Plugin.__init__(self, var_dict)
        self.calls = 0

    def receive(self, data_dict):
        self.calls += 1
        self.send({"not": {1, 2}})
"""

BLOCKER = """
from co2 import Co2Plugin

class X_Blocker(Co2Plugin):
    def __init__(self, var_dict):
        Co2Plugin.__init__(self, var_dict)
        self.calls = 0

    def receive(self, data_dict):
        self.calls += 1
        self.var_dict["nap"](1.5)
"""

HANGER = """
from twisted.internet import defer
from co2 import Co2Plugin

class X_Hanger(Co2Plugin):
    def __init__(self, var_dict):
        Co2Plugin.__init__(self, var_dict)
        self.calls = 0

    def receive(self, data_dict):
        self.calls += 1
        return defer.Deferred()

    def x_wait(self):
        return defer.Deferred()

    def __exit__(self):
        return defer.Deferred()
"""

QUITTER = """
import sys
from co2 import Co2Plugin

class X_Quitter(Co2Plugin):
    def __init__(self, var_dict):
        Co2Plugin.__init__(self, var_dict)
        self.calls = 0

    def receive(self, data_dict):
        self.calls += 1
        sys.exit("receive quit")

    def __exit__(self):
        sys.exit("__exit__ quit")

    def x_quit(self):
        sys.exit("x_quit quit")
"""

OFFENDERS = {
    "raiser": (RAISER, "raiser.m.X_Raiser"),
    "bad_sender": (BAD_SENDER, "bad_sender.m.X_BadSender"),
    "blocker": (BLOCKER, "blocker.m.X_Blocker"),
    "hanger": (HANGER, "hanger.m.X_Hanger"),
    "quitter": (QUITTER, "quitter.m.X_Quitter"),
}

EXIT_TIMEOUT = 2.0


class FakeTimer:
    """A monotonic clock that moves only when a plugin naps on it."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def nap(self, seconds: float) -> None:
        """Hold the reactor for ``seconds``, as a blocking call would."""
        self.now += seconds


def notify(node: Any, data: Any) -> None:
    """Have ``node`` accept a message from a client, as ``notify`` does."""
    assert node.call("notify", {"data": data, "host_id": "1@127.0.0.1:1"}) is True


def surround(make_node: Callable[..., Any], plugin_dir: Path, *offenders: str) -> Any:
    """
    A node loading ``first`` (good), the ``offenders`` in order, then
    ``last`` (good); ``exit_timeout`` is EXIT_TIMEOUT and the blocker naps
    on the node's injected timer.
    """
    timer = FakeTimer()
    write_package(plugin_dir, "first", {"m": GOOD})
    write_package(plugin_dir, "last", {"m": GOOD})
    for name in offenders:
        write_package(plugin_dir, name, {"m": OFFENDERS[name][0]})
    node = make_node(
        "first", *offenders, "last",
        exit_timeout=EXIT_TIMEOUT, plugin_config={"blocker": {"nap": timer.nap}},
    )
    node.satellite.timer = timer
    return node


def good(node: Any) -> tuple[Any, Any]:
    """The plugins ``first`` and ``last`` of a node made by :func:`surround`."""
    return node.plugin("first.m.X_Good"), node.plugin("last.m.X_Good")


def open_call(node: Any, method: str) -> tuple[StringTransport, IProtocol]:
    """Post a call to ``method`` on a connection of its own, left open; its transport and protocol."""
    peer = IPv4Address("TCP", "127.0.0.1", 40001)
    transport = StringTransport(peerAddress=peer, hostAddress=IPv4Address("TCP", "127.0.0.1", 2004))
    protocol = node.client.site.buildProtocol(peer)
    protocol.makeConnection(transport)
    body = dump_call(method, ())
    head = b"POST /RPC2 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml\r\n"
    protocol.dataReceived(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
    return transport, protocol


@pytest.mark.parametrize("offender", sorted(OFFENDERS))
def test_others_receive_every_message_beside_an_offender(make_node, plugin_dir, offender):
    """Plugins loaded before and after an offender get every message, sent or notified, in order."""
    node = surround(make_node, plugin_dir, offender)
    first, last = good(node)
    bad = node.plugin(OFFENDERS[offender][1])
    notify(node, 1)
    notify(node, 2)
    assert node.call("first.m.send", 3) is True
    node.reactor.advance(0)
    notify(node, 4)
    node.reactor.advance(0)
    assert first.got == [1, 2, 4]
    assert last.got == [1, 2, 3, 4]
    assert bad.calls == 4


@pytest.mark.parametrize(
    ("offender", "says"),
    [
        ("raiser", ["raiser.m.X_Raiser.receive raised", "RuntimeError: receive exploded"]),
        ("bad_sender", ["bad_sender.m.X_BadSender.receive raised",
                        "bad_sender.m.X_BadSender cannot send dict"]),
        ("quitter", ["quitter.m.X_Quitter.receive raised", "SystemExit: receive quit"]),
    ],
)
def test_a_raising_receive_is_logged_by_name(make_node, plugin_dir, logged, offender, says):
    """An exception in receive, a refused send in it included, is logged under the plugin's name."""
    node = surround(make_node, plugin_dir, offender)
    notify(node, "x")
    node.reactor.advance(0)
    text = text_of(logged)
    for words in says:
        assert words in text
    assert "first.m.X_Good" not in text and "last.m.X_Good" not in text


def test_a_slow_receive_is_warned_about_by_name(make_node, plugin_dir, logged):
    """A receive that holds the reactor past BUSY_WARNING is named in a warning; the quick ones are not."""
    node = surround(make_node, plugin_dir, "blocker")
    notify(node, "x")
    node.reactor.advance(0)
    text = text_of(logged)
    assert "blocker.m.X_Blocker.receive kept the reactor busy for 1.50s" in text
    assert text.count("kept the reactor busy") == 1


def test_a_raising_x_method_is_a_fault_logged_by_name_and_others_answer(make_node, plugin_dir, logged):
    """An x_ method that raises gives its caller fault -32500 naming the error; other methods answer."""
    node = surround(make_node, plugin_dir, "raiser")
    with pytest.raises(Fault) as e:
        node.call("raiser.m.boom")
    assert e.value.faultCode == faults.APPLICATION_ERROR
    assert e.value.faultString == "RuntimeError: x_boom exploded"
    assert node.call("first.m.ping") == "pong"
    assert node.call("last.m.ping") == "pong"
    text = text_of(logged)
    assert "raiser.m.boom (plugin raiser) raised" in text and "x_boom exploded" in text


def test_a_never_answering_x_method_does_not_hold_other_callers(make_node, plugin_dir):
    """While a call waits on a Deferred that never fires, other callers get their answers."""
    node = surround(make_node, plugin_dir, "hanger")
    transport, protocol = open_call(node, "hanger.m.wait")
    try:
        node.reactor.advance(1)
        assert node.call("first.m.ping") == "pong"
        assert node.call("last.m.ping") == "pong"
        notify(node, "x")
        node.reactor.advance(0)
        assert good(node)[1].got == ["x"]
        assert transport.value() == b""
    finally:
        protocol.connectionLost(Failure(ConnectionDone()))


def test_shutdown_goes_on_past_a_raising_exit(make_node, plugin_dir, logged):
    """An __exit__ that raises is logged by name; the plugins before it still get theirs."""
    node = surround(make_node, plugin_dir, "raiser", "quitter")
    first, last = good(node)
    done: list[Any] = []
    node.satellite.shutdown().addBoth(done.append)
    node.reactor.advance(0)
    assert done == [None]
    assert first.exited and last.exited
    text = text_of(logged)
    assert "raiser.m.X_Raiser.__exit__ failed" in text and "__exit__ exploded" in text
    assert "quitter.m.X_Quitter.__exit__ failed" in text and "__exit__ quit" in text


def test_shutdown_cuts_off_a_never_firing_exit_after_exit_timeout(make_node, plugin_dir, logged):
    """A never-firing __exit__ is given up after exit_timeout, logged by name; the rest then exit."""
    node = surround(make_node, plugin_dir, "hanger")
    first, last = good(node)
    done: list[Any] = []
    node.satellite.shutdown().addBoth(done.append)
    node.reactor.advance(EXIT_TIMEOUT - 0.1)
    assert last.exited and not first.exited and done == []
    node.reactor.advance(0.1)
    assert first.exited and done == [None]
    assert f"hanger.m.X_Hanger.__exit__ failed or took over {EXIT_TIMEOUT}s" in text_of(logged)


def test_every_offender_at_once(make_node, plugin_dir, logged):
    """With every kind of offender loaded, the good plugins receive, answer and exit in bounded time."""
    node = surround(make_node, plugin_dir, "raiser", "bad_sender", "blocker", "hanger", "quitter")
    first, last = good(node)
    transport, protocol = open_call(node, "hanger.m.wait")
    try:
        for n in range(5):
            notify(node, n)
        assert node.call("first.m.send", "sent") is True
        node.reactor.advance(0)
        with pytest.raises(Fault):
            node.call("raiser.m.boom")
        assert node.call("last.m.ping") == "pong"
        assert transport.value() == b""
    finally:
        protocol.connectionLost(Failure(ConnectionDone()))
    assert first.got == [0, 1, 2, 3, 4]
    assert last.got == [0, 1, 2, 3, 4, "sent"]
    done: list[Any] = []
    node.satellite.shutdown().addBoth(done.append)
    node.reactor.advance(EXIT_TIMEOUT)
    assert done == [None] and first.exited and last.exited
    text = text_of(logged)
    for name in ("raiser.m.X_Raiser", "bad_sender.m.X_BadSender", "blocker.m.X_Blocker",
                 "hanger.m.X_Hanger", "quitter.m.X_Quitter"):
        assert name in text


BREAKS_ON_UNLOAD = """
import sys
from co2 import Co2Plugin

class X_Created(Co2Plugin):
    def __exit__(self):
        sys.exit("unload quit")

class X_Fails(Co2Plugin):
    def __init__(self, var_dict):
        raise RuntimeError("init failed")
"""


def test_a_package_whose_exit_quits_while_unloading_leaves_the_rest_loading(
    make_node, plugin_dir, logged
):
    """A plugin whose __exit__ calls sys.exit while its package is left out stops no other package."""
    write_package(plugin_dir, "broken", {"m": BREAKS_ON_UNLOAD})
    write_package(plugin_dir, "last", {"m": GOOD})
    node = make_node("broken", "last")
    assert [p.package for p in node.satellite.failures] == ["broken"]
    assert node.call("last.m.ping") == "pong"
    text = text_of(logged)
    assert "broken.m.X_Created.__exit__ raised while unloading" in text and "unload quit" in text


def test_an_x_method_calling_sys_exit_is_a_fault_logged_by_name(make_node, plugin_dir, logged):
    """An x_ method that calls sys.exit() gives its caller fault -32500; the server goes on."""
    node = surround(make_node, plugin_dir, "quitter")
    with pytest.raises(Fault) as e:
        node.call("quitter.m.quit")
    assert e.value.faultCode == faults.APPLICATION_ERROR
    assert e.value.faultString == "SystemExit: x_quit quit"
    assert node.call("first.m.ping") == "pong"
    assert "quitter.m.quit (plugin quitter) raised" in text_of(logged)


def test_a_never_answering_x_method_times_out_for_its_caller(make_node, plugin_dir, logged):
    """A call whose method never answers gets fault -32002 after call_timeout; the log names the method."""
    node = surround(make_node, plugin_dir, "hanger")
    transport, protocol = open_call(node, "hanger.m.wait")
    try:
        node.reactor.advance(node.satellite.config.node.call_timeout - 1)
        assert transport.value() == b""
        node.reactor.advance(2)
        body = transport.value().partition(b"\r\n\r\n")[2]
        with pytest.raises(Fault) as e:
            parse_response(body)
        assert e.value.faultCode == faults.CALL_TIMEOUT
        assert "hanger.m.wait (plugin hanger) gave no answer within 30s" in text_of(logged)
    finally:
        protocol.connectionLost(Failure(ConnectionDone()))
