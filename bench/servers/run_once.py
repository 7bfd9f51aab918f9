"""Run one piece of client work on the reactor and exit by how it went (the load clients share this)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import reactor
from twisted.python.failure import Failure


def run_once(work: Callable[[], Any], name: str) -> None:
    """Run ``work`` (it returns a Deferred) once the reactor runs; exit 1 if it failed, naming ``name``."""
    failed = []

    def finish(result: object) -> None:
        if isinstance(result, Failure):
            failed.append(result)
            print(f"{name}-failed {result}", flush=True)
        reactor.stop()

    reactor.callWhenRunning(lambda: work().addBoth(finish))
    reactor.run()
    raise SystemExit(1 if failed else 0)
