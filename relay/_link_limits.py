"""
The sizes an AMP link keeps to: the batches it sends, how many it has in
flight, the bytes it reads from a peer, and how much of a refused value
it shows.
"""

from __future__ import annotations

from typing import Any

__all__ = ["BATCH_BYTES", "BEFORE_HELLO", "BOX_OVERHEAD", "WINDOW", "max_box_size", "shorten", "shown"]

BATCH_BYTES = 256 * 1024
"""A Deliver batch holds messages up to this many bytes (at least one)."""

WINDOW = 8
"""Batches a link may have sent and not yet had acknowledged."""

BEFORE_HELLO = 256 * 1024
"""Bytes a connection to ``amp_listen`` may send before its Hello is answered."""

BOX_OVERHEAD = 64 * 1024
"""Room in a box for what is not a message: keys, lengths, envelopes, the rest of a batch."""

# How much of a refused value a description or a log line shows.
_SHOWN = 100


def max_box_size(settings: Any) -> int:
    """
    The most bytes one box from a peer may hold: a whole batch, or one
    message of ``max_message_size`` or one call of ``max_request_size``
    (both read from ``settings``, whichever is larger), with room for the rest.
    """
    return max(BATCH_BYTES, settings.max_message_size, settings.max_request_size) + BOX_OVERHEAD


def shorten(text: str) -> str:
    """``text``, cut to the first 100 characters (and ``...``) when it is longer."""
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "..."


def shown(value: object) -> str:
    """The ``repr`` of a value a peer sent, shortened for a log line or a refusal."""
    return shorten(repr(value))
