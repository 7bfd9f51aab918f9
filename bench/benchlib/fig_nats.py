"""
Figure 7: co2 against NATS core.  The same dict messages go from a plugin
on satellite A through a relay to a plugin on satellite B, and from a
nats-py publisher through nats-server to a nats-py subscriber (there
JSON-encoded); each is counted exactly once at its receiver.  Messages
per second and CPU time per delivered message, summed over the three
processes of each (A, relay, B; server, publisher, subscriber).  Runs
alternate between the two; the median of each is kept.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from . import traffic
from .baselines import nats_server_path, nats_sub_result, run_nats_pub, start_nats, start_nats_sub
from .nodes import Net, start_net
from .plugins import write_flow
from .procs import BenchError, Proc, Processes, cpu_seconds
from .report import Row, Target, compare
from .sizes import Sizes

NATS_QUIET = 5.0  # seconds without a message before the subscriber stops waiting
RECORD_SIZE = 0  # the size argument of a blast of records: not used


def co2_run(net: Net, messages: int) -> dict[str, Any]:
    """A blast of records A → relay → B; msg/s and the CPU seconds of A, relay and B over it."""
    names = {"A": net.sender, "relay": net.relays[0], "B": net.receivers[0]}
    before = {name: cpu_seconds(node.proc.pid) for name, node in names.items()}
    run = traffic.blast(net.sender, net.receivers, messages, RECORD_SIZE, "record")
    each = {name: cpu_seconds(node.proc.pid) - before[name] for name, node in names.items()}
    cpu = sum(each.values())
    return {
        **run,
        "cpu_s": cpu,
        "cpu_us_per_msg": cpu / messages * 1e6,
        "cpu_us_per_msg_each": {name: seconds / messages * 1e6 for name, seconds in each.items()},
    }


def nats_run(procs: Processes, server: Proc, url: str, messages: int, cap: float) -> dict[str, Any]:
    """Publisher → nats-server → subscriber; msg/s, counts and the CPU of the three."""
    sub = start_nats_sub(procs, url, messages, NATS_QUIET, cap)
    before = cpu_seconds(server.pid)
    pub = run_nats_pub(url, messages, cap)
    got = nats_sub_result(sub, cap + NATS_QUIET + 10)
    server_cpu = cpu_seconds(server.pid) - before
    if not got["received"]:
        raise BenchError(f"NATS: the subscriber got nothing of {messages} messages (errors: {got['errors']})")
    seconds = got["last"] - pub["first"]
    cpu = server_cpu + pub["cpu_s"] + got["cpu_s"]
    return {
        "messages": messages,
        "seconds": seconds,
        "messages_per_s": got["distinct"] / seconds,
        "counts": {
            key: got[key] for key in ("received", "distinct", "duplicates", "missing", "out_of_range")
        },
        "errors": got["errors"],
        "cpu_s": {"server": server_cpu, "publisher": pub["cpu_s"], "subscriber": got["cpu_s"]},
        "cpu_us_per_msg": cpu / max(got["distinct"], 1) * 1e6,
    }


def median_of(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def figures(work: Path, sizes: Sizes, details: dict[str, Any], progress: Any) -> list[Row]:
    """The rows of figure 7: messages/s and CPU per delivered message, co2 against NATS core."""
    nats_server_path()  # fails first, saying how to install, when the NATS packages are missing
    plugin_dir = work / "flow-plugins"
    write_flow(plugin_dir)
    messages, cap = sizes.messages, 60 + sizes.messages / 1000
    co2: list[dict[str, Any]] = []
    nats: list[dict[str, Any]] = []
    with Processes(work) as procs:
        net = start_net(procs, plugin_dir)
        server, url = start_nats(procs)
        traffic.blast(net.sender, net.receivers, sizes.warmup_messages, RECORD_SIZE, "record")
        nats_run(procs, server, url, sizes.warmup_messages, cap)
        for _ in range(sizes.nats_repeats):
            co2.append(co2_run(net, messages))
            nats.append(nats_run(procs, server, url, messages, cap))
            progress(
                f"co2 {co2[-1]['messages_per_s']:,.0f} msg/s, {co2[-1]['cpu_us_per_msg']:.1f} µs CPU/msg; "
                f"NATS {nats[-1]['messages_per_s']:,.0f} msg/s, {nats[-1]['cpu_us_per_msg']:.1f} µs CPU/msg, "
                f"missing {nats[-1]['counts']['missing']}, duplicates {nats[-1]['counts']['duplicates']}"
            )
    missing = sum(run["counts"]["missing"] for run in nats)
    duplicates = sum(run["counts"]["duplicates"] for run in nats)
    details["nats"] = {
        "co2": co2,
        "nats": nats,
        "message": "{'seq': i, 'sensor': 't-17', 'values': [1.5, 2.5, 3.5], 'tags': {'site': 'x'}}",
        "note": f"median of {sizes.nats_repeats} runs each, alternating; msg/s = distinct messages / "
        "(receiver's last arrival - sender's first send); CPU = utime + stime over the run, "
        "summed over A, relay and B (/proc/PID/stat) and over nats-server (/proc) and the "
        "publisher and subscriber (os.times, ready to done)",
    }
    flaw = f" (NATS missing {missing}, duplicates {duplicates})" if missing or duplicates else ""
    return [
        compare(
            f"messages/s A → relay → B, dict message{flaw}",
            median_of(co2, "messages_per_s"),
            "msg/s",
            "NATS core: nats-py pub → nats-server → nats-py sub",
            median_of(nats, "messages_per_s"),
            Target(">=", 1.0),
        ),
        compare(
            "CPU per delivered message, A + relay + B",
            median_of(co2, "cpu_us_per_msg"),
            "µs",
            "NATS core: server + pub + sub",
            median_of(nats, "cpu_us_per_msg"),
            Target("<=", 1.0),
        ),
    ]
