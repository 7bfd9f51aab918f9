"""Fixtures for the in-memory unit tests: no sockets, no global reactor."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from twisted.logger import globalLogPublisher

from co2.testing import MemoryXMLRPCClient, TestReactor
from satellites import Satellite, make_config, make_server

HOST_ID = "1234@127.0.0.1:2004"


@pytest.fixture
def reactor() -> TestReactor:
    """A clock whose thread pool runs inline."""
    return TestReactor()


@pytest.fixture
def logged() -> Iterator[list[dict[str, Any]]]:
    """Every log event emitted during the test."""
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


@dataclass
class Node:
    """A satellite with its in-memory XML-RPC client."""

    satellite: Satellite
    client: MemoryXMLRPCClient
    reactor: TestReactor

    def call(self, method: str, *params: Any) -> Any:
        """Call ``method`` and return its result synchronously."""
        d = self.client.call(method, *params)
        results: list[Any] = []
        d.addBoth(results.append)
        if not results:
            self.reactor.advance(0)
        assert results, f"{method} did not answer"
        if isinstance(results[0], Exception) or hasattr(results[0], "raiseException"):
            results[0].raiseException()
        return results[0]

    def plugin(self, name: str) -> Any:
        """The loaded plugin whose ``str()`` is ``name``."""
        return next(p for p in self.satellite.plugins if str(p) == name)


@pytest.fixture
def make_node(reactor: TestReactor, plugin_dir: Path) -> Iterator[Callable[..., Node]]:
    """Build satellites over ``plugin_dir``; shuts them all down afterwards."""
    nodes: list[Node] = []

    def make(*packages: str, max_request_size: int = 1024 * 1024, **settings: Any) -> Node:
        config = make_config({
            "plugin_dir": str(settings.pop("plugin_dir", plugin_dir)),
            "plugin_list": packages,
            "max_request_size": max_request_size,
            **settings,
        })
        satellite = Satellite(config, reactor, host_id=HOST_ID)
        satellite.load_plugins()
        server = make_server(satellite.dispatcher, max_request_size, reactor)
        node = Node(satellite, MemoryXMLRPCClient(server), reactor)
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        node.satellite.shutdown()
        reactor.advance(60)
