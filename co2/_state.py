"""
``self.state``: a plugin's own key-value store.

Each plugin gets a :class:`PluginState`, a mutable mapping of ``str`` keys
to XML-RPC values, in a namespace of its own (``str(plugin)``).  Values are
checked as a message's are (:func:`co2._values.check_value`) and kept
packed in msgpack, so what comes back is what a message would carry: a
copy, with tuples as lists, ``bytearray`` as ``bytes`` and datetimes to
the second.

Where the values live is a :class:`StateStore`.  A node with a ``spool``
keeps them in the spool's SQLite database, inside the transaction its
router commits once per reactor turn, so what a plugin writes while it
receives a message is committed together with that message's delivery
(see ``relay/_router.py``).  Without a spool they live in a
:class:`MemoryStore` and are gone when the process ends.
"""

from __future__ import annotations

import threading
from collections.abc import ItemsView, Iterator, MutableMapping
from typing import Any, Protocol

from co2._values import check_text, check_value, pack, unpack

__all__ = ["MemoryStore", "PluginState", "StateStore"]


class StateStore(Protocol):
    """Packed values under ``(namespace, key)``: what a :class:`PluginState` is kept in."""

    def state_get(self, namespace: str, key: str) -> bytes | None:
        """The packed value of ``key``, or None when there is none."""

    def state_put(self, namespace: str, key: str, value: bytes) -> None:
        """Set ``key`` to the packed ``value``."""

    def state_delete(self, namespace: str, key: str) -> bool:
        """Remove ``key``; False when there was none."""

    def state_keys(self, namespace: str) -> list[str]:
        """Every key of ``namespace``, sorted."""

    def state_items(self, namespace: str) -> list[tuple[str, bytes]]:
        """Every key of ``namespace`` with its packed value, sorted by key."""

    def state_count(self, namespace: str) -> int:
        """How many keys ``namespace`` holds."""

    def state_clear(self, namespace: str) -> None:
        """Remove every key of ``namespace``."""


class MemoryStore:
    """A :class:`StateStore` in this process's memory: gone when it ends."""

    def __init__(self) -> None:
        self._spaces: dict[str, dict[str, bytes]] = {}

    def state_get(self, namespace: str, key: str) -> bytes | None:
        return self._spaces.get(namespace, {}).get(key)

    def state_put(self, namespace: str, key: str, value: bytes) -> None:
        self._spaces.setdefault(namespace, {})[key] = value

    def state_delete(self, namespace: str, key: str) -> bool:
        return self._spaces.get(namespace, {}).pop(key, None) is not None

    def state_keys(self, namespace: str) -> list[str]:
        return sorted(self._spaces.get(namespace, ()))

    def state_items(self, namespace: str) -> list[tuple[str, bytes]]:
        return sorted(self._spaces.get(namespace, {}).items())

    def state_count(self, namespace: str) -> int:
        return len(self._spaces.get(namespace, ()))

    def state_clear(self, namespace: str) -> None:
        self._spaces.pop(namespace, None)


class PluginState(MutableMapping[str, Any]):
    """
    The values one plugin keeps: ``str`` keys, XML-RPC values, in
    ``namespace`` of ``store``.  Iteration follows the sorted keys, as they
    were when it began.

    Setting a value co2 cannot carry raises ``TypeError`` (a set, an
    object, a key that is not a ``str``) or ``ValueError`` (NaN, an int
    beyond 64 bits, a string XML cannot hold), naming the plugin and the
    key; nothing is stored then.  With ``thread`` given, using the mapping
    from any other thread raises ``RuntimeError``.
    """

    def __init__(self, store: StateStore, namespace: str, thread: int | None = None) -> None:
        self.store = store
        self.namespace = namespace
        self._thread = thread

    def _here(self) -> None:
        if self._thread is not None and threading.get_ident() != self._thread:
            raise RuntimeError(
                f"{self.namespace}: self.state is used from the reactor thread only; "
                "pass the work back with reactor.callFromThread"
            )

    def __getitem__(self, key: str) -> Any:
        self._here()
        packed = self.store.state_get(self.namespace, key) if type(key) is str else None
        if packed is None:
            raise KeyError(key)
        return unpack(packed)

    def __contains__(self, key: object) -> bool:
        self._here()
        return type(key) is str and self.store.state_get(self.namespace, key) is not None

    def __setitem__(self, key: str, value: Any) -> None:
        self._here()
        if type(key) is not str:
            raise TypeError(f"{self.namespace}: state keys are strings, not {type(key).__name__}")
        try:
            check_text(key)
            check_value(value)
        except (TypeError, ValueError) as e:
            what = type(value).__name__
            raise type(e)(f"{self.namespace}: state[{key!r}] cannot hold {what}: {e}") from None
        self.store.state_put(self.namespace, key, pack(value))

    def __delitem__(self, key: str) -> None:
        self._here()
        if type(key) is not str or not self.store.state_delete(self.namespace, key):
            raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        self._here()
        return iter(self.store.state_keys(self.namespace))

    def __len__(self) -> int:
        self._here()
        return self.store.state_count(self.namespace)

    def items(self) -> ItemsView[str, Any]:
        """The keys and values, read together (one query in a spool)."""
        return _Items(self)

    def clear(self) -> None:
        """Remove every key."""
        self._here()
        self.store.state_clear(self.namespace)

    def __repr__(self) -> str:
        return f"<state of {self.namespace}>"


class _Items(ItemsView[str, Any]):
    """The items of a :class:`PluginState`, read in one go rather than key by key."""

    _mapping: PluginState

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        state = self._mapping
        state._here()
        return iter([(key, unpack(value)) for key, value in state.store.state_items(state.namespace)])
