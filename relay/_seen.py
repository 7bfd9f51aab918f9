"""De-duplication: the ids of the most recent messages a node has seen."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

__all__ = ["SeenIds"]


class SeenIds:
    """
    A set of message ids that remembers the newest ``limit`` of them; each
    check-and-add is O(1).  A queue beside the set keeps the order in which
    ids were first seen, so the oldest is forgotten first.
    """

    def __init__(self, limit: int, ids: Iterable[str] = ()) -> None:
        self.limit = limit
        self._ids: set[str] = set()
        self._order: deque[str] = deque()
        for message_id in ids:
            self.add(message_id)

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, message_id: object) -> bool:
        return message_id in self._ids

    def add(self, message_id: str) -> bool:
        """Remember ``message_id``; False when it was already known."""
        ids = self._ids
        if message_id in ids:
            return False
        ids.add(message_id)
        order = self._order
        order.append(message_id)
        if len(order) > self.limit:
            ids.remove(order.popleft())
        return True
