"""
The status page at ``GET /`` of a node's XML-RPC listener, and the same
facts as JSON at ``GET /status.json``: who the node is, its plugins (and
the packages that failed to load, with why), the methods it exposes, its
links with their state and queue depth, and its message counters.  The
page reloads itself every :data:`REFRESH` seconds.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from html import escape
from typing import Any

from co2 import __version__

__all__ = ["REFRESH", "StatusJSON", "StatusPage", "status_of"]

REFRESH = 5
"""Seconds between two reloads of the status page."""


def status_of(node: Any, role: str) -> dict[str, Any]:
    """
    What the status page shows of ``node`` (its :class:`~satellites._service.NodeParts`),
    as plain values: the JSON of ``/status.json``.
    """
    snapshot = node.relay.snapshot()
    satellite = node.satellite
    links = [
        {"link": link.key, "state": "up" if link.up else "down", "queued": link.queued,
         "in": link.messages_in, "out": link.messages_out, "reconnects": link.reconnects}
        for link in snapshot.links
    ]
    return {
        "role": role,
        "host_id": snapshot.host_id,
        "node_id": snapshot.node_id,
        "version": __version__,
        "plugins": [] if satellite is None else _plugins(satellite),
        "failed": [] if satellite is None else _failed(satellite),
        "methods": node.dispatcher.names(),
        "links": links,
        "counters": snapshot.counters,
        "flow": snapshot.flow,
    }


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
    """The node's status, as ``render_status`` turns it into a body of ``content_type``."""

    name = "status"
    """What ``auth_methods`` calls this page."""

    def __init__(
        self, node: Any, role: str, content_type: bytes, render: Callable[[dict[str, Any]], str]
    ) -> None:
        self.node = node
        self.role = role
        self.content_type = content_type
        self.render_status = render

    def render(self) -> bytes:
        """The page as it is now."""
        return self.render_status(status_of(self.node, self.role)).encode()


def StatusJSON(node: Any, role: str) -> _StatusView:
    """``GET /status.json``."""
    return _StatusView(node, role, b"application/json", lambda status: json.dumps(status, indent=1))


def StatusPage(node: Any, role: str) -> _StatusView:
    """``GET /``: the status as a page that reloads itself."""
    return _StatusView(node, role, b"text/html; charset=utf-8", render_page)


def _rows(rows: list[list[Any]]) -> str:
    cells = ("".join(f"<td>{escape(str(cell))}</td>" for cell in row) for row in rows)
    return "".join(f"<tr>{row}</tr>" for row in cells)


def _table(table_id: str, header: list[str], rows: list[list[Any]], empty: str) -> str:
    if not rows:
        return f'<p id="{table_id}" class="empty">{escape(empty)}</p>'
    head = "".join(f"<th>{escape(name)}</th>" for name in header)
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{_rows(rows)}</tbody></table>'


def render_page(status: dict[str, Any]) -> str:
    """The HTML of the status page; every value from the node is escaped."""
    title = f"co2 {status['role']} {status['host_id']}"
    plugins = [[p["name"], p["deliveries"], p["errors"]] for p in status["plugins"]]
    failed = [[f["package"], f["problem"]] for f in status["failed"]]
    links = [
        [x["link"], x["state"], x["queued"], x["in"], x["out"], x["reconnects"]] for x in status["links"]
    ]
    counters = [[name, count] for name, count in status["counters"].items()]
    methods = "".join(f"<li>{escape(name)}</li>" for name in status["methods"])
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="{REFRESH}">
<title>{escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin-bottom: 1.5em; }}
th, td {{ border: 1px solid #ccc; padding: 0.3em 0.7em; text-align: left; }}
th {{ background: #eee; }}
.empty {{ color: #777; }}
</style></head>
<body>
<h1 id="host_id">{escape(title)}</h1>
<p>node <span id="node_id">{escape(status["node_id"])}</span>; this page reloads every {REFRESH} s
(<a href="/status.json">JSON</a>, <a href="/metrics">metrics</a>).</p>
<h2>Plugins</h2>
{_table("plugins", ["plugin", "messages received", "errors"], plugins, "no plugins loaded")}
<h2>Failed to load</h2>
{_table("failed", ["package", "why"], failed, "none")}
<h2>Links</h2>
{_table("links", ["link", "state", "queued", "in", "out", "reconnects"], links, "no links")}
<h2>Messages</h2>
{_table("counters", ["", "count"], counters, "none yet")}
<h2>Methods</h2>
<ul id="methods">{methods}</ul>
</body></html>
"""
