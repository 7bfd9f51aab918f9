"""
Now or later: the one place that tells a result ready now from a result
to wait for.

A method called over XML-RPC nearly always answers at once, and a
Deferred made for every such answer would cost the common call more than
the rest of its way through the server.  So a result on its way to a
client is a :data:`Soon`: the value itself when it is ready, a Deferred
(or a coroutine, from ``async def``) when it is not.  Only :func:`ready`
looks to see which.  The other pieces hand a ``Soon`` on and write what
they do with the value as a plain function given to :func:`then`; one
that does something else with an answer ready now (the channel writes
it at once) asks :func:`ready`, and :func:`as_deferred` gives what is
still to come as a Deferred.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import TypeAlias, TypeGuard, TypeVar

from twisted.internet.defer import Deferred, succeed
from twisted.python.failure import Failure

__all__ = ["Soon", "as_deferred", "ready", "then"]

T = TypeVar("T")
A = TypeVar("A")
R = TypeVar("R")

Soon: TypeAlias = T | Deferred[T]
"""A result ready now (the value) or later (a Deferred that fires with it)."""

# What methods return when they answer at once, seen by type alone:
# isinstance() against Deferred (an abstract class's subclass) costs a
# slow check for every other value.
_PLAIN = frozenset({int, float, str, bytes, bool, list, dict, tuple, type(None)})


def ready(result: Soon[T]) -> TypeGuard[T]:
    """Whether ``result`` is a value, ready now: neither a Deferred nor a coroutine."""
    kind = type(result)
    if kind in _PLAIN:
        return True
    return not (kind is Deferred or kind is types.CoroutineType or isinstance(result, Deferred))


def as_deferred(result: Soon[T]) -> Deferred[T]:
    """
    ``result`` as a Deferred: itself when it is one, one running it when
    it is a coroutine, one already fired with it when it is ready now.
    """
    if ready(result):
        return succeed(result)
    if type(result) is types.CoroutineType:
        return Deferred.fromCoroutine(result)
    return result  # type: ignore[return-value]


def then(
    result: Soon[T],
    callback: Callable[[T, A], R],
    arg: A,
    failed: Callable[[Failure, A], R] | None = None,
) -> Soon[R]:
    """
    ``callback(value, arg)`` once ``result`` is ready: now, giving what
    it returns, or later, giving a Deferred that fires with it.  A
    Deferred that fails (or whose ``callback`` raises) is handed to
    ``failed(failure, arg)`` when given.
    """
    # One argument, not *args, and the plain types seen here: this runs
    # several times for every call.
    if type(result) in _PLAIN or ready(result):
        return callback(result, arg)  # type: ignore[arg-type]
    later = as_deferred(result).addCallback(callback, arg)
    if failed is not None:
        later.addErrback(failed, arg)
    return later
