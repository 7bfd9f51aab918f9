"""
The settings co2 itself owns: those every part of a node shares
(:class:`NodeSettings`) and who may talk to it (:class:`AuthSettings`).
``docs/config.md`` describes each key.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from twisted.logger import LogLevel

from co2._config import Check, Section, a_path, auth_description, optional, positive, type_name, want_str
from co2._tls import ca_certificates

__all__ = ["LOG_LEVELS", "AuthSettings", "NodeSettings"]

LOG_LEVELS = {
    "debug": LogLevel.debug,
    "info": LogLevel.info,
    "warn": LogLevel.warn,
    "warning": LogLevel.warn,
    "error": LogLevel.error,
    "critical": LogLevel.critical,
}


@dataclass(frozen=True)
class NodeSettings(Section):
    """What every part of a node shares: its log, its timeouts, its size limits and the CAs it trusts."""

    log_level: str = "info"
    call_timeout: float = 30.0
    request_timeout: float = 30.0
    max_connections: int = 1000
    max_message_size: int = 16 * 1024 * 1024
    max_request_size: int = 1024 * 1024
    tls_ca: str | None = None

    @property
    def log_level_constant(self) -> LogLevel:
        """``log_level`` as a ``twisted.logger.LogLevel``."""
        return LOG_LEVELS[self.log_level]

    @classmethod
    def checks(cls, base: str) -> dict[str, Check]:
        return {
            "log_level": _log_level,
            "call_timeout": positive((int, float)),
            "request_timeout": positive((int, float)),
            "max_connections": positive(int),
            "max_message_size": positive(int),
            "max_request_size": positive(int),
            "tls_ca": optional(_tls_ca(base)),
        }


@dataclass(frozen=True)
class AuthSettings(Section):
    """Who may talk to the node: the ``twisted.cred`` checkers, and the methods they guard."""

    auth: tuple[str, ...] = field(default=(), repr=False)
    auth_methods: tuple[str, ...] = ("*",)

    @classmethod
    def checks(cls, base: str) -> dict[str, Check]:
        return {"auth": _auth(base), "auth_methods": _auth_methods}


def _log_level(key: str, value: object) -> str:
    level = want_str(key, value).lower()
    if level not in LOG_LEVELS:
        raise ValueError(f"expected one of {', '.join(sorted(LOG_LEVELS))}, got {value!r}")
    return level


def _tls_ca(base: str) -> Check:
    to_file = a_path(base, "file")

    def check(key: str, value: object) -> str:
        path = to_file(key, value)
        ca_certificates(path, what="")
        return path

    return check


def _auth(base: str) -> Check:
    def check(key: str, value: object) -> tuple[str, ...]:
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, (list, tuple)):
            raise ValueError(f"expected a checker description or a list of them, got {type_name(value)}")
        return tuple(auth_description(v, base) for v in values)

    return check


def _auth_methods(key: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"expected a list of method name patterns, got {value!r}")
    return tuple(value)
