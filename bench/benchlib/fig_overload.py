"""
Figure 8: two overload runs with co2's default link settings, counting
what each receiver got of what was sent (delivered once, lost,
duplicated), without judging it:

(a) one plugin call has A send ``sizes.overload_one_call`` messages in a
    single reactor turn, through a relay to B;
(b) A sends ``sizes.overload_total`` messages, ``sizes.overload_slice`` a
    reactor turn, through one relay to two receivers.

A run is over when the counts have not changed for
``sizes.overload_quiet`` seconds after A is done sending, or after
``sizes.overload_cap`` seconds.  The outbox drops each node logged are
counted from its log.  Two figures of each run have targets of their own:
the relay's peak RSS (VmHWM, read once the run is over and before the
relay is stopped) and the lines A logged from the start of the run to
its end.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from . import traffic
from .nodes import Net, start_net
from .plugins import write_flow
from .procs import MIB, Processes, status_bytes
from .report import Row, Target, compare
from .sizes import Sizes

DEFAULTS: dict[str, int] = {}  # the links' outbox settings: co2's own
RELAY_RSS = Target("<", 400, "MiB")  # the relay's peak RSS over a run
SENDER_LINES = Target("<", 200, "lines")  # lines A logs during a run
DROPPED = re.compile(r"outbox full .*dropped (\d+) message")


def logged_drops(net: Net) -> dict[str, int]:
    """The messages each node logged as dropped from a full outbox, by node."""
    return {
        node.proc.name: sum(
            int(m.group(1)) for m in DROPPED.finditer(node.proc.stdout.text + node.proc.stderr.text)
        )
        for node in net.nodes
    }


def overload(
    work: Path, plugin_dir: Path, sizes: Sizes, receivers: int, messages: int, per_turn: int
) -> dict[str, Any]:
    """One overload run on a fresh network with default settings; its counts."""
    with Processes(work) as procs:
        net = start_net(procs, plugin_dir, receivers, links=DEFAULTS)
        relay, sender = net.relays[0].proc, net.sender.proc
        relay_rss = status_bytes(relay.pid, "VmRSS")
        lines_before = sender.line_count()
        run = traffic.flood(
            net.sender,
            net.receivers,
            messages,
            sizes.message_size,
            per_turn,
            sizes.overload_quiet,
            sizes.overload_cap,
        )
        run["sender_log_lines"] = sender.line_count() - lines_before
        run["relay_memory"] = {
            "peak_rss_bytes": status_bytes(relay.pid, "VmHWM"),
            "rss_before_bytes": relay_rss,
            "rss_after_bytes": status_bytes(relay.pid, "VmRSS"),
        }
        run["drops_logged"] = logged_drops(net)
    # what A logged once the run was over, up to its exit: its stop lines, counts the rate limit held back
    run["sender_log_lines_after"] = sender.line_count() - lines_before - run["sender_log_lines"]
    return run


def rows_of(label: str, run: dict[str, Any]) -> list[Row]:
    """One row per receiver: messages delivered once against messages sent."""
    return [
        compare(
            f"{label} → {name}: lost {c['lost']:,}, duplicated {c['duplicates']:,}",
            c["distinct"],
            "msgs",
            "messages sent",
            c["sent"],
            Target(">=", 1),
        )
        for name, c in run["receivers"].items()
    ]


def limit_rows(label: str, run: dict[str, Any]) -> list[Row]:
    """The relay's peak RSS and the lines A logged over a run, against their targets."""
    return [
        Row(
            f"{label}: relay peak RSS (VmHWM)",
            run["relay_memory"]["peak_rss_bytes"] / MIB,
            "MiB",
            target=RELAY_RSS,
        ),
        Row(f"{label}: lines sender A logged", run["sender_log_lines"], "lines", target=SENDER_LINES),
    ]


def figures(work: Path, sizes: Sizes, details: dict[str, Any], progress: Any) -> list[Row]:
    """The rows of figure 8: delivered of sent, lost and duplicated, per receiver of each run."""
    plugin_dir = work / "flow-plugins"
    write_flow(plugin_dir)
    one_call = overload(work, plugin_dir, sizes, 1, sizes.overload_one_call, sizes.overload_one_call)
    sliced = overload(work, plugin_dir, sizes, 2, sizes.overload_total, sizes.overload_slice)
    for name, run in (("one call", one_call), ("slices", sliced)):
        counts = "; ".join(
            f"{node}: {c['distinct']:,} delivered, {c['lost']:,} lost, {c['duplicates']:,} duplicated"
            for node, c in run["receivers"].items()
        )
        drops = ", ".join(f"{node} {count:,}" for node, count in run["drops_logged"].items() if count)
        progress(
            f"overload, {name}: {run['messages']:,} sent; {counts} "
            f"(settled after {run['settled_after_s']} s; outbox drops logged: {drops or 'none'}; "
            f"relay peak RSS {run['relay_memory']['peak_rss_bytes'] / MIB:.1f} MiB; "
            f"A logged {run['sender_log_lines']:,} lines)"
        )
    details["overload"] = {
        "one_call": one_call,
        "slices": sliced,
        "note": "co2's default outbox_limit and outbox_bytes on every node; counts final once unchanged for "
        f"{sizes.overload_quiet:g} s after A is done sending (at most {sizes.overload_cap:g} s)",
        "relay_memory": "the relay's VmHWM (peak RSS since it started) read from /proc/PID/status once the "
        "counts are final and before it is stopped; rss_before_bytes and rss_after_bytes: its VmRSS just "
        "before A is asked to send and when VmHWM is read",
        "sender_log_lines": "lines A wrote to stdout and stderr from just before it is asked to send until "
        "the counts are final; sender_log_lines_after: those it wrote after that, up to its exit",
    }
    one_call_label = f"overload: {one_call['messages']:,} msgs in one call"
    sliced_label = f"overload: {sliced['messages']:,} msgs in slices of {sliced['per_turn']:,}"
    return [
        *rows_of(f"{one_call_label}, A → relay", one_call),
        *limit_rows(one_call_label, one_call),
        *rows_of(f"{sliced_label}, A → relay", sliced),
        *limit_rows(sliced_label, sliced),
    ]
