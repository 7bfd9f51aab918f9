"""
How many connections a listener holds at once.

A listener past its ``max_connections`` refuses new connections; so that
a flood of them cannot also flood the log, refusals are logged through a
:class:`~co2._ratelog.RateLimitedLog`: a few lines every
:data:`REPORT_EVERY` seconds, then how many more there were.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger, LogLevel

from co2._ratelog import RateLimitedLog

__all__ = ["REPORT_EVERY", "Admission"]

REPORT_EVERY = 10.0
"""Seconds over which a few refused connections are logged one by one, and the others counted."""

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
        self.log = RateLimitedLog(_log, clock, every=REPORT_EVERY)
        """Where refused connections are logged, a few at a time."""

    def admit(self) -> bool:
        """Count a new connection in; False (and counted as refused) when full."""
        if self.open < self.limit:
            self.open += 1
            return True
        self.refused += 1
        self.log.emit(
            "refused", LogLevel.warn, "{what}: refused a connection: {limit} already open (max_connections)",
            more="{what}: {count} more connection(s) refused within {seconds:g}s: "
                 "{limit} already open (max_connections)",
            what=self.what, limit=self.limit,
        )
        return False

    def release(self) -> None:
        """A connection counted in has closed."""
        self.open -= 1

    def close(self) -> None:
        """The listener stopped: the count of refusals not logged yet is logged now, and no timer is left."""
        self.log.close()
