"""The loader: packages, modules from __all__, X_ classes, x_ methods, failures."""

from __future__ import annotations

import json
import sys

import pytest
from doubles import format_events as text_of
from twisted.logger import LogLevel, formatEvent

from co2 import Co2Plugin
from co2.testing import write_package
from satellites import find_packages

RECORDER = """
from co2 import Co2Plugin

class X_First(Co2Plugin):
    def x_hello(self, name):
        return "hello " + name

class X_Second(Co2Plugin):
    def x_bye(self):
        return "bye"

class Y_NotLoaded(Co2Plugin):
    def x_never(self):
        return 1

class X_NotAPlugin:
    def x_never_either(self):
        return 2

def x_double(n):
    return 2 * n

def helper():
    return 3
"""


def test_loads_x_classes_and_x_functions(make_node, plugin_dir):
    """X_ subclasses of Co2Plugin are created; their x_ methods and module x_ functions answer."""
    write_package(plugin_dir, "ham", {"spam": RECORDER})
    node = make_node("ham")
    assert [str(p) for p in node.satellite.plugins] == ["ham.spam.X_First", "ham.spam.X_Second"]
    assert node.call("ham.spam.hello", "bob") == "hello bob"
    assert node.call("ham.spam.bye") == "bye"
    assert node.call("ham.spam.double", 21) == 42
    names = node.call("co2.get_method_names")
    assert [n for n in names if n.startswith("ham.")] == [
        "ham.spam.bye", "ham.spam.double", "ham.spam.hello"
    ]


def test_only_modules_in_all_load(make_node, plugin_dir):
    """A module not named in __all__ is never imported."""
    write_package(
        plugin_dir, "ham",
        {"spam": "def x_a():\n    return 1\n", "eggs": "raise RuntimeError('imported')\n"},
        init="__all__ = ['spam']\n",
    )
    node = make_node("ham")
    assert node.satellite.failures == []
    assert node.call("ham.spam.a") == 1


def test_modules_load_in_all_order(make_node, plugin_dir):
    """Plugins are created in plugin_list order, then __all__ order, then definition order."""
    plugin = "from co2 import Co2Plugin\nclass X_B(Co2Plugin): pass\nclass X_A(Co2Plugin): pass\n"
    write_package(plugin_dir, "one", {"z": plugin, "a": plugin}, init="__all__ = ['z', 'a']\n")
    write_package(plugin_dir, "two", {"m": plugin})
    node = make_node("two", "one")
    assert [str(p) for p in node.satellite.plugins] == [
        "two.m.X_B", "two.m.X_A", "one.z.X_B", "one.z.X_A", "one.a.X_B", "one.a.X_A",
    ]


def test_imported_classes_and_functions_are_not_loaded_twice(make_node, plugin_dir):
    """An X_ class or x_ function imported from a sibling module belongs to that module only."""
    write_package(plugin_dir, "ham", {
        "base": "from co2 import Co2Plugin\nclass X_Base(Co2Plugin):\n    def x_m(self):\n"
                "        return 1\ndef x_f():\n    return 2\n",
        "user": "from .base import X_Base, x_f\n",
    })
    node = make_node("ham")
    assert [str(p) for p in node.satellite.plugins] == ["ham.base.X_Base"]
    names = [n for n in node.call("system.listMethods") if n.startswith("ham.")]
    assert names == ["ham.base.f", "ham.base.m"]


def test_var_dict_merges_host_values_and_plugin_config(make_node, plugin_dir):
    """var_dict holds host_id, package and paths, with plugin_config merged over them."""
    write_package(plugin_dir, "ham", {"spam": "from co2 import Co2Plugin\nclass X_P(Co2Plugin): pass\n"})
    node = make_node("ham", plugin_config={"ham": {"colour": "green", "package": "mine"}})
    var_dict = node.satellite.plugins[0].var_dict
    assert var_dict["host_id"] == node.satellite.host_id != ""
    assert var_dict["colour"] == "green"
    assert var_dict["package"] == "mine"
    assert var_dict["package_dir"] == str(plugin_dir / "ham")


@pytest.mark.parametrize("name", ["sys", "system", "co2", "relay", "web"])
def test_reserved_names_are_skipped_with_a_warning(make_node, plugin_dir, logged, name):
    """A package with a reserved name is not loaded, and the log says why."""
    write_package(plugin_dir, name, {"m": "def x_f():\n    return 1\n"})
    node = make_node(name)
    assert node.satellite.packages == [] and node.satellite.failures == []
    assert f"{name}.m.f" not in node.call("system.listMethods")
    assert f"{name!r} skipped" in text_of(logged)


def test_package_named_like_stdlib_module_does_not_shadow_it(make_node, plugin_dir):
    """A plugin package called json loads, and the standard json module is untouched."""
    write_package(plugin_dir, "json", {
        "codec": "import json\ndef x_encode(value):\n    return json.dumps(value)\n",
    })
    node = make_node("json")
    assert node.call("json.codec.encode", [1, 2]) == "[1, 2]"
    assert sys.modules["json"] is json
    assert json.dumps is not None and json.__file__.endswith("json/__init__.py")


BROKEN = {
    "syntax": ({"m": "def x_f(:\n"}, "SyntaxError"),
    "importing": ({"m": "import no_such_module_here\n"}, "ModuleNotFoundError"),
    "raising_init": (
        {"m": "from co2 import Co2Plugin\nclass X_P(Co2Plugin):\n"
              "    def __init__(self, v):\n        raise ValueError('no config')\n"},
        "ValueError: no config",
    ),
    "duplicate": (
        {"m": "from co2 import Co2Plugin\nclass X_P(Co2Plugin):\n    def x_f(self):\n"
              "        return 1\ndef x_f():\n    return 2\n"},
        "both exposed as duplicate.m.f",
    ),
    "no_super_init": (
        {"m": "from co2 import Co2Plugin\nclass X_P(Co2Plugin):\n"
              "    def __init__(self, v):\n        pass\n"},
        "does not call Co2Plugin.__init__",
    ),
    "bad_all": ({"m": ""}, "__all__ must be a list"),
    "missing_module": ({"m": ""}, "module 'absent' failed to import"),
}


@pytest.mark.parametrize("package", sorted(BROKEN))
def test_broken_package_is_left_out_and_others_run(make_node, plugin_dir, logged, package):
    """A broken package is reported with its name and why, and the other packages still run."""
    modules, reason = BROKEN[package]
    init = None
    if package == "bad_all":
        init = "__all__ = 'm'\n"
    if package == "missing_module":
        init = "__all__ = ['m', 'absent']\n"
    write_package(plugin_dir, package, modules, init=init)
    write_package(plugin_dir, "good", {"m": "def x_ok():\n    return 'ok'\n"})
    node = make_node(package, "good")
    assert [f.package for f in node.satellite.failures] == [package]
    assert reason in str(node.satellite.failures[0]) + node.satellite.failures[0].details
    assert node.call("good.m.ok") == "ok"
    assert not [n for n in node.call("system.listMethods") if n.startswith(package + ".")]
    text = text_of(logged)
    assert f"plugin package {package} left out" in text
    assert reason in text


def test_a_broken_package_is_one_warning_saying_where_its_traceback_at_debug(make_node, plugin_dir, logged):
    """One line at warning says what failed and the plugin's own line; the traceback is logged at debug."""
    write_package(plugin_dir, "ham", {"m": "def f():\n    raise KeyError('deep')\nf()\n"})
    node = make_node("ham")
    assert node.satellite.failures
    [warning] = [event for event in logged if "left out" in formatEvent(event)]
    assert warning["log_level"] == LogLevel.warn
    line = formatEvent(warning)
    assert "\n" not in line and "KeyError" in line and line.endswith("(at ham/m.py:2)")
    [debug] = [e for e in logged if e["log_level"] == LogLevel.debug and "Traceback" in formatEvent(e)]
    assert "KeyError" in formatEvent(debug)


def test_a_failing_package_gives_its_created_plugins_their_exit(make_node, plugin_dir, tmp_path):
    """Plugins created before a package failed are given their __exit__."""
    marker = tmp_path / "exited"
    write_package(plugin_dir, "ham", {
        "a": "from co2 import Co2Plugin\nclass X_A(Co2Plugin):\n    def __exit__(self):\n"
             f"        open({str(marker)!r}, 'w').write('done')\n",
        "b": "raise ImportError('later module broken')\n",
    })
    node = make_node("ham")
    assert node.satellite.plugins == []
    assert marker.read_text() == "done"


def test_missing_package_is_a_failure(make_node):
    """A name in plugin_list with no package in plugin_dir is reported."""
    node = make_node("absent")
    assert "no package 'absent'" in str(node.satellite.failures[0])


def test_package_without_all_loads_nothing_with_a_warning(make_node, plugin_dir, logged):
    """A package with no __all__ loads no module, and the log says so."""
    write_package(plugin_dir, "ham", {"m": "def x_f():\n    return 1\n"}, init="")
    node = make_node("ham")
    assert node.satellite.failures == []
    assert "ham.m.f" not in node.call("system.listMethods")
    assert "no __all__" in text_of(logged)


def test_find_packages_lists_descriptions_without_importing(plugin_dir):
    """find_packages lists packages with their first docstring line and imports nothing."""
    write_package(plugin_dir, "ham", {}, init='"""Ham things.\n\nMore."""\nraise SystemExit\n')
    write_package(plugin_dir, "eggs", {}, init="")
    (plugin_dir / "not_a_package").mkdir()
    found = find_packages(str(plugin_dir))
    assert [(p.name, p.description) for p in found] == [("eggs", ""), ("ham", "Ham things.")]


def test_str_of_a_plugin_is_package_module_class(make_node, plugin_dir):
    """str() of a loaded plugin is package.module.ClassName."""
    write_package(plugin_dir, "ham", {"spam": "from co2 import Co2Plugin\nclass X_P(Co2Plugin): pass\n"})
    node = make_node("ham")
    assert str(node.satellite.plugins[0]) == "ham.spam.X_P"
    assert repr(node.satellite.plugins[0]) == "<ham.spam.X_P>"


def test_plugin_outside_a_satellite_cannot_send():
    """A Co2Plugin made by hand says it is not attached when it sends."""
    from co2 import NotAttachedError

    plugin = Co2Plugin({})
    with pytest.raises(NotAttachedError, match="not created by a satellite"):
        plugin.send(1)


def test_two_loads_of_one_directory_are_independent(make_node, plugin_dir):
    """Two satellites loading the same directory get their own modules and instances."""
    write_package(plugin_dir, "ham", {"m": "count = []\ndef x_bump():\n"
                                            "    count.append(1)\n    return len(count)\n"})
    first, second = make_node("ham"), make_node("ham")
    assert first.call("ham.m.bump") == 1
    assert first.call("ham.m.bump") == 2
    assert second.call("ham.m.bump") == 1
