"""
How ``co2-satellite`` and ``co2-relay`` write their log: ``--log-format
text`` (Twisted's usual lines) or ``--log-format json`` (one JSON object
per event and per line, for log collectors).
"""

from __future__ import annotations

import datetime
import json
from typing import Any, TextIO

from twisted.logger import (
    FileLogObserver,
    FilteringLogObserver,
    ILogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    formatEvent,
    textFileLogObserver,
)
from twisted.python.failure import Failure

__all__ = ["LOG_FORMATS", "event_as_record", "jsonLineObserver", "log_observer"]

LOG_FORMATS = ("text", "json")
"""The values ``--log-format`` takes; the first is the default."""


def event_as_record(event: dict[str, Any]) -> dict[str, Any]:
    """
    The JSON object ``--log-format json`` writes for ``event``: ``time``
    (ISO 8601, UTC), ``level``, ``namespace``, ``message`` (the event's
    text, as ``--log-format text`` shows it) and, when the event carries
    one, ``failure`` (the traceback).
    """
    when = event.get("log_time")
    record: dict[str, Any] = {
        "time": (
            datetime.datetime.fromtimestamp(when, datetime.UTC).isoformat()
            if isinstance(when, (int, float)) else None
        ),
        "level": getattr(event.get("log_level"), "name", "info"),
        "namespace": event.get("log_namespace", "-"),
        "message": formatEvent(event),
    }
    failure = event.get("log_failure")
    if isinstance(failure, Failure):
        record["failure"] = failure.getTraceback()
    return record


def jsonLineObserver(out: TextIO) -> FileLogObserver:
    """
    A log observer writing each event to ``out`` as one line of JSON
    (:func:`event_as_record`).  Unlike Twisted's ``jsonFileLogObserver``,
    whose records start with a record separator and keep every field of
    the event for Twisted to read back, each line is a plain JSON object
    that any log collector reads.
    """
    return FileLogObserver(out, lambda event: json.dumps(event_as_record(event), default=repr) + "\n")


def log_observer(log_format: str, level: LogLevel, out: TextIO) -> ILogObserver:
    """The observer writing events of ``level`` and above to ``out`` in ``log_format``."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"expected one of {', '.join(LOG_FORMATS)}, got {log_format!r}")
    observer = jsonLineObserver(out) if log_format == "json" else textFileLogObserver(out)
    predicate = LogLevelFilterPredicate(defaultLogLevel=level)
    for namespace in QUIETER:
        # Twisted's own chatter about connections, which co2's lines say better.
        predicate.setLogLevelForNamespace(namespace, max(level, LogLevel.warn, key=_rank))
    return FilteringLogObserver(observer, [predicate])


QUIETER = (
    "twisted.application._client_service",  # "Scheduling retry 8 to connect <...> in 8.85 seconds"
    "twisted.application.internet",
    "twisted.protocols.amp",  # "LinkProtocol connection established (HOST:..., PEER:...)"
)
"""Namespaces logged from warnings up only: co2 logs what they say at info, naming the peer."""


def _rank(level: LogLevel) -> int:
    return list(LogLevel.iterconstants()).index(level)
