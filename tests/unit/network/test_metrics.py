"""GET /metrics: what a node has done, in Prometheus's text format."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

import co2
from co2._auth import basic_authorization, make_authentication
from co2._xmlrpc import dump_call
from co2.testing import write_package
from satellites import NodeParts, make_server

PEER = IPv4Address("TCP", "10.0.0.1", 40404)

FAILING = """
from co2 import Co2Plugin

class X_Fails(Co2Plugin):
    def receive(self, data_dict):
        raise ValueError("no")
"""


def exchange(factory: Any, request: bytes) -> tuple[int, bytes]:
    """One request on a new connection: the status and body of the answer."""
    transport = StringTransport(peerAddress=PEER)
    protocol = factory.buildProtocol(PEER)
    protocol.makeConnection(transport)
    protocol.dataReceived(request)
    head, _, body = transport.value().partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


def post(factory: Any, method: str, *params: Any, extra: bytes = b"") -> int:
    body = dump_call(method, params)
    request = (b"POST / HTTP/1.1\r\nHost: 10.0.0.1\r\nContent-Type: text/xml\r\n"
               b"Content-Length: %d\r\n%s\r\n%s"
               % (len(body), extra, body))
    return exchange(factory, request)[0]


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(factory: Any, extra: bytes = b"") -> tuple[int, Samples]:
    """GET /metrics: the status and every sample, by name and sorted labels."""
    status, body = exchange(factory, b"GET /metrics HTTP/1.1\r\nHost: 10.0.0.1\r\n%s\r\n" % extra)
    samples = {}
    if status == 200:
        for family in text_string_to_metric_families(body.decode()):
            for sample in family.samples:
                samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return status, samples


def test_calls_deliveries_and_errors_are_counted(network, make_satellite, reactor, plugin_root) -> None:
    write_package(plugin_root, "fails", {"m": FAILING})
    satellite = make_satellite("a", "rec", "calc", "fails")
    factory = make_server(satellite.dispatcher, 1 << 20, reactor, node=NodeParts.of(satellite))
    assert post(factory, "calc.ops.add", 1, 2) == 200
    post(factory, "calc.ops.add", 1)
    post(factory, "no.such.method")
    post(factory, "notify", {"data": 1, "host_id": "1@10.0.0.1:2004"})
    reactor.advance(0)
    status, samples = scrape(factory)
    assert status == 200
    assert samples["co2_xmlrpc_calls_total", (("fault", "0"), ("method", "calc.ops.add"))] == 1
    assert samples["co2_xmlrpc_calls_total", (("fault", "-32602"), ("method", "calc.ops.add"))] == 1
    assert samples["co2_xmlrpc_calls_total", (("fault", "-32601"), ("method", "(unknown)"))] == 1
    assert samples["co2_plugin_deliveries_total", (("plugin", "rec.m.X_Recorder"),)] == 1
    assert samples["co2_plugin_errors_total", (("plugin", "fails.m.X_Fails"),)] == 1
    assert samples["co2_plugin_errors_total", (("plugin", "rec.m.X_Recorder"),)] == 0  # from zero
    assert samples["co2_plugin_receive_seconds_count", (("plugin", "rec.m.X_Recorder"),)] == 1
    assert samples["co2_plugin_receive_seconds_bucket", (("le", "+Inf"), ("plugin", "rec.m.X_Recorder"))] == 1


def test_links_are_counted(network, make_satellite, reactor) -> None:
    """Messages in and out per link, outbox depth, and a link that comes up again."""
    a = make_satellite("a", "rec")
    b = make_satellite("b", "rec")
    network.link("a", "b")
    a.plugins[0].send("one")
    a.plugins[0].send("two")
    network.settle()
    network.cut("a", "b")
    a.plugins[0].send("waits")
    network.settle()
    network.link("a", "b")
    factory = make_server(a.dispatcher, 1 << 20, reactor, node=NodeParts.of(a))
    _, samples = scrape(factory)
    assert samples["co2_link_messages_out_total", (("link", "peer:b"),)] == 3
    assert samples["co2_link_reconnects_total", (("link", "peer:b"),)] == 1
    assert samples["co2_outbox_depth", (("link", "peer:b"),)] == 0
    _, samples_b = scrape(make_server(b.dispatcher, 1 << 20, reactor, node=NodeParts.of(b)))
    (key,) = [labels for name, labels in samples_b if name == "co2_link_messages_in_total"]
    assert samples_b["co2_link_messages_in_total", key] == 3


def test_metrics_need_credentials_when_auth_protects_them(make_satellite, reactor) -> None:
    satellite = make_satellite("a", "rec")
    everything = make_authentication(["memory:ops:pw"], ["*"], reactor)
    node = NodeParts.of(satellite)
    factory = make_server(satellite.dispatcher, 1 << 20, reactor, authentication=everything, node=node)
    assert scrape(factory)[0] == 401
    assert scrape(factory, b"Authorization: " + basic_authorization("ops", "pw") + b"\r\n")[0] == 200
    some = make_authentication(["memory:ops:pw"], ["ham.*"], reactor)
    factory = make_server(satellite.dispatcher, 1 << 20, reactor, authentication=some, node=node)
    assert scrape(factory)[0] == 200


def test_a_node_without_metrics_has_no_such_page(make_satellite, reactor) -> None:
    """A listener made without a node answers GET /metrics with 404."""
    satellite = make_satellite("a", "rec")
    factory = make_server(satellite.dispatcher, 1 << 20, reactor)
    assert scrape(factory)[0] == 404


def test_build_info_link_up_process_and_every_series_from_zero(network, make_satellite, reactor) -> None:
    """co2_build_info names the version; each link has co2_link_up and counters from zero; the process too."""
    a = make_satellite("a", "rec", "calc")
    make_satellite("b", "rec")
    network.link("a", "b")
    factory = make_server(a.dispatcher, 1 << 20, reactor, node=NodeParts.of(a))
    _, samples = scrape(factory)
    assert samples["co2_build_info", (("version", co2.__version__),)] == 1
    [(key, up)] = [(labels, value) for (name, labels), value in samples.items() if name == "co2_link_up"]
    assert up == 1
    for name in ("co2_link_messages_in_total", "co2_link_messages_out_total", "co2_link_reconnects_total"):
        assert samples[name, key] == 0
    for plugin in ("rec.m.X_Recorder",):
        assert samples["co2_plugin_deliveries_total", (("plugin", plugin),)] == 0
        assert samples["co2_plugin_errors_total", (("plugin", plugin),)] == 0
    assert samples["process_resident_memory_bytes", ()] > 0
    network.cut("a", "b")
    _, samples = scrape(factory)
    assert samples["co2_link_up", key] == 0
