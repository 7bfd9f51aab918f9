"""
Reading and checking ``config.py``.

A config file is a plain Python module.  Its public names (those not
starting with ``_``, and not modules, functions or classes) are the
settings; relative paths in it are relative to its own directory.
"""

from __future__ import annotations

import importlib.util
import keyword
import os
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import FunctionType, ModuleType
from typing import Any
from urllib.parse import urlsplit

from twisted.internet import endpoints
from twisted.internet.testing import MemoryReactor
from twisted.logger import LogLevel

from co2._errors import ConfigError
from co2._tls import ca_certificates, client_endpoint, endpoint_files, resolve_paths

__all__ = [
    "RESERVED_PACKAGES",
    "Config",
    "auth_description",
    "check_endpoint",
    "check_peer",
    "load_config",
    "make_config",
]

SPOOL_FILE = "spool.sqlite"
"""The spool's file name in ``data_dir`` when ``spool`` is not set."""

RESERVED_PACKAGES = frozenset({"sys", "system", "co2", "relay", "web"})
"""Package names the loader skips: they name the server's own methods."""

LOG_LEVELS = {
    "debug": LogLevel.debug,
    "info": LogLevel.info,
    "warn": LogLevel.warn,
    "warning": LogLevel.warn,
    "error": LogLevel.error,
    "critical": LogLevel.critical,
}


def default_plugin_dir() -> str:
    """The directory of the ``plugin`` package shipped with co2."""
    # Found, not imported: co2 imports no other co2 package (see setup.cfg's
    # import-linter contracts).
    spec = importlib.util.find_spec("plugin")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("the plugin package shipped with co2 is not installed", name="plugin")
    return os.path.abspath(next(iter(spec.submodule_search_locations)))


@dataclass(frozen=True)
class Config:
    """
    The settings of one node, checked.  See ``docs/config.md``.

    Paths are absolute.  ``path`` is the file they came from (empty for a
    config made in code).
    """

    plugin_dir: str = field(default_factory=default_plugin_dir)
    plugin_list: tuple[str, ...] = ()
    plugin_config: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    listen: str = "tcp:2004:interface=127.0.0.1"
    amp_listen: str | None = None
    peers: tuple[str, ...] = ()
    spool: str | None = None
    data_dir: str | None = None
    log_level: str = "info"
    max_request_size: int = 1024 * 1024
    max_response_size: int = 32 * 1024 * 1024
    max_message_size: int = 16 * 1024 * 1024
    max_xml_depth: int = 256
    max_connections: int = 1000
    idle_timeout: float = 60.0
    request_timeout: float = 30.0
    exit_timeout: float = 5.0
    relay_plugins: tuple[str, ...] = ()
    relay_plugin_config: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    outbox_limit: int = 100_000
    outbox_bytes: int = 64 * 1024 * 1024
    call_timeout: float = 30.0
    max_hops: int = 16
    seen_limit: int = 100_000
    forget_after: float = 3600.0
    auth: tuple[str, ...] = field(default=(), repr=False)
    auth_methods: tuple[str, ...] = ("*",)
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    peer_credentials: Mapping[str, tuple[str, str]] = field(default_factory=dict, repr=False)
    tls_ca: str | None = None
    manhole: str | None = None
    manhole_passwords: str | None = None
    manhole_keys: Mapping[str, str] = field(default_factory=dict)
    manhole_host_key: str | None = None
    path: str = ""

    def credentials_for(self, peer: str) -> tuple[str, str] | None:
        """The ``(username, password)`` this node gives ``peer``, if any."""
        return self.peer_credentials.get(peer) or self.peer_credentials.get("*")

    @property
    def log_level_constant(self) -> LogLevel:
        """``log_level`` as a ``twisted.logger.LogLevel``."""
        return LOG_LEVELS[self.log_level]


def check_endpoint(value: str, server: bool = True) -> None:
    """
    Raise ``ValueError`` unless ``value`` is a Twisted endpoint string
    (a client one, as co2 makes it, when ``server`` is false).

    Nothing is bound or connected: the string is parsed, and the files an
    ``ssl:`` string names are read.  A missing one is named with its
    parameter (``privateKey /etc/co2/key.pem: no such file``).
    """
    parse = endpoints.serverFromString if server else client_endpoint
    _check_endpoint_files(value, server)
    try:
        parse(MemoryReactor(), value)
    except Exception as e:  # endpoint parsers raise many kinds of error
        raise ValueError(f"{value!r} is not a usable endpoint: {str(e) or type(e).__name__}") from None


def _check_endpoint_files(value: str, server: bool) -> None:
    """Raise ``ValueError`` naming the first file (or directory) of an ``ssl:`` string that is missing."""
    for parameter, path in endpoint_files(value, server):
        if parameter == "caCertsDir":
            if not os.path.isdir(path):
                raise ValueError(f"{parameter} {path}: not a directory")
        elif not os.path.isfile(path):
            raise ValueError(f"{parameter} {path}: no such file")


def _type_name(value: object) -> str:
    return type(value).__name__


def _want_str(key: str, value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r} ({_type_name(value)})")
    return value


def _path(base: str, must_be: str | None = None) -> Callable[[str, object], str]:
    """
    A check of a path setting, made absolute from ``base``; with
    ``must_be`` ("file" or "directory"), it must name one that exists.
    """

    def check(key: str, value: object) -> str:
        if not isinstance(value, (str, os.PathLike)):
            raise ValueError(f"expected a path, got {value!r} ({_type_name(value)})")
        path = os.path.normpath(os.path.join(base, os.fspath(value)))
        if must_be == "directory" and not os.path.isdir(path):
            raise ValueError(f"{path} is not a directory")
        if must_be == "file" and not os.path.isfile(path):
            raise ValueError(f"{path}: no such file")
        return path

    return check


def _plugin_list(key: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"expected a list of package names, got {_type_name(value)}")
    seen: set[str] = set()
    for name in value:
        if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
            raise ValueError(f"{name!r} is not a package name")
        if name in seen:
            raise ValueError(f"{name!r} is listed twice")
        seen.add(name)
    return tuple(value)


def _relay_plugins(key: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"expected a list of module names, got {_type_name(value)}")
    for name in value:
        if not isinstance(name, str) or not all(
            part.isidentifier() and not keyword.iskeyword(part) for part in name.split(".")
        ):
            raise ValueError(f"{name!r} is not a module name")
    if len(set(value)) != len(value):
        raise ValueError("a module is listed twice")
    return tuple(value)


def _plugin_config(key: str, value: object) -> dict[str, dict[str, Any]]:
    if not isinstance(value, dict):
        raise ValueError(f"expected a dict of package name to dict, got {_type_name(value)}")
    result = {}
    for package, settings in value.items():
        if not isinstance(package, str):
            raise ValueError(f"key {package!r} is not a package name")
        if not isinstance(settings, dict) or not all(isinstance(k, str) for k in settings):
            raise ValueError(f"{package!r} must map to a dict with string keys")
        result[package] = dict(settings)
    return result


def _server_endpoint(base: str) -> Callable[[str, object], str]:
    """Check a server endpoint string; the paths of an ``ssl:`` one are made absolute from ``base``."""

    def check(key: str, value: object) -> str:
        endpoint = resolve_paths(_want_str(key, value), base, server=True)
        check_endpoint(endpoint, server=True)
        return endpoint

    return check


def _optional(check: Callable[[str, object], Any]) -> Callable[[str, object], Any]:
    return lambda key, value: None if value is None else check(key, value)


def check_peer(value: object, base: str | None = None) -> str:
    """
    Raise ``ValueError`` unless ``value`` names a peer: an ``http://`` or
    ``https://`` URL of a classic node, or a client endpoint string.
    Return it, with the paths of an ``ssl:`` string made absolute from the
    directory ``base`` when given.
    """
    peer = _want_str("peers", value)
    if peer.startswith(("http://", "https://")):
        parts = urlsplit(peer)
        if not parts.hostname:
            raise ValueError(f"{peer!r} has no host")
        try:
            _ = parts.port
        except ValueError:
            raise ValueError(f"{peer!r} has a bad port") from None
        return peer
    if base is not None:
        peer = resolve_paths(peer, base, server=False)
    check_endpoint(peer, server=False)
    return peer


def _peers(base: str) -> Callable[[str, object], tuple[str, ...]]:
    def check(key: str, value: object) -> tuple[str, ...]:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"expected a list of peers, got {_type_name(value)}")
        return tuple(check_peer(peer, base) for peer in value)

    return check


def _resolved_peer_keys(credentials: Mapping[str, tuple[str, str]], base: str) -> dict[str, tuple[str, str]]:
    """
    ``peer_credentials`` keyed by the peers as ``peers`` holds them (the
    paths of ``ssl:`` strings made absolute), so that
    :meth:`Config.credentials_for` finds each under the string it is given.
    """
    resolved = {}
    for peer, pair in credentials.items():
        try:
            resolved[resolve_paths(peer, base, server=False)] = pair
        except ValueError:  # not an endpoint string: kept as written
            resolved[peer] = pair
    return resolved


def _log_level(key: str, value: object) -> str:
    level = _want_str(key, value).lower()
    if level not in LOG_LEVELS:
        raise ValueError(f"expected one of {', '.join(sorted(LOG_LEVELS))}, got {value!r}")
    return level


def _positive(kind: type | tuple[type, ...]) -> Callable[[str, object], Any]:
    def check(key: str, value: object) -> Any:
        if isinstance(value, bool) or not isinstance(value, kind) or not value > 0:  # type: ignore[operator]
            raise ValueError(f"expected a positive number, got {value!r}")
        return value

    return check


def auth_description(value: object, base: str) -> str:
    """
    Check a ``twisted.cred.strcred`` description (``memory:alice:secret``,
    ``file:passwd``, ``unix``) and return it, the path of ``file:`` made
    absolute from ``base``.  Raises ``ValueError`` for an unknown kind, a
    missing file or a description its checker refuses.
    """
    from twisted.cred import strcred
    from twisted.cred.credentials import IUsernamePassword

    description = _want_str("auth", value)
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


def _auth(base: str) -> Callable[[str, object], tuple[str, ...]]:
    def check(key: str, value: object) -> tuple[str, ...]:
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, (list, tuple)):
            raise ValueError(f"expected a checker description or a list of them, got {_type_name(value)}")
        return tuple(auth_description(v, base) for v in values)

    return check


def _auth_methods(key: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"expected a list of method name patterns, got {value!r}")
    return tuple(value)


def _allowed_hosts(key: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"expected a list of host names, got {value!r}")
    for name in value:
        if any(c in name for c in " /@:") and not name.startswith("["):
            raise ValueError(f"{name!r} is not a host name (give it without scheme, port or path)")
        try:
            name.encode("idna")
        except UnicodeError:
            raise ValueError(f"{name!r} is not a host name") from None
    return tuple(name.lower() for name in value)


def _allowed_origins(key: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"expected a list of origins such as 'https://example.org', got {value!r}")
    for origin in value:
        scheme, sep, rest = origin.partition("://")
        if not sep or scheme not in ("http", "https") or not rest or "/" in rest:
            raise ValueError(f"{origin!r} is not an origin: scheme://host[:port], with no path")
    return tuple(origin.lower() for origin in value)


def _credential_pair(what: str, value: object) -> tuple[str, str]:
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 2
        or not all(isinstance(v, str) for v in value)
        or not value[0]
        or ":" in value[0]
    ):
        raise ValueError(f"{what}: expected a (username, password) pair of strings, without ':' in the name")
    return (value[0], value[1])


def _peer_credentials(key: str, value: object) -> dict[str, tuple[str, str]]:
    if isinstance(value, (list, tuple)):
        return {"*": _credential_pair("peer_credentials", value)}
    if not isinstance(value, dict):
        raise ValueError(
            f"expected a (username, password) pair or a dict of peer to pair, got {_type_name(value)}"
        )
    result = {}
    for peer, pair in value.items():
        if not isinstance(peer, str):
            raise ValueError(f"key {peer!r} is not a peer")
        result[peer] = _credential_pair(repr(peer), pair)
    return result


def _tls_ca(base: str) -> Callable[[str, object], str]:
    to_file = _path(base, "file")

    def check(key: str, value: object) -> str:
        path = to_file(key, value)
        ca_certificates(path, what="")
        return path

    return check


def _manhole(base: str) -> Callable[[str, object], str]:
    server = _server_endpoint(base)

    def check(key: str, value: object) -> str:
        from co2._ssh import check_loopback

        endpoint = server(key, value)
        check_loopback(endpoint)
        return endpoint

    return check


def _manhole_keys(base: str) -> Callable[[str, object], dict[str, str]]:
    to_file = _path(base, "file")

    def check(key: str, value: object) -> dict[str, str]:
        from co2._ssh import read_authorized_keys

        if not isinstance(value, dict):
            raise ValueError(f"expected a dict of user name to authorized_keys file, got {_type_name(value)}")
        result = {}
        for user, path in value.items():
            if not isinstance(user, str) or not user or ":" in user:
                raise ValueError(f"{user!r} is not a user name")
            result[user] = to_file(key, path)
            read_authorized_keys(result[user])
        return result

    return check


def _checks(base: str) -> dict[str, Callable[[str, object], Any]]:
    return {
        "plugin_dir": _path(base, "directory"),
        "plugin_list": _plugin_list,
        "plugin_config": _plugin_config,
        "listen": _server_endpoint(base),
        "amp_listen": _optional(_server_endpoint(base)),
        "peers": _peers(base),
        "spool": _optional(_path(base)),
        "data_dir": _optional(_path(base)),
        "log_level": _log_level,
        "max_request_size": _positive(int),
        "max_response_size": _positive(int),
        "max_message_size": _positive(int),
        "max_xml_depth": _positive(int),
        "max_connections": _positive(int),
        "idle_timeout": _positive((int, float)),
        "request_timeout": _positive((int, float)),
        "exit_timeout": _positive((int, float)),
        "relay_plugins": _relay_plugins,
        "relay_plugin_config": _plugin_config,
        "outbox_limit": _positive(int),
        "outbox_bytes": _positive(int),
        "call_timeout": _positive((int, float)),
        "max_hops": _positive(int),
        "seen_limit": _positive(int),
        "forget_after": _positive((int, float)),
        "auth": _auth(base),
        "auth_methods": _auth_methods,
        "allowed_hosts": _allowed_hosts,
        "allowed_origins": _allowed_origins,
        "peer_credentials": _peer_credentials,
        "tls_ca": _optional(_tls_ca(base)),
        "manhole": _optional(_manhole(base)),
        "manhole_passwords": _optional(_path(base, "file")),
        "manhole_keys": _manhole_keys(base),
        "manhole_host_key": _optional(_path(base)),
    }


def make_config(
    settings: Mapping[str, object],
    path: str = "",
    warn: Callable[[str], None] | None = None,
) -> Config:
    """
    Check ``settings`` (name to value) and make a :class:`Config`.

    Relative paths are taken from the directory of ``path`` (or the current
    directory).  Unknown names are passed to ``warn``.  Raises
    :class:`ConfigError` for the first wrong value.
    """
    shown = path or "<config>"
    base = os.path.dirname(os.path.abspath(path)) if path else os.getcwd()
    checks = _checks(base)
    values: dict[str, Any] = {}
    for key, value in settings.items():
        check = checks.get(key)
        if check is None:
            if warn is not None:
                warn(f"{shown}: {key}: unknown setting, ignored")
            continue
        try:
            values[key] = check(key, value)
        except ValueError as e:
            raise ConfigError(shown, key, str(e)) from None
    if "peer_credentials" in values:
        values["peer_credentials"] = _resolved_peer_keys(values["peer_credentials"], base)
    if values.get("data_dir") and not values.get("spool"):
        # The node's one SQLite file: what it owes, what it has seen, its plugins' state.
        values["spool"] = os.path.join(values["data_dir"], SPOOL_FILE)
    if values.get("manhole") and not (values.get("manhole_passwords") or values.get("manhole_keys")):
        raise ConfigError(shown, "manhole", "needs manhole_passwords or manhole_keys to let anyone in")
    if values.get("manhole") and not values.get("manhole_host_key"):
        values["manhole_host_key"] = os.path.join(base, "manhole_host_key")
    return Config(path=path, **values)


def _settings_of(namespace: dict[str, Any]) -> dict[str, object]:
    return {
        name: value
        for name, value in namespace.items()
        if not name.startswith("_")
        and not isinstance(value, (ModuleType, FunctionType, type))
    }


def load_config(
    path: str, warn: Callable[[str], None] | None = None
) -> Config:
    """
    Run the config file at ``path`` and check what it sets.

    Raises :class:`ConfigError` (one line: file, key, problem) when the file
    cannot be read or run, or a value is wrong.
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
    return make_config(_settings_of(namespace), path, warn)

