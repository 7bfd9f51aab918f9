"""
The plugin the chaos command loads twice per satellite (modules ``a`` and
``b``): it emits messages with ids the caller chooses and keeps, in
``self.state``, how many times it received each id.  The state is
committed with the delivery of each message, so after a SIGKILL the record
holds exactly the messages the plugin received, each once.
"""

from __future__ import annotations

from typing import Any

from co2 import Co2Plugin

RECEIVED = "r:"
"""Key prefix: how many times the message with this uid was received."""
EMITTED = "e:"
"""Key prefix: this plugin emitted the message with this uid."""
ODD = "odd"
"""Key: how many messages arrived without a uid."""


class Recorder(Co2Plugin):
    """Emits messages on request and records each one it receives."""

    def receive(self, data_dict: dict[str, Any]) -> None:
        data = data_dict["data"]
        uid = data.get("uid") if isinstance(data, dict) else None
        key = RECEIVED + uid if isinstance(uid, str) else ODD
        self.state[key] = self.state.get(key, 0) + 1

    def x_emit(self, uid: str) -> bool:
        """Send a message carrying ``uid`` to every other plugin; note it as emitted."""
        self.send({"uid": uid, "by": str(self)})
        self.state[EMITTED + uid] = True
        return True

    def x_received(self) -> dict[str, int]:
        """How many times each uid was received (``odd``: messages without one)."""
        record = {}
        for key, value in self.state.items():
            if key.startswith(RECEIVED):
                record[key[len(RECEIVED):]] = value
            elif key == ODD:
                record[ODD] = value
        return record

    def x_emitted(self) -> list[str]:
        """The uids this plugin emitted."""
        return [key[len(EMITTED):] for key in self.state if key.startswith(EMITTED)]
