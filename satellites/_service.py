"""
A node put together: the relay's own service (:class:`relay.RelayService`)
given the parts that live here, the HTTP front end, the plugin host of a
satellite and the SSH manhole.

A satellite is a relay plus a plugin host; a standalone relay
(``co2-relay``) is the same service without one.  ``docs/architecture.md``
draws the tree.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory
from twisted.logger import Logger

from co2._config import proxied_endpoint
from co2._services import Listener, Part
from relay import Relay, RelayService
from satellites._dispatch import Dispatcher
from satellites._errors import SatelliteError
from satellites._registry import MethodRegistry
from satellites._routes import make_server
from satellites._satellite import Satellite, relay_dispatcher
from satellites._settings import Config

__all__ = ["HostService", "NodeParts", "StrictLoadError", "node_service", "url_of"]

_log = Logger(namespace="co2.satellite")


class StrictLoadError(SatelliteError):
    """``--strict`` was given and a plugin package failed to load."""


class HostService(Part):
    """
    A satellite's plugin host as a part of its node: starting loads the
    plugins (failing with :class:`StrictLoadError` when ``strict`` and one
    fails); stopping gives each its ``__exit__``.
    """

    def __init__(self, satellite: Satellite, strict: bool = False) -> None:
        self.satellite = satellite
        self.strict = strict

    def start(self) -> None:
        failures = self.satellite.load_plugins()
        if failures and self.strict:
            names = ", ".join(f.package for f in failures)
            raise StrictLoadError(f"--strict: plugin package(s) failed to load: {names}")

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return self.satellite.shutdown()


@dataclass
class NodeParts:
    """What a node is made of, as its pages, its manhole and its command see it."""

    role: str
    """``satellite`` or ``relay``."""
    config: Config
    relay: Relay
    dispatcher: Dispatcher
    satellite: Satellite | None
    """The plugin host; None for a standalone relay."""
    service: RelayService | None = None
    """The node's service tree, once made."""

    @classmethod
    def of(cls, satellite: Satellite) -> NodeParts:
        """The parts of a satellite made on its own (in tests, with no service tree)."""
        return cls("satellite", satellite.config, satellite.relay, satellite.dispatcher, satellite)

    def manhole_namespace(self) -> dict[str, Any]:
        """What a manhole session starts with: the running node's parts."""
        return {
            "service": self.service, "satellite": self.satellite, "relay": self.relay,
            "router": self.relay.router, "config": self.config, "reactor": self.relay.reactor,
        }


def node_service(config: Config, reactor: Any, *, strict: bool = False, role: str = "satellite") -> NodeParts:
    """
    The node ``config`` describes, a satellite or (``role="relay"``) a
    standalone relay, with its service tree in :attr:`NodeParts.service`.

    Raises ``SpoolError`` when the spool cannot be opened and
    ``RelayPluginError`` when a relay plugin cannot be loaded.
    """
    host: HostService | None = None
    if role == "relay":
        if config.host.plugin_list:
            _log.warn("a relay loads no plugins: plugin_list is ignored")
            config = dataclasses.replace(config, host=dataclasses.replace(config.host, plugin_list=()))
        relay = Relay(config, reactor)
        parts = NodeParts(role, config, relay, relay_dispatcher(MethodRegistry(), relay, config), None)
    else:
        satellite = Satellite(config, reactor)
        host = HostService(satellite, strict)
        parts = NodeParts(role, config, satellite.relay, satellite.dispatcher, satellite)
    front = Listener(reactor, config.front.listen, lambda: _front_factory(parts), "the XML-RPC listener")
    manhole = None
    if config.manhole.manhole is not None:
        manhole = Listener(reactor, config.manhole.manhole, lambda: _manhole_factory(parts), "the manhole")
    parts.service = RelayService(parts.relay, front, host=host, manhole=manhole, role=role)
    parts.service.started.addCallback(_started, parts)
    return parts


def _front_factory(parts: NodeParts) -> Factory:
    node, front = parts.config.node, parts.config.front
    return make_server(
        parts.dispatcher, node.max_request_size, parts.relay.reactor,
        max_depth=front.max_xml_depth, max_connections=node.max_connections,
        idle_timeout=front.idle_timeout, request_timeout=node.request_timeout,
        authentication=parts.relay.authentication, node=parts, role=parts.role,
        allowed_hosts=front.allowed_hosts, allowed_origins=front.allowed_origins,
    )


def _manhole_factory(parts: NodeParts) -> Factory:
    # twisted.conch and its libraries load only in nodes with a manhole.
    from satellites._manhole import host_key, manhole_factory, read_authorized_keys

    settings = parts.config.manhole
    assert settings.manhole_host_key is not None
    keys = {user: read_authorized_keys(path) for user, path in settings.manhole_keys.items()}
    return manhole_factory(
        parts.manhole_namespace(), host_key(settings.manhole_host_key),
        passwords=settings.manhole_passwords, authorized_keys=keys,
    )


def _started(_: object, parts: NodeParts) -> None:
    service = parts.service
    assert service is not None
    role, host_id, config = parts.role, parts.relay.host_id, parts.config
    amp = service.links.listener
    if amp is not None and amp.port is not None:
        _log.info("co2 {role} {host_id} listening for AMP links at {url}", role=role, host_id=host_id,
                  url=url_of(amp.port.getHost(), "ssl" if _is_tls(config.relay.amp_listen or "") else "tcp"))
    manhole = service.namedServices.get("manhole")
    if isinstance(manhole, Listener) and manhole.port is not None:
        keys, passwords = config.manhole.manhole_keys, config.manhole.manhole_passwords
        _log.info("co2 {role} manhole (SSH) at {url}; users: {users}", role=role,
                  url=url_of(manhole.port.getHost(), "ssh"),
                  users=", ".join(sorted(keys)) or "from " + str(passwords))
    assert service.front.port is not None
    _log.info(
        "co2 {role} {host_id} serving XML-RPC at {url} with {count} plugin(s)",
        role=role, host_id=host_id,
        url=url_of(service.front.port.getHost(), "https" if _is_tls(config.front.listen) else "http"),
        count=len(parts.satellite.plugins) if parts.satellite is not None else 0,
    )


def url_of(address: object, scheme: str = "http") -> str:
    """The URL clients use for a listening address."""
    if isinstance(address, IPv6Address):
        return f"{scheme}://[{address.host}]:{address.port}/"
    if isinstance(address, IPv4Address):
        return f"{scheme}://{address.host}:{address.port}/"
    name = getattr(address, "name", b"")
    return f"unix:{name.decode(errors='replace') if isinstance(name, bytes) else name}"


def _is_tls(endpoint: str) -> bool:
    try:
        endpoint = proxied_endpoint(endpoint)  # haproxy:ssl:... is TLS too
    except ValueError:
        pass
    return endpoint.split(":", 1)[0].strip().lower() in ("ssl", "tls")
