"""Properties over any XML-RPC value."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import xml_text, xmlrpc_values

from co2._xmlrpc import dump_call, dump_response, parse_call, parse_response
from co2.testing import write_package

XML_TEXT = xml_text()
VALUES = xmlrpc_values


@given(VALUES)
def test_codec_round_trips_any_value(value):
    """Any XML-RPC value survives a call and a response encoding unchanged."""
    method, params = parse_call(dump_call("m", (value,)))
    assert method == "m" and params == (value,)
    assert parse_response(dump_response(value)) == value


RECORDER = """
from co2 import Co2Plugin
class X_R(Co2Plugin):
    got = []
    def receive(self, data_dict):
        self.got.append(data_dict)
"""


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=VALUES, extra=st.dictionaries(
    XML_TEXT.filter(lambda k: k not in ("data", "host_id", "client_address", "id", "hops")), VALUES,
    max_size=3,
))
def test_notify_delivers_any_struct_unchanged(make_node, plugin_dir, data, extra):
    """Any struct given to notify reaches receive as sent, plus client_address (id and hops route it)."""
    if not (plugin_dir / "rec").exists():
        write_package(plugin_dir, "rec", {"m": RECORDER})
    node = make_node("rec")
    message = {"data": data, "host_id": "77@127.0.0.1:2004", **extra}
    assert node.call("notify", message) is True
    node.reactor.advance(0)
    (got,) = node.plugin("rec.m.X_R").got
    node.plugin("rec.m.X_R").got.clear()
    assert got == {**message, "client_address": ["127.0.0.1", 40000]}
