"""
A node's config: the sections this package owns (the plugin host, the
front end, the manhole) and :class:`Config`, every section of a node
together.  :func:`load_config` reads ``config.py`` into one.

Each key of ``config.py`` belongs to one section, checked by the package
that owns it: :class:`co2.NodeSettings` and :class:`co2.AuthSettings`,
:class:`relay.RelaySettings`, and the three here.  ``docs/config.md``
describes each key.
"""

from __future__ import annotations

import importlib.util
import keyword
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from co2._config import (
    Check,
    Section,
    a_path,
    optional,
    plugin_config,
    positive,
    read_settings,
    server_endpoint,
    split_settings,
    type_name,
)
from co2._errors import ConfigError
from co2._settings import AuthSettings, NodeSettings
from relay import RelaySettings
from satellites._ssh import check_loopback, read_authorized_keys

__all__ = [
    "SECTIONS",
    "Config",
    "FrontSettings",
    "HostSettings",
    "ManholeSettings",
    "default_plugin_dir",
    "load_config",
    "make_config",
]


def default_plugin_dir() -> str:
    """The directory of the ``plugin`` package shipped with co2."""
    # Found, not imported: importing it would run its __init__.
    spec = importlib.util.find_spec("plugin")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("the plugin package shipped with co2 is not installed", name="plugin")
    return os.path.abspath(next(iter(spec.submodule_search_locations)))


@dataclass(frozen=True)
class HostSettings(Section):
    """The plugin host: where the packages are, which to load, their settings, how long each may exit."""

    plugin_dir: str = field(default_factory=default_plugin_dir)
    plugin_list: tuple[str, ...] = ()
    plugin_config: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    exit_timeout: float = 5.0

    @classmethod
    def checks(cls, base: str) -> dict[str, Check]:
        return {
            "plugin_dir": a_path(base, "directory"),
            "plugin_list": _plugin_list,
            "plugin_config": plugin_config,
            "exit_timeout": positive((int, float)),
        }


@dataclass(frozen=True)
class FrontSettings(Section):
    """The HTTP front end: where it listens, how much it answers, and what it lets in."""

    listen: str = "tcp:2004:interface=127.0.0.1"
    max_response_size: int = 32 * 1024 * 1024
    max_xml_depth: int = 256
    idle_timeout: float = 60.0
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()

    @classmethod
    def checks(cls, base: str) -> dict[str, Check]:
        return {
            "listen": server_endpoint(base),
            "max_response_size": positive(int),
            "max_xml_depth": positive(int),
            "idle_timeout": positive((int, float)),
            "allowed_hosts": _allowed_hosts,
            "allowed_origins": _allowed_origins,
        }


@dataclass(frozen=True)
class ManholeSettings(Section):
    """The SSH manhole: its loopback endpoint, who may log in, and the server's key."""

    manhole: str | None = None
    manhole_passwords: str | None = None
    manhole_keys: Mapping[str, str] = field(default_factory=dict)
    manhole_host_key: str | None = None

    @classmethod
    def checks(cls, base: str) -> dict[str, Check]:
        return {
            "manhole": optional(_manhole(base)),
            "manhole_passwords": optional(a_path(base, "file")),
            "manhole_keys": _manhole_keys(base),
            "manhole_host_key": optional(a_path(base)),
        }

    @classmethod
    def derive(cls, values: dict[str, Any], base: str) -> dict[str, Any]:
        """A manhole needs a way in; its host key is kept beside the config unless named."""
        if values.get("manhole") and not (values.get("manhole_passwords") or values.get("manhole_keys")):
            raise ConfigError("", "manhole", "needs manhole_passwords or manhole_keys to let anyone in")
        if values.get("manhole") and not values.get("manhole_host_key"):
            values["manhole_host_key"] = os.path.join(base, "manhole_host_key")
        return values


@dataclass(frozen=True)
class Config:
    """
    The settings of one node, checked, section by section.  See
    ``docs/config.md``.

    Paths are absolute.  ``path`` is the file they came from (empty for a
    config made in code).
    """

    node: NodeSettings = field(default_factory=NodeSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    relay: RelaySettings = field(default_factory=RelaySettings)
    host: HostSettings = field(default_factory=HostSettings)
    front: FrontSettings = field(default_factory=FrontSettings)
    manhole: ManholeSettings = field(default_factory=ManholeSettings)
    path: str = ""


SECTIONS: tuple[type[Section], ...] = (
    NodeSettings, AuthSettings, RelaySettings, HostSettings, FrontSettings, ManholeSettings,
)
"""Every section of a node's config; each key of ``config.py`` belongs to one."""


def make_config(
    settings: Mapping[str, object],
    path: str = "",
    warn: Callable[[str], None] | None = None,
) -> Config:
    """
    Check ``settings`` (name to value, flat as in ``config.py``) and make
    a :class:`Config`.

    Relative paths are taken from the directory of ``path`` (or the current
    directory).  Unknown names are passed to ``warn``.  Raises
    :class:`co2.ConfigError` for the first wrong value.
    """
    made = split_settings(settings, SECTIONS, path, warn)
    return Config(
        node=NodeSettings.of(made),
        auth=AuthSettings.of(made),
        relay=RelaySettings.of(made),
        host=HostSettings.of(made),
        front=FrontSettings.of(made),
        manhole=ManholeSettings.of(made),
        path=path,
    )


def load_config(path: str, warn: Callable[[str], None] | None = None) -> Config:
    """
    Run the config file at ``path`` and check what it sets.

    Raises :class:`co2.ConfigError` (one line: file, key, problem) when the
    file cannot be read or run, or a value is wrong.
    """
    return make_config(read_settings(path), path, warn)


def _plugin_list(key: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"expected a list of package names, got {type_name(value)}")
    seen: set[str] = set()
    for name in value:
        if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
            raise ValueError(f"{name!r} is not a package name")
        if name in seen:
            raise ValueError(f"{name!r} is listed twice")
        seen.add(name)
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


def _manhole(base: str) -> Check:
    server = server_endpoint(base)

    def check(key: str, value: object) -> str:
        endpoint = server(key, value)
        check_loopback(endpoint)
        return endpoint

    return check


def _manhole_keys(base: str) -> Check:
    to_file = a_path(base, "file")

    def check(key: str, value: object) -> dict[str, str]:
        if not isinstance(value, dict):
            raise ValueError(f"expected a dict of user name to authorized_keys file, got {type_name(value)}")
        result = {}
        for user, path in value.items():
            if not isinstance(user, str) or not user or ":" in user:
                raise ValueError(f"{user!r} is not a user name")
            result[user] = to_file(key, path)
            read_authorized_keys(result[user])
        return result

    return check
