"""
A node as a Twisted service: listen, load the plugins, link up with the
peers, serve; on stop, stop listening, give every plugin its ``__exit__``
and close the links.

A satellite and a standalone relay are the same service; the relay loads
no plugins.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from twisted.application.service import Service
from twisted.internet import endpoints
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger

from co2._config import Config
from co2._message import make_host_id
from relay._relay import AMPListenError, stop_listening
from satellites._errors import SatelliteError
from satellites._routes import make_server
from satellites._satellite import Satellite

__all__ = ["ListenError", "SatelliteService", "StrictLoadError", "advertised_address"]

_log = Logger(namespace="co2.satellite")


class ListenError(SatelliteError):
    """The XML-RPC endpoint could not be bound."""


class StrictLoadError(SatelliteError):
    """``--strict`` was given and a plugin package failed to load."""


def advertised_address(address: object) -> tuple[str, int]:
    """
    The ``(ip, port)`` a ``host_id`` names for a listening address: an
    unspecified address (all interfaces) or a UNIX socket is named by
    loopback.
    """
    if isinstance(address, (IPv4Address, IPv6Address)):
        host = address.host
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1" if isinstance(address, IPv4Address) else "::1"
        return host, address.port
    return "127.0.0.1", 0


def url_of(address: object, scheme: str = "http") -> str:
    """The URL clients use for a listening address."""
    if isinstance(address, IPv6Address):
        return f"{scheme}://[{address.host}]:{address.port}/"
    if isinstance(address, IPv4Address):
        return f"{scheme}://{address.host}:{address.port}/"
    name = getattr(address, "name", b"")
    return f"unix:{name.decode(errors='replace') if isinstance(name, bytes) else name}"


def _is_tls(endpoint: str) -> bool:
    return endpoint.split(":", 1)[0].strip().lower() in ("ssl", "tls")


class SatelliteService(Service):
    """
    Runs one node: a satellite, or with ``role="relay"`` a standalone relay
    (no plugins).  ``started`` fires once it listens with its plugins
    loaded and its links started, or fails with :class:`ListenError` or
    :class:`StrictLoadError`.

    Raises ``SpoolError`` when the spool cannot be opened and
    ``RelayPluginError`` when a relay plugin cannot be loaded.
    """

    def __init__(
        self, config: Config, reactor: Any, strict: bool = False, role: str = "satellite"
    ) -> None:
        self.role = role
        if role == "relay" and config.plugin_list:
            _log.warn("a relay loads no plugins: plugin_list is ignored")
            config = dataclasses.replace(config, plugin_list=())
        self.config = config
        self.reactor = reactor
        self.strict = strict
        self.satellite = Satellite(config, reactor)
        self.port: IListeningPort | None = None
        self.manhole_port: IListeningPort | None = None
        self.started: Deferred[None] = Deferred()

    def startService(self) -> None:
        super().startService()
        self._start().chainDeferred(self.started)

    @inlineCallbacks
    def _start(self) -> Any:
        config = self.config
        server = make_server(
            self.satellite.dispatcher, config.max_request_size, self.reactor,
            max_depth=config.max_xml_depth, max_connections=config.max_connections,
            idle_timeout=config.idle_timeout, request_timeout=config.request_timeout,
            authentication=self.satellite.relay.authentication, node=self.satellite, role=self.role,
            allowed_hosts=config.allowed_hosts, allowed_origins=config.allowed_origins,
        )
        endpoint = endpoints.serverFromString(self.reactor, self.config.listen)
        try:
            self.port = yield endpoint.listen(server)
        except Exception as e:
            raise ListenError(f"cannot listen on {self.config.listen!r}: {e}") from None
        assert self.port is not None
        host, port = advertised_address(self.port.getHost())
        self.satellite.host_id = make_host_id(host, port)
        failures = self.satellite.load_plugins()
        if failures and self.strict:
            names = ", ".join(f.package for f in failures)
            raise StrictLoadError(f"--strict: plugin package(s) failed to load: {names}")
        if config.manhole is not None:
            yield self._open_manhole(config.manhole)
        relay = self.satellite.relay
        try:
            amp_port = yield relay.listen()
        except AMPListenError as e:
            raise ListenError(str(e)) from None
        relay.startService()
        if amp_port is not None:
            scheme = "ssl" if _is_tls(config.amp_listen or "") else "tcp"
            _log.info("co2 {role} {host_id} listening for AMP links at {url}", role=self.role,
                      host_id=self.satellite.host_id, url=url_of(amp_port.getHost(), scheme))
        _log.info(
            "co2 {role} {host_id} serving XML-RPC at {url} with {count} plugin(s)",
            role=self.role, host_id=self.satellite.host_id,
            url=url_of(self.port.getHost(), "https" if _is_tls(config.listen) else "http"),
            count=len(self.satellite.plugins),
        )

    @inlineCallbacks
    def _open_manhole(self, description: str) -> Any:
        # twisted.conch and its libraries load only in nodes with a manhole.
        from co2._ssh import read_authorized_keys
        from satellites._manhole import host_key, manhole_factory

        config = self.config
        assert config.manhole_host_key is not None
        try:
            keys = {user: read_authorized_keys(path) for user, path in config.manhole_keys.items()}
            factory = manhole_factory(
                self.manhole_namespace(), host_key(config.manhole_host_key),
                passwords=config.manhole_passwords, authorized_keys=keys,
            )
            endpoint = endpoints.serverFromString(self.reactor, description)
            self.manhole_port = yield endpoint.listen(factory)
        except Exception as e:
            raise ListenError(f"cannot open the manhole on {description!r}: {e}") from None
        assert self.manhole_port is not None
        _log.info("co2 {role} manhole (SSH) at {url}; users: {users}", role=self.role,
                  url=url_of(self.manhole_port.getHost(), "ssh"),
                  users=", ".join(sorted(config.manhole_keys)) or "from " + str(config.manhole_passwords))

    def manhole_namespace(self) -> dict[str, Any]:
        """What a manhole session starts with: the running node's parts."""
        return {
            "service": self, "satellite": self.satellite, "relay": self.satellite.relay,
            "router": self.satellite.router, "config": self.config, "reactor": self.reactor,
        }

    @inlineCallbacks
    def stopService(self) -> Any:
        super().stopService()
        manhole, self.manhole_port = self.manhole_port, None
        yield stop_listening(manhole, "the manhole")
        port, self.port = self.port, None
        yield stop_listening(port, "the XML-RPC listener")
        yield self.satellite.shutdown()
        if self.satellite.relay.running:
            yield self.satellite.relay.stopService()
        _log.info("co2 {role} stopped", role=self.role)
