"""
Message traffic between ``flow`` plugins: a blast from one satellite
waited for on the receivers, and a steady stream whose one-way latency the
receiver measures.
"""

from __future__ import annotations

import time
from typing import Any

from .nodes import Node
from .procs import BenchError

STALL = 60.0  # seconds without progress before a wait gives up
POLL = 0.2


def _check_exactly_once(node: Node, stats: dict[str, Any], n: int) -> None:
    if stats["distinct"] != n or stats["duplicates"]:
        raise BenchError(
            f"{node.proc.name} got {stats['distinct']} distinct message(s) of {n}, "
            f"{stats['duplicates']} duplicate(s)"
        )


def blast(sender: Node, receivers: list[Node], n: int, size: int) -> dict[str, Any]:
    """
    Have ``sender`` blast ``n`` messages of ``size`` characters; wait until
    every receiver has all of them; check each arrived exactly once.
    Returns the time of the first send, the last arrival over all receivers
    and the messages per second between the two.
    """
    for node in receivers:
        node.call("flow.flow.reset")
    sender.call("flow.flow.blast", n, size)
    progress, last_change = -1, time.monotonic()
    while True:
        stats = [node.call("flow.flow.stats") for node in receivers]
        received = sum(s["received"] for s in stats)
        if all(s["distinct"] >= n for s in stats):
            break
        if received != progress:
            progress, last_change = received, time.monotonic()
        elif time.monotonic() - last_change > STALL:
            counts = ", ".join(
                f"{node.proc.name}: {s['distinct']}" for node, s in zip(receivers, stats, strict=True)
            )
            raise BenchError(f"blast of {n} stalled for {STALL:g}s (distinct so far: {counts})")
        time.sleep(POLL)
    time.sleep(POLL)  # let late duplicates show
    stats = [node.call("flow.flow.stats") for node in receivers]
    for node, s in zip(receivers, stats, strict=True):
        _check_exactly_once(node, s, n)
    first = sender.call("flow.flow.sent")["first"]
    last = max(s["last"] for s in stats)
    return {
        "messages": n,
        "size": size,
        "first_send": first,
        "last_arrival": last,
        "seconds": last - first,
        "messages_per_s": n / (last - first),
    }


def steady(sender: Node, receiver: Node, rate: int, seconds: float, warmup: float) -> dict[str, Any]:
    """
    Have ``sender`` send ``rate`` messages a second for ``seconds``; wait
    until ``receiver`` has them all; its one-way latency figures (ms), the
    first ``warmup`` seconds left out.
    """
    receiver.call("flow.flow.reset")
    total = sender.call("flow.flow.steady", rate, seconds)
    time.sleep(seconds)
    deadline = time.monotonic() + STALL
    while True:
        result: dict[str, Any] = receiver.call("flow.flow.latency", warmup)
        if result["distinct"] >= total or time.monotonic() > deadline:
            break
        time.sleep(POLL)
    if result["distinct"] != total or result["duplicates"] or result["max_seq"] != total - 1:
        raise BenchError(
            f"steady stream: {receiver.proc.name} got {result['distinct']} distinct message(s) of {total}, "
            f"{result['duplicates']} duplicate(s)"
        )
    return {"rate": rate, "seconds": seconds, "warmup_dropped_s": warmup, "sent": total, **result}
