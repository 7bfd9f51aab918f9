"""
``GET /network.json``: every node of the network, as far as this one
knows, from what each says of itself in its announcements; and
``GET /network``, the page that draws it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from importlib.resources import files
from typing import Any

__all__ = ["NetworkJSON", "NetworkPage"]


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


class NetworkPage:
    """
    ``GET /network``: the map.  The page fetches ``network.json`` every two
    seconds and draws it as inline SVG, laid out in the browser: each node
    labelled with its host_id, down links dashed red, a link whose queue
    grows thick orange.  The page itself is the same for every request.
    """

    name = "network"
    """What ``auth_methods`` calls it (as ``/network.json``)."""

    content_type = b"text/html; charset=utf-8"

    def __init__(self) -> None:
        self.body = files("satellites").joinpath("_network_page.html").read_bytes()
        # The one script the page may run is its own: named by its hash in the policy.
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
