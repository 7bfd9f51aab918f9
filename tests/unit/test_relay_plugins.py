"""Relay plugins: loading and its errors, running a chain, and the shipped shape filter."""

from __future__ import annotations

import datetime
import importlib
import sys
import textwrap
import xmlrpc.client

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.logger import LogLevel, formatEvent
from zope.interface import implementer
from zope.interface.verify import verifyObject

from co2 import Co2Error
from co2._message import decode_message, encode_message
from co2.protocol import decode_envelope
from co2.testing import TestReactor
from relay import Router
from relay._plugins import IRelayPlugin, RelayPluginError, apply_relay_plugins, load_relay_plugins
from relay.shape import TYPE_NAMES, ShapeFilter, relay_plugin, type_name

HOST_ID = "1234@127.0.0.1:2004"


def message(data=None, **extra):
    """A message holding ``data``."""
    return {"data": data, "host_id": HOST_ID, **extra}


@pytest.fixture
def write_module(tmp_path, monkeypatch):
    """Write a top-level module into a directory on sys.path; forget it afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    written = []

    def write(name, source):
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        importlib.invalidate_caches()
        written.append(name)
        return name

    yield write
    for name in written:
        sys.modules.pop(name, None)


@implementer(IRelayPlugin)
class Step:
    """A relay plugin that records what it saw and answers with ``action``."""

    def __init__(self, name, action):
        self.name = name
        self.action = action
        self.seen = []

    def inspect(self, message, source):
        self.seen.append((dict(message), source))
        return self.action(message)


def keep(message):
    """Pass the message on unchanged."""
    return message


# Loading

def test_loads_shape_with_its_options():
    """load_relay_plugins creates relay.shape with its config, and the result provides IRelayPlugin."""
    (plugin,) = load_relay_plugins(
        ["relay.shape"], {"relay.shape": {"accept": ["struct"], "require": ["temperature"]}}
    )
    assert verifyObject(IRelayPlugin, plugin)
    assert isinstance(plugin, ShapeFilter)
    assert plugin.accept == {"struct"} and plugin.require == ("temperature",)


def test_loads_in_order_with_each_modules_options(write_module):
    """Plugins come back in the order named; each gets a dict of its own options, empty if none."""
    source = """
        from zope.interface import implementer
        from relay._plugins import IRelayPlugin

        @implementer(IRelayPlugin)
        class P:
            def __init__(self, name, options):
                self.name, self.options = name, options
            def inspect(self, message, source):
                return message

        def relay_plugin(options):
            return P(__name__, options)
    """
    first = write_module("relay_test_first", source)
    second = write_module("relay_test_second", source)
    config = {first: {"a": 1}}
    plugins = load_relay_plugins([second, first], config)
    assert [p.name for p in plugins] == [second, first]
    assert plugins[0].options == {} and plugins[1].options == {"a": 1}
    assert type(plugins[1].options) is dict and plugins[1].options is not config[first]


def test_loads_nothing_from_no_names():
    """No names give no plugins."""
    assert load_relay_plugins([], {}) == []


def test_error_is_a_co2_error():
    """RelayPluginError is a Co2Error carrying the module and the problem."""
    error = RelayPluginError("relay.x", "is broken")
    assert isinstance(error, Co2Error)
    assert (error.module, error.problem) == ("relay.x", "is broken")
    assert str(error) == "relay plugin 'relay.x': is broken"


def load_error(name):
    """The RelayPluginError loading ``name`` raises."""
    with pytest.raises(RelayPluginError) as caught:
        load_relay_plugins([name], {})
    assert caught.value.module == name and name in str(caught.value)
    assert "\n" not in str(caught.value)
    return str(caught.value)


def test_module_not_found():
    """A module that does not exist is named, with the import error."""
    text = load_error("relay_test_no_such_module")
    assert "ModuleNotFoundError" in text


def test_module_failing_to_import(write_module):
    """A module that raises while imported is named, with the exception type and message."""
    text = load_error(write_module("relay_test_broken", "raise RuntimeError('bad\\nimport')\n"))
    assert "cannot be imported: RuntimeError: bad import" in text


def test_module_without_relay_plugin(write_module):
    """A module with no relay_plugin is named, and the fix is given."""
    text = load_error(write_module("relay_test_empty", "x = 1\n"))
    assert "no relay_plugin(options) function" in text


def test_relay_plugin_not_callable(write_module):
    """A relay_plugin that cannot be called is refused."""
    text = load_error(write_module("relay_test_not_callable", "relay_plugin = 3\n"))
    assert "relay_plugin is a int" in text


def test_factory_raising(write_module):
    """A relay_plugin that raises is named, with the exception type and its message on one line."""
    source = "def relay_plugin(options):\n    raise ValueError('port\\nmissing')\n"
    text = load_error(write_module("relay_test_raising", source))
    assert "relay_plugin(options) failed: ValueError: port missing" in text


def test_factory_returning_a_non_plugin(write_module):
    """A relay_plugin returning an object not providing IRelayPlugin is refused."""
    source = "def relay_plugin(options):\n    return object()\n"
    text = load_error(write_module("relay_test_object", source))
    assert "returned no IRelayPlugin" in text
    assert "inspect(message, source) attribute was not provided" in text


def test_factory_returning_an_incomplete_plugin(write_module):
    """An object that declares IRelayPlugin but lacks inspect is refused."""
    source = """
        from zope.interface import implementer
        from relay._plugins import IRelayPlugin

        @implementer(IRelayPlugin)
        class P:
            name = "incomplete"

        def relay_plugin(options):
            return P()
    """
    text = load_error(write_module("relay_test_incomplete", source))
    assert "returned no IRelayPlugin" in text and "inspect" in text


def test_plugin_name_must_be_a_string(write_module):
    """A plugin whose name is not a non-empty str is refused."""
    source = """
        from zope.interface import implementer
        from relay._plugins import IRelayPlugin

        @implementer(IRelayPlugin)
        class P:
            name = None
            def inspect(self, message, source):
                return message

        def relay_plugin(options):
            return P()
    """
    text = load_error(write_module("relay_test_nameless", source))
    assert "name is None" in text


def test_shape_with_a_bad_option():
    """relay.shape with an unknown option fails as a RelayPluginError naming it and the option."""
    with pytest.raises(RelayPluginError) as caught:
        load_relay_plugins(["relay.shape"], {"relay.shape": {"acept": ["struct"]}})
    assert caught.value.module == "relay.shape"
    assert "ValueError" in str(caught.value) and "'acept'" in str(caught.value)


# Applying

def test_no_plugins_return_the_same_message():
    """With no plugins the message object itself comes back."""
    sent = message(1)
    assert apply_relay_plugins([], sent, "local") is sent


def test_a_dropping_plugin_stops_the_chain(logged):
    """None from a plugin drops the message; later plugins never see it; a debug event names the plugin."""
    after = Step("after", keep)
    assert apply_relay_plugins([Step("dropper", lambda m: None), after], message(1), "local") is None
    assert after.seen == []
    (event,) = [e for e in logged if e.get("log_namespace") == "co2.relay"]
    assert event["log_level"] == LogLevel.debug and "dropper" in formatEvent(event)


def test_a_changing_plugins_result_goes_to_the_next():
    """What a plugin returns is what the next plugin sees, and what comes out."""
    double = Step("double", lambda m: {**m, "data": m["data"] * 2})
    second = Step("second", lambda m: m)
    assert apply_relay_plugins([double, second], message(21), "notify from 127.0.0.1") == message(42)
    assert second.seen == [(message(42), "notify from 127.0.0.1")]
    assert double.seen == [(message(21), "notify from 127.0.0.1")]


def test_a_raising_plugin_is_skipped_and_logged(logged):
    """A plugin that raises is logged by name with its traceback; the next sees the message as it was."""

    def fail(m):
        m["data"] = "changed before failing"
        raise RuntimeError("plugin bug")

    after = Step("after", keep)
    sent = message(1)
    assert apply_relay_plugins([Step("faulty", fail), after], sent, "local") == message(1)
    assert after.seen == [(message(1), "local")]
    assert sent == message(1)
    (event,) = [e for e in logged if e.get("log_namespace") == "co2.relay"]
    assert "faulty" in formatEvent(event) and "local" in formatEvent(event)
    assert event["log_failure"].check(RuntimeError)


@pytest.mark.parametrize("returned", [True, "x", ["data", "host_id"], {"data": 1}, {"host_id": HOST_ID}])
def test_a_plugin_returning_a_non_message_is_skipped(logged, returned):
    """A result that is not a dict holding data and host_id is logged and ignored."""
    after = Step("after", keep)
    assert apply_relay_plugins([Step("odd", lambda m: returned), after], message(1), "local") == message(1)
    assert after.seen == [(message(1), "local")]
    (event,) = [e for e in logged if e.get("log_namespace") == "co2.relay"]
    assert event["log_level"] == LogLevel.error and "odd" in formatEvent(event)


def test_extra_keys_pass_through():
    """Keys besides data and host_id reach the plugins and come out."""
    sent = message(1, client_address=["127.0.0.1", 4000])
    assert apply_relay_plugins([Step("keep", keep)], sent, "local") == sent


# The shape filter

EXAMPLES = [
    (7, "int"),
    (2**40, "int"),
    (True, "boolean"),
    (False, "boolean"),
    ("hi", "string"),
    (1.5, "double"),
    (datetime.datetime(2024, 1, 2, 3, 4, 5), "dateTime.iso8601"),
    (xmlrpc.client.DateTime("20240102T03:04:05"), "dateTime.iso8601"),
    (b"\x00\x01", "base64"),
    (xmlrpc.client.Binary(b"\x00"), "base64"),
    ({"temperature": 20}, "struct"),
    ([1, 2], "array"),
    ((1, 2), "array"),
    (None, "nil"),
]


@pytest.mark.parametrize(("value", "name"), EXAMPLES)
def test_type_names(value, name):
    """Each Python value maps to its XML-RPC type name, booleans not counted as ints."""
    assert type_name(value) == name


def test_type_name_of_a_non_xmlrpc_value():
    """A value XML-RPC cannot carry has no type name, and is dropped even by default."""
    assert type_name({1, 2}) is None
    assert relay_plugin({}).inspect(message({1, 2}), "local") is None


@pytest.mark.parametrize(("value", "name"), EXAMPLES)
def test_accept_passes_only_the_listed_type(value, name):
    """Accepting one type passes data of that type and drops data of every other."""
    only = relay_plugin({"accept": [name]})
    others = relay_plugin({"accept": [n for n in TYPE_NAMES if n != name]})
    assert only.inspect(message(value), "local") == message(value)
    assert others.inspect(message(value), "local") is None
    assert (only.passed, only.dropped, others.passed, others.dropped) == (1, 0, 0, 1)


def test_by_default_every_type_passes():
    """With no options every XML-RPC value passes."""
    plugin = relay_plugin({})
    for value, _ in EXAMPLES:
        assert plugin.inspect(message(value), "local") is not None
    assert (plugin.passed, plugin.dropped) == (len(EXAMPLES), 0)


def test_require_keys():
    """require passes structs holding every listed key and drops other structs and all non-structs."""
    plugin = relay_plugin({"accept": ["struct"], "require": ["temperature", "unit"]})
    assert plugin.inspect(message({"temperature": 20, "unit": "C", "x": 1}), "local") is not None
    assert plugin.inspect(message({"temperature": 20}), "local") is None
    assert plugin.inspect(message({}), "local") is None
    for value, name in EXAMPLES:
        if name != "struct":
            assert plugin.inspect(message(value), "local") is None
    assert plugin.passed == 1 and plugin.dropped == 2 + len(EXAMPLES) - 1


def test_require_alone_drops_non_structs():
    """require with the default accept still drops data that is not a struct."""
    plugin = relay_plugin({"require": ["temperature"]})
    assert plugin.inspect(message({"temperature": 1}), "local") is not None
    assert plugin.inspect(message(["temperature"]), "local") is None
    assert plugin.inspect(message("temperature"), "local") is None


def test_shape_filter_provides_the_interface():
    """A ShapeFilter provides IRelayPlugin under the name 'shape'."""
    plugin = ShapeFilter()
    assert verifyObject(IRelayPlugin, plugin) and plugin.name == "shape"
    assert (plugin.passed, plugin.dropped) == (0, 0)


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"acept": ["int"]}, "no option 'acept'"),
        ({"accept": "struct"}, "'accept' must be a list of strings"),
        ({"accept": [1]}, "'accept' must be a list of strings"),
        ({"accept": {"struct": 1}}, "'accept' must be a list of strings"),
        ({"accept": ["integer"]}, "unknown type names ['integer']"),
        ({"accept": []}, "'accept' is empty"),
        ({"require": "temperature"}, "'require' must be a list of strings"),
        ({"require": [3]}, "'require' must be a list of strings"),
        ({"accept": ["array"], "require": ["a"]}, "does not list 'struct'"),
    ],
)
def test_bad_options(options, says):
    """Unknown options and bad values raise ValueError saying which and why."""
    with pytest.raises(ValueError) as caught:
        relay_plugin(options)
    assert says in str(caught.value)


STRATEGIES = {
    "int": st.integers(-(2**63), 2**63 - 1),
    "boolean": st.booleans(),
    "string": st.text(max_size=8),
    "double": st.floats(allow_nan=False),
    "dateTime.iso8601": st.datetimes(),
    "base64": st.binary(max_size=8) | st.binary(max_size=8).map(xmlrpc.client.Binary),
    "struct": st.dictionaries(st.text(max_size=4), st.integers() | st.none(), max_size=3),
    "array": st.lists(st.integers() | st.text(max_size=4), max_size=3).flatmap(
        lambda items: st.sampled_from([items, tuple(items)])
    ),
    "nil": st.none(),
}
NAMED_VALUES = st.sampled_from(TYPE_NAMES).flatmap(lambda name: st.tuples(st.just(name), STRATEGIES[name]))


@given(NAMED_VALUES, st.lists(st.sampled_from(TYPE_NAMES), min_size=1, unique=True))
def test_passes_iff_the_type_is_accepted(named, accept):
    """For any XML-RPC data and accept list, the filter passes the message iff data's type is listed."""
    name, value = named
    plugin = relay_plugin({"accept": accept})
    result = plugin.inspect(message(value), "local")
    assert (result is not None) == (name in accept)
    assert (plugin.passed, plugin.dropped) == ((1, 0) if name in accept else (0, 1))


# Relay plugins in the router, which carries messages encoded

def routed(*plugins: Step, data: object = "d") -> tuple[Router, bytes, list[bytes]]:
    """Send a message through a router with ``plugins``: the router, the body sent, the bodies forwarded."""
    reactor = TestReactor()
    router = Router(reactor, lambda turn: None, plugins=plugins)
    router.outbox("peer:x")
    body = encode_message(message(data))
    router.send(body, ["127.0.0.1", 2004])
    reactor.advance(0)
    _, entries = router.outboxes["peer:x"].take(1 << 20)
    return router, body, [decode_envelope(entry.body).message for entry in entries]


def test_a_message_the_plugins_pass_unchanged_is_not_encoded_again():
    """When every plugin passes the message as it was, the very bytes that came in go on."""
    _, body, (forwarded,) = routed(Step("keep", keep), Step("copy", lambda m: dict(m)))
    assert forwarded == body


def test_a_changed_message_is_encoded_again():
    """A plugin's change reaches the next hop."""
    _, _, (forwarded,) = routed(Step("stamp", lambda m: {**m, "data": [m["data"], "stamped"]}))
    assert decode_message(forwarded) == message(["d", "stamped"])


def test_a_dropped_message_goes_nowhere():
    """A message a plugin drops is neither forwarded nor delivered."""
    router, _, forwarded = routed(Step("drop", lambda m: None))
    assert forwarded == [] and router.counters.originated == 1


@pytest.mark.parametrize("bad", [{1, 2}, float("nan"), {1: "x"}])
def test_a_change_co2_cannot_carry_is_logged_and_ignored(logged, bad):
    """A plugin that makes data XML-RPC cannot carry is logged; the message goes on as it was."""
    _, body, (forwarded,) = routed(Step("odd", lambda m: {**m, "data": bad}))
    assert forwarded == body
    text = "\n".join(formatEvent(e) for e in logged if e.get("log_namespace") == "co2.relay")
    assert "one co2 cannot carry" in text and "passing the message on as it was" in text
