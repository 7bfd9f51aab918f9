"""
The network-wide method directory: which node hosts which ``x_`` method,
and the routing of calls to them.

Each node announces the methods it hosts to its links; an announcement
new to a node is passed on to its other links (up to ``max_hops`` away),
so every node learns, for every other node, its methods and the links it
can be reached by, with their distance.  A node announces again when its
methods change, every ``interval`` seconds, and to each link that comes
up; what is not announced again within three intervals is forgotten, and
a node whose last link toward it went down is forgotten at once.

A call for a method hosted elsewhere travels hop by hop toward the nearest
node hosting it; every hop spends one of its ``hops``.  The answer comes
back the same way: the result, the method's fault, or a fault saying the
node could not be reached or did not answer in ``call_timeout`` seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol
from xmlrpc.client import Fault

from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from co2 import faults
from co2._ratelog import RateLimitedLog
from co2._xmlrpc import XMLRPCParseError, dump_call, dump_fault, dump_response, parse_call, parse_response
from relay._profile import encode_profile, read_profile
from relay._tree import Topology

__all__ = ["ANNOUNCE_INTERVAL", "Directory"]

ANNOUNCE_INTERVAL = 60.0
"""Seconds between a node's announcements of its own methods."""

_log = Logger(namespace="co2.relay")

DESCRIBING = frozenset({"system.methodHelp", "system.methodSignature"})
"""The calls another node may route here about a method hosted here, besides the method itself."""


class Link(Protocol):
    """What the directory needs of a live link."""

    key: str | None
    peer_node: str

    def announce(
        self, node: str, host_id: str, version: int, hops: int, ttl: float, methods: list[str],
        neighbours: Iterable[str] | None = None, profile: bytes | None = None,
    ) -> None: ...
    def send_call(self, node: str, hops: int, request: bytes) -> Deferred[bytes]: ...


@dataclass
class _Known:
    """What is known of another node."""

    host_id: str
    version: int
    methods: frozenset[str]
    expires: float
    routes: dict[str, int] = field(default_factory=dict)  # link key -> distance
    neighbours: frozenset[str] | None = None  # None: the node does not say
    profile_raw: bytes | None = None  # what it says of itself (relay._profile), as it came; None: nothing
    profile_at: float = 0.0  # when (wall time) it said it
    profile: dict[str, Any] | None = None  # the same, read


class Directory:
    """
    The directory of one node.  ``local_names`` gives the names of the
    methods hosted here; ``call_local(name, params)`` calls one of them
    and fires with its result or fails with a ``Fault``.
    """

    def __init__(
        self,
        reactor: Any,
        node_id: str,
        local_names: Callable[[], Iterable[str]],
        call_local: Callable[[str, tuple[Any, ...]], Deferred[Any]],
        *,
        host_id: str = "",
        max_hops: int = 16,
        call_timeout: float = 30.0,
        interval: float = ANNOUNCE_INTERVAL,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.reactor = reactor
        self.node_id = node_id
        self.host_id = host_id
        self.local_names = local_names
        self.call_local = call_local
        self.max_hops = max_hops
        self.call_timeout = call_timeout
        self.interval = interval
        self.wall = wall
        self.links: dict[str, Link] = {}
        self.known: dict[str, _Known] = {}
        self.topology = Topology(reactor, node_id)
        """The map of the network the nodes announce: messages are broadcast over it."""
        self.topology.set(node_id, ())
        self.version = 0
        self._methods: list[str] = []
        self.describe: Callable[[], dict[str, Any]] | None = None
        """What this node says of itself (its profile, for ``/network.json``), asked at each announcement."""
        self._profile: bytes | None = None
        self._refresher: LoopingCall | None = None
        self.limited = RateLimitedLog(_log, reactor)
        """The directory's log lines that can repeat: a few, then a count."""

    # Announcing

    @property
    def announcing(self) -> bool:
        """Whether :meth:`start` was called and :meth:`stop` not since."""
        return self._refresher is not None and self._refresher.running

    def start(self) -> None:
        """Announce now and every ``interval`` seconds (nothing more when already announcing)."""
        if self.announcing:
            return
        self._refresher = LoopingCall(self.refresh)
        self._refresher.clock = self.reactor
        self._refresher.start(self.interval, now=True)

    def stop(self) -> None:
        """Stop announcing."""
        if self._refresher is not None and self._refresher.running:
            self._refresher.stop()
        self._refresher = None
        self.limited.close()

    def refresh(self) -> None:
        """Announce this node's methods (a new version) and forget what expired."""
        self.version = max(self.version + 1, int(self.wall() * 1000))
        self._methods = sorted(self.local_names())
        self._profile = None if self.describe is None else encode_profile(self.describe())
        self._forget_expired()
        for link in self.links.values():
            self._announce_self(link)

    def _forget_expired(self) -> None:
        # Also done before each lookup: an entry goes when its ttl runs
        # out, not at the next refresh.
        now = self.reactor.seconds()
        for node in [node for node, known in self.known.items() if known.expires <= now]:
            self._forget(node)

    def _forget(self, node: str) -> None:
        del self.known[node]
        self.topology.forget(node)

    def changed(self) -> None:
        """This node's methods changed: announce them at once."""
        self.refresh()

    def _ttl(self) -> float:
        return 3 * self.interval

    def _announce_self(self, link: Link) -> None:
        link.announce(self.node_id, self.host_id, self.version, 0, self._ttl(), self._methods,
                      self.topology.neighbours.get(self.node_id, ()), self._profile)

    def _neighbours_changed(self) -> None:
        """This node's links changed: its place on the map is announced anew, to every link."""
        self.topology.set(self.node_id, (link.peer_node for link in self.links.values() if link.peer_node))
        if self.announcing:
            self.refresh()

    def link_up(self, link: Link) -> None:
        """A link came up: tell it everything known, and every link this node's new neighbours."""
        assert link.key is not None
        self.links[link.key] = link
        self._neighbours_changed()
        if not self.announcing:
            self._announce_self(link)
        self._tell_everything(link)

    def _tell_everything(self, link: Link) -> None:
        """
        Tell ``link`` every node known here by another link (what is known
        only through ``link`` itself would come back to it as a loop).
        """
        now = self.reactor.seconds()
        for node, known in self.known.items():
            distance = min((d for key, d in known.routes.items() if key != link.key), default=self.max_hops)
            if distance < self.max_hops and known.expires > now:
                link.announce(node, known.host_id, known.version, distance,
                              known.expires - now, sorted(known.methods), known.neighbours, known.profile_raw)

    def link_down(self, link: Link) -> None:
        """A link went down: forget the routes by it, and nodes left without one."""
        if link.key is None or self.links.get(link.key) is not link:
            return
        del self.links[link.key]
        for node in list(self.known):
            routes = self.known[node].routes
            routes.pop(link.key, None)
            if not routes:
                self._forget(node)
        self._neighbours_changed()

    def announced(
        self, link: Link, node: str, host_id: str, version: int,
        hops: int, ttl: float, methods: list[str], neighbours: Iterable[str] | None = None,
        profile: bytes | None = None,
    ) -> None:
        """
        ``link`` says ``node`` hosts ``methods`` and is linked to
        ``neighbours`` (None when it does not say); ``hops`` is how many
        links the announcement crossed before this one.
        """
        if node == self.node_id or link.key is None or ttl <= 0:
            return
        distance = hops + 1
        known = self.known.get(node)
        expires = self.reactor.seconds() + min(ttl, self._ttl())
        if known is not None and version < known.version:
            return
        if known is not None and version == known.version:
            known.routes[link.key] = min(known.routes.get(link.key, distance), distance)
            return
        linked = None if neighbours is None else frozenset(neighbours)
        if hops == 0 and known is not None and known.neighbours != linked:
            # A neighbour's links changed: a link it lost may have been its
            # only way to nodes that this one can still reach, so it is told
            # everything known here again (what it knew is no news: no flood).
            self._tell_everything(link)
        read = None
        if profile is not None:
            try:
                read = read_profile(profile)
            except ValueError as e:
                self.limited.emit(
                    "unreadable profile", LogLevel.warn,
                    "node {node} ({host_id}) says of itself what co2 cannot read ({why}); not kept",
                    node=node, host_id=host_id, why=e,
                )
                profile = None
        self.known[node] = _Known(
            host_id, version, frozenset(methods), expires, {link.key: distance}, linked,
            profile, self.wall(), read,
        )
        if linked is None:
            self.topology.forget(node)
        else:
            self.topology.set(node, linked)
        if distance < self.max_hops:
            for key, other in self.links.items():
                if key != link.key:
                    other.announce(node, host_id, version, distance, ttl, methods, linked, profile)

    # The network map

    def network(self) -> list[dict[str, Any]]:
        """
        Every node known here and this one, as ``/network.json`` lists
        them: ``node_id``, ``host_id``, its profile's ``role``,
        ``version``, ``plugins`` and ``links``, and ``as_of``, when (wall
        time) the node last said so.  A node that says nothing of itself
        (an older one) has empty fields.
        """
        self._forget_expired()
        own = self.describe() if self.describe is not None else {}
        nodes = [_entry(self.node_id, self.host_id, read_profile(encode_profile(own)), self.wall())]
        for node, known in sorted(self.known.items()):
            profile = known.profile
            nodes.append(_entry(node, known.host_id, profile, known.profile_at if profile else None))
        return nodes

    # Calls

    def names(self) -> set[str]:
        """The methods hosted on other nodes, reachable from here."""
        self._forget_expired()
        return {name for known in self.known.values() for name in known.methods}

    def host_of(self, name: str) -> str | None:
        """The host_id of the nearest node hosting ``name``, or None."""
        node = self._nearest(name)
        return None if node is None else self.known[node].host_id

    def _nearest(self, name: str) -> str | None:
        self._forget_expired()
        hosting = [
            (min(known.routes.values()), node)
            for node, known in self.known.items()
            if name in known.methods and known.routes
        ]
        return min(hosting)[1] if hosting else None

    def call(self, name: str, params: tuple[Any, ...], method: str | None = None) -> Deferred[Any]:
        """
        Call ``name``, hosted on another node.  Fires with the result, or
        fails with a ``Fault``: the method's own, -32601 when no node hosts
        it, -32001 when its node cannot be reached, -32002 after
        ``call_timeout`` seconds without an answer.  With ``method``, call
        that instead on the node hosting ``name`` (``system.methodHelp``
        of a method hosted elsewhere asks its own node).
        """
        node = self._nearest(name)
        if node is None:
            return fail(Fault(faults.METHOD_NOT_FOUND, f"no method {name!r} in the network"))
        try:
            request = dump_call(method or name, params)
        except (TypeError, ValueError, OverflowError) as e:
            return fail(Fault(faults.INVALID_PARAMS, f"{name}: {e}"))
        d = self.route(node, self.max_hops, request)
        d.addTimeout(self.call_timeout, self.reactor, onTimeoutCancel=self._timed_out(name))
        return d.addCallback(parse_response)

    def _timed_out(self, name: str) -> Callable[[object, float], bytes]:
        def timed_out(result: object, timeout: float) -> bytes:
            raise Fault(faults.CALL_TIMEOUT, f"{name}: no answer within {timeout:g}s")

        return timed_out

    def route(
        self, node: str, hops: int, request: bytes, timeout: float | None = None
    ) -> Deferred[bytes]:
        """
        Carry ``request`` (an XML-RPC methodCall) to ``node``: call it here
        if this is the node, else send it on by the nearest link.  Fires
        with the methodResponse; never fails.
        """
        if node == self.node_id:
            return self._here(request)
        known = self.known.get(node)
        routes = [(distance, key) for key, distance in (known.routes.items() if known else ())
                  if key in self.links]
        if not routes:
            return succeed(dump_fault(faults.NODE_UNREACHABLE, f"node {node} cannot be reached"))
        if hops <= 0:
            return succeed(dump_fault(faults.NODE_UNREACHABLE, f"node {node} is beyond the hop limit"))
        link = self.links[min(routes)[1]]
        d = link.send_call(node, hops - 1, request)
        if timeout is not None:
            # A hop on the way gives up with the caller, so nothing waits forever.
            d.addTimeout(timeout, self.reactor, onTimeoutCancel=self._hop_timed_out(node))
        return d.addErrback(self._lost, node)

    def _hop_timed_out(self, node: str) -> Callable[[object, float], bytes]:
        def timed_out(result: object, timeout: float) -> bytes:
            return dump_fault(faults.CALL_TIMEOUT, f"node {node}: no answer within {timeout:g}s")

        return timed_out

    def _lost(self, failure: Failure, node: str) -> bytes:
        return dump_fault(
            faults.NODE_UNREACHABLE,
            f"node {node} cannot be reached: {failure.getErrorMessage() or failure.type}",
        )

    def _here(self, request: bytes) -> Deferred[bytes]:
        try:
            name, params = parse_call(request)
        except XMLRPCParseError as e:
            return succeed(dump_fault(e.code, str(e)))
        local = set(self.local_names())
        # A plugin's method, or what it says of itself (the help of a method hosted here).
        asked = name in DESCRIBING and len(params) == 1 and params[0] in local
        if name not in local and not asked:
            return succeed(dump_fault(faults.METHOD_NOT_FOUND, f"no method {name!r} here"))
        d = maybeDeferred(self.call_local, name, params)
        d.addCallback(_encoded, name)
        return d.addErrback(_fault_of)


def _encoded(result: Any, name: str) -> bytes:
    try:
        return dump_response(result)
    except (TypeError, ValueError, OverflowError) as e:
        return dump_fault(faults.INTERNAL_ERROR, f"{name} returned what XML-RPC cannot carry: {e}")


def _fault_of(failure: Failure) -> bytes:
    fault = failure.value
    if isinstance(fault, Fault):
        return dump_fault(fault.faultCode, fault.faultString)
    return dump_fault(faults.INTERNAL_ERROR, faults.describe_exception(fault))  # type: ignore[arg-type]


def _entry(node: str, host_id: str, profile: dict[str, Any] | None, as_of: float | None) -> dict[str, Any]:
    given = profile or {}
    return {
        "node_id": node, "host_id": host_id,
        "role": given.get("role") or None, "version": given.get("version") or None,
        "plugins": given.get("plugins", []), "links": given.get("links", []), "as_of": as_of,
    }
