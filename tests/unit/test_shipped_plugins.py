"""The example and ham plugins shipped in plugin/, each on a PluginHarness."""

from __future__ import annotations

import os
import xmlrpc.client

import pytest

from co2 import faults
from co2._config import default_plugin_dir
from co2.testing import PluginHarness


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


def test_example_counts_lines_in_a_thread(example, tmp_path):
    """example.example.count_lines counts a file's lines; a missing file is fault -32500."""
    path = tmp_path / "lines"
    path.write_text("a\nb\nc\n")
    assert example.call("example.example.count_lines", str(path)) == 3
    with pytest.raises(xmlrpc.client.Fault) as info:
        example.call("example.example.count_lines", str(tmp_path / "missing"))
    assert info.value.faultCode == faults.APPLICATION_ERROR
    assert info.value.faultString.startswith("FileNotFoundError:")


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
