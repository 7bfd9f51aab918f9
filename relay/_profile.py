"""
What a node says of itself to the network, for ``/network.json``: its
role, version, plugins and links.  It travels in the node's announcements
(:mod:`relay._directory`), so every node holds every other node's, as of
that node's last announcement; each node reads a profile from a peer
as untrusted input, keeping only what it knows, within bounds.
"""

from __future__ import annotations

from typing import Any

import msgpack

from relay._link_commands import check_identity

__all__ = ["MAX_ITEMS", "MAX_PROFILE_BYTES", "encode_profile", "read_profile"]

MAX_PROFILE_BYTES = 64 * 1024
"""The most bytes of a profile a node reads; a bigger one is not kept."""

MAX_ITEMS = 256
"""The most plugins, and links, a profile lists."""

_TEXT = 200  # the longest name or key kept
_STATES = ("up", "down")


def encode_profile(profile: dict[str, Any]) -> bytes:
    """``profile`` as it travels (msgpack), its lists cut to :data:`MAX_ITEMS`."""
    bounded = dict(profile)
    bounded["plugins"] = list(profile.get("plugins", []))[:MAX_ITEMS]
    bounded["links"] = list(profile.get("links", []))[:MAX_ITEMS]
    data: bytes = msgpack.packb(bounded)
    return data


def read_profile(data: bytes) -> dict[str, Any]:
    """
    The profile ``data`` holds, with only the fields co2 knows, each of
    the right type and within bounds.  Raises ``ValueError`` for what is
    not a profile at all.
    """
    if len(data) > MAX_PROFILE_BYTES:
        raise ValueError(f"a profile of {len(data)} bytes, over {MAX_PROFILE_BYTES}")
    try:
        given = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception as e:
        raise ValueError(f"a profile that is not msgpack: {e}") from None
    if not isinstance(given, dict):
        raise ValueError("a profile must be a map")
    profile: dict[str, Any] = {
        "role": _text(given.get("role")),
        "version": _text(given.get("version")),
        "plugins": [name for name in _items(given.get("plugins")) if _text(name)],
        "links": [link for link in map(_link, _items(given.get("links"))) if link is not None],
    }
    return profile


def _text(value: object) -> str:
    return value[:_TEXT] if isinstance(value, str) and value.isprintable() else ""


def _items(value: object) -> list[Any]:
    return list(value[:MAX_ITEMS]) if isinstance(value, list) else []


def _count(value: object) -> int:
    return value if type(value) is int and value >= 0 else 0


def _rate(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0.0
    return float(value) if 0 <= value < float("inf") else 0.0


def _link(value: object) -> dict[str, Any] | None:
    if not isinstance(value, dict):
        return None
    peer = value.get("peer")
    if isinstance(peer, str) and peer:
        try:
            check_identity(peer, "")
        except ValueError:
            peer = ""
    else:
        peer = ""
    state = value.get("state")
    return {
        "peer": peer,
        "peer_host_id": _text(value.get("peer_host_id")),
        "link": _text(value.get("link")),
        "state": state if state in _STATES else "down",
        "queued": _count(value.get("queued")),
        "in_rate": _rate(value.get("in_rate")),
        "out_rate": _rate(value.get("out_rate")),
    }
