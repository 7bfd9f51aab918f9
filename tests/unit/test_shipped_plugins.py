"""The example and ham plugins shipped in plugin/, each on a PluginHarness."""

from __future__ import annotations

import builtins
import io
import os
import xmlrpc.client

import pytest

from co2 import faults
from co2.testing import PluginHarness
from satellites._settings import default_plugin_dir


@pytest.fixture
def ham():
    """The shipped ham package on a harness."""
    with PluginHarness(default_plugin_dir(), "ham") as harness:
        yield harness


@pytest.fixture
def example():
    """The shipped example package on a harness, keeping 2 messages."""
    with PluginHarness(os.path.join(default_plugin_dir(), "example"), var_dict={"keep": 2}) as harness:
        yield harness


def test_ham_call_me_greets(ham):
    """ham.spam.call_me greets its argument, or the world, naming the plugin."""
    assert ham.call("ham.spam.call_me", "bob") == "hello, bob, from ham.spam.X_Spam"
    assert ham.call("ham.spam.call_me") == "hello, world, from ham.spam.X_Spam"


def test_ham_counts_what_it_receives(ham):
    """ham.spam.received counts the messages delivered to it."""
    assert ham.call("ham.spam.received") == 0
    for n in range(3):
        ham.deliver(n)
    assert ham.call("ham.spam.received") == 3


def test_ham_methods_and_help(ham):
    """ham exposes call_me and received, with their docstrings as help."""
    assert ham.methods == ["ham.spam.call_me", "ham.spam.received"]
    assert ham.call("system.methodHelp", "ham.spam.call_me") == "Return a greeting for ``name``."
    assert ham.call("system.methodSignature", "ham.spam.call_me") == [["string", "string"]]


def test_example_keeps_the_last_messages(example):
    """example.example.last holds the data of the last `keep` messages, oldest first."""
    assert example.call("example.example.last") == []
    for n in range(3):
        example.deliver(n)
    assert example.call("example.example.last") == [1, 2]
    assert "[example.example.X_Example#debug] received 2 from 2@127.0.0.1:2005" in example.log


def test_example_shout_sends(example):
    """example.example.shout sends its argument and returns True; the example does not receive it."""
    assert example.call("example.example.shout", {"hi": [1, 2]}) is True
    assert example.sent_by() == [{"hi": [1, 2]}]
    assert example.call("example.example.last") == []


def test_example_counts_the_lines_of_a_text_in_a_thread(example):
    """example.example.count_lines counts the lines of the text it is given; a non-string is fault -32500."""
    assert example.call("example.example.count_lines", "a\nb\nc\n") == 3
    assert example.call("example.example.count_lines", "") == 0
    with pytest.raises(xmlrpc.client.Fault) as info:
        example.call("example.example.count_lines", 3)
    assert info.value.faultCode == faults.APPLICATION_ERROR
    assert info.value.faultString == "TypeError: text must be a string, not int"


def test_example_count_lines_reads_no_file_it_is_named(example, tmp_path):
    """Given the path of a three-line file, count_lines counts the one line of the path itself."""
    path = tmp_path / "lines"
    path.write_text("a\nb\nc\n")
    assert example.call("example.example.count_lines", str(path)) == 1


def shipped_packages():
    """The plugin packages shipped in plugin/."""
    root = default_plugin_dir()
    packages = [name for name in os.listdir(root) if os.path.isfile(os.path.join(root, name, "__init__.py"))]
    return sorted(packages)


@pytest.mark.parametrize("package", shipped_packages())
def test_no_shipped_plugin_method_opens_a_file_a_caller_names(package, tmp_path, monkeypatch):
    """Every x_ method of every shipped package, called with a file's path as each argument, opens no file."""
    secret = tmp_path / "secret"
    secret.write_text("do not read\n")
    with PluginHarness(default_plugin_dir(), package) as harness:
        opened = []
        real_open, real_os_open = builtins.open, os.open

        def spy_open(file, *args, **kwargs):
            opened.append(os.fspath(file) if isinstance(file, (str, bytes, os.PathLike)) else file)
            return real_open(file, *args, **kwargs)

        def spy_os_open(file, *args, **kwargs):
            opened.append(os.fspath(file))
            return real_os_open(file, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", spy_open)
        monkeypatch.setattr(io, "open", spy_open)
        monkeypatch.setattr(os, "open", spy_os_open)
        methods = [name for name in harness.methods if name.startswith(f"{package}.")]
        assert methods
        for name in methods:
            for arity in range(4):
                try:
                    harness.call(name, *[str(secret)] * arity)
                except xmlrpc.client.Fault:
                    pass  # a wrong number of arguments, or a value refused: only what is opened matters
        monkeypatch.undo()
    assert [path for path in opened if "secret" in str(path)] == []


def test_example_add(example):
    """example.example.add adds two integers; one is not enough (fault -32602)."""
    assert example.call("example.example.add", 2, 3) == 5
    with pytest.raises(xmlrpc.client.Fault) as info:
        example.call("example.example.add", 2)
    assert info.value.faultCode == faults.INVALID_PARAMS


def test_example_logs_its_start_and_stop():
    """The example logs when it is ready and, in __exit__, when it stops."""
    harness = PluginHarness(os.path.join(default_plugin_dir(), "example"))
    assert harness.log[0] == (
        "[example.example.X_Example#info] example plugin ready, keeping the last 10 messages"
    )
    harness.shutdown()
    assert "[example.example.X_Example#info] example plugin stopping" in harness.log
