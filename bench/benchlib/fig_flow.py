"""
Figures 3 and 4: messages from satellite A's ``flow`` plugin through a
standalone relay to satellite B's: throughput of a blast at each message
size, and one-way latency of a steady stream; each against raw Twisted
between two processes (AMP calls; an Int32StringReceiver stream for
messages too big for an AMP value).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.protocols.amp import MAX_VALUE_LENGTH

from . import traffic
from .baselines import run_amp_client, run_int32_stream, start_amp_echo, start_int32_sink
from .nodes import start_net
from .plugins import write_flow
from .procs import Processes
from .report import Row, Target, compare
from .sizes import Sizes


def size_runs(sizes: Sizes) -> list[tuple[int, int]]:
    """(size, messages) of each blast: the 100-byte one first."""
    return [(sizes.message_size, sizes.messages), *sizes.size_runs]


def throughput(work: Path, sizes: Sizes, progress: Any) -> dict[str, Any]:
    """co2's blasts A → relay → B at each size, and the raw baseline of each size."""
    plugin_dir = work / "flow-plugins"
    write_flow(plugin_dir)
    runs = size_runs(sizes)
    co2: dict[int, dict[str, Any]] = {}
    with Processes(work) as procs:
        net = start_net(procs, plugin_dir)
        a, b = net.sender, net.receivers[0]
        traffic.blast(a, [b], sizes.warmup_messages, sizes.message_size)
        for size, messages in runs:
            co2[size] = traffic.blast(a, [b], messages, size)
            co2[size]["mb_per_s"] = messages * size / co2[size]["seconds"] / 1e6
            progress(
                f"co2 A → relay → B, {size:,}-byte data: {co2[size]['messages_per_s']:,.0f} msg/s "
                f"({co2[size]['mb_per_s']:,.1f} MB/s)"
            )
    baseline: dict[int, dict[str, Any]] = {}
    with Processes(work) as procs:
        port = start_amp_echo(procs)
        run_amp_client(port, "throughput", 120, calls=sizes.warmup_messages, size=sizes.message_size)
        for size, messages in runs:
            if size <= MAX_VALUE_LENGTH:
                calls = sizes.amp_calls if size == sizes.message_size else messages
                timeout = 120 + calls / 1000
                amp = run_amp_client(port, "throughput", timeout, calls=calls, size=size, inflight=100)
                baseline[size] = {**amp, "inflight": 100, "size": size, "kind": "raw AMP echo"}
                progress(f"raw AMP, {size:,} bytes: {amp['calls_per_s']:,.0f} calls/s")
    with Processes(work) as procs:
        port = start_int32_sink(procs)
        for size, _ in runs:
            if size > MAX_VALUE_LENGTH:
                stream = run_int32_stream(port, sizes.stream_frames, size, 120 + sizes.stream_frames / 10)
                baseline[size] = {**stream, "kind": "raw Int32StringReceiver stream"}
                progress(f"raw Int32StringReceiver stream, {size:,} bytes: {stream['mb_per_s']:,.0f} MB/s")
    return {"co2": co2, "baseline": baseline}


# The targets by size: against raw AMP at 100 B and 10 KiB, against a raw stream at 1 MiB.
SIZE_TARGETS = {100: Target(">=", 4), 10_240: Target(">=", 1.5), 1 << 20: Target(">=", 0.8)}


def size_name(size: int) -> str:
    """100 → "100-byte", 10240 → "10 KiB", 1048576 → "1 MiB"."""
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale and size % scale == 0:
            return f"{size // scale} {unit}"
    return f"{size}-byte"


def throughput_rows(work: Path, sizes: Sizes, details: dict[str, Any], progress: Any) -> list[Row]:
    """The rows of figure 3: one per message size, each with its target."""
    runs = throughput(work, sizes, progress)
    details["messages"] = {
        **runs,
        "warmup_messages": sizes.warmup_messages,
        "note": "messages/s = n / (B's last arrival - A's first send), after a warm-up blast; "
        "raw AMP: calls/s with 100 in flight; Int32StringReceiver: MB/s, sender to sink's answer",
    }
    rows = []
    for size, _ in size_runs(sizes):
        co2, base = runs["co2"][size], runs["baseline"][size]
        if size <= MAX_VALUE_LENGTH:
            rows.append(
                compare(
                    f"messages/s A → relay → B, {size_name(size)} data",
                    co2["messages_per_s"],
                    "msg/s",
                    "raw Twisted AMP echo, 100 in flight",
                    base["calls_per_s"],
                    SIZE_TARGETS.get(size),
                    "calls/s",
                )
            )
        else:
            rows.append(
                compare(
                    f"MB/s A → relay → B, {size_name(size)} data",
                    co2["mb_per_s"],
                    "MB/s",
                    "raw Twisted Int32StringReceiver stream",
                    base["mb_per_s"],
                    SIZE_TARGETS.get(size),
                )
            )
    return rows


def latency(work: Path, sizes: Sizes, progress: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """co2's one-way latency A → relay → B at a steady rate, and the raw AMP round trip at that rate."""
    plugin_dir = work / "flow-plugins"
    write_flow(plugin_dir)
    rate, seconds, warmup = sizes.steady_rate, sizes.steady_seconds, sizes.steady_warmup
    with Processes(work) as procs:
        net = start_net(procs, plugin_dir)
        co2 = traffic.steady(net.sender, net.receivers[0], rate, seconds, warmup)
        progress(f"co2 one-way latency: p50 {co2['p50_ms']:.3f} ms, p99 {co2['p99_ms']:.3f} ms")
    with Processes(work) as procs:
        port = start_amp_echo(procs)
        amp = run_amp_client(
            port, "steady", seconds + 120, rate=rate, seconds=seconds, warmup=warmup, size=sizes.message_size
        )
        progress(f"raw AMP round trip: p50 {amp['p50_ms']:.3f} ms, p99 {amp['p99_ms']:.3f} ms")
    return co2, amp


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
