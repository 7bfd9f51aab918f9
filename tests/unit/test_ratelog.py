"""
RateLimitedLog: per kind, a few lines per window as they come, the others
counted and reported by one line when the window ends; bounded in timers,
kinds and lines, and nothing left pending or lost once closed.
"""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.task import Clock
from twisted.logger import Logger, LogLevel, formatEvent
from twisted.python.failure import Failure

from co2._ratelog import EVERY, LINES, MAX_KINDS, OTHER_KINDS, RateLimitedLog

NAMESPACE = "co2.test.ratelog"
FEW = 5
"""Lines per window of the logs of these tests (the default is LINES)."""


@pytest.fixture
def clock() -> Clock:
    """A clock of the test's own."""
    return Clock()


@pytest.fixture
def limited(clock: Clock) -> RateLimitedLog:
    """A RateLimitedLog of FEW lines per window on ``clock``."""
    return RateLimitedLog(Logger(namespace=NAMESPACE), clock, lines=FEW)


@pytest.fixture
def lines(logged: list[dict[str, Any]]) -> Any:
    """``lines()``: the lines logged in NAMESPACE so far, formatted."""
    return lambda: [formatEvent(e) for e in logged if e.get("log_namespace") == NAMESPACE]


def drop(limited: RateLimitedLog, count: int = 1, key: str = "peer:a") -> None:
    """A line as Router._dropped would log it, counting ``count`` messages."""
    limited.emit(
        "outbox full", LogLevel.warn, "link {key}: dropped {count} message(s)",
        more="dropped {total:,} more message(s) within {seconds:g}s ({count} lines held back)",
        sums="count", key=key, count=count,
    )


def refuse(limited: RateLimitedLog, n: int, kind: str = "refused") -> None:
    """A line without a count, of ``kind``."""
    limited.emit(kind, LogLevel.info, "refused connection {n}", n=n)


def test_a_few_lines_pass_then_silence(limited: RateLimitedLog, lines: Any, clock: Clock) -> None:
    """The first FEW lines of a window are logged as they come; the rest are not, until it ends."""
    for n in range(100):
        refuse(limited, n)
    assert lines() == [f"refused connection {n}" for n in range(FEW)]
    clock.advance(EVERY - 0.1)
    assert len(lines()) == FEW


def test_the_count_line_comes_when_the_window_ends(limited: RateLimitedLog, lines: Any, clock: Clock) -> None:
    """At the window's end one line says how many were held back, and what their counts add up to."""
    for _ in range(100_000):
        drop(limited)
    clock.advance(EVERY)
    assert lines()[FEW:] == ["dropped 99,995 more message(s) within 10s (99995 lines held back)"]
    assert clock.getDelayedCalls() == []


def test_the_sum_is_of_the_lines_held_back(limited: RateLimitedLog, lines: Any, clock: Clock) -> None:
    """``sums`` adds up the named field of the lines held back only, not of those logged."""
    for count in (100, 100, 100, 100, 100, 1, 2, 3):
        drop(limited, count)
    clock.advance(EVERY)
    assert lines()[-1] == "dropped 6 more message(s) within 10s (3 lines held back)"


def test_the_count_line_carries_its_numbers_as_fields(
    limited: RateLimitedLog, logged: list[dict[str, Any]], clock: Clock
) -> None:
    """The count line's event holds count, seconds and total, and the fields of the last line held back."""
    for count in range(1, 9):
        drop(limited, count, key=f"peer:{count}")
    clock.advance(EVERY)
    event = logged[-1]
    assert (event["count"], event["seconds"], event["total"], event["key"]) == (3, EVERY, 6 + 7 + 8, "peer:8")
    assert event["log_level"] is LogLevel.warn


def test_the_default_count_line_names_the_kind_and_the_last_line(
    limited: RateLimitedLog, lines: Any, clock: Clock
) -> None:
    """Without ``more``, the count line says the kind, the count, the total, and the last line held back."""
    for n in range(8):
        refuse(limited, n, kind="{odd} kind")
    for count in (10, 20, 30, 40, 50, 1, 2):
        limited.emit("drops", LogLevel.warn, "dropped {count}", sums="count", count=count)
    clock.advance(EVERY)
    assert sorted(lines()[-2:]) == [
        "drops: 2 more (3 count) within 10s not logged one by one; the last: dropped 2",
        "{odd} kind: 3 more within 10s not logged one by one; the last: refused connection 7",
    ]


def test_a_window_that_held_nothing_sets_no_timer(limited: RateLimitedLog, lines: Any, clock: Clock) -> None:
    """FEW lines or fewer in a window: all logged, no count line, no DelayedCall."""
    for n in range(FEW):
        refuse(limited, n)
    assert clock.getDelayedCalls() == []
    clock.advance(EVERY)
    assert len(lines()) == FEW


def test_one_timer_per_kind(limited: RateLimitedLog, clock: Clock) -> None:
    """However many lines a kind holds back, one timer is pending for it, due when its window ends."""
    clock.advance(3)
    for n in range(1000):
        refuse(limited, n)
        refuse(limited, n, kind="other")
    calls = clock.getDelayedCalls()
    assert len(calls) == 2 and {call.getTime() for call in calls} == {3 + EVERY}


def test_a_new_window_logs_again(limited: RateLimitedLog, lines: Any, clock: Clock) -> None:
    """After the window ends, the next lines of the kind are logged one by one again, then counted again."""
    for n in range(8):
        refuse(limited, n)
    clock.advance(EVERY)
    clock.advance(25)
    for n in range(100, 109):
        refuse(limited, n)
    assert lines()[-FEW:] == [f"refused connection {n}" for n in range(100, 100 + FEW)]
    clock.advance(EVERY)
    assert [line for line in lines() if "more" in line] == [
        "refused: 3 more within 10s not logged one by one; the last: refused connection 7",
        "refused: 4 more within 10s not logged one by one; the last: refused connection 108",
    ]


def test_a_window_lasts_from_its_first_line(limited: RateLimitedLog, lines: Any, clock: Clock) -> None:
    """A window opens with the first line of its kind: a line EVERY seconds later opens the next."""
    refuse(limited, 0)
    clock.advance(EVERY - 1)
    for n in range(1, 10):
        refuse(limited, n)
    clock.advance(1)
    assert lines()[-1] == "refused: 5 more within 10s not logged one by one; the last: refused connection 9"
    refuse(limited, 10)
    assert lines()[-1] == "refused connection 10"


def test_kinds_are_independent(limited: RateLimitedLog, lines: Any, clock: Clock) -> None:
    """A flood of one kind holds back nothing of another: each has its own lines and its own count."""
    for n in range(50):
        refuse(limited, n, kind="flood")
    refuse(limited, 1000, kind="rare")
    assert lines()[-1] == "refused connection 1000"
    clock.advance(EVERY)
    assert lines()[-1].startswith("flood: 45 more within 10s")


def test_flush_logs_the_counts_now_and_starts_afresh(
    limited: RateLimitedLog, lines: Any, clock: Clock
) -> None:
    """flush: each kind's count now, no timer left, and the next lines are logged one by one again."""
    for n in range(7):
        refuse(limited, n)
        refuse(limited, n, kind="other")
    limited.flush()
    assert clock.getDelayedCalls() == [] and len(limited) == 0
    assert sorted(line.partition(":")[0] for line in lines() if " more " in line) == ["other", "refused"]
    refuse(limited, 99)
    assert lines()[-1] == "refused connection 99"


def test_close_flushes_and_leaves_no_timer(limited: RateLimitedLog, lines: Any, clock: Clock) -> None:
    """close: the counts are logged now and no timer is left; later lines are logged as they come."""
    for _ in range(20):
        drop(limited)
    limited.close()
    assert lines()[-1] == "dropped 15 more message(s) within 10s (15 lines held back)"
    assert clock.getDelayedCalls() == []
    for n in range(20):
        refuse(limited, n)
    assert clock.getDelayedCalls() == [] and lines()[-1] == "refused connection 19"
    clock.advance(EVERY)
    assert lines()[-1] == "refused connection 19"


def test_a_traceback_goes_with_the_lines_logged_only(
    limited: RateLimitedLog, logged: list[dict[str, Any]], clock: Clock
) -> None:
    """A line's log_failure is logged with it; the count line carries no Failure."""
    for _ in range(6):
        failure = Failure(ZeroDivisionError())
        limited.emit("failed", LogLevel.critical, "answering a request", log_failure=failure)
    clock.advance(EVERY)
    ours = [e for e in logged if e.get("log_namespace") == NAMESPACE]
    assert ["log_failure" in e for e in ours] == [True] * FEW + [False]


def test_kinds_past_the_bound_share_one_window(clock: Clock, lines: Any) -> None:
    """Past ``kinds`` open windows, new kinds share one: FEW lines, then one count, however many."""
    limited = RateLimitedLog(Logger(namespace=NAMESPACE), clock, lines=FEW, kinds=3)
    for n in range(1000):
        refuse(limited, n, kind=f"kind {n}")
    assert len(limited) == 4
    assert lines() == [f"refused connection {n}" for n in range(3 + FEW)]
    clock.advance(EVERY)
    assert lines()[-1] == (
        f"{OTHER_KINDS}: {1000 - 3 - FEW} more within 10s not logged one by one; "
        "the last: refused connection 999"
    )
    assert clock.getDelayedCalls() == []


def test_memory_is_bounded_and_ended_windows_are_forgotten(clock: Clock) -> None:
    """At most MAX_KINDS windows and one for the rest are kept; those whose time has passed are forgotten."""
    limited = RateLimitedLog(Logger(namespace=NAMESPACE), clock)
    for n in range(10 * MAX_KINDS):
        limited.emit(f"kind {n}", LogLevel.debug, "line")
    assert len(limited) == MAX_KINDS + 1
    clock.advance(EVERY)
    limited.emit("fresh", LogLevel.debug, "line")
    assert len(limited) == 1


def test_the_defaults(clock: Clock, lines: Any) -> None:
    """By default LINES lines of a kind are logged every EVERY seconds."""
    limited = RateLimitedLog(Logger(namespace=NAMESPACE), clock)
    for n in range(3 * LINES):
        refuse(limited, n)
    assert len(lines()) == LINES
    clock.advance(EVERY)
    assert lines()[-1].startswith(f"refused: {2 * LINES} more within {EVERY:g}s")


def test_the_limits_are_checked() -> None:
    """A log that could log nothing, or whose windows never end, is refused at once."""
    for bad in ({"lines": 0}, {"every": 0.0}, {"kinds": 0}):
        with pytest.raises(ValueError, match="must be"):
            RateLimitedLog(Logger(), Clock(), **bad)
