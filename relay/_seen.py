"""De-duplication: the ids of the most recent messages a node has seen."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["SeenIds"]


class SeenIds:
    """
    A set of message ids that remembers the newest ``limit`` of them; each
    check-and-add is O(1).  A dict keeps insertion order, so the oldest id
    is the first key.
    """

    def __init__(self, limit: int, ids: Iterable[str] = ()) -> None:
        self.limit = limit
        self._ids: dict[str, None] = {}
        for message_id in ids:
            self.add(message_id)

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, message_id: object) -> bool:
        return message_id in self._ids

    def add(self, message_id: str) -> bool:
        """Remember ``message_id``; False when it was already known."""
        if message_id in self._ids:
            return False
        self._ids[message_id] = None
        if len(self._ids) > self.limit:
            del self._ids[next(iter(self._ids))]
        return True
