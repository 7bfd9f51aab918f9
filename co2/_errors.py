"""
The exceptions co2 raises, in one tree::

    Co2Error                    anything co2 itself reports
     +-- ConfigError            a config file that cannot be used (exit 2)
     +-- PluginError            a plugin package that cannot be loaded
     +-- NotAttachedError       a plugin used outside a satellite
     +-- RelayPluginError       a relay plugin that cannot be loaded (relay)
     +-- SpoolError             a spool file that cannot be used (relay)
     +-- ListenError            an endpoint that cannot be bound (satellites)
     +-- AMPListenError         the amp_listen endpoint cannot be bound (relay)
     +-- StrictLoadError        --strict and a plugin package failed (satellites)
     +-- ReloadRefused          a package that co2.reload may not reload (satellites)

Faults sent to XML-RPC clients are ``xmlrpc.client.Fault`` instances whose
codes are listed in :mod:`co2.faults`.
"""

from __future__ import annotations


class Co2Error(Exception):
    """The base of every error co2 raises on purpose."""


class ConfigError(Co2Error):
    """
    A config file that cannot be used.

    ``str()`` is one line naming the file, the key and what is wrong.
    """

    def __init__(self, path: str, key: str | None, problem: str) -> None:
        self.path = path
        self.key = key
        self.problem = problem
        where = f"{path}: {key}" if key else path
        super().__init__(f"{where}: {problem}")


class PluginError(Co2Error):
    """
    A plugin package that cannot be loaded.

    ``package`` names it; ``details`` holds the traceback or explanation.
    """

    def __init__(self, package: str, problem: str, details: str = "") -> None:
        self.package = package
        self.problem = problem
        self.details = details
        super().__init__(f"plugin {package!r}: {problem}")


class NotAttachedError(Co2Error):
    """A plugin's ``send`` was called on an instance no satellite loaded."""
