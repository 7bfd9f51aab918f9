"""
Figure 5: satellite A's messages fanned out through one relay to 1, 4, 8
and 16 satellites: the relay's CPU time per delivered message (16 against
1) and the messages each receiver gets a second; and the same blast
through a chain of relays (A → relay1 → relay2 → relay3 → B) against one
relay.  Every message is checked to arrive exactly once at each receiver.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from . import traffic
from .nodes import Node, start_net
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


def fanout(work: Path, plugin_dir: Path, receivers: int, sizes: Sizes) -> dict[str, Any]:
    """
    Blast from A to ``receivers`` satellites through one relay; the relay's
    CPU time per delivered message, and the messages per second each
    receiver got.  For one receiver the blast is repeated, bigger, until
    the relay spends ``sizes.fanout_min_cpu`` on it.
    """
    with Processes(work) as procs:
        net = start_net(procs, plugin_dir, receivers)
        relay, a, nodes = net.relays[0], net.sender, net.receivers
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
        "per_receiver_per_s": messages / run["seconds"],
        "seconds": run["seconds"],
        "counts": run["receivers"],
    }


def chain(work: Path, plugin_dir: Path, sizes: Sizes) -> dict[str, Any]:
    """A blast from A through ``sizes.chain_relays`` relays in line to B."""
    with Processes(work) as procs:
        net = start_net(procs, plugin_dir, relays=sizes.chain_relays)
        a, b = net.sender, net.receivers[0]
        traffic.blast(a, [b], sizes.warmup_messages, sizes.message_size)
        run = traffic.blast(a, [b], sizes.messages, sizes.message_size)
    return {"relays": sizes.chain_relays, **run}


def figures(work: Path, sizes: Sizes, details: dict[str, Any], progress: Any) -> list[Row]:
    """The rows of figure 5: relay CPU per delivery, msg/s per receiver at each fan-out, the chain."""
    plugin_dir = work / "flow-plugins"
    write_flow(plugin_dir)
    results = {}
    for n in sizes.fanouts:
        results[n] = fanout(work, plugin_dir, n, sizes)
        progress(
            f"fan-out to {n}: {results[n]['relay_cpu_us_per_delivery']:.1f} µs relay CPU per delivery "
            f"({results[n]['relay_cpu_s']:.2f} s CPU), "
            f"{results[n]['per_receiver_per_s']:,.0f} msg/s to each receiver, exactly once"
        )
    line = chain(work, plugin_dir, sizes)
    progress(f"chain of {line['relays']} relays: {line['messages_per_s']:,.0f} msg/s, exactly once")
    small, large = sizes.fanouts[0], sizes.fanouts[-1]
    details["fanout"] = {
        "runs": list(results.values()),
        "chain": line,
        "note": "relay CPU: utime + stime (/proc/PID/stat) around the measured blast, after a warm-up blast; "
        "msg/s per receiver: messages / (A's first send - the last arrival at any receiver)",
        "growth": f"to one receiver, the blast grows until the relay uses {sizes.fanout_min_cpu:g} s of CPU",
    }
    one = results[small]["per_receiver_per_s"]
    return [
        compare(
            f"relay CPU per delivered message, fan-out to {large}",
            results[large]["relay_cpu_us_per_delivery"],
            "µs",
            f"fan-out to {small}",
            results[small]["relay_cpu_us_per_delivery"],
            Target("<=", 0.5),
        ),
        *(
            compare(
                f"messages/s to each receiver, fan-out to {n}",
                results[n]["per_receiver_per_s"],
                "msg/s",
                f"fan-out to {small}",
                one,
            )
            for n in sizes.fanouts[1:]
        ),
        compare(
            f"messages/s A → {line['relays']} relays in line → B",
            line["messages_per_s"],
            "msg/s",
            f"one relay (fan-out to {small})",
            one,
        ),
    ]
