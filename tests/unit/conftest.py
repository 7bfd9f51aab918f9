"""Fixtures for the in-memory unit tests: no sockets, no global reactor."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from twisted.logger import globalLogPublisher

from co2 import Config
from co2.testing import MemoryXMLRPCClient, TestReactor
from satellites import Satellite, XMLRPCResource, make_site

HOST_ID = "1234@127.0.0.1:2004"


def write_package(
    root: Path, name: str, modules: dict[str, str], init: str | None = None
) -> Path:
    """Write a plugin package ``name`` with ``modules`` (name to source) under ``root``."""
    package = root / name
    package.mkdir(parents=True)
    if init is None:
        init = f'"""The {name} package."""\n__all__ = {list(modules)!r}\n'
    (package / "__init__.py").write_text(textwrap.dedent(init))
    for module, source in modules.items():
        (package / f"{module}.py").write_text(textwrap.dedent(source))
    return package


@pytest.fixture
def reactor() -> TestReactor:
    """A clock whose thread pool runs inline."""
    return TestReactor()


@pytest.fixture
def plugin_dir(tmp_path: Path) -> Path:
    """An empty plugin directory."""
    path = tmp_path / "plugins"
    path.mkdir()
    return path


@pytest.fixture
def logged() -> Iterator[list[dict[str, Any]]]:
    """Every log event emitted during the test."""
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


def text_of(events: list[dict[str, Any]]) -> str:
    """All the log events as text, failures' tracebacks included."""
    from twisted.logger import formatEvent

    parts = []
    for event in events:
        parts.append(formatEvent(event))
        if "log_failure" in event:
            parts.append(event["log_failure"].getTraceback())
    return "\n".join(parts)


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
        config = Config(
            plugin_dir=str(settings.pop("plugin_dir", plugin_dir)),
            plugin_list=packages,
            max_request_size=max_request_size,
            **settings,
        )
        satellite = Satellite(config, reactor, host_id=HOST_ID)
        satellite.load_plugins()
        site = make_site(XMLRPCResource(satellite.dispatcher), max_request_size, reactor)
        node = Node(satellite, MemoryXMLRPCClient(site), reactor)
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        node.satellite.shutdown()
        reactor.advance(60)
