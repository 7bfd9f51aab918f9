"""
Broadcast without waste: the links a message goes on.

Flooding (every node passes each new message to all its other links)
reaches everyone whatever the network looks like, but in a network with
cycles each node gets each message once per link it has, and drops all
but the first.  Here a message from ``origin`` follows instead the tree
of shortest paths from ``origin``, which every node works out alike from
the same map: each node passes the message only to its own children in
that tree, so on a stable network every node gets it once.

The map is what the nodes announce (:mod:`relay._directory`): each
node's neighbours, the nodes at the other end of its up links.  An edge
counts once both its ends announce it.  Ties between paths of the same
length go to the parent with the smallest node id, so that every node
with the same map picks the same tree.

While the network changes, maps differ from node to node, and a tree
worked out from one could miss a node that another map routes
differently.  So a node floods, as before, for :data:`SETTLE` seconds
after its map last changed, and floods any message that did not come
from its parent in the message's tree (a sign that the sender's map is
not its own).  Seen ids drop the duplicates this costs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

__all__ = ["SETTLE", "Topology", "origin_of"]

SETTLE = 10.0
"""Seconds a node floods after its map of the network last changed."""


def origin_of(message_id: str) -> str:
    """The node id a message id starts with (the node that sent the message first)."""
    return message_id.partition(".")[0]


class Topology:
    """
    One node's map of the network (``node_id`` is the node's own id), and
    the branch of each origin's broadcast tree at this node.
    """

    def __init__(self, reactor: Any, node_id: str, settle: float = SETTLE) -> None:
        self.reactor = reactor
        self.node_id = node_id
        self.settle = settle
        self.neighbours: dict[str, frozenset[str]] = {}
        """Each node's neighbours, as it last announced them (this node's own among them)."""
        self.version = 0
        """Counts the changes to the map: what was worked out from an older one is stale."""
        self._changed_at = -math.inf
        self._settled = True  # known true since the last change: no clock reading per message
        self._branches: dict[str, tuple[str, frozenset[str]] | None] = {}

    def set(self, node: str, neighbours: Iterable[str]) -> None:
        """``node`` has these neighbours now."""
        given = frozenset(neighbours) - {node}
        if self.neighbours.get(node) != given:
            self.neighbours[node] = given
            self._changed()

    def forget(self, node: str) -> None:
        """Nothing is known of ``node`` any more."""
        if self.neighbours.pop(node, None) is not None:
            self._changed()

    def _changed(self) -> None:
        self.version += 1
        self._changed_at = self.reactor.seconds()
        self._settled = False
        self._branches.clear()

    @property
    def settled(self) -> bool:
        """Whether the map has not changed for :attr:`settle` seconds: trees can be trusted."""
        if not self._settled:
            self._settled = self.reactor.seconds() - self._changed_at >= self.settle
        return self._settled

    def _linked(self, a: str, b: str) -> bool:
        return b in self.neighbours.get(a, ()) and a in self.neighbours.get(b, ())

    def branch(self, origin: str) -> tuple[str, frozenset[str]] | None:
        """
        This node's place in the tree of ``origin``: its parent (``""``
        when this node is the origin) and its children; None when the map
        does not join the two.
        """
        if origin not in self._branches:
            self._branches[origin] = self._work_out(origin)
        return self._branches[origin]

    def _work_out(self, origin: str) -> tuple[str, frozenset[str]] | None:
        # Breadth first, level by level: a node's parent is the one with
        # the smallest id among its neighbours on the level before.
        me, neighbours, linked = self.node_id, self.neighbours, self._linked
        if origin not in neighbours or me not in neighbours:
            return None
        parent = {origin: ""}
        level = [origin]
        while level:
            found: dict[str, str] = {}
            for node in sorted(level):
                for other in neighbours[node]:
                    if other not in parent and other not in found and linked(node, other):
                        found[other] = node
            parent.update(found)
            level = list(found)
        if me not in parent:
            return None
        return parent[me], frozenset(other for other in neighbours[me] if parent.get(other) == me)
