"""
Message traffic between ``flow`` plugins: a blast from one satellite
waited for on the receivers and checked exactly once, a flood whose
losses are counted and not judged, and a steady stream whose one-way
latency the receiver measures.
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


def settle(
    sender: Node, receivers: list[Node], n: int, quiet: float, cap: float | None = None
) -> tuple[list[dict[str, Any]], bool]:
    """
    Poll the receivers' counts until each has all ``n`` messages (then
    True), or until neither the counts nor the sender's being done sending
    changed for ``quiet`` seconds, or ``cap`` seconds have gone by (then
    False).  Returns the receivers' last counts and that flag.
    """
    started = last_change = time.monotonic()
    progress: tuple[bool, int] | None = None
    done_sending = False
    while True:
        if not done_sending:  # asked until it is: the sender's reactor may be busy sending
            done_sending = sender.call("flow.flow.sent")["last"] is not None
        stats = [node.call("flow.flow.stats") for node in receivers]
        if all(s["distinct"] >= n for s in stats):
            return stats, True
        now = time.monotonic()
        state = (done_sending, sum(s["received"] for s in stats))
        if state != progress:
            progress, last_change = state, now
        elif now - last_change > quiet or (cap is not None and now - started > cap):
            return stats, False
        time.sleep(POLL)


def counts(stats: dict[str, Any], sent: int) -> dict[str, int]:
    """What one receiver got of ``sent`` messages: received, distinct, duplicates, lost."""
    return {
        "sent": sent,
        "received": stats["received"],
        "distinct": stats["distinct"],
        "duplicates": stats["duplicates"],
        "lost": sent - stats["distinct"],
    }


def blast(sender: Node, receivers: list[Node], n: int, size: int, kind: str = "text") -> dict[str, Any]:
    """
    Have ``sender`` blast ``n`` messages (``kind`` "text" of ``size``
    characters, or "record"); wait until every receiver has all of them;
    check each arrived exactly once.  Returns the time of the first send,
    the last arrival over all receivers, the messages per second between
    the two, and each receiver's counts.
    """
    for node in receivers:
        node.call("flow.flow.reset")
    sender.call("flow.flow.blast", n, size, kind)
    stats, complete = settle(sender, receivers, n, STALL)
    if not complete:
        got = ", ".join(
            f"{node.proc.name}: {s['distinct']}" for node, s in zip(receivers, stats, strict=True)
        )
        raise BenchError(f"blast of {n} stalled for {STALL:g}s (distinct so far: {got})")
    time.sleep(POLL)  # let late duplicates show
    stats = [node.call("flow.flow.stats") for node in receivers]
    for node, s in zip(receivers, stats, strict=True):
        _check_exactly_once(node, s, n)
    first = sender.call("flow.flow.sent")["first"]
    last = max(s["last"] for s in stats)
    return {
        "messages": n,
        "size": size,
        "kind": kind,
        "first_send": first,
        "last_arrival": last,
        "seconds": last - first,
        "messages_per_s": n / (last - first),
        "receivers": {node.proc.name: counts(s, n) for node, s in zip(receivers, stats, strict=True)},
    }


def flood(
    sender: Node, receivers: list[Node], n: int, size: int, per_turn: int, quiet: float, cap: float
) -> dict[str, Any]:
    """
    Have ``sender`` send ``n`` messages of ``size`` characters, ``per_turn``
    of them a reactor turn, and count, without judging, what each receiver
    got once the counts settle (``quiet`` seconds unchanged, ``cap`` at most).
    """
    for node in receivers:
        node.call("flow.flow.reset")
    started = time.monotonic()
    sender.call("flow.flow.blast", n, size, "text", per_turn)
    stats, complete = settle(sender, receivers, n, quiet, cap)
    seconds = time.monotonic() - started
    if complete:
        time.sleep(POLL)  # let late duplicates show
        stats = [node.call("flow.flow.stats") for node in receivers]
    sent = sender.call("flow.flow.sent")
    return {
        "messages": n,
        "size": size,
        "per_turn": per_turn,
        "sending_s": None if sent["last"] is None else sent["last"] - sent["first"],
        "settled_after_s": round(seconds, 1),
        "all_arrived": complete,
        "receivers": {node.proc.name: counts(s, n) for node, s in zip(receivers, stats, strict=True)},
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
