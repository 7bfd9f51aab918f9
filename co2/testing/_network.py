"""
Nodes joined by in-memory AMP links: a network that a test (or a
simulation of thousands of nodes) connects, cuts and runs until nothing
moves, with no socket and no global reactor.

- :class:`MemoryNetwork` — the nodes, their links, and the rounds that
  move bytes between them.
- :class:`MemoryLink` — one connection, which can be cut.
- :class:`NotSettled` — a network that kept moving past its bound.
"""

from __future__ import annotations

import itertools
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import IProtocol
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.test import iosim

from co2._errors import Co2Error
from co2._message import parse_host_id
from co2.testing._memory import TestReactor, calls_due
from relay import LinkProtocol, LinkServerFactory, PeerFactory, Relay

__all__ = ["MemoryLink", "MemoryNetwork", "NotSettled"]


class NotSettled(Co2Error, AssertionError):
    """A :class:`MemoryNetwork` kept moving after its bound of rounds."""


class MemoryLink:
    """
    One in-memory connection between two nodes: ``client`` is the
    protocol of the connecting side (at ``client_address``), ``server``
    the ``LinkProtocol`` of the accepting one (at ``server_address``).
    Bytes cross only when the network steps or settles, or :meth:`carry`
    or ``pump.pump()`` (an ``iosim.IOPump``) is called.
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
        self.carried = 0
        """Bytes that crossed the link by :meth:`collect`, both ways."""

    @property
    def refused(self) -> Failure | None:
        """Why the peer refused Hello, for a link made by :meth:`MemoryNetwork.link`."""
        refused: Failure | None = getattr(self.client, "refused", None)
        return refused

    @property
    def up(self) -> bool:
        """Whether the accepting side took the Hello and the connection is open."""
        return self.server.introduced and not self.closed

    @property
    def closed(self) -> bool:
        """Whether both sides have seen the connection end."""
        return bool(self.client_transport.disconnected and self.server_transport.disconnected)

    @property
    def idle(self) -> bool:
        """Whether a round would move nothing: no bytes written, no close to tell, no producer or TLS."""
        return not any(
            transport.stream or transport.disconnecting or transport.producer or transport.tls
            for transport in (self.client_transport, self.server_transport)
        )

    def collect(self) -> tuple[Any, Any]:
        """
        Take what each side wrote since the last time, the client's and
        the server's, for :meth:`deliver`; the bytes are counted in
        :attr:`carried`.
        """
        written = self.client_transport.getOutBuffer(), self.server_transport.getOutBuffer()
        self.carried += sum(len(data) for data in written if isinstance(data, bytes))
        return written

    def deliver(self, collected: tuple[Any, Any]) -> bool:
        """
        Give each side what the other wrote (as :meth:`collect` took it),
        or, when nothing was written, tell a side that the other closed:
        what ``pump.pump()`` does, once, without moving the clock.  Whether
        anything moved.
        """
        if self.closed:
            return False
        client, server = self.client_transport, self.server_transport
        for transport in (client, server):
            if transport.producer and not transport.streamingProducer:
                transport.producer.resumeProducing()
        from_client, from_server = collected
        if from_client:
            server.bufferReceived(from_client)
        if from_server:
            client.bufferReceived(from_server)
        if from_client or from_server:
            return True
        for closing, other in ((server, client), (client, server)):
            if closing.disconnecting and not closing.disconnected:
                closing.disconnected = True
                other.disconnecting = True
                other.reportDisconnect()
                return True
        return False

    def carry(self) -> bool:
        """Deliver what each side wrote since the last time, once (:meth:`collect`, :meth:`deliver`)."""
        return not self.idle and self.deliver(self.collect())

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
    ``Clock``, such as :class:`~co2.testing.TestReactor`).

    A node is a ``satellites.Satellite`` (a standalone relay is one with
    no plugins) or anything that has a ``relay`` attribute, or a relay
    itself.  :meth:`link` connects two nodes as a ``peers`` entry would;
    :meth:`settle` runs the network until nothing moves, a :meth:`step`
    at a time.  ``nodes`` and ``addresses`` map each name to its node and
    its ``(ip, port)``.
    """

    def __init__(self, reactor: Clock, max_rounds: int = 10_000) -> None:
        self.reactor = reactor
        self.max_rounds = max_rounds
        self.nodes: dict[str, Any] = {}
        self.addresses: dict[str, tuple[str, int]] = {}
        self.carried = 0
        """Bytes that crossed the network's links, both ways, counted as each round moves them."""
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

    def relay(self, name: str) -> Relay:
        """The relay of the node ``name``."""
        node = self.nodes[name]
        relay: Relay = getattr(node, "relay", node)
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

    def link(
        self, a: str, b: str, credentials: tuple[str, str] | None = None, *, settle: bool = True
    ) -> MemoryLink:
        """
        Link node ``a`` to node ``b`` as ``a`` would with ``b`` among its
        peers, proving itself with ``credentials`` (user name, password)
        if given: the link's key on ``a`` is ``peer:<b>``.  Sends Hello and,
        unless ``settle`` is false, settles (a network of many nodes is
        linked first and settled once); a refusal is the link's ``refused``.
        """
        client = PeerFactory(self.relay(a), f"peer:{b}", credentials).buildProtocol(
            IPv4Address("TCP", *self.addresses[b])
        )
        link = self._connect(client, b, a, a)  # the client says Hello as it connects
        if settle:
            self.settle()
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
        reactor = self.reactor
        return reactor.due() if isinstance(reactor, TestReactor) else calls_due(reactor)

    def step(self) -> bool:
        """
        One round: every open link carries what was written on it before
        the round began, all at once (what a node writes as it reads is
        carried in the next round: a round is one hop, as if every link
        had the same latency); then what is due now runs (``advance(0)``).
        Time does not pass.  Whether anything moved or was due.
        """
        moving = []
        for _, _, link in self._links:
            if not link.closed and not link.idle:
                before = link.carried
                moving.append((link, link.collect()))
                self.carried += link.carried - before
        moved = False
        for link, collected in moving:
            if link.deliver(collected):
                moved = True
        busy = self._due()
        self.reactor.advance(0)
        return moved or busy

    def settle(self) -> int:
        """
        Run :meth:`step` again and again until a round moves nothing.
        Returns the number of rounds; raises :class:`NotSettled` after
        ``max_rounds``.
        """
        for rounds in range(1, self.max_rounds + 1):
            if not self.step():
                self._links = [entry for entry in self._links if not entry[2].closed]
                return rounds
        raise NotSettled(f"the network still moved after {self.max_rounds} rounds")
