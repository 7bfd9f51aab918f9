"""Fixtures for tests of satellites joined by in-memory AMP links."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from doubles import RECORDER, MemoryNetwork

from co2.testing import TestReactor, write_package
from satellites import Satellite, make_config

CALC = """
from twisted.internet import defer
from xmlrpc.client import Fault

def x_add(a, b):
    return a + b

def x_refuse(code):
    raise Fault(code, "refused on purpose")

def x_explode():
    raise ValueError("exploded")

def x_never():
    return defer.Deferred()
"""


@pytest.fixture(scope="session")
def plugin_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A plugin directory with ``rec`` (records what it receives) and ``calc`` (x_ functions)."""
    root = tmp_path_factory.mktemp("network-plugins")
    write_package(root, "rec", {"m": RECORDER})
    write_package(root, "calc", {"ops": CALC})
    return root


@pytest.fixture(scope="session")
def build(plugin_root: Path) -> Callable[..., Satellite]:
    """
    Makes a satellite on a given reactor: ``build(reactor, index, *packages,
    **settings)`` has host_id ``<index>@10.0.0.<index>:2004`` and the
    packages loaded (``rec`` first, when given, is ``plugins[0]``).
    """

    def build(reactor: Any, index: int, *packages: str, **settings: Any) -> Satellite:
        config = make_config({"plugin_dir": str(plugin_root), "plugin_list": packages, **settings})
        satellite = Satellite(config, reactor, host_id=f"{index}@10.0.0.{index}:2004")
        satellite.load_plugins()
        return satellite

    return build


@pytest.fixture(scope="session")
def stop() -> Callable[[list[Satellite], Any], None]:
    """Stops satellites: ``stop(satellites, reactor)`` stops each relay and unloads the plugins."""

    def stop(satellites: list[Satellite], reactor: Any) -> None:
        for satellite in satellites:
            satellite.shutdown()
            satellite.relay.close()
        reactor.advance(60)

    return stop


@pytest.fixture
def network(reactor: TestReactor) -> MemoryNetwork:
    """An empty in-memory network on the test's reactor."""
    return MemoryNetwork(reactor)


@pytest.fixture
def make_satellite(
    reactor: TestReactor,
    network: MemoryNetwork,
    build: Callable[..., Satellite],
    stop: Callable[[list[Satellite], Any], None],
) -> Iterator[Callable[..., Satellite]]:
    """Build satellites and add them to ``network`` by name; stops them all afterwards."""
    made: list[Satellite] = []

    def make(name: str, *packages: str, **settings: Any) -> Satellite:
        satellite = build(reactor, len(made) + 1, *packages, **settings)
        network.add(name, satellite)
        made.append(satellite)
        return satellite

    yield make
    stop(made, reactor)
