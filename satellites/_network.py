"""
``GET /network.json``: every node of the network, as far as this one
knows, from what each says of itself in its announcements; and
``GET /network``, the page that draws it.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["NetworkJSON"]


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
