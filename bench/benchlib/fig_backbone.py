"""
Figure 9: two sites joined through a NATS JetStream backbone.  The dict
record of figure 7 goes from satellite A's ``flow`` plugin to relay1,
through nats-server's JetStream stream to relay2 (each relay linked to
it as ``nats://127.0.0.1:PORT/bench``), and on to satellite B; against
the same two relays linked directly by AMP (relay2 in relay1's
``peers``).  Both networks run side by side; blasts alternate between
them, each checked exactly once at B, and the median of each is kept.
CPU time per delivered message is taken for each process (and
nats-server for the backbone).
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from . import traffic
from .baselines import nats_server_path, start_nats
from .fig_nats import RECORD_SIZE, median_of
from .nodes import Net, start_ends, start_relay, wait_backbone
from .plugins import write_flow
from .procs import Proc, Processes, cpu_seconds
from .report import Row, Target, compare
from .sizes import Sizes

STREAM = "bench"  # the JetStream stream both relays link to


def start_backbone(procs: Processes, plugin_dir: Path, store: Path) -> tuple[Net, Proc]:
    """
    nats-server with JetStream (its store in ``store``), two relays linked
    only through it, A on the first and B on the second; the network and
    the server.
    """
    server, url = start_nats(procs, store)
    peer = f"{url}/{STREAM}"
    relays = [start_relay(procs, f"bb-relay{i}", peers=[peer]) for i in (1, 2)]
    wait_backbone(relays)
    return start_ends(procs, plugin_dir, relays, ("bb-a", "bb-b")), server


def start_amp(procs: Processes, plugin_dir: Path) -> Net:
    """The same two relays linked by AMP (relay1 dials relay2), A on the first and B on the second."""
    relay2 = start_relay(procs, "amp-relay2")
    relay1 = start_relay(procs, "amp-relay1", peers=[relay2.peer])
    return start_ends(procs, plugin_dir, [relay1, relay2], ("amp-a", "amp-b"))


def measured_blast(net: Net, messages: int, server: Proc | None = None) -> dict[str, Any]:
    """
    A blast of records A → relay1 → relay2 → B; msg/s, and the CPU time of
    each process over it (nats-server's too, when given), per delivered message.
    """
    procs = {"A": net.sender.proc, "relay1": net.relays[0].proc, "relay2": net.relays[1].proc}
    procs["B"] = net.receivers[0].proc
    if server is not None:
        procs["nats-server"] = server
    before = {name: cpu_seconds(proc.pid) for name, proc in procs.items()}
    run = traffic.blast(net.sender, net.receivers, messages, RECORD_SIZE, "record")
    each = {name: cpu_seconds(proc.pid) - before[name] for name, proc in procs.items()}
    return {
        **run,
        "cpu_s": each,
        "cpu_us_per_msg": sum(each.values()) / messages * 1e6,
        "cpu_us_per_msg_each": {name: seconds / messages * 1e6 for name, seconds in each.items()},
    }


def describe(run: dict[str, Any]) -> str:
    """msg/s and CPU µs per message, in all and by process."""
    each = ", ".join(f"{name} {us:.1f}" for name, us in run["cpu_us_per_msg_each"].items())
    return f"{run['messages_per_s']:,.0f} msg/s, {run['cpu_us_per_msg']:.1f} µs CPU/msg ({each})"


def median_cpu(runs: list[dict[str, Any]]) -> dict[str, float]:
    """The median CPU µs per message of each process over ``runs``."""
    return {
        name: statistics.median(run["cpu_us_per_msg_each"][name] for run in runs)
        for name in runs[0]["cpu_us_per_msg_each"]
    }


def figures(work: Path, sizes: Sizes, details: dict[str, Any], progress: Any) -> list[Row]:
    """The row of figure 9: messages/s through the NATS backbone against an AMP link between the relays."""
    nats_server_path()  # fails first, saying how to install, when the NATS packages are missing
    plugin_dir = work / "flow-plugins"
    write_flow(plugin_dir)
    backbone: list[dict[str, Any]] = []
    amp: list[dict[str, Any]] = []
    with Processes(work) as procs:
        sites, server = start_backbone(procs, plugin_dir, work / "backbone-jetstream")
        direct = start_amp(procs, plugin_dir)
        for net in (sites, direct):
            traffic.blast(net.sender, net.receivers, sizes.warmup_messages, RECORD_SIZE, "record")
        for _ in range(sizes.backbone_repeats):
            backbone.append(measured_blast(sites, sizes.backbone_messages, server))
            amp.append(measured_blast(direct, sizes.backbone_messages))
            progress(f"backbone {describe(backbone[-1])}")
            progress(f"AMP      {describe(amp[-1])}")
    details["backbone"] = {
        "backbone": backbone,
        "amp": amp,
        "cpu_us_per_msg_median": {"backbone": median_cpu(backbone), "amp": median_cpu(amp)},
        "message": "{'seq': i, 'sensor': 't-17', 'values': [1.5, 2.5, 3.5], 'tags': {'site': 'x'}}",
        "note": f"median of {sizes.backbone_repeats} blasts each, alternating, after a warm-up blast on "
        f"each; nats-server with JetStream (file store in the work directory), both relays linked to "
        f"its stream {STREAM!r}; no data_dir or spool on any node; msg/s = messages / (B's last "
        "arrival - A's first send); CPU = utime + stime over the blast (/proc/PID/stat) per message",
    }
    return [
        compare(
            "messages/s A → relay → NATS backbone → relay → B, dict message",
            median_of(backbone, "messages_per_s"),
            "msg/s",
            "the same two relays linked by AMP",
            median_of(amp, "messages_per_s"),
            Target(">=", 0.5),
        )
    ]
