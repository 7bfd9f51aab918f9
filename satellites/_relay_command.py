"""
``co2-relay`` and ``twistd co2-relay``: a standalone relay, the relay's
own service (:class:`relay.RelayService`) with the HTTP front end it
answers through, and no plugin host.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NoReturn

from satellites._cli import RelayOptions, makeService
from satellites._cli import main as node_main

__all__ = ["Options", "main", "makeService"]

Options = RelayOptions


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """The ``co2-relay`` command."""
    node_main(argv, RelayOptions)
