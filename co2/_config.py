"""
Reading ``config.py``, and the pieces every package checks its settings
with.

A config file is a plain Python module.  Its public names (those not
starting with ``_``, and not modules, functions or classes) are the
settings; relative paths in it are relative to its own directory.

The settings are flat in the file, but each package owns some of them:
a :class:`Section` (a frozen dataclass) names its keys, each with its
check, and :func:`split_settings` hands every setting to the section
that owns it.  ``co2`` owns the node-wide settings and authentication
(``co2/_settings.py``), ``relay`` its own (``relay/_settings.py``),
``satellites`` the plugin host, the front end and the manhole, and puts
them together as ``satellites.Config``.
"""

from __future__ import annotations

import os
import re
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import FunctionType, ModuleType
from typing import Any, NamedTuple, TypeVar
from urllib.parse import SplitResult, urlsplit

from twisted.internet import endpoints
from twisted.internet.testing import MemoryReactor

from co2._errors import ConfigError
from co2._tls import client_endpoint, endpoint_files, join_parameters, parameters, resolve_paths

__all__ = [
    "RESERVED_PACKAGES",
    "Check",
    "Section",
    "a_path",
    "auth_description",
    "check_endpoint",
    "check_peer",
    "optional",
    "plugin_config",
    "positive",
    "read_settings",
    "server_endpoint",
    "split_settings",
    "type_name",
    "want_str",
]

RESERVED_PACKAGES = frozenset({"sys", "system", "co2", "relay", "web"})
"""Package names the loader skips: they name the server's own methods."""

Check = Callable[[str, object], Any]
"""
The check of one setting: ``check(key, value)`` returns the value to keep
(made absolute, lower-cased, a tuple...) or raises ``ValueError`` saying
what is wrong.
"""

S = TypeVar("S", bound="Section")


@dataclass(frozen=True)
class Section:
    """
    Some settings of a node, owned and checked by one package: each field
    is a key of ``config.py``, with its default.

    A section names its keys and their checks in :meth:`checks`, and
    derives values across its keys in :meth:`derive`.
    """

    @classmethod
    def checks(cls, base: str) -> dict[str, Check]:
        """The keys this section owns, each with its check; relative paths are taken from ``base``."""
        raise NotImplementedError(f"{cls.__name__} names no keys")

    @classmethod
    def derive(cls, values: dict[str, Any], base: str) -> dict[str, Any]:
        """
        ``values`` (the keys the file set, checked) with what follows from
        them added.  Raises :class:`ConfigError` naming the key of a
        setting wrong as the others stand (:func:`split_settings` gives it
        the file).
        """
        return values

    @classmethod
    def of(cls: type[S], sections: Mapping[type[Section], Section]) -> S:
        """This section among those :func:`split_settings` made."""
        section = sections[cls]
        assert isinstance(section, cls)
        return section


def split_settings(
    settings: Mapping[str, object],
    sections: Iterable[type[Section]],
    path: str = "",
    warn: Callable[[str], None] | None = None,
) -> dict[type[Section], Section]:
    """
    Check ``settings`` (name to value), each by the section owning it, and
    make every section of ``sections``, a setting not given taking its
    default.

    Relative paths are taken from the directory of ``path`` (or the
    current directory).  Names no section owns are passed to ``warn``.
    Raises :class:`ConfigError` for the first wrong value, in the order of
    ``settings``, and ``TypeError`` when two sections claim one key (a
    mistake in the code, not in the file).
    """
    shown = path or "<config>"
    base = os.path.dirname(os.path.abspath(path)) if path else os.getcwd()
    owners: dict[str, tuple[type[Section], Check]] = {}
    values: dict[type[Section], dict[str, Any]] = {}
    for section in sections:
        values[section] = {}
        for key, check in section.checks(base).items():
            if key in owners:
                raise TypeError(f"{key} is owned by both {owners[key][0].__name__} and {section.__name__}")
            owners[key] = (section, check)
    for key, value in settings.items():
        if key not in owners:
            if warn is not None:
                warn(f"{shown}: {key}: unknown setting, ignored")
            continue
        section, check = owners[key]
        try:
            values[section][key] = check(key, value)
        except ValueError as e:
            raise ConfigError(shown, key, str(e)) from None
    try:
        return {section: section(**section.derive(checked, base)) for section, checked in values.items()}
    except ConfigError as e:
        raise ConfigError(shown, e.key, e.problem) from None


def read_settings(path: str) -> dict[str, object]:
    """
    Run the config file at ``path`` and return what it sets, in the order
    it sets them.

    Raises :class:`ConfigError` (one line: file, problem) when the file
    cannot be read or run.
    """
    try:
        with open(path, "rb") as f:
            source = f.read()
    except OSError as e:
        raise ConfigError(path, None, f"cannot read: {e.strerror or e}") from None
    namespace: dict[str, Any] = {"__file__": os.path.abspath(path), "__name__": "__co2_config__"}
    try:
        code = compile(source, path, "exec")
    except SyntaxError as e:
        raise ConfigError(path, None, f"line {e.lineno}: syntax error: {e.msg}") from None
    try:
        exec(code, namespace)
    except Exception as e:
        lines = [f.lineno for f in traceback.extract_tb(e.__traceback__) if f.filename == path]
        line = lines[-1] if lines else "?"
        raise ConfigError(
            path, None, f"line {line}: raised {type(e).__name__}: {e}"
        ) from None
    return {
        name: value
        for name, value in namespace.items()
        if not name.startswith("_")
        and not isinstance(value, (ModuleType, FunctionType, type))
    }


# The checks the sections are made of

def check_endpoint(value: str, server: bool = True) -> None:
    """
    Raise ``ValueError`` unless ``value`` is a Twisted endpoint string
    (a client one, as co2 makes it, when ``server`` is false).

    Nothing is bound or connected: the string is parsed, and the files an
    ``ssl:`` string names are read.  A missing one is named with its
    parameter (``privateKey /etc/co2/key.pem: no such file``).

    A server string may be wrapped once in ``haproxy:`` (connections
    start with a PROXY protocol header, see :func:`proxied_endpoint`),
    and may be ``systemd:`` (a socket passed by systemd's socket
    activation).  A ``systemd:`` string is checked for its form only
    (see :func:`_check_systemd`): whether this process was given that
    socket is known when the node binds it, so the same config can be
    read, or run with ``--listen``, outside systemd.
    """
    inner = proxied_endpoint(value) if server else value
    _check_endpoint_files(inner, server)
    try:
        if server and _kind(inner) == _SYSTEMD:
            _check_systemd(inner)
            return  # Twisted's parser would look the socket up now
        parse = endpoints.serverFromString if server else client_endpoint
        parse(MemoryReactor(), value)
    except Exception as e:  # endpoint parsers raise many kinds of error
        raise ValueError(f"{value!r} is not a usable endpoint: {str(e) or type(e).__name__}") from None


_PROXY = "haproxy"
_SYSTEMD = "systemd"
_SYSTEMD_PARAMETERS = ("domain", "index", "name")  # in the order Twisted takes them positionally
_SYSTEMD_DOMAINS = ("INET", "INET6", "UNIX")  # the families a reactor adopts a listening socket of
_INDEX = re.compile("[0-9]+")


def _kind(description: str) -> str:
    """The kind of endpoint ``description`` is: its first parameter, as Twisted reads it."""
    return parameters(description)[0][1]


def proxied_endpoint(description: str) -> str:
    """
    The server endpoint string a ``haproxy:`` string wraps (Twisted's
    ``twisted.protocols.haproxy`` reads a PROXY protocol header, v1 or
    v2, at the start of each connection and gives its source as the
    client's address); any other string as it is.

    The wrapped string is the rest after ``haproxy:``, its positional
    parameters first, as Twisted passes it on.  Raises ``ValueError``
    when nothing is wrapped, or when the wrapped string is ``haproxy:``
    too (a connection carries one header).
    """
    params = parameters(description)
    if params[0] != (None, _PROXY):
        return description
    rest = params[1:]
    inner = [p for p in rest if p[0] is None] + [p for p in rest if p[0] is not None]
    if not inner or inner[0][0] is not None or not inner[0][1]:
        raise ValueError(
            f"{description!r} is not a usable endpoint: haproxy: needs the endpoint it wraps after it, "
            "such as haproxy:tcp:2004:interface=127.0.0.1"
        )
    wrapped = join_parameters(inner)
    if _kind(wrapped) == _PROXY:
        raise ValueError(
            f"{description!r} is not a usable endpoint: haproxy: wraps haproxy: again, but a connection "
            "starts with one PROXY header; give haproxy: once"
        )
    return wrapped


def _check_systemd(description: str) -> None:
    """
    Raise ``ValueError`` (saying what is wrong, without the string)
    unless ``description`` is ``systemd:domain=D:index=N`` or
    ``systemd:domain=D:name=NAME`` as Twisted reads it: ``D`` one of
    :data:`_SYSTEMD_DOMAINS`, ``N`` a number from 0 (the place of the
    socket among those systemd passed), ``NAME`` a socket's
    ``FileDescriptorName=``.
    """
    given: dict[str, str] = {}
    position = 0
    for name, value in parameters(description)[1:]:
        if name is None:
            if position == len(_SYSTEMD_PARAMETERS):
                raise ValueError(f"systemd: takes domain=, then index= or name=; {value!r} is one too many")
            name = _SYSTEMD_PARAMETERS[position]
            position += 1
        if name not in _SYSTEMD_PARAMETERS:
            raise ValueError(f"systemd: takes domain=, then index= or name=, not {name}=")
        if name in given:
            raise ValueError(f"systemd: {name}= is given twice")
        given[name] = value
    domains = ", ".join(_SYSTEMD_DOMAINS[:-1]) + " or " + _SYSTEMD_DOMAINS[-1]
    domain = given.get("domain")
    if domain is None:
        raise ValueError(f"systemd: needs domain= (the socket's address family: {domains})")
    if domain not in _SYSTEMD_DOMAINS:
        raise ValueError(f"systemd: domain={domain!r} is not an address family co2 can serve on: {domains}")
    if "index" in given and "name" in given:
        raise ValueError("systemd: index= and name= both pick a socket; give one of them")
    if "index" not in given and "name" not in given:
        raise ValueError(
            "systemd: needs index=N (the socket's place among those systemd passes, from 0) "
            "or name=NAME (its FileDescriptorName=)"
        )
    if "index" in given and _INDEX.fullmatch(given["index"]) is None:
        raise ValueError(f"systemd: index={given['index']!r} is not a number from 0")
    if "name" in given and not given["name"]:
        raise ValueError("systemd: name= is empty (it is the socket's FileDescriptorName=)")


def _check_endpoint_files(value: str, server: bool) -> None:
    """Raise ``ValueError`` naming the first file (or directory) of an ``ssl:`` string that is missing."""
    for parameter, path in endpoint_files(value, server):
        if parameter == "caCertsDir":
            if not os.path.isdir(path):
                raise ValueError(f"{parameter} {path}: not a directory")
        elif not os.path.isfile(path):
            raise ValueError(f"{parameter} {path}: no such file")


def type_name(value: object) -> str:
    """The name of ``value``'s type, as a check's message gives it."""
    return type(value).__name__


def want_str(key: str, value: object) -> str:
    """``value``, or ``ValueError`` unless it is a string."""
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r} ({type_name(value)})")
    return value


def a_path(base: str, must_be: str | None = None) -> Check:
    """
    A check of a path setting, made absolute from ``base``; with
    ``must_be`` ("file" or "directory"), it must name one that exists.
    """

    def check(key: str, value: object) -> str:
        if not isinstance(value, (str, os.PathLike)):
            raise ValueError(f"expected a path, got {value!r} ({type_name(value)})")
        path = os.path.normpath(os.path.join(base, os.fspath(value)))
        if must_be == "directory" and not os.path.isdir(path):
            raise ValueError(f"{path} is not a directory")
        if must_be == "file" and not os.path.isfile(path):
            raise ValueError(f"{path}: no such file")
        return path

    return check


def plugin_config(key: str, value: object) -> dict[str, dict[str, Any]]:
    """A check of settings by package (or module) name: ``{name: {key: value}}``."""
    if not isinstance(value, dict):
        raise ValueError(f"expected a dict of package name to dict, got {type_name(value)}")
    result = {}
    for package, settings in value.items():
        if not isinstance(package, str):
            raise ValueError(f"key {package!r} is not a package name")
        if not isinstance(settings, dict) or not all(isinstance(k, str) for k in settings):
            raise ValueError(f"{package!r} must map to a dict with string keys")
        result[package] = dict(settings)
    return result


def server_endpoint(base: str) -> Check:
    """
    A check of a server endpoint string; the paths of an ``ssl:`` one
    (wrapped in ``haproxy:`` or not) are made absolute from ``base``.
    """

    def check(key: str, value: object) -> str:
        endpoint = want_str(key, value)
        wrapped = proxied_endpoint(endpoint)
        resolved = resolve_paths(wrapped, base, server=True)
        if resolved != wrapped:
            # The paths of haproxy:ssl:... are the config's too.
            endpoint = resolved if wrapped == endpoint else f"{_PROXY}:{resolved}"
        check_endpoint(endpoint, server=True)
        return endpoint

    return check


def optional(check: Check) -> Check:
    """``check``, letting ``None`` through."""
    return lambda key, value: None if value is None else check(key, value)


def positive(kind: type | tuple[type, ...]) -> Check:
    """A check of a positive number of ``kind`` (never a ``bool``)."""

    def check(key: str, value: object) -> Any:
        if isinstance(value, bool) or not isinstance(value, kind) or not value > 0:  # type: ignore[operator]
            raise ValueError(f"expected a positive number, got {value!r}")
        return value

    return check


BACKBONE_SCHEMES = ("nats://", "tls://")
"""How a ``peers`` entry naming a NATS backbone starts (``tls://``: over TLS)."""

_STREAM_NAME = re.compile("[A-Za-z0-9_-]{1,64}")


class Backbone(NamedTuple):
    """A ``peers`` entry ``nats://HOST:PORT/NAME``: a NATS server and the stream of a broadcast domain."""

    url: str
    """The server's URL, as the NATS client takes it (``nats://`` or ``tls://``, host and port)."""
    name: str
    """The JetStream stream, and the domain's name."""
    tls: bool


def parse_backbone(peer: str) -> Backbone:
    """
    The parts of ``nats://HOST:PORT/NAME`` (or ``tls://...``); raises
    ``ValueError`` saying what is wrong.  ``NAME`` is 1 to 64 letters,
    digits, ``-`` or ``_`` (a JetStream stream name).
    """
    parts, port = _url_parts(peer)
    if port is None:
        raise ValueError(f"{peer!r} has no port (nats://HOST:PORT/NAME)")
    name = parts.path.strip("/")
    if _STREAM_NAME.fullmatch(name) is None:
        raise ValueError(
            f"{peer!r}: the name after the port must be 1 to 64 letters, digits, '-' or '_' "
            "(nats://HOST:PORT/NAME)"
        )
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(f"{peer!r}: nothing but nats://HOST:PORT/NAME (credentials go in peer_credentials)")
    return Backbone(f"{parts.scheme}://{parts.netloc}", name, parts.scheme == "tls")


def _url_parts(url: str) -> tuple[SplitResult, int | None]:
    """The parts of ``url`` and its port (None: not given); ValueError without a host, or a bad port."""
    parts = urlsplit(url)
    if not parts.hostname:
        raise ValueError(f"{url!r} has no host")
    try:
        return parts, parts.port
    except ValueError:
        raise ValueError(f"{url!r} has a bad port") from None


def check_peer(value: object, base: str | None = None) -> str:
    """
    Raise ``ValueError`` unless ``value`` names a peer: an ``http://`` or
    ``https://`` URL of a classic node, a NATS backbone
    (``nats://HOST:PORT/NAME``, see :func:`parse_backbone`), or a client
    endpoint string.
    Return it, with the paths of an ``ssl:`` string made absolute from the
    directory ``base`` when given.
    """
    peer = want_str("peers", value)
    if peer.startswith(BACKBONE_SCHEMES):
        parse_backbone(peer)
        return peer
    if peer.startswith(("http://", "https://")):
        _url_parts(peer)
        return peer
    if base is not None:
        peer = resolve_paths(peer, base, server=False)
    check_endpoint(peer, server=False)
    return peer


def auth_description(value: object, base: str) -> str:
    """
    Check a ``twisted.cred.strcred`` description (``memory:alice:secret``,
    ``file:passwd``, ``unix``) and return it, the path of ``file:`` made
    absolute from ``base``.  Raises ``ValueError`` for an unknown kind, a
    missing file or a description its checker refuses.
    """
    from twisted.cred import strcred
    from twisted.cred.credentials import IUsernamePassword

    description = want_str("auth", value)
    kind, _, argument = description.partition(":")
    if kind == "file":
        if not argument:
            raise ValueError("file: needs the path of a password file (user:password lines)")
        argument = os.path.normpath(os.path.join(base, argument))
        if not os.path.isfile(argument):
            raise ValueError(f"file:{argument}: no such file")
        description = f"file:{argument}"
    kinds = sorted(
        f.authType for f in strcred.findCheckerFactories()
        if IUsernamePassword in f.credentialInterfaces
    )
    if kind not in kinds:
        raise ValueError(f"{kind!r} is not a kind of password checker (known: {', '.join(kinds)})")
    try:
        strcred.makeChecker(description)
    except Exception as e:  # a checker factory refuses its argument
        raise ValueError(f"{description!r}: {e}") from None
    return description
