"""
Test doubles of the project's own tests (plugin authors get theirs from
``co2.testing``):

- :data:`RECORDER` — a plugin module that keeps what it receives.
- :func:`format_events` — captured log events as text.
- :class:`MemoryNetwork` — nodes joined by in-memory AMP links that a
  test connects, cuts and runs until nothing moves.

It knows relay internals (``relay._links``), as the routing tests do.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import IProtocol
from twisted.internet.task import Clock
from twisted.logger import formatEvent
from twisted.python.failure import Failure
from twisted.test import iosim

from co2._message import parse_host_id
from co2.testing import TestReactor
from relay._dialling import _PeerFactory
from relay._links import LinkOwner, LinkProtocol, LinkServerFactory

__all__ = ["RECORDER", "MemoryLink", "MemoryNetwork", "NotSettled", "format_events"]


RECORDER = """
from co2 import Co2Plugin

class X_Recorder(Co2Plugin):
    def __init__(self, var_dict):
        Co2Plugin.__init__(self, var_dict)
        self.got = []

    def receive(self, data_dict):
        self.got.append(data_dict)

    def x_send(self, data):
        self.send(data)
        return True
"""
"""
The source of a plugin module whose ``X_Recorder`` keeps every message it
receives in ``got`` and sends ``data`` when ``x_send(data)`` is called.
"""


def format_events(events: Iterable[dict[str, Any]]) -> str:
    """Log events (as ``twisted.logger`` emits them) as text, tracebacks included."""
    parts = []
    for event in events:
        parts.append(formatEvent(event))
        if "log_failure" in event:
            parts.append(event["log_failure"].getTraceback())
    return "\n".join(parts)


class NotSettled(AssertionError):
    """A :class:`MemoryNetwork` kept moving after its bound of rounds."""


class MemoryLink:
    """
    One in-memory connection between two nodes: ``client`` is the
    protocol of the connecting side (at ``client_address``), ``server``
    the ``LinkProtocol`` of the accepting one (at ``server_address``).
    Bytes cross only when the network settles or ``pump.pump()`` (an
    ``iosim.IOPump``) is called.
    """

    def __init__(
        self,
        client: IProtocol,
        server: LinkProtocol,
        client_address: tuple[str, int],
        server_address: tuple[str, int],
        clock: Clock,
    ) -> None:
        self.client = client
        self.server = server
        self.client_address = client_address
        self.server_address = server_address
        client_host = IPv4Address("TCP", *client_address)
        server_host = IPv4Address("TCP", *server_address)
        self.client_transport = iosim.FakeTransport(client, False, client_host, server_host)
        self.server_transport = iosim.FakeTransport(server, True, server_host, client_host)
        self.pump = iosim.connect(
            server, self.server_transport, client, self.client_transport, greet=False, clock=clock
        )
        self.refused: Failure | None = None
        """Why the peer refused Hello, for a link made by :meth:`MemoryNetwork.link`."""

    @property
    def up(self) -> bool:
        """Whether the accepting side took the Hello and the connection is open."""
        return self.server.introduced and not self.closed

    @property
    def closed(self) -> bool:
        """Whether both sides have seen the connection end."""
        return bool(self.client_transport.disconnected and self.server_transport.disconnected)

    def cut(self) -> None:
        """
        Drop the connection as a failed network would: bytes not yet
        delivered are lost and both sides see ``connectionLost`` with
        ``ConnectionLost``.  Cutting a closed link does nothing.
        """
        if self.closed:
            return
        for transport in (self.client_transport, self.server_transport):
            transport.disconnecting = transport.disconnected = True
            transport.stream = []
        reason = Failure(ConnectionLost("the link was cut"))
        self.server.connectionLost(reason)
        self.client.connectionLost(reason)


class MemoryNetwork:
    """
    Nodes joined by in-memory AMP links, all on one ``reactor`` (a
    ``Clock``, such as :class:`TestReactor`).

    A node is a ``satellites.Satellite`` (a standalone relay is one with
    no plugins) or anything that has a ``relay`` attribute, or a relay
    itself.  :meth:`link` connects two nodes as a ``peers`` entry would;
    :meth:`settle` runs the network until nothing moves.  ``nodes`` and
    ``addresses`` map each name to its node and its ``(ip, port)``.
    """

    def __init__(self, reactor: Clock, max_rounds: int = 10_000) -> None:
        self.reactor = reactor
        self.max_rounds = max_rounds
        self.nodes: dict[str, Any] = {}
        self.addresses: dict[str, tuple[str, int]] = {}
        self._links: list[tuple[str | None, str, MemoryLink]] = []
        self._ports = itertools.count(40000)

    def add(self, name: str, node: Any, address: tuple[str, int] | None = None) -> Any:
        """
        Add ``node`` under ``name`` and start its relay (which announces
        its methods).  Its links come from the IP of ``address`` and are
        accepted at ``address``; by default the IP of the node's
        ``host_id`` (or ``10.0.0.<n>``) and port 2005.  Returns ``node``.
        """
        if name in self.nodes:
            raise ValueError(f"there is already a node named {name!r}")
        if address is None:
            try:
                host = parse_host_id(getattr(node, "host_id", None)).host
            except ValueError:
                host = f"10.0.0.{len(self.nodes) + 1}"
            address = (host, 2005)
        self.nodes[name] = node
        self.addresses[name] = address
        relay = self.relay(name)
        if hasattr(relay, "directory"):
            relay.start()
        return node

    def relay(self, name: str) -> LinkOwner:
        """The relay of the node ``name``."""
        node = self.nodes[name]
        relay: LinkOwner = getattr(node, "relay", node)
        return relay

    def connect(self, protocol: IProtocol, to: str, source: str | tuple[str, int]) -> MemoryLink:
        """
        Connect ``protocol`` to a new inbound link of node ``to``, as its
        AMP listener would accept it.  ``source`` is the name of the
        connecting node (its IP and a new port) or an ``(ip, port)``.
        Nothing crosses until :meth:`settle` or the link's ``pump``.
        """
        return self._connect(protocol, to, source, None)

    def _connect(
        self, protocol: IProtocol, to: str, source: str | tuple[str, int], origin: str | None
    ) -> MemoryLink:
        if isinstance(source, str):
            source = (self.addresses[source][0], next(self._ports))
        server_address = self.addresses[to]
        server = LinkServerFactory(self.relay(to)).buildProtocol(IPv4Address("TCP", *source))
        assert server is not None
        link = MemoryLink(protocol, server, source, server_address, self.reactor)
        self._links.append((origin, to, link))
        return link

    def link(self, a: str, b: str, credentials: tuple[str, str] | None = None) -> MemoryLink:
        """
        Link node ``a`` to node ``b`` as ``a`` would with ``b`` among its
        peers, proving itself with ``credentials`` (user name, password)
        if given: the link's key on ``a`` is ``peer:<b>``.  Sends Hello and
        settles; a refusal is kept in the link's ``refused``.
        """
        client = _PeerFactory(self.relay(a), f"peer:{b}", credentials).buildProtocol(
            IPv4Address("TCP", *self.addresses[b])
        )
        link = self._connect(client, b, a, a)  # the client says Hello as it connects
        self.settle()
        link.refused = client.refused
        return link

    def between(self, a: str, b: str) -> list[MemoryLink]:
        """The open links made by :meth:`link` between ``a`` and ``b`` (either way)."""
        return [
            link for (x, y, link) in self._links
            if {x, y} == {a, b} and not link.closed
        ]

    def cut(self, a: str, b: str) -> None:
        """Cut every open link between ``a`` and ``b``; raises ``KeyError`` if there is none."""
        links = self.between(a, b)
        if not links:
            raise KeyError(f"no open link between {a!r} and {b!r}")
        for link in links:
            link.cut()

    def _due(self) -> bool:
        if isinstance(self.reactor, TestReactor) and self.reactor._from_threads:
            return True
        now = self.reactor.seconds()
        return any(call.getTime() <= now for call in self.reactor.getDelayedCalls())

    def settle(self) -> int:
        """
        Pump every open link and run what is due now (``advance(0)``),
        again and again until a round moves nothing.  Time does not pass.
        Returns the number of rounds; raises :class:`NotSettled` after
        ``max_rounds``.
        """
        for rounds in range(1, self.max_rounds + 1):
            moved = False
            for _, _, link in self._links:
                if not link.closed and link.pump.pump(advanceClock=False):
                    moved = True
            busy = self._due()
            self.reactor.advance(0)
            if not moved and not busy:
                self._links = [entry for entry in self._links if not entry[2].closed]
                return rounds
        raise NotSettled(f"the network still moved after {self.max_rounds} rounds")
