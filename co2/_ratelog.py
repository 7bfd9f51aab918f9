"""
Log lines that can repeat once per event (a message dropped, a
connection or a request refused), rate-limited so that a flood of events
cannot flood the log too: :class:`RateLimitedLog`.

Every line has a *kind*, a name for the event it reports.  Per kind, the
first :data:`LINES` lines of a window of :data:`EVERY` seconds are logged
as they come; the others are only counted, and when the window ends one
line says how many more there were (and, for lines that carry a number,
what those numbers add up to).  A window starts with the first line of
its kind after the last window ended.  A kind that held lines back has
one timer pending, which logs its count; one that held nothing has none::

    limited = RateLimitedLog(Logger(namespace="co2.relay"), reactor)
    limited.emit(
        "outbox full", LogLevel.warn, "link {key}: dropped {count} message(s)",
        more="dropped {total:,} more message(s) within {seconds:g}s", sums="count",
        key=key, count=len(entries),
    )
    ...
    limited.close()  # the node stops: the counts are logged now, no timer is left

At most ``kinds`` kinds are tracked at once (a kind is forgotten once its
window ends); past that, lines of new kinds share one window of
:data:`OTHER_KINDS`, so that memory and the log stay bounded whatever
names the callers make up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger, LogLevel, formatEvent

__all__ = ["EVERY", "LINES", "MAX_KINDS", "OTHER_KINDS", "RateLimitedLog"]

LINES = 10
"""Lines of one kind logged one by one per window, at most."""

EVERY = 10.0
"""Seconds a window lasts: past its lines, the others of the window are counted and reported at its end."""

MAX_KINDS = 256
"""Kinds tracked at once, by default; past that, new kinds share the window of :data:`OTHER_KINDS`."""

OTHER_KINDS = "other kinds"
"""How the count line names the kinds that came past ``kinds`` (see :class:`RateLimitedLog`)."""


@dataclass(slots=True)
class _Window:
    """The lines of one kind since its window started: how many were logged, and those held back."""

    started: float
    logged: int = 0
    held: int = 0
    total: int = 0
    sums: str | None = None
    level: LogLevel = LogLevel.info
    format: str = ""
    more: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    timer: IDelayedCall | None = None


class RateLimitedLog:
    """
    Logs through ``log`` at most ``lines`` lines of each kind every
    ``every`` seconds of ``clock``, and one line with the count of the
    others when the window ends; at most ``kinds`` kinds at once.

    A kind is a name the code chooses (never text a peer sent, which
    would only fill the shared window of :data:`OTHER_KINDS`).  Use it in
    the reactor's thread: it sets timers on ``clock``.
    """

    def __init__(
        self,
        log: Logger,
        clock: IReactorTime,
        *,
        lines: int = LINES,
        every: float = EVERY,
        kinds: int = MAX_KINDS,
    ) -> None:
        if lines < 1 or not every > 0 or kinds < 1:
            raise ValueError(f"lines ({lines}) and kinds ({kinds}) must be >= 1, every ({every}) > 0")
        self.log = log
        self.clock = clock
        self.lines = lines
        self.every = every
        self.kinds = kinds
        self.closed = False
        """Whether :meth:`close` was called: lines are then logged as they come, none counted."""
        # In the order the windows started (None: the kinds past ``kinds``),
        # so that those that ended are at the front.
        self._windows: dict[str | None, _Window] = {}

    def __len__(self) -> int:
        """How many kinds have a window open (those past ``kinds`` count as one)."""
        return len(self._windows)

    def emit(
        self,
        kind: str,
        level: LogLevel,
        format: str,
        /,
        *,
        more: str | None = None,
        sums: str | None = None,
        **fields: Any,
    ) -> None:
        """
        Log ``format`` with ``fields`` at ``level``, as ``Logger.emit``
        does, if fewer than ``lines`` lines of ``kind`` were logged in its
        window; otherwise count it.

        The line that ends a window that held lines back is ``more``,
        formatted with the fields of the last line held back (less a
        ``log_failure``, whose traceback goes with the lines logged one
        by one only) and these: ``count``, how many lines were held back;
        ``seconds``, how long a window lasts; with ``sums`` (the name of
        an integer field of the lines), ``total``, the sum of that field
        over the lines held back.  By default ``more`` says the kind, the
        count (and the total), and ``last``: the last line held back.
        """
        if self.closed:
            self.log.emit(level, format, **fields)
            return
        now = self.clock.seconds()
        key, window = self._window(kind, now)
        if window.logged < self.lines:
            window.logged += 1
            self.log.emit(level, format, **fields)
            return
        window.held += 1
        window.level, window.format, window.fields = level, format, fields
        if key is not None:
            window.more = more
            if sums is not None:
                window.sums = sums
                window.total += fields[sums]
        if window.timer is None:
            window.timer = self.clock.callLater(window.started + self.every - now, self._ended, key)

    def flush(self) -> None:
        """
        End every window now: the count of each kind that held lines back
        is logged, no timer is left, and each kind's next line starts a
        window afresh.
        """
        for key in list(self._windows):
            self._end(key)

    def close(self) -> None:
        """
        :meth:`flush`, for good: later lines are logged as they come and
        none sets a timer (a node that stops leaves none pending, and what
        it logs while it stops is not lost).
        """
        self.flush()
        self.closed = True

    def _window(self, kind: str, now: float) -> tuple[str | None, _Window]:
        """The open window of ``kind`` (its key: ``kind``, or None past ``kinds``), started if need be."""
        window = self._windows.get(kind)
        if window is not None:
            if now - window.started < self.every:
                return kind, window
            self._end(kind)
        self._forget_ended(now)
        key: str | None = kind
        if len(self._windows) - (None in self._windows) >= self.kinds:
            key = None
            window = self._windows.get(None)
            if window is not None:
                return None, window
        window = self._windows[key] = _Window(now)
        return key, window

    def _forget_ended(self, now: float) -> None:
        """End the windows whose time has passed: at the front, as windows are in the order they started."""
        windows = self._windows
        while windows:
            key, window = next(iter(windows.items()))
            if now - window.started < self.every:
                return
            self._end(key)

    def _ended(self, key: str | None) -> None:
        window = self._windows.get(key)
        if window is not None:
            window.timer = None
            self._end(key)

    def _end(self, key: str | None) -> None:
        """End the window of ``key``: log its count if it held lines back, and cancel its timer."""
        window = self._windows.pop(key)
        if window.timer is not None and window.timer.active():
            window.timer.cancel()
        window.timer = None
        if window.held:
            fields = {name: value for name, value in window.fields.items() if name != "log_failure"}
            more = window.more
            if more is None or key is None:
                more = _default_more(key, window.sums)
                fields["last"] = formatEvent({**fields, "log_format": window.format})
            fields.update(count=window.held, seconds=self.every)
            if window.sums is not None:
                fields["total"] = window.total
            self.log.emit(window.level, more, **fields)


def _default_more(key: str | None, sums: str | None) -> str:
    """The count line of kind ``key`` (None: the kinds past the bound) when its caller gives none."""
    kind = OTHER_KINDS if key is None else _literal(key)
    summed = "" if sums is None else f" ({{total}} {_literal(sums)})"
    return f"{kind}: {{count}} more{summed} within {{seconds:g}}s not logged one by one; the last: {{last}}"


def _literal(text: str) -> str:
    """``text`` as a part of a format string that says it as it is."""
    return text.replace("{", "{{").replace("}", "}}")
