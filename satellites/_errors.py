"""
The branch of the co2 error tree (drawn in :mod:`co2._errors`) that holds
what the plugin host raises.
"""

from __future__ import annotations

from co2._errors import Co2Error

__all__ = ["SatelliteError"]


class SatelliteError(Co2Error):
    """
    The base of what the satellites package raises: a node that cannot
    listen or load, a method name taken twice, an HTTP request refused.
    """
