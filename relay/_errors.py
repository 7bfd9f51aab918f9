"""
The branch of the co2 error tree (drawn in :mod:`co2._errors`) that holds
what the routing engine raises.
"""

from __future__ import annotations

from co2._errors import Co2Error

__all__ = ["RelayError"]


class RelayError(Co2Error):
    """
    The base of what the relay package raises: an endpoint, a spool or a
    relay plugin that cannot be used.
    """
