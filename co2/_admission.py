"""
How many connections a listener holds at once.

A listener past its ``max_connections`` refuses new connections; so that
a flood of them cannot also flood the log, refusals are logged at most
once every :data:`REPORT_EVERY` seconds, with how many there were.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger

__all__ = ["REPORT_EVERY", "Admission"]

REPORT_EVERY = 10.0
"""Seconds between two log lines about refused connections."""

_log = Logger(namespace="co2.limits")


class Admission:
    """
    Counts the open connections of the listener named ``what`` against
    ``limit``; ``clock`` (a reactor) times the refusal reports.
    """

    def __init__(self, limit: int, what: str, clock: Any) -> None:
        self.limit = limit
        self.what = what
        self.clock = clock
        self.open = 0
        self.refused = 0
        self._unreported = 0
        self._reported_at: float | None = None

    def admit(self) -> bool:
        """Count a new connection in; False (and counted as refused) when full."""
        if self.open < self.limit:
            self.open += 1
            return True
        self.refused += 1
        self._unreported += 1
        now = self.clock.seconds()
        if self._reported_at is None or now - self._reported_at >= REPORT_EVERY:
            _log.warn(
                "{what}: {count} connection(s) refused: {limit} already open (max_connections)",
                what=self.what, count=self._unreported, limit=self.limit,
            )
            self._reported_at = now
            self._unreported = 0
        return False

    def release(self) -> None:
        """A connection counted in has closed."""
        self.open -= 1
