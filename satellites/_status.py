"""
The status page at ``GET /`` of a node's XML-RPC listener, and the same
facts as JSON at ``GET /status.json``: who the node is (its version, how
long it has been up, when it last took a message), its plugins (and the
packages that failed to load, with why), the methods it exposes, its
links (the peer at the other end, and since when each is up or down)
with their queue depth, and its message counters.  The page reloads
itself every :data:`REFRESH` seconds.

The page is a :mod:`twisted.web.template` tree: what comes from the node,
its plugins or its peers is text or an attribute value in that tree, so
the flattener escapes it; nothing here escapes by hand.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.template import Element, Flattenable, Tag, TagLoader, flattenString, renderer, tags

from co2 import __version__

__all__ = ["REFRESH", "StatusJSON", "StatusPage", "render_page", "status_of"]

REFRESH = 5
"""Seconds between two reloads of the status page."""

_ROLES = ("satellite", "relay")
_UNKNOWN = "\N{EM DASH}"  # in a cell for what the node does not know (a classic link has no node id)
_SHORT_ID = 8  # characters of a peer's node id the links table shows (all of it in a tooltip)


def status_of(node: Any, role: str, now: float | None = None) -> dict[str, Any]:
    """
    What the status page shows of ``node`` (its :class:`~satellites._service.NodeParts`),
    as plain values: the JSON of ``/status.json``.  ``now`` is the wall
    time the uptime is counted to (``time.time()`` when None).
    """
    if now is None:
        now = time.time()
    snapshot = node.relay.snapshot()
    satellite = node.satellite
    links = [
        {"link": link.key, "state": "up" if link.up else "down", "queued": link.queued,
         "in": link.messages_in, "out": link.messages_out, "reconnects": link.reconnects,
         "peer_node": link.peer_node, "peer_host_id": link.peer_host_id,
         "peer_role": _peer_role(node, link.peer_node), "since": link.since}
        for link in snapshot.links
    ]
    return {
        "role": role,
        "host_id": snapshot.host_id,
        "node_id": snapshot.node_id,
        "version": __version__,
        "uptime": round(max(0.0, now - snapshot.started), 3),
        "last_message": snapshot.last_message,
        "plugins": [] if satellite is None else _plugins(satellite),
        "failed": [] if satellite is None else _failed(satellite),
        "methods": node.dispatcher.names(),
        "links": links,
        "counters": snapshot.counters,
        "flow": snapshot.flow,
    }


def _peer_role(node: Any, peer_node: str) -> str | None:
    """
    The role the peer ``peer_node`` says it has, when this node knows it:
    only from a profile (a dict with ``role``) in the relay's directory.
    """
    if not peer_node:
        return None
    known = getattr(getattr(node.relay, "directory", None), "known", {}).get(peer_node)
    profile = getattr(known, "profile", None)
    role = profile.get("role") if isinstance(profile, dict) else None
    return role if role in _ROLES else None


def _plugins(satellite: Any) -> list[dict[str, Any]]:
    stats = satellite.plugin_stats
    return [
        {"name": str(plugin), "deliveries": stats.deliveries.get(str(plugin), 0),
         "errors": stats.errors.get(str(plugin), 0)}
        for plugin in satellite.plugins
    ]


def _failed(satellite: Any) -> list[dict[str, Any]]:
    return [
        {"package": failure.package, "problem": failure.problem} for failure in satellite.failures
    ] + [
        {"package": failure.package,
         "problem": f"reload failed, the previous version still runs: {failure.problem}"}
        for failure in satellite.reload_failures.values()
    ]


class _StatusView:
    """The node's status, as ``render_status(status, now)`` turns it into a body of ``content_type``."""

    name = "status"
    """What ``auth_methods`` calls this page."""

    def __init__(
        self,
        node: Any,
        role: str,
        content_type: bytes,
        render: Callable[[dict[str, Any], float], bytes],
        wall: Callable[[], float],
    ) -> None:
        self.node = node
        self.role = role
        self.content_type = content_type
        self.render_status = render
        self.wall = wall

    def render(self) -> bytes:
        """The page as it is now."""
        now = self.wall()
        return self.render_status(status_of(self.node, self.role, now), now)


def StatusJSON(node: Any, role: str, *, wall: Callable[[], float] = time.time) -> _StatusView:
    """``GET /status.json``; ``wall`` gives the wall time (the uptime is counted to it)."""
    return _StatusView(node, role, b"application/json", _render_json, wall)


def StatusPage(node: Any, role: str, *, wall: Callable[[], float] = time.time) -> _StatusView:
    """``GET /``: the status as a page that reloads itself; ``wall`` gives the wall time."""
    return _StatusView(node, role, b"text/html; charset=utf-8", render_page, wall)


def _render_json(status: dict[str, Any], now: float) -> bytes:
    return json.dumps(status, indent=1).encode()


# The page

_CSS = """
body { font-family: sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin-bottom: 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.7em; text-align: left; }
th { background: #eee; }
.empty, .what { color: #777; }
.role { color: #555; font-size: smaller; }
tr.down td { background: #fde2e2; }
tr.down td.state { color: #a00; font-weight: bold; }
"""

_PAGE = tags.html(
    tags.head(
        tags.meta(charset="utf-8"),
        tags.meta(**{"http-equiv": "refresh", "content": str(REFRESH)}),
        tags.title(render="title"),
        tags.style(_CSS),
    ),
    tags.body(
        tags.h1(id="host_id", render="title"),
        tags.p(id="node", render="node"),
        tags.p(
            f"This page reloads every {REFRESH} s (", tags.a("JSON", href="/status.json"), ", ",
            tags.a("metrics", href="/metrics"), ").",
        ),
        tags.h2("Plugins"),
        tags.transparent(render="plugins"),
        tags.h2("Failed to load"),
        tags.transparent(render="failed"),
        tags.h2("Links"),
        tags.transparent(render="links"),
        tags.h2("Messages"),
        tags.transparent(render="counters"),
        tags.h2("Methods"),
        tags.ul(id="methods", render="methods"),
    ),
    lang="en",
)

_COUNTERS = {
    "originated": "sent by this node's plugins",
    "notified": "accepted by XML-RPC notify",
    "received": "arrived over links",
    "duplicates": "seen before, so dropped",
    "dropped": "pushed out of a full outbox",
    "invalid": "came over a link and were not co2 messages",
}
"""What each counter counts, in the order the page lists them (any other after these)."""


class _StatusElement(Element):
    """The page of one ``status`` (as :func:`status_of` gives it) at wall time ``now``."""

    loader = TagLoader(_PAGE)

    def __init__(self, status: dict[str, Any], now: float) -> None:
        super().__init__()
        self.status = status
        self.now = now

    @renderer
    def title(self, request: IRequest | None, tag: Tag) -> Flattenable:
        return tag(f"co2 {self.status['role']} {self.status['host_id']}")

    @renderer
    def node(self, request: IRequest | None, tag: Tag) -> Flattenable:
        status, now = self.status, self.now
        last = status["last_message"]
        return tag(
            "Node ", tags.code(status["node_id"], id="node_id"),
            ", co2 ", tags.span(status["version"], id="version"),
            ", up ", tags.span(_duration(status["uptime"]), id="uptime"),
            " (since ", _clock(now - status["uptime"]), "), last message ",
            tags.span("none yet" if last is None else _when(last, now), id="last_message"), ".",
        )

    @renderer
    def plugins(self, request: IRequest | None, tag: Tag) -> Flattenable:
        rows = [_row(p["name"], p["deliveries"], p["errors"]) for p in self.status["plugins"]]
        return _table("plugins", ["plugin", "messages received", "errors"], rows, "no plugins loaded")

    @renderer
    def failed(self, request: IRequest | None, tag: Tag) -> Flattenable:
        rows = [_row(f["package"], f["problem"]) for f in self.status["failed"]]
        return _table("failed", ["package", "why"], rows, "none")

    @renderer
    def links(self, request: IRequest | None, tag: Tag) -> Flattenable:
        rows = [_link_row(link, self.now) for link in self.status["links"]]
        header = ["link", "peer", "node", "state", "queued", "in", "out", "reconnects"]
        return _table("links", header, rows, "no links")

    @renderer
    def counters(self, request: IRequest | None, tag: Tag) -> Flattenable:
        counters = self.status["counters"]
        names = [name for name in _COUNTERS if name in counters]
        names += sorted(name for name in counters if name not in _COUNTERS)
        rows = [
            tags.tr(tags.td(name), tags.td(str(counters[name])),
                    tags.td(_COUNTERS.get(name, ""), class_="what"), id=f"counter-{name}")
            for name in names
        ]
        return _table("counters", ["", "count", ""], rows, "none yet")

    @renderer
    def methods(self, request: IRequest | None, tag: Tag) -> Flattenable:
        return tag([tags.li(name) for name in self.status["methods"]])


def _link_row(link: dict[str, Any], now: float) -> Tag:
    """One link: the peer named by host_id and (when known) role, and since when it is up or down."""
    role = link.get("peer_role")
    peer: list[Flattenable] = [link["peer_host_id"] or _UNKNOWN]
    if role:
        peer += [" ", tags.span(role, class_="role")]
    node_id = link["peer_node"]
    short = node_id if len(node_id) <= _SHORT_ID + 1 else node_id[:_SHORT_ID] + "…"
    node = tags.code(short, title=node_id) if node_id else _UNKNOWN
    since = link["since"]
    state: list[Flattenable] = [link["state"]]
    if since is not None:
        state += [" since ", *_when(since, now)]
    return tags.tr(
        tags.td(link["link"]), tags.td(peer), tags.td(node), tags.td(state, class_="state"),
        [tags.td(str(link[column])) for column in ("queued", "in", "out", "reconnects")],
        class_=link["state"],
    )


def _row(*cells: object) -> Tag:
    return tags.tr([tags.td(str(cell)) for cell in cells])


def _table(table_id: str, header: list[str], rows: list[Tag], empty: str) -> Tag:
    if not rows:
        return tags.p(empty, id=table_id, class_="empty")
    return tags.table(
        tags.thead(tags.tr([tags.th(name) for name in header])), tags.tbody(rows), id=table_id
    )


def _when(moment: float, now: float) -> list[Flattenable]:
    """``HH:MM:SS (Ns ago)`` for the wall time ``moment``, seen at ``now``."""
    return [_clock(moment), f" ({_duration(now - moment)} ago)"]


def _clock(moment: float) -> Tag:
    """The local time of day of wall time ``moment``, its full date and time in a tooltip."""
    stamp = datetime.fromtimestamp(moment).astimezone()
    return tags.time(stamp.strftime("%H:%M:%S"), datetime=stamp.isoformat(timespec="seconds"),
                     title=stamp.strftime("%Y-%m-%d %H:%M:%S %Z"))


def _duration(seconds: float) -> str:
    """``42s``, ``5m 3s``, ``2h 5m`` or ``3d 4h``: the two largest units of ``seconds``."""
    whole = max(0, int(seconds))
    minutes, secs = divmod(whole, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def render_page(status: dict[str, Any], now: float) -> bytes:
    """
    The HTML of the status page of ``status`` (as :func:`status_of`
    gives it) at wall time ``now``; every value from the node is escaped.
    """
    return b"<!DOCTYPE html>\n" + _flattened(_StatusElement(status, now)) + b"\n"


def _flattened(root: Flattenable) -> bytes:
    """
    ``root`` flattened now: nothing in the page is a Deferred, so the
    flattener's Deferred has fired by the time it is returned.
    """
    done: list[bytes | Failure] = []
    flattenString(None, root).addBoth(done.append)
    if not done:
        raise RuntimeError("the status page waits on a Deferred: everything in it must be ready now")
    (result,) = done
    if isinstance(result, Failure):
        result.raiseException()
    assert isinstance(result, bytes)
    return result
