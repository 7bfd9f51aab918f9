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
counted from its log.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from . import traffic
from .nodes import Net, start_net
from .plugins import write_flow
from .procs import Processes
from .report import Row, Target, compare
from .sizes import Sizes

DEFAULTS: dict[str, int] = {}  # the links' outbox settings: co2's own
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
        run = traffic.flood(
            net.sender,
            net.receivers,
            messages,
            sizes.message_size,
            per_turn,
            sizes.overload_quiet,
            sizes.overload_cap,
        )
        run["drops_logged"] = logged_drops(net)
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
            f"(settled after {run['settled_after_s']} s; outbox drops logged: {drops or 'none'})"
        )
    details["overload"] = {
        "one_call": one_call,
        "slices": sliced,
        "note": "co2's default outbox_limit and outbox_bytes on every node; counts final once unchanged for "
        f"{sizes.overload_quiet:g} s after A is done sending (at most {sizes.overload_cap:g} s)",
    }
    return [
        *rows_of(f"overload: {one_call['messages']:,} msgs in one call, A → relay", one_call),
        *rows_of(
            f"overload: {sliced['messages']:,} msgs in slices of {sliced['per_turn']:,}, A → relay", sliced
        ),
    ]
