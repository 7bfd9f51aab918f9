"""
Routing between co2 nodes: links, outboxes, de-duplication, the method
directory, relay plugins and the standalone relay.

Every satellite embeds a :class:`Relay`; ``co2-relay`` runs one alone.
A relay plugin provides :class:`IRelayPlugin` (see ``docs/relay.md``).
"""

from relay._directory import Directory
from relay._errors import RelayError
from relay._outbox import Entry, Outbox
from relay._plugins import IRelayPlugin, RelayPluginError, apply_relay_plugins, load_relay_plugins
from relay._relay import AMPListenError, Relay
from relay._router import Router
from relay._seen import SeenIds
from relay._spool import Spool, SpoolError, SpoolState

__all__ = [
    "AMPListenError",
    "Directory",
    "Entry",
    "IRelayPlugin",
    "Outbox",
    "Relay",
    "RelayError",
    "RelayPluginError",
    "Router",
    "SeenIds",
    "Spool",
    "SpoolError",
    "SpoolState",
    "apply_relay_plugins",
    "load_relay_plugins",
]
