"""``co2-relay`` and ``twistd co2-relay``: the standalone relay."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NoReturn

from satellites._cli import RelayOptions, makeService

__all__ = ["Options", "main", "makeService"]

Options = RelayOptions


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """The ``co2-relay`` command."""
    from satellites._cli import main as node_main

    node_main(argv, RelayOptions)
