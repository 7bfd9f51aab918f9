"""The one error tree: every public exception is a Co2Error on its package's branch, drawn in co2._errors."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re

import pytest
from twisted.cred.error import UnauthorizedLogin
from twisted.python.failure import Failure

import co2
import relay
import satellites
from co2 import _errors
from co2._errors import Co2Error
from relay._errors import RelayError
from satellites._errors import SatelliteError

PACKAGES = ("co2", "relay", "satellites")

# Defined in files another change owns; each is to be rebased on the tree, and
# its strict xfail turns into a failure the day it is, to be removed then.
PENDING: dict[str, str] = {}


def _modules():
    """Every module of the three packages, but ``__main__`` ones (importing them runs a node)."""
    for name in PACKAGES:
        package = importlib.import_module(name)
        yield package
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{name}."):
            if info.name.rsplit(".", 1)[-1] != "__main__":
                yield importlib.import_module(info.name)


def _public_exceptions():
    """``{qualified name: class}`` of each public exception class defined in the three packages."""
    found = {}
    for module in _modules():
        for name, value in vars(module).items():
            if (inspect.isclass(value) and issubclass(value, BaseException)
                    and value.__module__ == module.__name__ and not name.startswith("_")):
                found[f"{module.__name__}.{name}"] = value
    return found


EXCEPTIONS = _public_exceptions()


def _cases(pending=PENDING):
    """Each public exception as a test parameter, those in ``pending`` marked."""
    return [
        pytest.param(cls, id=qualified, marks=[pytest.mark.xfail(strict=True, reason=pending[qualified])]
                     if qualified in pending else [])
        for qualified, cls in sorted(EXCEPTIONS.items())
    ]


def _drawn_tree():
    """``{name: parent name}`` as the docstring of co2._errors draws the tree."""
    doc = _errors.__doc__
    block = doc[doc.index("::") + 2:].split("\n\n")[1]
    parents: dict[str, str | None] = {}
    stack: list[tuple[int, str]] = []
    for line in block.splitlines():
        match = re.match(r"[\s|+-]*?(\w+)\s", line + " ")
        assert match, line
        column, name = match.start(1), match.group(1)
        while stack and stack[-1][0] >= column:
            stack.pop()
        parents[name] = stack[-1][1] if stack else None
        stack.append((column, name))
    return parents


def test_the_walk_finds_the_known_exceptions():
    """The module walk sees exceptions in every package (so the tests below test something)."""
    names = {qualified.split(".")[0] for qualified in EXCEPTIONS}
    assert names == set(PACKAGES)
    assert "co2._xmlrpc_exact.XMLRPCParseError" in EXCEPTIONS
    assert "relay._spool.SpoolError" in EXCEPTIONS
    assert "satellites._exchange.Refused" in EXCEPTIONS


@pytest.mark.parametrize("cls", _cases())
def test_on_its_packages_branch(cls):
    """Each public exception is a Co2Error, under RelayError or SatelliteError when its package is."""
    assert issubclass(cls, Co2Error)
    package = cls.__module__.split(".")[0]
    assert issubclass(cls, RelayError) == (package == "relay")
    assert issubclass(cls, SatelliteError) == (package == "satellites")


@pytest.mark.parametrize("cls", _cases())
def test_drawn_in_the_tree(cls):
    """The docstring of co2._errors draws each public exception under the class it derives from."""
    parents = _drawn_tree()
    assert cls.__name__ in parents
    drawn = parents[cls.__name__]
    if drawn is None:
        assert cls is Co2Error
    else:
        assert drawn in {base.__name__ for base in cls.__bases__}


def test_every_drawn_name_exists():
    """The tree draws no class that is not there (each drawn name is one of the public exceptions)."""
    names = {cls.__name__ for cls in EXCEPTIONS.values()}
    assert set(_drawn_tree()) <= names


@pytest.mark.parametrize("cls", [pytest.param(cls, id=name) for name, cls in sorted(EXCEPTIONS.items())])
def test_each_has_a_docstring(cls):
    """Each public exception says what it means."""
    assert cls.__doc__ and cls.__doc__.strip()


def test_existing_catches_still_work():
    """A class that was a ValueError or an UnauthorizedLogin still is, so each existing except catches it."""
    from co2._auth import LoginThrottled
    from co2._xmlrpc import XMLRPCParseError as Reexported
    from co2._xmlrpc_exact import XMLRPCParseError
    from co2.protocol import BadArguments, BadBatch
    from satellites._registry import DuplicateMethod

    assert Reexported is XMLRPCParseError
    for cls in (XMLRPCParseError, BadBatch, BadArguments, DuplicateMethod):
        assert issubclass(cls, ValueError)
    with pytest.raises(ValueError, match="not XML"):
        raise XMLRPCParseError(-32700, "not XML")
    assert issubclass(LoginThrottled, UnauthorizedLogin)
    assert Failure(LoginThrottled("127.0.0.1", 1.0)).check(UnauthorizedLogin)


def test_usage_error_is_not_a_client_error():
    """co2's main catches ClientError (exit 1) before UsageError (exit 2): neither may catch the other."""
    from co2._client import ClientError, UsageError

    assert not issubclass(UsageError, ClientError)
    assert not issubclass(ClientError, UsageError)


def test_amp_errors_keep_their_wire_codes():
    """The AMP refusals still map to their codes by class; a common base does not make one shadow another."""
    from co2 import protocol

    assert protocol.Hello.allErrors[protocol.Unauthorized] == b"UNAUTHORIZED"
    assert protocol.Hello.allErrors[protocol.NodeIdTaken] == b"NODE_ID_TAKEN"
    assert protocol.Deliver.allErrors[protocol.BadBatch] == b"BAD_BATCH"
    for error in (protocol.SameNode, protocol.NodeIdTaken, protocol.BadArguments):
        assert Failure(error("x")).trap(*protocol.Hello.allErrors) is error
    assert Failure(protocol.NotIntroduced("x")).trap(*protocol.Deliver.allErrors) is protocol.NotIntroduced


@pytest.mark.parametrize("cls", _cases())
def test_in_its_modules_all(cls):
    """Each public exception is in its module's ``__all__`` (when the module has one)."""
    module = importlib.import_module(cls.__module__)
    if hasattr(module, "__all__"):
        assert cls.__name__ in module.__all__


@pytest.mark.parametrize(("package", "names"), [
    (co2, ["Co2Error", "ConfigError", "PluginError", "NotAttachedError", "ProtocolError", "CommandError"]),
    (satellites, ["SatelliteError", "ListenError", "StrictLoadError", "ReloadRefused"]),
    (relay, ["RelayError", "SpoolError", "RelayPluginError"]),
])
def test_branches_exported(package, names):
    """Each package exports its branch of the tree from its top level."""
    for name in names:
        assert name in package.__all__
        assert issubclass(getattr(package, name), Co2Error)
    assert co2.ProtocolError is _errors.ProtocolError
    assert co2.CommandError is _errors.CommandError


def test_relay_branch_exported():
    """relay exports RelayError next to SpoolError and RelayPluginError."""
    import relay

    assert relay.RelayError is RelayError
    assert "RelayError" in relay.__all__


def test_existing_names_still_importable():
    """Every name is still importable from where it was before the tree."""
    from co2._client import ClientError, UsageError  # noqa: F401
    from co2._xmlrpc import XMLRPCParseError  # noqa: F401
    from co2.protocol import (  # noqa: F401
        IncompatibleVersion,
        NodeIdTaken,
        NotIntroduced,
        SameNode,
        Unauthorized,
        UnexpectedHello,
    )
    from relay import RelayPluginError, SpoolError  # noqa: F401
    from satellites import ListenError, ReloadRefused, StrictLoadError  # noqa: F401
    from satellites._exchange import Refused  # noqa: F401
    from satellites._http import Refused as HTTPRefused  # noqa: F401
    from satellites._responder import NeedsCredentials  # noqa: F401
    from satellites._scaffold import ScaffoldError  # noqa: F401
