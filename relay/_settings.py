"""
The settings the relay owns (:class:`RelaySettings`), and what a relay
reads of a node's config (:class:`RelayConfig`).  ``docs/config.md``
describes each key.
"""

from __future__ import annotations

import keyword
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from co2._config import (
    Check,
    Section,
    a_path,
    check_peer,
    optional,
    plugin_config,
    positive,
    server_endpoint,
    type_name,
)
from co2._settings import AuthSettings, NodeSettings
from co2._tls import resolve_paths

__all__ = ["SPOOL_FILE", "RelayConfig", "RelaySettings"]

SPOOL_FILE = "spool.sqlite"
"""The spool's file name in ``data_dir`` when ``spool`` is not set."""


@dataclass(frozen=True)
class RelaySettings(Section):
    """
    How a node links to others and what it keeps for them: its AMP
    listener and peers, its spool, its outboxes, its routing limits and
    its relay plugins.
    """

    amp_listen: str | None = None
    peers: tuple[str, ...] = ()
    spool: str | None = None
    data_dir: str | None = None
    outbox_limit: int = 100_000
    outbox_bytes: int = 64 * 1024 * 1024
    send_queue_bytes: int = 64 * 1024 * 1024
    max_hops: int = 16
    seen_limit: int = 100_000
    forget_after: float = 3600.0
    backbone_max_age: float = 86_400.0
    backbone_max_bytes: int = 1024 * 1024 * 1024
    relay_plugins: tuple[str, ...] = ()
    relay_plugin_dir: str | None = None
    relay_plugin_config: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    peer_credentials: Mapping[str, tuple[str, str]] = field(default_factory=dict, repr=False)

    def credentials_for(self, peer: str) -> tuple[str, str] | None:
        """The ``(username, password)`` this node gives ``peer``, if any."""
        return self.peer_credentials.get(peer) or self.peer_credentials.get("*")

    @classmethod
    def checks(cls, base: str) -> dict[str, Check]:
        return {
            "amp_listen": optional(server_endpoint(base)),
            "peers": _peers(base),
            "spool": optional(a_path(base)),
            "data_dir": optional(a_path(base)),
            "outbox_limit": positive(int),
            "outbox_bytes": positive(int),
            "send_queue_bytes": positive(int),
            "max_hops": positive(int),
            "seen_limit": positive(int),
            "forget_after": positive((int, float)),
            "backbone_max_age": positive((int, float)),
            "backbone_max_bytes": positive(int),
            "relay_plugins": _relay_plugins,
            "relay_plugin_dir": optional(a_path(base, "directory")),
            "relay_plugin_config": plugin_config,
            "peer_credentials": _peer_credentials,
        }

    @classmethod
    def derive(cls, values: dict[str, Any], base: str) -> dict[str, Any]:
        """``peer_credentials`` keyed as ``peers`` holds them; the spool in ``data_dir`` unless named."""
        if "peer_credentials" in values:
            values["peer_credentials"] = _resolved_peer_keys(values["peer_credentials"], base)
        if values.get("data_dir") and not values.get("spool"):
            # The node's one SQLite file: what it owes, what it has seen, its plugins' state.
            values["spool"] = os.path.join(values["data_dir"], SPOOL_FILE)
        return values


class RelayConfig(Protocol):
    """What a :class:`~relay.Relay` reads of a node's config (``satellites.Config`` is one)."""

    @property
    def node(self) -> NodeSettings:
        """The settings every part of the node shares."""

    @property
    def auth(self) -> AuthSettings:
        """Who may link to the node."""

    @property
    def relay(self) -> RelaySettings:
        """The relay's own settings."""

    @property
    def path(self) -> str:
        """The config file, or empty for a config made in code."""


def _relay_plugins(key: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"expected a list of module names, got {type_name(value)}")
    for name in value:
        if not isinstance(name, str) or not all(
            part.isidentifier() and not keyword.iskeyword(part) for part in name.split(".")
        ):
            raise ValueError(f"{name!r} is not a module name")
    if len(set(value)) != len(value):
        raise ValueError("a module is listed twice")
    return tuple(value)


def _peers(base: str) -> Check:
    def check(key: str, value: object) -> tuple[str, ...]:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"expected a list of peers, got {type_name(value)}")
        return tuple(check_peer(peer, base) for peer in value)

    return check


def _credential_pair(what: str, value: object) -> tuple[str, str]:
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 2
        or not all(isinstance(v, str) for v in value)
        or not value[0]
        or ":" in value[0]
    ):
        raise ValueError(f"{what}: expected a (username, password) pair of strings, without ':' in the name")
    return (value[0], value[1])


def _peer_credentials(key: str, value: object) -> dict[str, tuple[str, str]]:
    if isinstance(value, (list, tuple)):
        return {"*": _credential_pair("peer_credentials", value)}
    if not isinstance(value, dict):
        raise ValueError(
            f"expected a (username, password) pair or a dict of peer to pair, got {type_name(value)}"
        )
    result = {}
    for peer, pair in value.items():
        if not isinstance(peer, str):
            raise ValueError(f"key {peer!r} is not a peer")
        result[peer] = _credential_pair(repr(peer), pair)
    return result


def _resolved_peer_keys(credentials: Mapping[str, tuple[str, str]], base: str) -> dict[str, tuple[str, str]]:
    """
    ``peer_credentials`` keyed by the peers as ``peers`` holds them (the
    paths of ``ssl:`` strings made absolute), so that
    :meth:`RelaySettings.credentials_for` finds each under the string it is given.
    """
    resolved = {}
    for peer, pair in credentials.items():
        try:
            resolved[resolve_paths(peer, base, server=False)] = pair
        except ValueError:  # not an endpoint string: kept as written
            resolved[peer] = pair
    return resolved
