"""Hot reload: a plugin package replaced by its new code while the satellite runs."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Any
from xmlrpc.client import Fault

import pytest
from twisted.logger import formatEvent
from twisted.python.failure import Failure

from co2 import PluginError, faults
from co2.testing import write_package
from satellites import ReloadRefused, Satellite

HOT = '''
from co2 import Co2Plugin


class X_Hot(Co2Plugin):
    def __init__(self, var_dict):
        Co2Plugin.__init__(self, var_dict)
        self.got = []
        self.exited = False

    def receive(self, data_dict):
        self.got.append(data_dict["data"])

    def x_{name}(self) -> int:
        return {value}

    def x_count(self) -> int:
        self.state["count"] = self.state.get("count", 0) + 1
        return self.state["count"]

    def __exit__(self):
        self.exited = True
'''

OTHER = '''
from co2 import Co2Plugin


class X_Other(Co2Plugin):
    def x_ping(self) -> str:
        return "pong"
'''

PEER = "9@127.0.0.1:7"


def hot(name: str = "one", value: int = 1) -> str:
    return textwrap.dedent(HOT.format(name=name, value=value))


def rewrite(plugin_dir: Path, source: str, package: str = "hot", module: str = "m") -> None:
    (plugin_dir / package / f"{module}.py").write_text(textwrap.dedent(source))


def result_of(d: Any) -> Any:
    """What an already-fired Deferred holds (a Failure for a failed one)."""
    results: list[Any] = []
    d.addBoth(results.append)
    assert results, "the Deferred has not fired"
    return results[0]


def notify(node: Any, data: Any) -> None:
    assert node.call("notify", {"data": data, "host_id": PEER}) is True


@pytest.fixture
def node(make_node: Any, plugin_dir: Path) -> Any:
    write_package(plugin_dir, "hot", {"m": hot()})
    write_package(plugin_dir, "other", {"o": OTHER})
    return make_node("other", "hot")


def test_a_reload_puts_the_new_code_in_place_of_the_old(node: Any, plugin_dir: Path) -> None:
    """The new method answers, the old is gone, the old __exit__ ran, the new instance receives."""
    old = node.plugin("hot.m.X_Hot")
    rewrite(plugin_dir, hot("two", 2))
    summary = result_of(node.satellite.reload_package("hot"))
    assert summary == {"package": "hot", "plugins": ["hot.m.X_Hot"],
                       "methods": ["hot.m.count", "hot.m.two"]}
    new = node.plugin("hot.m.X_Hot")
    assert new is not old and old.exited and not new.exited
    assert node.call("hot.m.two") == 2
    with pytest.raises(Fault) as info:
        node.call("hot.m.one")
    assert info.value.faultCode == faults.METHOD_NOT_FOUND
    names = node.call("co2.get_method_names")
    assert "hot.m.two" in names and "hot.m.one" not in names
    assert node.call("system.listMethods") == names
    assert [str(p) for p in node.satellite.plugins] == ["other.o.X_Other", "hot.m.X_Hot"]
    notify(node, "after")
    node.reactor.advance(0)
    assert new.got == ["after"] and old.got == []


def test_a_reload_reads_an_edit_made_within_the_same_second(node: Any, plugin_dir: Path) -> None:
    """An edit of the same size and mtime as the loaded file is still seen (no stale .pyc)."""
    path = plugin_dir / "hot" / "m.py"
    stat = path.stat()
    rewrite(plugin_dir, hot("one", 7))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size
    result_of(node.satellite.reload_package("hot"))
    assert node.call("hot.m.one") == 7


def test_co2_reload_answers_the_new_version(node: Any, plugin_dir: Path) -> None:
    """co2.reload over XML-RPC reloads and answers the package, plugins and methods."""
    rewrite(plugin_dir, hot("two", 2))
    assert node.call("co2.reload", "hot") == {
        "package": "hot", "plugins": ["hot.m.X_Hot"], "methods": ["hot.m.count", "hot.m.two"],
    }
    assert node.call("hot.m.two") == 2


@pytest.mark.parametrize("source, problem", [
    ("def broken(:\n", "SyntaxError"),
    ("import no_such_module_here\n", "ModuleNotFoundError"),
    (HOT.replace("self.got = []", "raise RuntimeError('init failed')").format(name="two", value=2),
     "RuntimeError: init failed"),
    (HOT.format(name="two", value=2) + "\ndef x_two():\n    return 3\n", "both exposed as hot.m.two"),
])
def test_a_failed_reload_keeps_the_old_version(
    node: Any, plugin_dir: Path, logged: list[dict[str, Any]], source: str, problem: str
) -> None:
    """A syntax error, import error, raising __init__ or duplicate name changes nothing and says why."""
    old = node.plugin("hot.m.X_Hot")
    rewrite(plugin_dir, source)
    failure = result_of(node.satellite.reload_package("hot"))
    assert isinstance(failure, Failure) and failure.check(PluginError)
    assert problem in failure.value.problem
    assert node.plugin("hot.m.X_Hot") is old and not old.exited
    assert node.call("hot.m.one") == 1
    assert "hot" in node.satellite.reload_failures and node.satellite.failures == []
    with pytest.raises(Fault) as info:
        node.call("co2.reload", "hot")
    assert info.value.faultCode == faults.RELOAD_FAILED
    assert problem in info.value.faultString and "Traceback" not in info.value.faultString
    assert any("reload of plugin package hot failed" in formatEvent(e) for e in logged)
    notify(node, "still")
    node.reactor.advance(0)
    assert old.got == ["still"]
    rewrite(plugin_dir, hot("two", 2))
    result_of(node.satellite.reload_package("hot"))
    assert node.call("hot.m.two") == 2 and "hot" not in node.satellite.reload_failures


def test_state_carries_over(node: Any, plugin_dir: Path) -> None:
    """self.state is the same store for the new instance (keyed by the plugin's name)."""
    assert node.call("hot.m.count") == 1
    assert node.call("hot.m.count") == 2
    rewrite(plugin_dir, hot("two", 2))
    result_of(node.satellite.reload_package("hot"))
    assert node.call("hot.m.count") == 3


def test_messages_around_a_reload_are_delivered_once(node: Any, plugin_dir: Path) -> None:
    """A message taken before the swap goes to the old instance only, one after it to the new only."""
    old = node.plugin("hot.m.X_Hot")
    notify(node, "before")  # taken, not yet handed over: the reload hands it to the old version
    rewrite(plugin_dir, hot("two", 2))
    result_of(node.satellite.reload_package("hot"))
    new = node.plugin("hot.m.X_Hot")
    notify(node, "after")
    node.reactor.advance(0)
    assert old.got == ["before"] and new.got == ["after"]


def test_a_failing_old_exit_is_logged_not_fatal(node: Any, plugin_dir: Path, logged: list[Any]) -> None:
    """An old instance whose __exit__ raises does not stop the reload."""
    old = node.plugin("hot.m.X_Hot")
    old.__exit__ = lambda: 1 / 0
    rewrite(plugin_dir, hot("two", 2))
    assert result_of(node.satellite.reload_package("hot"))["methods"] == ["hot.m.count", "hot.m.two"]
    assert any("__exit__ failed" in formatEvent(e) for e in logged)


@pytest.mark.parametrize("package", ["nope", "co2", "system"])
def test_unknown_and_reserved_packages_are_refused(node: Any, package: str) -> None:
    """A package not in plugin_list, or a reserved name, is refused: fault -32602."""
    failure = result_of(node.satellite.reload_package(package))
    assert failure.check(ReloadRefused)
    with pytest.raises(Fault) as info:
        node.call("co2.reload", package)
    assert info.value.faultCode == faults.INVALID_PARAMS
    assert package in info.value.faultString


def test_a_reload_after_shutdown_is_refused(node: Any) -> None:
    """A satellite that shut down reloads nothing."""
    node.satellite.shutdown()
    node.reactor.advance(60)
    assert result_of(node.satellite.reload_package("hot")).check(ReloadRefused)


def test_a_package_that_failed_at_start_loads_once_fixed(make_node: Any, plugin_dir: Path) -> None:
    """A package left out at start is loaded by a reload after its fix, and leaves failures."""
    write_package(plugin_dir, "hot", {"m": "def broken(:\n"})
    node = make_node("hot")
    assert [f.package for f in node.satellite.failures] == ["hot"]
    rewrite(plugin_dir, "def broken(:\n  again\n")
    assert result_of(node.satellite.reload_package("hot")).check(PluginError)
    assert [f.package for f in node.satellite.failures] == ["hot"]
    rewrite(plugin_dir, hot())
    assert node.call("co2.reload", "hot")["methods"] == ["hot.m.count", "hot.m.one"]
    assert node.satellite.failures == [] and node.call("hot.m.one") == 1
    assert [str(p) for p in node.satellite.plugins] == ["hot.m.X_Hot"]


def test_reload_changed_reloads_only_what_changed(node: Any, plugin_dir: Path) -> None:
    """reload_changed (SIGHUP) reloads the edited package and leaves the other alone."""
    other = node.plugin("other.o.X_Other")
    rewrite(plugin_dir, hot("two", 2))
    outcomes = result_of(node.satellite.reload_changed())
    assert outcomes[0] is None and outcomes[1]["methods"] == ["hot.m.count", "hot.m.two"]
    assert node.plugin("other.o.X_Other") is other
    assert result_of(node.satellite.reload_changed()) == [None, None]
    rewrite(plugin_dir, "def broken(:\n")
    outcomes = result_of(node.satellite.reload_changed())
    assert isinstance(outcomes[1], PluginError) and "SyntaxError" in outcomes[1].problem
    assert result_of(node.satellite.reload_changed()) == [None, None]  # not tried again as it is
    assert node.call("hot.m.two") == 2


def test_a_new_module_file_is_seen(node: Any, plugin_dir: Path) -> None:
    """A module added to __all__ and written since the start is imported by the reload."""
    (plugin_dir / "hot" / "extra.py").write_text("def x_more() -> int:\n    return 5\n")
    (plugin_dir / "hot" / "__init__.py").write_text("__all__ = ['m', 'extra']\n")
    result_of(node.satellite.reload_package("hot"))
    assert node.call("hot.extra.more") == 5


def test_the_satellite_class_is_public() -> None:
    """reload_package is part of satellites.Satellite."""
    assert callable(Satellite.reload_package) and callable(Satellite.reload_changed)


def test_the_status_page_shows_a_failed_reload(node: Any, plugin_dir: Path) -> None:
    """status.json lists a package whose reload failed, saying the previous version runs."""
    from satellites import NodeParts
    from satellites._status import status_of

    rewrite(plugin_dir, "def broken(:\n")
    result_of(node.satellite.reload_package("hot"))
    failed = status_of(NodeParts.of(node.satellite), "satellite")["failed"]
    assert [f["package"] for f in failed] == ["hot"]
    assert "previous version still runs" in failed[0]["problem"] and "SyntaxError" in failed[0]["problem"]


def test_the_harness_reloads_through_co2_reload(plugin_dir: Path) -> None:
    """A plugin author's test can reload the package with harness.call("co2.reload", ...)."""
    from co2.testing import PluginHarness

    write_package(plugin_dir, "hot", {"m": hot()})
    with PluginHarness(plugin_dir / "hot") as harness:
        harness.call("hot.m.count")
        rewrite(plugin_dir, hot("two", 2))
        assert harness.call("co2.reload", "hot")["methods"] == ["hot.m.count", "hot.m.two"]
        assert harness.methods == ["hot.m.count", "hot.m.two"]
        assert harness.call("hot.m.two") == 2 and harness.state() == {"count": 1}
        harness.deliver("x")
        assert harness.plugin().got == ["x"]


def test_replace_owner_refuses_a_name_of_another_owner() -> None:
    """MethodRegistry.replace_owner changes nothing when a new name belongs to another owner."""
    from satellites import Method, MethodRegistry
    from satellites._registry import DuplicateMethod

    registry = MethodRegistry()
    registry.add_all([Method.of("a.m.f", len, owner="a"), Method.of("b.m.g", len, owner="b")])
    with pytest.raises(DuplicateMethod, match=r"b\.m\.g"):
        registry.replace_owner("a", [Method.of("a.m.h", len, owner="a"), Method.of("b.m.g", len, owner="a")])
    assert registry.names() == ["a.m.f", "b.m.g"]
    registry.replace_owner("a", [Method.of("a.m.h", len, owner="a")])
    assert registry.names() == ["a.m.h", "b.m.g"]
