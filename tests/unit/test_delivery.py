"""Messages: notify and send reach every other plugin, in isolation from each other."""

from __future__ import annotations

import re
from typing import Any
from xmlrpc.client import Fault

import pytest
from doubles import RECORDER
from doubles import format_events as text_of

from co2 import faults
from co2._xmlrpc import parse_response
from co2.testing import write_package


@pytest.fixture
def two(make_node, plugin_dir):
    """A satellite with two recording plugins, a and b."""
    write_package(plugin_dir, "a", {"m": RECORDER})
    write_package(plugin_dir, "b", {"m": RECORDER})
    return make_node("a", "b")


def test_notify_answers_at_once_and_delivers_after(two):
    """notify answers True before any plugin runs; each plugin then receives the message."""
    assert two.call("notify", {"data": [1, "x"], "host_id": "9@127.0.0.1:7"}) is True
    a, b = two.plugin("a.m.X_Recorder"), two.plugin("b.m.X_Recorder")
    assert a.got == [] and b.got == []
    two.reactor.advance(0)
    expected = {"data": [1, "x"], "host_id": "9@127.0.0.1:7", "client_address": ["127.0.0.1", 40000]}
    assert a.got == [expected] and b.got == [expected]


def test_notify_requires_data_and_host_id(two):
    """A notify struct without data or host_id is an invalid-params fault."""
    for bad in ({"data": 1}, {"host_id": "1@127.0.0.1:2"}, {"data": 1, "host_id": "nonsense"}):
        with pytest.raises(Fault) as e:
            two.call("notify", bad)
        assert e.value.faultCode == faults.INVALID_PARAMS
    with pytest.raises(Fault) as e:
        two.call("notify", [1, 2])
    assert e.value.faultCode == faults.INVALID_PARAMS


def test_notify_with_a_spoofed_host_id_is_refused_and_logged(two, logged):
    """A host_id naming another host than the caller's IP is refused with a server fault."""
    with pytest.raises(Fault) as e:
        two.call("notify", {"data": 1, "host_id": "1@10.1.2.3:2004"})
    assert e.value.faultCode == faults.HOST_ID_MISMATCH
    assert -32099 <= faults.HOST_ID_MISMATCH <= -32000
    two.reactor.advance(0)
    assert two.plugin("a.m.X_Recorder").got == []
    assert "10.1.2.3" in text_of(logged)


def test_send_reaches_every_other_plugin_but_not_the_sender(two):
    """A plugin's send reaches the others with this satellite's host_id, never itself."""
    two.call("a.m.send", {"k": "v"})
    two.reactor.advance(0)
    a, b = two.plugin("a.m.X_Recorder"), two.plugin("b.m.X_Recorder")
    assert a.got == []
    host_id = two.satellite.host_id
    assert b.got == [{"data": {"k": "v"}, "host_id": host_id, "client_address": ["127.0.0.1", 2004]}]


def itself() -> list[object]:
    """A list that holds itself."""
    value: list[object] = []
    value.append(value)
    return value


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (object(), "cannot send object: XML-RPC cannot carry object objects"),
        (2**70, "does not fit in 64 bits"),
        (-(2**63) - 1, "does not fit in 64 bits"),
        (float("nan"), "no double for nan"),
        ([float("inf")], "no double for inf"),
        ("bell\x07", "which XML-RPC cannot carry"),
        ({"k": {1: "v"}}, "struct keys must be strings, not int"),
        ({1, 2}, "cannot carry set objects"),
        (itself(), "holds itself"),
    ],
)
def test_send_refuses_what_xmlrpc_cannot_carry(two, data, says):
    """Sending a value XML-RPC cannot carry raises TypeError in the plugin at once; nothing is sent."""
    a = two.plugin("a.m.X_Recorder")
    with pytest.raises(TypeError, match=re.escape(says)):
        a.send(data)
    two.reactor.advance(0)
    assert two.plugin("b.m.X_Recorder").got == []
    assert two.satellite.relay.router.counters.originated == 0


def test_what_is_sent_is_the_data_at_the_call(two):
    """Changing the data after send() changes nothing of what the other plugins receive."""
    data = {"items": [1, 2]}
    two.plugin("a.m.X_Recorder").send(data)
    data["items"].append(3)
    two.reactor.advance(0)
    assert two.plugin("b.m.X_Recorder").got[0]["data"] == {"items": [1, 2]}


@pytest.mark.parametrize("value", [b"<double>nan</double>", b"<double>-inf</double>",
                                   b"<i8>18446744073709551615</i8>"])
def test_notify_refuses_data_co2_cannot_carry(two, value):
    """notify with a NaN, an infinity or an int beyond 64 bits is invalid params, not passed on."""
    body = (b"<?xml version='1.0'?><methodCall><methodName>notify</methodName><params><param><value>"
            b"<struct><member><name>data</name><value>" + value + b"</value></member>"
            b"<member><name>host_id</name><value><string>1@127.0.0.1:1</string></value></member>"
            b"</struct></value></param></params></methodCall>")
    results: list[Any] = []
    two.client.post(body).addCallback(lambda response: parse_response(response.body)).addErrback(
        results.append)
    two.reactor.advance(0)
    assert results and results[0].check(Fault)
    assert results[0].value.faultCode == faults.INVALID_PARAMS
    assert two.plugin("a.m.X_Recorder").got == []


def test_each_plugin_gets_its_own_copy(make_node, plugin_dir):
    """A plugin that changes its message does not change what the next plugin receives."""
    write_package(plugin_dir, "mutator", {"m": """
from co2 import Co2Plugin
class X_M(Co2Plugin):
    def receive(self, d):
        d["data"].append("changed")
        d["host_id"] = "x"
"""})
    write_package(plugin_dir, "b", {"m": RECORDER})
    node = make_node("mutator", "b")
    node.call("notify", {"data": [1], "host_id": "1@127.0.0.1:1"})
    node.reactor.advance(0)
    assert node.plugin("b.m.X_Recorder").got[0]["data"] == [1]
    assert node.plugin("b.m.X_Recorder").got[0]["host_id"] == "1@127.0.0.1:1"


def test_plugins_get_copies_that_share_nothing(two):
    """Each plugin's message, data and client_address are objects of its own."""
    two.call("notify", {"data": {"nested": [1]}, "host_id": "1@127.0.0.1:1"})
    two.reactor.advance(0)
    (first,), (second,) = two.plugin("a.m.X_Recorder").got, two.plugin("b.m.X_Recorder").got
    assert first == second
    assert first is not second
    assert first["data"] is not second["data"] and first["data"]["nested"] is not second["data"]["nested"]
    assert first["client_address"] is not second["client_address"]


FAILING = """
from twisted.internet import defer
from co2 import Co2Plugin

class X_Raises(Co2Plugin):
    def receive(self, d):
        raise RuntimeError("receive exploded")

class X_FailsLater(Co2Plugin):
    def receive(self, d):
        return defer.fail(ValueError("deferred failure"))

class X_Async(Co2Plugin):
    async def receive(self, d):
        raise LookupError("async failure")
"""


def test_failing_receive_is_logged_and_others_still_receive(make_node, plugin_dir, logged):
    """A receive that raises, fails its Deferred or its coroutine is logged by name; others go on."""
    write_package(plugin_dir, "bad", {"m": FAILING})
    write_package(plugin_dir, "b", {"m": RECORDER})
    node = make_node("bad", "b")
    node.call("notify", {"data": 1, "host_id": "1@127.0.0.1:1"})
    node.reactor.advance(0)
    assert len(node.plugin("b.m.X_Recorder").got) == 1
    text = text_of(logged)
    assert "bad.m.X_Raises.receive raised" in text and "receive exploded" in text
    assert "bad.m.X_FailsLater.receive failed" in text and "deferred failure" in text
    assert "bad.m.X_Async.receive failed" in text and "async failure" in text


def test_async_and_deferred_receive_are_awaited(make_node, plugin_dir):
    """An async receive runs to completion."""
    write_package(plugin_dir, "slow", {"m": """
from twisted.internet import defer
from co2 import Co2Plugin
class X_S(Co2Plugin):
    got = []
    async def receive(self, d):
        self.got.append(d["data"])
"""})
    node = make_node("slow")
    node.call("notify", {"data": "x", "host_id": "1@127.0.0.1:1"})
    node.reactor.advance(0)
    assert node.plugin("slow.m.X_S").got == ["x"]


def test_receive_that_holds_the_reactor_is_warned_about(make_node, plugin_dir, logged):
    """A receive that keeps the reactor busy over a second is named in a warning."""
    write_package(plugin_dir, "busy", {"m": RECORDER})
    node = make_node("busy")
    ticks = iter([0.0, 1.5])
    node.satellite.timer = lambda: next(ticks)
    node.call("notify", {"data": 1, "host_id": "1@127.0.0.1:1"})
    node.reactor.advance(0)
    assert "busy.m.X_Recorder.receive kept the reactor busy for 1.50s" in text_of(logged)


def test_send_from_a_worker_thread_is_delivered(make_node, plugin_dir):
    """send() called from a worker thread hands the message to the reactor thread."""
    import threading

    write_package(plugin_dir, "a", {"m": RECORDER})
    write_package(plugin_dir, "b", {"m": RECORDER})
    node = make_node("a", "b")
    thread = threading.Thread(target=node.plugin("a.m.X_Recorder").send, args=("from thread",))
    thread.start()
    thread.join(5)
    node.reactor.advance(0)
    assert [m["data"] for m in node.plugin("b.m.X_Recorder").got] == ["from thread"]


EXITS = """
from twisted.internet import defer
from co2 import Co2Plugin
order = []

class X_First(Co2Plugin):
    def __exit__(self):
        order.append(str(self))

class X_Second(Co2Plugin):
    def __exit__(self):
        order.append(str(self))
        raise RuntimeError("exit failed")

class X_Never(Co2Plugin):
    def __exit__(self):
        order.append(str(self))
        return defer.Deferred()

class X_Async(Co2Plugin):
    async def __exit__(self):
        order.append(str(self))
"""


def test_shutdown_calls_every_exit_in_reverse_order_each_bounded(make_node, plugin_dir, logged):
    """__exit__ runs for every plugin, last loaded first; a hung one is cut off after exit_timeout."""
    write_package(plugin_dir, "ham", {"m": EXITS})
    node = make_node("ham", exit_timeout=2.0)
    module = type(node.satellite.plugins[0]).__module__
    import sys

    order = sys.modules[module].order
    done = []
    node.satellite.shutdown().addCallback(done.append)
    assert order == ["ham.m.X_Async", "ham.m.X_Never"]
    assert not done
    node.reactor.advance(2.0)
    assert order == ["ham.m.X_Async", "ham.m.X_Never", "ham.m.X_Second", "ham.m.X_First"]
    assert done == [None]
    text = text_of(logged)
    assert "ham.m.X_Never.__exit__ failed or took over 2.0s" in text
    assert "exit failed" in text


def test_shutdown_stops_delivery(two):
    """After shutdown no plugin receives anything: notify says to send it again later."""
    received = [plugin.got for plugin in two.satellite.plugins if hasattr(plugin, "got")]
    two.satellite.shutdown()
    two.reactor.advance(10)
    with pytest.raises(Fault) as refused:
        two.call("notify", {"data": 1, "host_id": "1@127.0.0.1:1"})
    assert refused.value.faultCode == faults.SHUTTING_DOWN
    two.reactor.advance(0)
    assert two.satellite.plugins == []
    assert all(got == [] for got in received)
