"""co2.testing.TestReactor runs delayed calls in the order twisted's Clock runs them, even moved ones."""

from __future__ import annotations

from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st
from twisted.internet.task import Clock

from co2.testing import TestReactor

# What a test does to a clock: make a call, move or cancel one made before, let time pass.
_STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("call"), st.sampled_from([0.0, 0.5, 1.0, 2.0])),
        st.tuples(
            st.sampled_from(["reset", "delay"]), st.integers(0, 5), st.sampled_from([-1.0, 0.0, 0.5, 3.0])
        ),
        st.tuples(st.just("cancel"), st.integers(0, 5)),
        st.tuples(st.just("advance"), st.sampled_from([0.0, 0.5, 1.0, 5.0])),
    ),
    max_size=40,
)


def _run(clock: Clock, steps: list[tuple[Any, ...]]) -> list[tuple[int, float]]:
    """Play ``steps`` on ``clock``; what ran, in order, with the time it ran at."""
    ran: list[tuple[int, float]] = []
    calls = []

    def make(delay: float) -> None:
        number = len(calls)
        calls.append(clock.callLater(delay, lambda: ran.append((number, clock.seconds()))))

    for step in steps:
        kind = step[0]
        if kind == "call":
            make(step[1])
        elif kind == "advance":
            clock.advance(step[1])
        elif calls:
            call = calls[step[1] % len(calls)]
            if not call.active():
                continue
            if kind == "cancel":
                call.cancel()
            elif kind == "reset":
                call.reset(max(0.0, step[2]))
            else:
                call.delay(step[2])
    clock.advance(100)
    return ran


@given(_STEPS)
@example([("call", 0.0), ("call", 1.0), ("delay", 0, 3.0), ("advance", 5.0)])
@example([("call", 0.0), ("call", 1.0), ("reset", 0, 3.0), ("advance", 5.0)])
@example([("call", 2.0), ("call", 1.0), ("reset", 0, 0.0), ("advance", 0.0)])
def test_calls_run_as_clock_runs_them(steps):
    """Calls made, reset, delayed and cancelled run in the same order and at the same times as on a Clock."""
    assert _run(TestReactor(), steps) == _run(Clock(), steps)


def test_calls_made_by_a_call_run_in_order():
    """A call made while the clock advances runs in that advance when it is due, after those due before it."""
    reactor = TestReactor()
    ran: list[str] = []
    reactor.callLater(1, lambda: (ran.append("first"), reactor.callLater(0, ran.append, "made by first")))
    reactor.callLater(1, ran.append, "second")
    reactor.advance(1)
    assert ran == ["first", "second", "made by first"]
