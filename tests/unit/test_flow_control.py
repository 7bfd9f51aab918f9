"""
Flow control: nothing is dropped while a link is up.  A full outbox of an
up link stops the router taking more from what feeds it: AMP batches are
parked unacknowledged, notify answers busy, plugins' sends wait in the
send queue; what a down link owes is bounded by dropping, counted.
"""

from __future__ import annotations

from typing import Any
from xmlrpc.client import Fault

import pytest
from doubles import RECORDER, MemoryNetwork

from co2 import SendQueueFull, faults
from co2._message import decode_message, encode_message
from co2.protocol import Envelope, decode_envelope
from co2.testing import TestReactor, write_package
from relay import Relay, Router
from satellites import Satellite, make_config

ADDRESS = ["10.0.0.1", 2004]


class Link:
    """A link that is up and sends nothing until told: its outbox only fills."""

    def wake(self) -> None:
        pass

    def send_now(self) -> None:
        pass


def message(data: Any) -> bytes:
    return encode_message({"data": data, "host_id": "1@10.0.0.1:2004"})


def batch(prefix: str, count: int) -> list[Envelope]:
    return [Envelope(f"{prefix}.{n}", 3, message(n)) for n in range(count)]


def congested_router(limit: int = 4) -> tuple[Router, TestReactor]:
    """A router whose up link ``peer:slow`` owes half its outbox_limit: it is congested."""
    reactor = TestReactor()
    router = Router(reactor, lambda turn: None, outbox_limit=limit)
    router.attach("peer:slow", Link())
    for n in range(limit // 2):
        router.send(message(n), ADDRESS)
    assert router.congested
    return router, reactor


def relieve(router: Router, key: str = "peer:slow") -> None:
    """The peer of ``key`` acknowledges everything it was sent."""
    outbox = router.outboxes[key]
    while True:
        number, entries = outbox.take(1 << 20)
        if not entries:
            return
        router.acked(key, number)


def test_a_full_up_outbox_parks_arriving_batches_unacknowledged_until_it_drains():
    """A batch from another link is neither routed nor acknowledged while the outbox is full; then it is."""
    router, reactor = congested_router()
    acked: list[object] = []
    router.arrived(batch("b", 3), "node:b", ["10.0.0.2", 1]).addCallback(acked.append)
    reactor.advance(0)
    assert acked == [] and "b.0" not in router.seen and router.counters.received == 0
    relieve(router)
    reactor.advance(0)
    reactor.advance(0)
    assert acked == [None] and "b.2" in router.seen and router.counters.received == 3
    assert not router.congested or len(router.outboxes["peer:slow"]) >= 2
    assert router.counters.dropped == 0


def test_a_batch_from_the_full_link_itself_is_taken():
    """Two nodes owing each other too much do not wait on each other: a link's own outbox parks nothing."""
    router, reactor = congested_router()
    acked: list[object] = []
    router.arrived(batch("s", 2), "peer:slow", ["10.0.0.9", 1]).addCallback(acked.append)
    reactor.advance(0)
    reactor.advance(0)
    assert acked == [None] and "s.1" in router.seen


def test_the_outbox_of_a_down_link_drops_the_oldest_and_counts_but_congests_nothing():
    """A down link owes up to its limits; past them the oldest go, counted; the router still takes."""
    router = Router(TestReactor(), lambda turn: None, outbox_limit=4)
    router.outbox("peer:down")
    for n in range(10):
        router.send(message(n), ADDRESS)
    assert not router.congested
    assert len(router.outboxes["peer:down"]) == 4 and router.counters.dropped == 6


def test_a_link_going_down_relieves_the_router():
    """Once the link whose outbox was full is down (bounded by dropping), the router takes again."""
    router, reactor = congested_router()
    link = router.senders["peer:slow"]
    acked: list[object] = []
    router.arrived(batch("b", 1), "node:b", ["10.0.0.2", 1]).addCallback(acked.append)
    router.detach("peer:slow", link)
    reactor.advance(0)
    reactor.advance(0)
    assert not router.congested and acked == [None]


def test_nothing_is_dropped_from_an_up_link_however_much_is_sent():
    """10 x outbox_limit messages sent at once through a congested router all reach the outbox in turn."""
    reactor = TestReactor()
    relay = Relay(make_config({"outbox_limit": 10}), reactor)
    relay.host_id = "1@10.0.0.1:2004"
    relay.router.attach("peer:slow", Link())
    taken: list[object] = []
    for n in range(100):
        relay.originate(n).addCallback(taken.append)
    assert relay.router.congested and relay.queued[0] == 95 and len(taken) == 5
    seen: list[int] = []
    outbox = relay.router.outboxes["peer:slow"]
    while len(seen) < 100:
        number, entries = outbox.take(1 << 20)
        assert entries, f"stuck after {len(seen)}"
        seen += [decode_message(decode_envelope(e.body).message)["data"] for e in entries]
        relay.router.acked("peer:slow", number)
    assert seen == list(range(100)) and len(taken) == 100 and relay.router.counters.dropped == 0


def test_the_send_queue_is_bounded_and_says_so():
    """Past send_queue_bytes, send raises SendQueueFull naming the setting; nothing is queued."""
    reactor = TestReactor()
    relay = Relay(make_config({"outbox_limit": 2, "send_queue_bytes": 200}), reactor)
    relay.host_id = "1@10.0.0.1:2004"
    relay.router.attach("peer:slow", Link())
    relay.originate("first")
    assert relay.router.congested
    with pytest.raises(SendQueueFull, match="send_queue_bytes \\(200\\)"):
        for n in range(100):
            relay.originate(f"message {n}")
    count, size = relay.queued
    assert 0 < count < 100 and size <= 200


def test_notify_answers_busy_while_congested():
    """A classic client's notify gets fault -32006 while the router is congested, and goes through after."""
    reactor = TestReactor()
    relay = Relay(make_config({"outbox_limit": 2}), reactor)
    relay.host_id = "1@10.0.0.1:2004"
    relay.router.attach("peer:slow", Link())
    relay.originate("fills it")
    with pytest.raises(Fault) as refused:
        relay.accept_notify(("10.0.0.7", 1), {"data": 1, "host_id": "7@10.0.0.7:2004"})
    assert refused.value.faultCode == faults.BUSY == -32006
    assert "busy" in refused.value.faultString
    relieve(relay.router)
    assert relay.accept_notify(("10.0.0.7", 1), {"data": 1, "host_id": "7@10.0.0.7:2004"}) is True


PACED = """
from co2 import Co2Plugin

class X_Paced(Co2Plugin):
    def __init__(self, var_dict):
        super().__init__(var_dict)
        self.told = []

    def sending_paused(self):
        self.told.append("paused")

    def sending_resumed(self):
        self.told.append("resumed")

    def x_burst(self, count):
        for n in range(count):
            self.send(n)
        return count
"""


@pytest.fixture
def paced_network(tmp_path):
    """Satellite a (with ``paced``) linked to satellite b (with ``rec``), small outboxes."""
    write_package(tmp_path, "paced", {"m": PACED})
    write_package(tmp_path, "rec", {"m": RECORDER})
    reactor = TestReactor()
    network = MemoryNetwork(reactor)
    a = Satellite(make_config({"plugin_dir": str(tmp_path), "plugin_list": ["paced"], "outbox_limit": 50}),
                  reactor, host_id="1@10.0.0.1:2004")
    b = Satellite(make_config({"plugin_dir": str(tmp_path), "plugin_list": ["rec"], "outbox_limit": 50}),
                  reactor, host_id="2@10.0.0.2:2004")
    for satellite in (a, b):
        satellite.load_plugins()
    network.add("a", a)
    network.add("b", b)
    network.link("a", "b")
    yield network, a, b
    for satellite in (a, b):
        satellite.shutdown()
        satellite.relay.close()
    reactor.advance(60)


def test_a_plugin_sending_far_more_than_an_outbox_holds_loses_nothing(paced_network):
    """2,000 messages in one call, outboxes of 50: b gets each once, in order; a's plugin paused, resumed."""
    network, a, b = paced_network
    a.dispatcher.call(None, "paced.m.burst", (2000,))
    network.settle()
    got = [m["data"] for m in b.plugins[0].got]
    assert got == list(range(2000))
    assert a.relay.router.counters.dropped == 0 and b.relay.router.counters.dropped == 0
    assert a.plugins[0].told[0] == "paused" and a.plugins[0].told[-1] == "resumed"


def test_a_flood_of_drops_is_logged_a_few_lines_then_one_count(logged):
    """1,000 drops on a down link: a few lines as they come, then one line counting the rest, by a timer."""
    reactor = TestReactor()
    router = Router(reactor, lambda turn: None, outbox_limit=1)
    router.outbox("peer:down")
    for n in range(1001):
        router.send(message(n), ADDRESS)
    lines = [e for e in logged if str(e.get("log_format", "")).startswith("link {key}: outbox full")]
    assert 1 <= len(lines) <= 10
    reactor.advance(10)
    counted = [e for e in logged if "not logged one by one" in str(e.get("log_format", ""))]
    assert len(counted) == 1 and counted[0]["total"] == 1000 - len(lines)
    assert router.counters.dropped == 1000
    router.close()
    assert reactor.getDelayedCalls() == []


def test_what_waits_in_the_send_queue_is_kept_when_the_node_stops(tmp_path):
    """Messages queued while congested go to the outboxes (and the spool) as the node stops, not nowhere."""
    from relay import Spool

    path = str(tmp_path / "spool.db")
    reactor = TestReactor()
    relay = Relay(make_config({"outbox_limit": 4, "spool": path}), reactor)
    relay.host_id = "1@10.0.0.1:2004"
    relay.router.attach("peer:slow", Link())
    for n in range(3):
        relay.originate(n)
    reactor.advance(0)
    assert relay.router.congested and relay.queued[0] == 1
    relay.close()
    owed = Spool(path).load().owed["peer:slow"]
    assert [decode_message(decode_envelope(body).message)["data"] for _, body in owed] == [0, 1, 2]


def test_the_parked_batches_of_a_link_that_goes_down_are_let_go():
    """A peer that reconnects sends its batches again: those of its dead connection are not kept."""
    router, reactor = congested_router()
    peer = Link()
    router.attach("node:b", peer)
    router.arrived(batch("b", 3), "node:b", ["10.0.0.2", 1])
    assert router.parked == 1
    router.detach("node:b", peer)
    assert router.parked == 0
    relieve(router)
    reactor.advance(0)
    assert "b.0" not in router.seen


def test_the_status_and_the_metrics_show_congestion(tmp_path):
    """/status.json's flow and /metrics' gauges say the node is congested, with what is parked and queued."""
    from satellites import NodeParts
    from satellites._metrics import CallStats, node_registry
    from satellites._status import status_of

    write_package(tmp_path, "rec", {"m": RECORDER})
    config = make_config({"plugin_dir": str(tmp_path), "plugin_list": ["rec"], "outbox_limit": 4})
    satellite = Satellite(config, TestReactor(), host_id="1@10.0.0.1:2004")
    satellite.load_plugins()
    satellite.relay.router.attach("peer:slow", Link())
    for n in range(3):
        satellite.plugins[0].send(n)
    satellite.relay.router.arrived(batch("b", 2), "node:b", ["10.0.0.2", 1])
    parts = NodeParts.of(satellite)
    flow = status_of(parts, "satellite")["flow"]
    assert flow["congested"] is True and flow["parked"] == 1 and flow["queued"] == 1
    assert flow["queued_bytes"] > 0
    families = node_registry(parts, CallStats()).collect()
    flow_names = ("co2_congested", "co2_parked", "co2_send_queue")
    gauges = {f.name: f.samples[0].value for f in families if f.name.startswith(flow_names)}
    assert gauges == {"co2_congested": 1, "co2_parked_batches": 1, "co2_send_queue_messages": 1,
                      "co2_send_queue_bytes": flow["queued_bytes"]}


RAISING = """
from co2 import Co2Plugin

class X_Broken(Co2Plugin):
    def receive(self, data_dict):
        raise RuntimeError("broken on purpose")

    def x_fail(self):
        raise RuntimeError("fails on purpose")
"""


def test_a_plugin_failing_on_every_message_or_call_logs_a_few_tracebacks_then_a_count(tmp_path, logged):
    """1,000 raising receives and 1,000 raising calls: a few lines each (tracebacks too), then a count."""
    write_package(tmp_path, "broken", {"m": RAISING})
    reactor = TestReactor()
    config = make_config({"plugin_dir": str(tmp_path), "plugin_list": ["broken"]})
    satellite = Satellite(config, reactor, host_id="1@10.0.0.1:2004")
    satellite.load_plugins()
    body = message("x")
    satellite.deliver([(body, ADDRESS, None)] * 1000)
    for _ in range(1000):
        satellite.dispatcher.call(None, "broken.m.fail", ()).addErrback(lambda _: None)
    raised = [e for e in logged if e.get("log_format") == "{plugin}.receive raised"]
    failed_calls = [e for e in logged if e.get("log_format") == "{method} (plugin {owner}) raised"]
    assert 1 <= len(raised) <= 10 and all("log_failure" in e for e in raised)
    assert 1 <= len(failed_calls) <= 10
    reactor.advance(10)
    counts = [e for e in logged if "count" in e and e.get("count", 0) > 100]
    assert sorted(e["count"] for e in counts) == sorted([1000 - len(raised), 1000 - len(failed_calls)])
    satellite.shutdown()
    reactor.advance(60)
    assert reactor.getDelayedCalls() == []
