"""
``GET /network.json``: every node of the network, as far as this one
knows, from what each says of itself in its announcements; ``GET
/network``, the page that draws it; and ``GET /methods``, the method
console.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from importlib.resources import files
from typing import Any

__all__ = ["NetworkJSON", "ScriptedPage", "methods_page", "network_page"]


class NetworkJSON:
    """``GET /network.json``: ``{"nodes": [...]}`` (see :meth:`relay.Relay.network`)."""

    name = "network"
    """What ``auth_methods`` calls it."""

    content_type = b"application/json"

    def __init__(self, node: Any) -> None:
        self.node = node

    def render(self) -> bytes:
        """The network as this node knows it now."""
        return json.dumps(self.node.relay.network(), sort_keys=True).encode()


class ScriptedPage:
    """
    A page of static HTML whose one inline script does the work in the
    browser, calling this node from its own origin: the script is the only
    one its ``Content-Security-Policy`` lets run (named by its hash), and it
    may fetch from this node only.
    """

    content_type = b"text/html; charset=utf-8"

    def __init__(self, resource: str, name: str) -> None:
        self.name = name
        """What ``auth_methods`` calls it."""
        self.body = files("satellites").joinpath(resource).read_bytes()
        [script] = re.findall(rb"<script>(.*?)</script>", self.body, re.S)
        digest = base64.b64encode(hashlib.sha256(script).digest())
        self.headers = (
            b"X-Content-Type-Options: nosniff\r\n"
            b"Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline'; "
            b"script-src 'sha256-%s'; connect-src 'self'; frame-ancestors 'none'\r\n" % digest
        )

    def render(self) -> bytes:
        """The page (its script does the rest)."""
        return self.body


def network_page() -> ScriptedPage:
    """
    ``GET /network``: the map.  The page fetches ``network.json`` every two
    seconds and draws it as inline SVG, laid out in the browser: each node
    labelled with its host_id, down links dashed red, a link whose queue
    grows thick orange.
    """
    return ScriptedPage("_network_page.html", "network")


def methods_page() -> ScriptedPage:
    """
    ``GET /methods``: every method callable at the node (here and routed),
    each with its help, its signature and a form that calls it with
    arguments given as JSON, showing the answer or the fault.  The calls
    are XML-RPC posted to the node from its own origin, with the same
    authentication as any other call.
    """
    return ScriptedPage("_methods_page.html", "methods")
