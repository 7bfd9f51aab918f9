"""``co2-relay``: the standalone relay."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import NoReturn


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Say that the standalone relay is not in this release, and exit 1."""
    print(
        "co2-relay: the standalone relay is not available in this release; "
        "run co2-satellite (its plugins reach each other within the satellite)",
        file=sys.stderr,
    )
    sys.exit(1)
