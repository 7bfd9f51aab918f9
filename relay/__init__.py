"""
The routing engine: links, outboxes, de-duplication, the method
directory, relay plugins, and the relay's own service.

:class:`Relay` is the API the rest of co2 uses; every satellite embeds
one, and ``co2-relay`` runs one alone in a :class:`RelayService`.  A
relay plugin provides :class:`IRelayPlugin` (see ``docs/relay.md``).
Each AMP connection is a :class:`LinkProtocol`, made by a
:class:`LinkServerFactory` for a link a peer opens and by a
:class:`PeerFactory` for one this node dials.
"""

from relay._dialling import PeerFactory
from relay._directory import Directory
from relay._errors import RelayError
from relay._links import LinkProtocol, LinkServerFactory
from relay._outbox import Entry, Outbox
from relay._plugins import IRelayPlugin, RelayPluginError, apply_relay_plugins, load_relay_plugins
from relay._relay import Relay
from relay._router import Router
from relay._seen import SeenIds
from relay._service import Links, RelayService, advertised_address
from relay._settings import RelayConfig, RelaySettings
from relay._snapshot import Counters, LinkView, Snapshot
from relay._spool import Spool, SpoolError, SpoolState
from relay._turn import Handover, Local, Turn

__all__ = [
    "Counters",
    "Directory",
    "Entry",
    "Handover",
    "IRelayPlugin",
    "LinkProtocol",
    "LinkServerFactory",
    "LinkView",
    "Links",
    "Local",
    "Outbox",
    "PeerFactory",
    "Relay",
    "RelayConfig",
    "RelayError",
    "RelayPluginError",
    "RelayService",
    "RelaySettings",
    "Router",
    "SeenIds",
    "Snapshot",
    "Spool",
    "SpoolError",
    "SpoolState",
    "Turn",
    "advertised_address",
    "apply_relay_plugins",
    "load_relay_plugins",
]
