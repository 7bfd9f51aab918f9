"""
co2: a network of satellites that host drop-in plugins and exchange data
through relays.

This package is the SDK a plugin author imports (:class:`Co2Plugin`,
:func:`in_thread`) and the protocol every node shares: message rules,
fault codes and configuration.
"""

from co2._config import RESERVED_PACKAGES
from co2._errors import (
    Co2Error,
    CommandError,
    ConfigError,
    NotAttachedError,
    PluginError,
    ProtocolError,
    SendQueueFull,
)
from co2._message import check_message, make_host_id, parse_host_id
from co2._plugin import Co2Plugin, ICo2Plugin, in_thread
from co2._settings import AuthSettings, NodeSettings

__version__ = "0.1.0"

__all__ = [
    "RESERVED_PACKAGES",
    "AuthSettings",
    "Co2Error",
    "Co2Plugin",
    "CommandError",
    "ConfigError",
    "ICo2Plugin",
    "NodeSettings",
    "NotAttachedError",
    "PluginError",
    "ProtocolError",
    "SendQueueFull",
    "check_message",
    "in_thread",
    "make_host_id",
    "parse_host_id",
]
