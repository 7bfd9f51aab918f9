"""
The methods a satellite answers over XML-RPC, by their public name.

Lookup is by exact name in a dict: a name that was not registered reaches
nothing, so no private attribute, dunder or module is ever callable.
"""

from __future__ import annotations

import datetime
import inspect
import math
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from satellites._errors import SatelliteError

__all__ = ["DuplicateMethod", "Method", "MethodRegistry", "signature_of"]

_XMLRPC_TYPES: dict[Any, str] = {
    int: "int",
    bool: "boolean",
    str: "string",
    float: "double",
    bytes: "base64",
    datetime.datetime: "dateTime.iso8601",
    dict: "struct",
    list: "array",
    tuple: "array",
    type(None): "nil",
    None: "nil",
}


def _type_name(annotation: Any) -> str | None:
    origin = typing.get_origin(annotation) or annotation
    return _XMLRPC_TYPES.get(origin)


def signature_of(function: Callable[..., Any]) -> list[list[str]] | str:
    """
    The introspection signature of ``function``: ``[[return, param, ...]]``
    from its annotations, or ``"undef"`` when any of them is missing or is
    not one XML-RPC type.
    """
    try:
        hints = typing.get_type_hints(function)
        parameters = inspect.signature(function).parameters.values()
    except Exception:  # unresolvable annotations or no signature at all
        return "undef"
    names: list[str] = []
    for parameter in parameters:
        if parameter.kind not in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
            return "undef"
        name = _type_name(hints.get(parameter.name, inspect.Parameter.empty))
        if name is None:
            return "undef"
        names.append(name)
    if "return" not in hints:
        return "undef"
    returned = _type_name(hints["return"])
    if returned is None:
        return "undef"
    return [[returned, *names]]


@dataclass(frozen=True)
class Method:
    """
    One callable name.

    ``owner`` is the plugin package it came from (or ``""`` for the
    server's own methods); ``takes_caller`` methods get the caller's
    address as their first argument.
    """

    name: str
    function: Callable[..., Any]
    owner: str = ""
    takes_caller: bool = False
    help: str = ""
    signature: list[list[str]] | str = "undef"
    binder: inspect.Signature | None = field(default=None, compare=False)
    arity: tuple[int, float] | None = field(default=None, compare=False)

    @classmethod
    def of(
        cls, name: str, function: Callable[..., Any], owner: str = "", takes_caller: bool = False
    ) -> Method:
        """Describe ``function`` (help from its docstring, signature from annotations)."""
        try:
            binder: inspect.Signature | None = inspect.signature(function)
        except (TypeError, ValueError):
            binder = None
        if takes_caller and binder is not None:
            binder = binder.replace(parameters=list(binder.parameters.values())[1:])
        return cls(
            name=name,
            function=function,
            owner=owner,
            takes_caller=takes_caller,
            help=inspect.getdoc(function) or "",
            signature="undef" if takes_caller else signature_of(function),
            binder=binder,
            arity=_arity(binder),
        )

    def check_params(self, params: tuple[Any, ...]) -> None:
        """Raise ``TypeError`` when ``params`` do not fit the method."""
        if self.arity is not None and self.arity[0] <= len(params) <= self.arity[1]:
            return
        if self.binder is not None:
            self.binder.bind(*params)


def _arity(binder: inspect.Signature | None) -> tuple[int, float] | None:
    # How many positional arguments fit, when that alone decides whether a
    # call binds: then checking a call costs two comparisons, not a bind.
    if binder is None:
        return None
    least, most = 0, 0.0
    for parameter in binder.parameters.values():
        if parameter.kind is parameter.VAR_POSITIONAL:
            most = math.inf
        elif parameter.kind is parameter.VAR_KEYWORD:
            continue
        elif parameter.kind is parameter.KEYWORD_ONLY:
            if parameter.default is parameter.empty:
                return None
        else:
            most += 1
            if parameter.default is parameter.empty:
                least += 1
    return least, most


class DuplicateMethod(SatelliteError, ValueError):
    """Two methods claim one public name."""


class MethodRegistry:
    """The name-to-method table of one satellite."""

    def __init__(self) -> None:
        self._methods: dict[str, Method] = {}

    def add(self, method: Method) -> None:
        """Register ``method``; raises :class:`DuplicateMethod` if its name is taken."""
        if method.name in self._methods:
            raise DuplicateMethod(f"{method.name} is already registered")
        self._methods[method.name] = method

    def add_all(self, methods: Iterable[Method]) -> None:
        """Register all of ``methods`` or, on a clash, none of them."""
        methods = list(methods)
        names = [m.name for m in methods]
        clashes = sorted({n for n in names if n in self._methods or names.count(n) > 1})
        if clashes:
            raise DuplicateMethod(f"{', '.join(clashes)} already registered")
        for method in methods:
            self._methods[method.name] = method

    def replace_owner(self, owner: str, methods: Iterable[Method]) -> None:
        """
        Put ``methods`` in place of every method of the plugin package
        ``owner`` at once, or, when one of their names is taken by another
        owner (or given twice), raise :class:`DuplicateMethod` and change
        nothing.
        """
        methods = list(methods)
        names = [m.name for m in methods]
        clashes = sorted({
            n for n in names
            if (n in self._methods and self._methods[n].owner != owner) or names.count(n) > 1
        })
        if clashes:
            raise DuplicateMethod(f"{', '.join(clashes)} already registered")
        self.remove_owner(owner)
        for method in methods:
            self._methods[method.name] = method

    def remove_owner(self, owner: str) -> None:
        """Forget every method of the plugin package ``owner``."""
        for name in [n for n, m in self._methods.items() if m.owner == owner]:
            del self._methods[name]

    def get(self, name: str) -> Method | None:
        """The method called ``name``, or None."""
        return self._methods.get(name)

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        return sorted(self._methods)

    def plugin_names(self) -> list[str]:
        """The names of the methods plugins registered, sorted."""
        return sorted(n for n, m in self._methods.items() if m.owner)

    def __contains__(self, name: object) -> bool:
        return name in self._methods

    def __len__(self) -> int:
        return len(self._methods)
