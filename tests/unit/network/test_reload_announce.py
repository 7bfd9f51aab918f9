"""A hot reload is announced: linked nodes learn the reloaded package's methods at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from doubles import MemoryNetwork

from co2.testing import TestReactor, write_package
from satellites import Config, Satellite, make_config

V1 = "def x_one() -> int:\n    return 1\n"
V2 = "def x_two() -> int:\n    return 2\n"


def test_a_reload_is_announced_to_a_linked_peer(
    reactor: TestReactor, network: MemoryNetwork, plugin_dir: Path
) -> None:
    """b's co2.get_method_names and calls follow a's reload without waiting for a refresh."""
    write_package(plugin_dir, "hot", {"m": V1})
    a = Satellite(make_config({"plugin_dir": str(plugin_dir), "plugin_list": ["hot"]}), reactor,
                  host_id="1@10.0.0.1:2004")
    b = Satellite(Config(), reactor, host_id="2@10.0.0.2:2004")
    a.load_plugins()
    b.load_plugins()
    network.add("a", a)
    network.add("b", b)
    network.link("b", "a")
    try:
        assert "hot.m.one" in b.get_method_names()
        (plugin_dir / "hot" / "m.py").write_text(V2)
        done: list[Any] = []
        a.reload_package("hot").addBoth(done.append)
        network.settle()
        assert done and done[0]["methods"] == ["hot.m.two"]
        names = b.get_method_names()
        assert "hot.m.two" in names and "hot.m.one" not in names
        answers: list[Any] = []
        b.dispatcher.call(None, "hot.m.two", ()).addBoth(answers.append)
        network.settle()
        assert answers == [2]
    finally:
        for satellite in (a, b):
            satellite.shutdown()
            satellite.relay.close()
        reactor.advance(60)
