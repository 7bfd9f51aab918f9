"""The method directory: remote methods are listed, callable, and forgotten when out of reach."""

from __future__ import annotations

from typing import Any
from xmlrpc.client import Fault

import pytest
from doubles import MemoryNetwork

from co2 import faults
from co2.testing import MemoryXMLRPCClient
from satellites import make_server


def client_of(satellite: Any) -> MemoryXMLRPCClient:
    """An XML-RPC client of the satellite's surface, calling from its own host."""
    site = make_server(satellite.dispatcher, 1 << 20, satellite.reactor)
    return MemoryXMLRPCClient(site, client=("10.0.0.1", 40000))


def call(network: MemoryNetwork, satellite: Any, method: str, *params: Any) -> Any:
    """Call ``method`` on the satellite's XML-RPC surface, settle the network, return the answer."""
    results: list[Any] = []
    client_of(satellite).call(method, *params).addBoth(results.append)
    network.settle()
    assert results, f"{method} did not answer"
    if hasattr(results[0], "raiseException"):
        results[0].raiseException()
    return results[0]


def names(network: MemoryNetwork, satellite: Any) -> list[str]:
    """What co2.get_method_names answers on the satellite."""
    return call(network, satellite, "co2.get_method_names")


CALC = ["calc.ops.add", "calc.ops.explode", "calc.ops.never", "calc.ops.refuse"]


@pytest.fixture
def chain(network, make_satellite):
    """Satellites a - b - c (b a relay with no plugins); only c hosts calc."""
    a = make_satellite("a", "rec")
    b = make_satellite("b")
    c = make_satellite("c", "rec", "calc", call_timeout=5.0)
    network.link("a", "b")
    network.link("c", "b")
    return a, b, c


def test_a_method_two_links_away_is_listed_and_callable(network, chain):
    """a lists c's methods among its own and a call through a returns c's result."""
    a, b, c = chain
    listed = names(network, a)
    assert set(CALC) <= set(listed) and listed == sorted(listed)
    assert "co2.get_method_names" in listed
    assert set(CALC) <= set(names(network, b))
    assert call(network, a, "calc.ops.add", 2, 3) == 5
    assert call(network, a, "calc.ops.add", [1], ["two", {"x": None}]) == [1, "two", {"x": None}]
    assert call(network, a, "system.methodHelp", "calc.ops.add") == f"calc.ops.add is hosted on {c.host_id}"
    assert set(CALC) <= set(call(network, a, "system.listMethods"))


def test_a_remote_fault_comes_back_with_its_code(network, chain):
    """A Fault raised by c's method reaches a's caller with its code; an exception becomes -32500."""
    a, _, _ = chain
    with pytest.raises(Fault) as e:
        call(network, a, "calc.ops.refuse", 42)
    assert (e.value.faultCode, e.value.faultString) == (42, "refused on purpose")
    with pytest.raises(Fault) as e:
        call(network, a, "calc.ops.explode")
    assert e.value.faultCode == faults.APPLICATION_ERROR
    assert e.value.faultString == "ValueError: exploded"
    with pytest.raises(Fault) as e:
        call(network, a, "calc.ops.add", 1)
    assert e.value.faultCode == faults.INVALID_PARAMS


def test_a_call_with_no_route_is_node_unreachable(network, chain):
    """When c's last link is cut, a call that a still routes toward c ends in -32001 from b."""
    a, b, _ = chain
    network.cut("c", "b")
    network.settle()
    assert "calc.ops.add" not in names(network, b)
    with pytest.raises(Fault) as e:
        call(network, a, "calc.ops.add", 1, 2)
    assert e.value.faultCode == faults.NODE_UNREACHABLE


def test_a_link_lost_during_a_call_is_node_unreachable(network, chain):
    """A call under way when a link on its path goes down ends at once with -32001."""
    a, _, _ = chain
    results: list[Any] = []
    client_of(a).call("calc.ops.never").addBoth(results.append)
    network.settle()
    assert results == []
    network.cut("c", "b")
    network.settle()
    assert len(results) == 1 and results[0].value.faultCode == faults.NODE_UNREACHABLE


def test_a_call_without_an_answer_times_out(network, make_satellite):
    """A call whose target never answers fails with -32002 after call_timeout seconds."""
    a = make_satellite("a", "rec", call_timeout=5.0)
    make_satellite("c", "calc")
    network.link("a", "c")
    results: list[Any] = []
    client_of(a).call("calc.ops.never").addBoth(results.append)
    network.settle()
    network.reactor.advance(4.9)
    network.settle()
    assert results == []
    network.reactor.advance(0.1)
    network.settle()
    assert len(results) == 1 and results[0].value.faultCode == faults.CALL_TIMEOUT
    assert "5s" in results[0].value.faultString


def test_a_hop_on_the_way_gives_up_after_its_call_timeout(network, make_satellite):
    """A relay forwarding a call that is never answered stops waiting after its own call_timeout."""
    a = make_satellite("a", "rec", call_timeout=60.0)
    b = make_satellite("b", call_timeout=2.0)
    make_satellite("c", "calc")
    network.link("a", "b")
    network.link("c", "b")
    results: list[Any] = []
    client_of(a).call("calc.ops.never").addBoth(results.append)
    network.settle()
    network.reactor.advance(2.0)
    network.settle()
    assert len(results) == 1 and results[0].value.faultCode == faults.CALL_TIMEOUT
    assert "node" in results[0].value.faultString
    assert b.relay.directory.call_timeout == 2.0


def test_an_unknown_method_is_not_found(network, chain):
    """A name no node hosts is -32601."""
    a, _, _ = chain
    with pytest.raises(Fault) as e:
        call(network, a, "calc.ops.missing")
    assert e.value.faultCode == faults.METHOD_NOT_FOUND


def test_entries_expire_three_intervals_after_the_last_announcement(network, make_satellite):
    """When c stops announcing, a forgets its methods exactly 3 intervals after the last announcement."""
    a = make_satellite("a", "rec")
    c = make_satellite("c", "calc")
    network.reactor.advance(10)  # so that c's announcements are out of step with a's refreshes
    network.link("a", "c")
    assert set(CALC) <= set(names(network, a))
    interval = c.relay.directory.interval
    c.relay.directory.stop()
    network.reactor.advance(3 * interval - 0.5)
    network.settle()
    assert set(CALC) <= set(names(network, a))
    network.reactor.advance(0.5)
    network.settle()
    assert not set(CALC) & set(names(network, a))
    with pytest.raises(Fault) as e:
        call(network, a, "calc.ops.add", 1, 2)
    assert e.value.faultCode == faults.METHOD_NOT_FOUND


def test_entries_that_are_announced_again_stay(network, make_satellite):
    """A node that keeps announcing stays listed however long it runs."""
    a = make_satellite("a", "rec")
    make_satellite("c", "calc")
    network.link("a", "c")
    for _ in range(10):
        network.reactor.advance(60)
        network.settle()
    assert set(CALC) <= set(names(network, a))
    assert call(network, a, "calc.ops.add", 20, 22) == 42


def test_methods_disappear_with_the_last_link_to_their_node(network, make_satellite):
    """In a triangle a keeps c's methods while one link toward c is up; with the last gone, at once."""
    a = make_satellite("a", "rec")
    make_satellite("b")
    make_satellite("c", "calc")
    network.link("a", "b")
    network.link("b", "c")
    network.link("a", "c")
    network.cut("a", "c")
    network.settle()
    assert set(CALC) <= set(names(network, a))
    assert call(network, a, "calc.ops.add", 1, 1) == 2
    network.cut("a", "b")
    network.settle()
    assert not set(CALC) & set(names(network, a))


def test_a_new_method_set_is_announced_at_once(network, make_satellite):
    """After changed(), the other nodes see the new list without waiting for the interval."""
    a = make_satellite("a", "rec")
    c = make_satellite("c", "calc")
    network.link("a", "c")
    hidden = set(CALC)
    c.relay.directory.local_names = lambda: sorted(set(c.registry.plugin_names()) - hidden)
    c.relay.directory.changed()
    network.settle()
    assert not hidden & set(names(network, a))


def test_methods_loaded_after_the_links_came_up_are_announced_at_once(network, plugin_root):
    """A node's links start before its plugins load: loading them tells the network, not the next refresh."""
    from satellites import Satellite, make_config

    calc = make_config({"plugin_dir": str(plugin_root), "plugin_list": ["calc"]})
    late = Satellite(calc, network.reactor, host_id="9@10.0.0.9:2004")
    bare = make_config({"plugin_dir": str(plugin_root)})
    other = Satellite(bare, network.reactor, host_id="8@10.0.0.8:2004")
    network.add("late", late)
    network.add("other", other)
    network.link("other", "late")
    assert not set(CALC) & set(names(network, other))
    late.load_plugins()
    network.settle()
    try:
        assert set(CALC) <= set(names(network, other))
    finally:
        for satellite in (late, other):
            satellite.shutdown()
            satellite.relay.close()
        network.reactor.advance(60)


DOCUMENTED = '''
def x_greet(name: str) -> str:
    """Return a greeting for name."""
    return "hi " + name
'''


def test_the_help_and_signature_of_a_routed_method_come_from_its_node(network, make_satellite, plugin_root):
    """system.methodHelp and methodSignature of a method hosted elsewhere are asked of the node hosting it."""
    from co2.testing import write_package

    write_package(plugin_root, "documented", {"m": DOCUMENTED})
    a = make_satellite("a", "documented")
    b = make_satellite("b")
    network.link("a", "b")
    help_text = call(network, b, "system.methodHelp", "documented.m.greet")
    assert help_text.startswith("Return a greeting for name.") and a.host_id in help_text
    assert call(network, b, "system.methodSignature", "documented.m.greet") == [["string", "string"]]


def test_a_node_describes_only_methods_it_hosts(network, make_satellite):
    """A routed system.methodHelp about a method not hosted at the node it reaches is not found there."""
    a = make_satellite("a", "calc")
    from co2._xmlrpc import dump_call

    request = dump_call("system.methodHelp", ("no.such.method",))
    answer = a.relay.directory.route(a.relay.node_id, 1, request)
    results: list[Any] = []
    answer.addCallback(results.append)
    assert b"-32601" in results[0]
