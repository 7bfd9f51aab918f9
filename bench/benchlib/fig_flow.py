"""
Figures 3 and 4: messages from satellite A's ``flow`` plugin through a
standalone relay to satellite B's: throughput of a blast, and one-way
latency of a steady stream; each against raw Twisted AMP between two
processes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import traffic
from .baselines import run_amp_client, start_amp_echo
from .nodes import Node, start_relay, start_satellite, wait_linked
from .plugins import write_flow
from .procs import Processes
from .report import Row, Target, compare
from .sizes import Sizes


def relay_pair(procs: Processes, plugin_dir: Path) -> tuple[Node, Node]:
    """A relay, and satellites A and B with ``flow`` linked to it, probed end to end."""
    relay = start_relay(procs)
    a = start_satellite(procs, "a", plugin_dir, ["flow"], peers=[relay.peer])
    b = start_satellite(procs, "b", plugin_dir, ["flow"], peers=[relay.peer])
    wait_linked(a, [b])
    return a, b


def throughput(work: Path, sizes: Sizes, progress: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """co2's blast A → relay → B and the raw AMP baseline."""
    plugin_dir = work / "flow-plugins"
    write_flow(plugin_dir)
    with Processes(work) as procs:
        a, b = relay_pair(procs, plugin_dir)
        traffic.blast(a, [b], sizes.warmup_messages, sizes.message_size)
        co2 = traffic.blast(a, [b], sizes.messages, sizes.message_size)
        progress(f"co2 A → relay → B: {co2['messages_per_s']:,.0f} msg/s")
    with Processes(work) as procs:
        port = start_amp_echo(procs)
        timeout = 120 + sizes.amp_calls / 1000
        run_amp_client(port, "throughput", timeout, calls=sizes.warmup_messages, size=sizes.message_size)
        amp = run_amp_client(
            port, "throughput", timeout, calls=sizes.amp_calls, size=sizes.message_size, inflight=100
        )
        progress(f"raw AMP: {amp['calls_per_s']:,.0f} calls/s")
    return co2, amp


def latency(work: Path, sizes: Sizes, progress: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """co2's one-way latency A → relay → B at a steady rate, and the raw AMP round trip at that rate."""
    plugin_dir = work / "flow-plugins"
    write_flow(plugin_dir)
    rate, seconds, warmup = sizes.steady_rate, sizes.steady_seconds, sizes.steady_warmup
    with Processes(work) as procs:
        a, b = relay_pair(procs, plugin_dir)
        co2 = traffic.steady(a, b, rate, seconds, warmup)
        progress(f"co2 one-way latency: p50 {co2['p50_ms']:.3f} ms, p99 {co2['p99_ms']:.3f} ms")
    with Processes(work) as procs:
        port = start_amp_echo(procs)
        amp = run_amp_client(
            port, "steady", seconds + 120, rate=rate, seconds=seconds, warmup=warmup, size=sizes.message_size
        )
        progress(f"raw AMP round trip: p50 {amp['p50_ms']:.3f} ms, p99 {amp['p99_ms']:.3f} ms")
    return co2, amp


def throughput_rows(work: Path, sizes: Sizes, details: dict[str, Any], progress: Any) -> list[Row]:
    """The row of figure 3."""
    co2, amp = throughput(work, sizes, progress)
    details["messages"] = {
        "co2": co2,
        "amp_baseline": {**amp, "inflight": 100, "size": sizes.message_size},
        "warmup_messages": sizes.warmup_messages,
        "note": "messages/s = n / (B's last arrival - A's first send), after a warm-up blast",
    }
    return [
        compare(
            f"messages/s A → relay → B, {sizes.message_size}-byte data",
            co2["messages_per_s"],
            "msg/s",
            "raw Twisted AMP echo, 100 in flight",
            amp["calls_per_s"],
            Target(">=", 3),
            "calls/s",
        ),
    ]


def latency_rows(work: Path, sizes: Sizes, details: dict[str, Any], progress: Any) -> list[Row]:
    """The rows of figure 4: p50 (no target) and p99."""
    co2, amp = latency(work, sizes, progress)
    details["latency"] = {
        "co2_one_way": co2,
        "amp_round_trip": amp,
        "warmup": f"the first {sizes.steady_warmup:g} s of each stream is left out of the percentiles",
    }
    rate = f"{sizes.steady_rate:,} msg/s"
    return [
        compare(
            f"one-way latency A → relay → B, p50 at {rate}",
            co2["p50_ms"],
            "ms",
            "raw AMP round trip p50",
            amp["p50_ms"],
        ),
        compare(
            f"one-way latency A → relay → B, p99 at {rate}",
            co2["p99_ms"],
            "ms",
            "raw AMP round trip p99",
            amp["p99_ms"],
            Target("<=", 2),
        ),
    ]
