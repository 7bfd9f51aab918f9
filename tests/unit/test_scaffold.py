"""co2-satellite new-plugin: the package it writes and the names it refuses."""

from __future__ import annotations

import io

import pytest

from co2.testing import PluginHarness
from satellites._cli import new_plugin_main
from satellites._loader import find_packages
from satellites._scaffold import class_name, files_for


def run(*argv):
    """Run new-plugin with ``argv``; its status, stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    status = new_plugin_main(list(argv), out, err)
    return status, out.getvalue(), err.getvalue()


def test_writes_init_module_and_test(tmp_path):
    """The package has __init__.py (docstring, __all__), NAME.py and tests/test_NAME.py."""
    status, out, err = run("my_tally", "--dir", str(tmp_path / "plugins"))
    assert (status, err) == (0, "")
    package = tmp_path / "plugins" / "my_tally"
    assert sorted(str(p.relative_to(package)) for p in package.rglob("*.py")) == [
        "__init__.py", "my_tally.py", "tests/test_my_tally.py",
    ]
    assert str(package) in out
    [info] = find_packages(str(tmp_path / "plugins"))
    assert info.description.startswith("The my_tally plugin")
    assert "class X_MyTally(Co2Plugin):" in (package / "my_tally.py").read_text()


def test_the_package_loads_with_receive_and_one_method(tmp_path):
    """The written package loads: one X_ plugin with receive and the method NAME.NAME.hello."""
    run("greeter", "--dir", str(tmp_path))
    with PluginHarness(tmp_path / "greeter") as harness:
        assert harness.methods == ["greeter.greeter.hello"]
        assert harness.call("greeter.greeter.hello", "bo") == "hello, bo"
        harness.deliver(1)
        assert harness.state("X_Greeter") == {"received": 1}


def test_default_dir_is_plugin_in_the_current_directory(tmp_path, monkeypatch):
    """Without --dir the package goes to ./plugin, made if missing."""
    monkeypatch.chdir(tmp_path)
    assert run("ham")[0] == 0
    assert (tmp_path / "plugin" / "ham" / "__init__.py").is_file()


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("a-b", "'a-b' is not a valid package name"),
        ("class", "'class' is not a valid package name"),
        ("1st", "'1st' is not a valid package name"),
        ("_hidden", "'_hidden' starts with '_'"),
        ("sys", "'sys' is a reserved name"),
        ("system", "'system' is a reserved name"),
        ("co2", "'co2' is a reserved name"),
        ("relay", "'relay' is a reserved name"),
        ("web", "'web' is a reserved name"),
    ],
)
def test_bad_names_are_refused_in_one_line(tmp_path, name, problem):
    """A name that is not a package name, or is reserved, exits 2 with one line and writes nothing."""
    status, _, err = run(name, "--dir", str(tmp_path))
    assert status == 2
    assert err.count("\n") == 1
    assert err.startswith(f"co2-satellite: new-plugin: {problem}")
    assert list(tmp_path.iterdir()) == []


def test_an_existing_directory_is_refused(tmp_path):
    """A package directory that exists already exits 2 and is left as it was."""
    (tmp_path / "ham").mkdir()
    (tmp_path / "ham" / "keep.txt").write_text("mine")
    status, _, err = run("ham", "--dir", str(tmp_path))
    assert status == 2
    assert err == f"co2-satellite: new-plugin: {tmp_path / 'ham'} already exists\n"
    assert [p.name for p in (tmp_path / "ham").iterdir()] == ["keep.txt"]


@pytest.mark.parametrize("argv", [(), ("a", "b"), ("--nonsense", "a")])
def test_usage_errors_exit_2(argv):
    """No name, two names or an unknown option exit 2 with one line."""
    status, _, err = run(*argv)
    assert status == 2
    assert err.count("\n") == 1


def test_class_names():
    """The X_ class is the package name in CamelCase."""
    assert class_name("greeter") == "X_Greeter"
    assert class_name("my_tally2") == "X_MyTally2"
    assert set(files_for("a")) == {"__init__.py", "a.py", "tests/test_a.py"}


def test_new_plugin_is_a_twisted_sub_command(tmp_path):
    """co2-satellite's command line takes new-plugin as a usage.Options sub-command, with its own options."""
    from satellites._cli import CommandOptions

    options = CommandOptions()
    options.parseOptions(["new-plugin", "greeter", "--dir", str(tmp_path)])
    assert options.subCommand == "new-plugin"
    assert (options.subOptions["name"], options.subOptions["dir"]) == ("greeter", str(tmp_path))
    assert not hasattr(options, "config")  # no config is read for it
