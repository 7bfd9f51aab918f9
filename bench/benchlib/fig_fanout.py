"""
Figure 5: the relay's CPU time per delivered message when satellite A's
messages fan out to 16 satellites, against fan-out to 1.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from . import traffic
from .nodes import Node, spawn_satellite, start_relay, start_satellite, started, wait_linked
from .plugins import write_flow
from .procs import Processes, cpu_seconds
from .report import Row, Target, compare
from .sizes import Sizes


def measured_blast(
    relay: Node, sender: Node, receivers: list[Node], messages: int, size: int
) -> dict[str, Any]:
    """One blast; the relay's CPU seconds over it (utime + stime) and the blast's figures."""
    before = cpu_seconds(relay.proc.pid)
    blast = traffic.blast(sender, receivers, messages, size)
    return {"relay_cpu_s": cpu_seconds(relay.proc.pid) - before, **blast}


def grown(messages: int, cpu: float, sizes: Sizes) -> int:
    """How many messages should take the relay ``sizes.fanout_min_cpu`` (with a margin), capped."""
    wanted = messages * 1.3 * sizes.fanout_min_cpu / max(cpu, 0.02)
    return min(sizes.fanout_max_messages, int(math.ceil(wanted / 10_000) * 10_000))


def relay_cpu_per_delivery(work: Path, plugin_dir: Path, receivers: int, sizes: Sizes) -> dict[str, Any]:
    """
    Blast from A to ``receivers`` satellites through one relay; the relay's
    CPU time per delivered message.  For one receiver the blast is repeated,
    bigger, until the relay spends ``sizes.fanout_min_cpu`` on it.
    """
    with Processes(work) as procs:
        relay = start_relay(procs)
        a = start_satellite(procs, "sender", plugin_dir, ["flow"], peers=[relay.peer])
        spawned = [
            spawn_satellite(procs, f"r{i:02d}", plugin_dir, ["flow"], peers=[relay.peer])
            for i in range(receivers)
        ]
        nodes = [started(proc) for proc in spawned]
        wait_linked(a, nodes, timeout=60)
        traffic.blast(a, nodes, min(sizes.warmup_messages, sizes.fanout_messages), sizes.message_size)
        messages = sizes.fanout_messages
        run = measured_blast(relay, a, nodes, messages, sizes.message_size)
        while (
            receivers == 1
            and run["relay_cpu_s"] < sizes.fanout_min_cpu
            and messages < sizes.fanout_max_messages
        ):
            messages = grown(messages, run["relay_cpu_s"], sizes)
            run = measured_blast(relay, a, nodes, messages, sizes.message_size)
    deliveries = messages * receivers
    return {
        "receivers": receivers,
        "messages": messages,
        "deliveries": deliveries,
        "relay_cpu_s": round(run["relay_cpu_s"], 3),
        "relay_cpu_us_per_delivery": run["relay_cpu_s"] / deliveries * 1e6,
        "delivered_per_s": deliveries / run["seconds"],
        "seconds": run["seconds"],
    }


def figures(work: Path, sizes: Sizes, details: dict[str, Any], progress: Any) -> list[Row]:
    """The row of figure 5."""
    plugin_dir = work / "flow-plugins"
    write_flow(plugin_dir)
    results = {}
    for n in sizes.fanouts:
        results[n] = relay_cpu_per_delivery(work, plugin_dir, n, sizes)
        progress(
            f"fan-out to {n}: {results[n]['relay_cpu_us_per_delivery']:.1f} µs relay CPU per delivery "
            f"({results[n]['relay_cpu_s']:.2f} s CPU)"
        )
    small, large = sizes.fanouts
    details["fanout"] = {
        "runs": list(results.values()),
        "note": "relay CPU: utime + stime (/proc/PID/stat) around the measured blast, after a warm-up blast",
        "growth": f"to one receiver, the blast grows until the relay uses {sizes.fanout_min_cpu:g} s of CPU",
    }
    return [
        compare(
            f"relay CPU per delivered message, fan-out to {large}",
            results[large]["relay_cpu_us_per_delivery"],
            "µs",
            f"fan-out to {small}",
            results[small]["relay_cpu_us_per_delivery"],
            Target("<=", 0.5),
        ),
    ]
