"""co2.testing.PluginHarness: a plugin package on an in-memory satellite."""

from __future__ import annotations

import sys
import xmlrpc.client

import pytest

from co2 import ConfigError, PluginError, faults
from co2.testing import HOST_ID, PEER_HOST_ID, PluginFailed, PluginHarness, TestReactor, write_package

TWO = '''
from co2 import Co2Plugin


class Recorder(Co2Plugin):
    def __init__(self, var_dict):
        Co2Plugin.__init__(self, var_dict)
        self.got = []

    def receive(self, data_dict):
        self.got.append(data_dict)

    def __exit__(self):
        self.var_dict["exits"].append(str(self))


class X_First(Recorder):
    def x_say(self, data):
        """Send data; return True."""
        self.send(data)
        return True


class X_Second(Recorder):
    pass


def x_add(a: int, b: int) -> int:
    """Return a + b."""
    return a + b
'''

ASYNC = '''
import time

from twisted.internet.defer import Deferred, succeed

from co2 import Co2Plugin, in_thread


class X_Waits(Co2Plugin):
    def __init__(self, var_dict):
        Co2Plugin.__init__(self, var_dict)
        self.pending = None

    def x_deferred(self, n: int) -> int:
        return succeed(n + 1)

    async def x_coroutine(self, n: int) -> int:
        return await succeed(n * 2)

    @in_thread
    def x_threaded(self, n: int) -> int:
        return n * 3

    def x_never(self):
        self.pending = Deferred()
        return self.pending

    def x_boom(self):
        raise KeyError("nope")

    def x_fault(self):
        import xmlrpc.client
        raise xmlrpc.client.Fault(7, "mine")

    def x_a_set(self):
        return {1, 2}
'''


@pytest.fixture
def plugins(tmp_path):
    """A plugin directory with a two-plugin package ``two`` and a package ``waits``."""
    write_package(tmp_path, "two", {"m": TWO})
    write_package(tmp_path, "waits", {"w": ASYNC})
    return tmp_path


def harness_of(plugins, name="two", **kwargs):
    kwargs.setdefault("var_dict", {"exits": []})
    return PluginHarness(plugins / name, **kwargs)


def test_loads_a_package_directory_or_a_plugin_dir_and_name(plugins):
    """A package directory, or a plugin directory and a name, load the same package."""
    for harness in (harness_of(plugins), PluginHarness(plugins, "two", var_dict={"exits": []})):
        with harness:
            assert [str(p) for p in harness.plugins] == ["two.m.X_First", "two.m.X_Second"]
            assert harness.methods == ["two.m.add", "two.m.say"]


def test_a_directory_without_init_is_refused(plugins):
    """A path that is not a package, without a package name, is a ValueError saying so."""
    with pytest.raises(ValueError, match="not a plugin package"):
        PluginHarness(plugins)


def test_var_dict_is_merged_over_what_the_satellite_provides(plugins):
    """Each plugin's var_dict holds host_id, package, plugin_dir, package_dir and var_dict's keys."""
    with harness_of(plugins, var_dict={"exits": [], "colour": "red"}) as harness:
        var_dict = harness.plugin("X_First").var_dict
    assert var_dict["host_id"] == HOST_ID
    assert var_dict["package"] == "two"
    assert var_dict["plugin_dir"] == str(plugins.resolve())
    assert var_dict["package_dir"] == str(plugins.resolve() / "two")
    assert var_dict["colour"] == "red"


def test_uses_its_own_clock_not_the_global_reactor(plugins):
    """The satellite runs on the harness's TestReactor."""
    with harness_of(plugins) as harness:
        assert isinstance(harness.reactor, TestReactor)
        assert harness.satellite.reactor is harness.reactor


def test_deliver_reaches_every_plugin_as_on_a_satellite(plugins):
    """deliver() hands each plugin {'data', 'host_id', 'client_address'}, in load order."""
    with harness_of(plugins) as harness:
        harness.deliver([1, "two"])
        harness.deliver(3, host_id="9@10.0.0.9:2004", client_address=("10.0.0.8", 5))
        for plugin in harness.plugins:
            assert plugin.got == [
                {"data": [1, "two"], "host_id": PEER_HOST_ID, "client_address": ["127.0.0.1", 2005]},
                {"data": 3, "host_id": "9@10.0.0.9:2004", "client_address": ["10.0.0.8", 5]},
            ]


def test_deliver_refuses_what_a_satellite_refuses(plugins):
    """A message a satellite would refuse raises at once and reaches no plugin."""
    with harness_of(plugins) as harness:
        with pytest.raises(TypeError):
            harness.deliver({1, 2})
        with pytest.raises(ValueError):
            harness.deliver(1, host_id="nonsense")
        assert all(p.got == [] for p in harness.plugins)


def test_sent_is_recorded_per_plugin_and_delivered_to_the_others(plugins):
    """What a plugin sends is in sent and sent_by(), and reaches every other plugin but itself."""
    with harness_of(plugins) as harness:
        assert harness.call("two.m.say", {"n": (1, 2)}) is True
        first, second = harness.plugins
        assert harness.sent_by("X_First") == [{"n": [1, 2]}]
        assert harness.sent_by("two.m.X_Second") == []
        assert [(s.sender, s.data) for s in harness.sent] == [("two.m.X_First", {"n": [1, 2]})]
        assert first.got == []
        assert second.got == [
            {"data": {"n": [1, 2]}, "host_id": HOST_ID, "client_address": ["127.0.0.1", 2004]}
        ]


def test_plugin_lookup_names_the_candidates(plugins):
    """plugin() without a name, or with one that fits none, raises LookupError listing the plugins."""
    with harness_of(plugins) as harness:
        with pytest.raises(LookupError, match=r"two\.m\.X_First, two\.m\.X_Second"):
            harness.plugin()
        with pytest.raises(LookupError, match="'X_Third'"):
            harness.plugin("X_Third")
        assert str(harness.plugin("m.X_Second")) == "two.m.X_Second"


def test_call_returns_what_an_xmlrpc_client_gets(plugins):
    """call() goes through XML-RPC: module functions, introspection and notify answer."""
    with harness_of(plugins) as harness:
        assert harness.call("two.m.add", 2, 3) == 5
        assert harness.call("system.methodHelp", "two.m.add") == "Return a + b."
        assert harness.call("system.methodSignature", "two.m.add") == [["int", "int", "int"]]
        assert harness.call("notify", {"data": 1, "host_id": "5@127.0.0.1:1"}) is True
        harness.advance(0)
        assert [m["data"] for m in harness.plugin("X_First").got] == [1]


@pytest.mark.parametrize(
    ("method", "params", "code"),
    [
        ("two.m.nothing", (), faults.METHOD_NOT_FOUND),
        ("two.m.add", (1,), faults.INVALID_PARAMS),
        ("two.m.add", (1, "x"), faults.APPLICATION_ERROR),
        ("waits.w.boom", (), faults.APPLICATION_ERROR),
        ("waits.w.fault", (), 7),
        ("waits.w.a_set", (), faults.INTERNAL_ERROR),
    ],
)
def test_call_raises_the_faults_a_satellite_answers(plugins, method, params, code):
    """Unknown names, bad parameters, exceptions and unencodable results are the documented faults."""
    package = "waits" if method.startswith("waits") else "two"
    with harness_of(plugins, package) as harness:
        with pytest.raises(xmlrpc.client.Fault) as info:
            harness.call(method, *params)
    assert info.value.faultCode == code


def test_a_plugin_exception_is_type_and_message(plugins):
    """Fault -32500 carries the exception's type and message, never a traceback."""
    with harness_of(plugins, "waits") as harness:
        with pytest.raises(xmlrpc.client.Fault, match="KeyError: 'nope'") as info:
            harness.call("waits.w.boom")
        assert "Traceback" not in info.value.faultString
        assert any("waits.w.boom (plugin waits) raised" in line for line in harness.log)


def test_call_waits_for_deferreds_coroutines_and_threads(plugins):
    """A Deferred, an async def and an @in_thread method all answer through call()."""
    with harness_of(plugins, "waits") as harness:
        assert harness.call("waits.w.deferred", 1) == 2
        assert harness.call("waits.w.coroutine", 2) == 4
        assert harness.call("waits.w.threaded", 3) == 9


def test_a_method_that_never_answers_times_out_on_the_clock(plugins):
    """A Deferred that never fires gives fault -32002 after call_timeout seconds of the harness's clock."""
    with harness_of(plugins, "waits", settings={"call_timeout": 5}) as harness:
        with pytest.raises(xmlrpc.client.Fault) as info:
            harness.call("waits.w.never")
        assert info.value.faultCode == faults.CALL_TIMEOUT
        assert harness.reactor.seconds() == 5


def test_start_call_returns_the_deferred_of_the_answer(plugins):
    """start_call() runs what is due now; the answer comes when the plugin fires its Deferred."""
    with harness_of(plugins, "waits") as harness:
        d = harness.start_call("waits.w.never")
        results = []
        d.addCallback(results.append)
        harness.advance(1)
        assert results == []
        harness.plugin().pending.callback("late")
        harness.advance(0)
        assert results == ["late"]


def test_advance_runs_each_timer_at_its_time(plugins):
    """advance() moves the clock, running timers on the way at their own times."""
    with harness_of(plugins) as harness:
        seen = []
        harness.reactor.callLater(1, lambda: seen.append(harness.reactor.seconds()))
        harness.reactor.callLater(3, lambda: seen.append(harness.reactor.seconds()))
        harness.advance(2)
        assert seen == [1]
        harness.advance(5)
        assert seen == [1, 3]
        assert harness.reactor.seconds() == 7


def test_state_lives_in_memory(plugins):
    """A plugin's self.state is kept in memory and read back with state()."""
    with harness_of(plugins) as harness:
        harness.plugin("X_First").state["count"] = 2
        assert harness.state("X_First") == {"count": 2}
        assert harness.state("X_Second") == {}


def test_shutdown_runs_every_exit_last_loaded_first(plugins):
    """Leaving the with block calls each plugin's __exit__ in reverse load order."""
    exits: list[str] = []
    with harness_of(plugins, var_dict={"exits": exits}):
        assert exits == []
    assert exits == ["two.m.X_Second", "two.m.X_First"]


def test_a_failing_exit_is_reported(plugins):
    """An __exit__ that raises makes shutdown() raise PluginFailed with the traceback."""
    harness = harness_of(plugins, var_dict={})  # no "exits": __exit__ raises KeyError
    with pytest.raises(PluginFailed, match=r"(?s)X_Second.__exit__ failed.*KeyError: 'exits'"):
        harness.shutdown()
    harness.shutdown()  # a second call does nothing


def test_the_test_failure_wins_over_a_failing_exit(plugins):
    """When the with block raises, that exception propagates, not the shutdown's."""
    with pytest.raises(ZeroDivisionError), harness_of(plugins, var_dict={}):
        raise ZeroDivisionError("the test's own failure")


def test_a_failing_receive_is_reported(tmp_path):
    """A receive that raises makes deliver() raise PluginFailed naming the plugin."""
    write_package(tmp_path, "bad", {"m": """
        from co2 import Co2Plugin
        class X_Bad(Co2Plugin):
            def receive(self, data_dict):
                raise RuntimeError("cannot take " + repr(data_dict["data"]))
    """})
    with PluginHarness(tmp_path / "bad") as harness:
        with pytest.raises(PluginFailed, match=r"(?s)bad.m.X_Bad.receive raised.*cannot take 42"):
            harness.deliver(42)


def test_a_package_that_fails_to_load_raises_plugin_error(tmp_path):
    """A package that does not load raises PluginError whose message holds the traceback."""
    write_package(tmp_path, "broken", {"m": "import no_such_module_here\n"})
    with pytest.raises(PluginError, match=r"(?s)failed to import.*Traceback.*no_such_module_here"):
        PluginHarness(tmp_path / "broken")
    assert not any(name.endswith(".broken.m") for name in sys.modules)


def test_reserved_names_and_bad_settings_are_refused(tmp_path):
    """A reserved package name is a PluginError; an unknown or wrong setting a ConfigError."""
    write_package(tmp_path, "web", {})
    write_package(tmp_path, "fine", {})
    with pytest.raises(PluginError, match="reserved"):
        PluginHarness(tmp_path / "web")
    with pytest.raises(ConfigError, match="colour"):
        PluginHarness(tmp_path / "fine", settings={"colour": 1})
    with pytest.raises(ConfigError, match="call_timeout"):
        PluginHarness(tmp_path / "fine", settings={"call_timeout": -1})


def test_warnings_and_log_are_kept(tmp_path):
    """Load warnings and the plugins' log lines are readable from the harness."""
    write_package(tmp_path, "bare", {}, init='"""No __all__."""\n')
    write_package(tmp_path, "talks", {"m": """
        from co2 import Co2Plugin
        class X_Talks(Co2Plugin):
            def receive(self, data_dict):
                self.log(f"got {data_dict['data']}")
                self.debug("and that was all")
    """})
    with PluginHarness(tmp_path / "bare") as harness:
        assert harness.warnings == ["bare has no __all__, so none of its modules load"]
    with PluginHarness(tmp_path / "talks") as harness:
        harness.deliver(7)
        assert "[talks.m.X_Talks#info] got 7" in harness.log
        assert "[talks.m.X_Talks#debug] and that was all" in harness.log


def test_a_shut_down_harness_refuses_work(plugins):
    """After shutdown, call() and deliver() raise RuntimeError."""
    with harness_of(plugins) as harness:
        pass
    with pytest.raises(RuntimeError, match="shut down"):
        harness.call("two.m.add", 1, 2)
    with pytest.raises(RuntimeError, match="shut down"):
        harness.deliver(1)


def test_an_exit_over_exit_timeout_is_reported(tmp_path):
    """An __exit__ whose Deferred never fires is cut at exit_timeout on the clock, and reported."""
    write_package(tmp_path, "slow", {"m": """
        from twisted.internet.defer import Deferred
        from co2 import Co2Plugin
        class X_Slow(Co2Plugin):
            def __exit__(self):
                return Deferred()
    """})
    harness = PluginHarness(tmp_path / "slow", settings={"exit_timeout": 2})
    with pytest.raises(PluginFailed, match=r"X_Slow.__exit__ failed or took over 2"):
        harness.shutdown()
    assert harness.reactor.seconds() == 2


def test_advance_reports_a_plugin_that_failed_meanwhile(tmp_path):
    """A receive that raises on a message sent by a timer makes advance() raise PluginFailed."""
    write_package(tmp_path, "pair", {"m": """
        from co2 import Co2Plugin
        class X_Talker(Co2Plugin):
            pass
        class X_Picky(Co2Plugin):
            def receive(self, data_dict):
                raise ValueError("not today")
    """})
    with PluginHarness(tmp_path / "pair") as harness:
        harness.reactor.callLater(1, harness.plugin("X_Talker").send, "hello")
        harness.advance(0.5)
        with pytest.raises(PluginFailed, match=r"(?s)a plugin failed while time passed.*not today"):
            harness.advance(1)


def test_the_harness_names(plugins):
    """The satellite's host_id is HOST_ID; PluginFailed is an AssertionError."""
    with harness_of(plugins) as harness:
        assert harness.host_id == HOST_ID
    assert issubclass(PluginFailed, AssertionError)
