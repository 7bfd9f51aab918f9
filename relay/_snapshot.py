"""
What a relay counts, and the picture of it that the status page,
``/status.json`` and ``/metrics`` are drawn from.

The hot path only adds to plain integers (:class:`Counters`) and to the
links' per-key counts; a :class:`Snapshot` is made
when somebody asks, in the reactor thread.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["Counters", "LinkView", "Snapshot"]


@dataclass
class Counters:
    """Messages the router handled, by what happened to them."""

    originated: int = 0
    """Sent by this node's plugins, or accepted by ``notify``."""
    received: int = 0
    """Arrived over links."""
    duplicates: int = 0
    """Seen before, so dropped."""
    dropped: int = 0
    """Pushed out of a full outbox."""
    invalid: int = 0
    """Came over a link and were not messages co2 can carry: dropped where opened."""
    notified: int = 0
    """Accepted by XML-RPC ``notify`` (a classic node's or a client's), new to this node."""

    def as_dict(self) -> dict[str, int]:
        """The counts by name, sorted."""
        return dict(sorted(asdict(self).items()))


@dataclass(frozen=True)
class LinkView:
    """One link as a snapshot shows it."""

    key: str
    """``peer:ENDPOINT``, a classic peer's URL, or ``node:ID`` for a link a peer made."""
    up: bool
    queued: int
    """Messages its outbox holds."""
    messages_in: int
    messages_out: int
    ups: int
    """Times it came up."""
    peer_node: str = ""
    """The node at the other end, as its Hello said ("" for a classic link, or before it first came up)."""
    peer_host_id: str = ""
    """That node's ``host_id`` (for a classic link, its URL's host and port)."""
    since: float | None = None
    """When (wall time) it last came up or went down; None if it never did."""

    @property
    def reconnects(self) -> int:
        """Times it came up again after the first."""
        return max(0, self.ups - 1)


@dataclass(frozen=True)
class Snapshot:
    """A relay as it is at one moment."""

    node_id: str
    host_id: str
    links: tuple[LinkView, ...]
    """Sorted by key."""
    counters: dict[str, int]
    flow: dict[str, int | bool]
    """
    Flow control: ``congested``, the batches ``parked`` unanswered, and the
    send queue's ``queued`` messages and ``queued_bytes``.
    """
    started: float = 0.0
    """When (wall time) the relay was made: the node's uptime is from then."""
    last_message: float | None = None
    """When (wall time) the node last took a new message (sent here, by notify, or over a link)."""
