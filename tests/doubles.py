"""
Test doubles of the project's own tests (plugin authors get theirs from
``co2.testing``):

- :data:`RECORDER` — a plugin module that keeps what it receives.
- :func:`format_events` — captured log events as text.
- :class:`MemoryNetwork` — nodes joined by in-memory AMP links that a
  test connects, cuts and runs until nothing moves: ``co2.testing``'s,
  with :class:`MemoryLink` and :class:`NotSettled`, named here too.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from twisted.logger import formatEvent

from co2.testing import MemoryLink, MemoryNetwork, NotSettled

__all__ = ["RECORDER", "MemoryLink", "MemoryNetwork", "NotSettled", "format_events"]


RECORDER = """
from co2 import Co2Plugin

class X_Recorder(Co2Plugin):
    def __init__(self, var_dict):
        Co2Plugin.__init__(self, var_dict)
        self.got = []

    def receive(self, data_dict):
        self.got.append(data_dict)

    def x_send(self, data):
        self.send(data)
        return True
"""
"""
The source of a plugin module whose ``X_Recorder`` keeps every message it
receives in ``got`` and sends ``data`` when ``x_send(data)`` is called.
"""


def format_events(events: Iterable[dict[str, Any]]) -> str:
    """Log events (as ``twisted.logger`` emits them) as text, tracebacks included."""
    parts = []
    for event in events:
        parts.append(formatEvent(event))
        if "log_failure" in event:
            parts.append(event["log_failure"].getTraceback())
    return "\n".join(parts)
