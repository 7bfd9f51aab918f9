"""The example and ham plugins shipped in plugin/."""

from __future__ import annotations

from co2._config import default_plugin_dir


def test_ham_spam_call_me(make_node):
    """ham.spam.call_me answers with a greeting."""
    node = make_node("ham", plugin_dir=default_plugin_dir())
    assert "hello, bob" in node.call("ham.spam.call_me", "bob")


def test_example_receives_sends_and_counts(make_node, tmp_path):
    """The example keeps what it receives, sends to ham, and counts lines in a thread."""
    node = make_node("example", "ham", plugin_dir=default_plugin_dir(),
                     plugin_config={"example": {"keep": 2}})
    for n in range(3):
        node.call("notify", {"data": n, "host_id": "1@127.0.0.1:1"})
    node.reactor.advance(0)
    assert node.call("example.example.last") == [1, 2]
    assert node.call("ham.spam.received") == 3
    assert node.call("example.example.shout", "hi") is True
    node.reactor.advance(0)
    assert node.call("ham.spam.received") == 4
    assert node.call("example.example.last") == [1, 2]
    path = tmp_path / "lines"
    path.write_text("a\nb\nc\n")
    assert node.call("example.example.count_lines", str(path)) == 3
    assert node.call("example.example.add", 2, 3) == 5
