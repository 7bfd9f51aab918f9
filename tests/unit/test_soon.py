"""The one seam between "now" and "later" (satellites._soon), and that the common call needs no Deferred."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet import defer
from twisted.internet.defer import Deferred, succeed
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure

from satellites import Dispatcher, Method, MethodRegistry
from satellites._dispatch import Encoded
from satellites._soon import as_deferred, ready, then


class Later(Deferred[Any]):
    """A subclass of Deferred, as some libraries return."""


async def seven() -> int:
    return 7


@pytest.mark.parametrize("value", [0, 1.5, "s", b"b", Encoded(b"e"), True, [], {}, (), None, object()])
def test_a_value_is_ready(value: Any) -> None:
    """Every value that is neither a Deferred nor a coroutine is ready now."""
    assert ready(value)


def test_deferreds_and_coroutines_are_not_ready() -> None:
    """A Deferred (fired or not, or of a subclass) and a coroutine are to be waited for."""
    coroutine = seven()
    assert not ready(Deferred()) and not ready(succeed(1)) and not ready(Later()) and not ready(coroutine)
    coroutine.close()


def test_then_calls_back_at_once_on_a_value() -> None:
    """then() on a ready value gives what the callback returns, with no Deferred."""
    assert then(2, lambda value, arg: value * arg, 3) == 6


def test_then_calls_back_later_on_a_deferred() -> None:
    """then() on a Deferred gives that Deferred, which fires with what the callback returns."""
    d: Deferred[int] = Deferred()
    later = then(d, lambda value, arg: value * arg, 3)
    assert isinstance(later, Deferred) and not later.called
    d.callback(2)
    assert later.result == 6


def test_then_runs_a_coroutine() -> None:
    """then() on a coroutine runs it, and calls back with its return value."""
    later = then(seven(), lambda value, arg: value + arg, 1)
    assert isinstance(later, Deferred) and later.result == 8


def test_then_hands_a_failure_to_failed() -> None:
    """A Deferred that fails (or whose callback raises) goes to failed(failure, arg)."""
    seen: list[tuple[type, str]] = []

    def failed(failure: Failure, arg: str) -> str:
        seen.append((failure.type, arg))
        return "handled"

    def boom(value: int, arg: str) -> str:
        raise KeyError(value)

    d: Deferred[int] = Deferred()
    later = then(d, boom, "a", failed)
    d.callback(1)
    assert later.result == "handled"
    refused: Deferred[int] = Deferred()
    later = then(refused, boom, "b", failed)
    refused.errback(ValueError("no"))
    assert later.result == "handled"
    assert seen == [(KeyError, "a"), (ValueError, "b")]


def test_as_deferred_makes_one_only_when_needed() -> None:
    """as_deferred() gives a Deferred as it is, a coroutine run, a value already fired."""
    d: Deferred[int] = Deferred()
    assert as_deferred(d) is d
    assert as_deferred(5).result == 5
    assert as_deferred(seven()).result == 7


def test_a_call_that_answers_at_once_makes_no_deferred(monkeypatch: pytest.MonkeyPatch) -> None:
    """A method that returns a value is answered through the front end without a single Deferred."""
    from test_http import Connection, call, values

    from satellites import make_server

    registry = MethodRegistry()
    registry.add(Method.of("p.m.add", lambda x, y: x + y, owner="p"))
    connection = Connection(make_server(Dispatcher(registry), 4096, MemoryReactorClock()))
    made: list[Deferred[Any]] = []
    original = Deferred.__init__

    def counting(self: Deferred[Any], *args: Any, **kwargs: Any) -> None:
        made.append(self)
        original(self, *args, **kwargs)

    monkeypatch.setattr(defer.Deferred, "__init__", counting)
    connection.send(call("p.m.add", 1, 2) + call("p.m.add", 3, 4))
    assert values(connection) == [3, 7]
    assert made == []
