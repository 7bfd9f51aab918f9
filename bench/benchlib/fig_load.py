"""
Figure 6: load time and memory of a satellite with many generated plugin
packages (``p0000``…, one method each), against fewer.
"""

from __future__ import annotations

import compileall
import statistics
from pathlib import Path
from typing import Any

from co2.testing import rss_bytes

from .nodes import start_satellite
from .plugins import ping_name, write_pings
from .procs import BenchError, Processes
from .report import Row, Target, compare
from .sizes import Sizes

MIB = 1024 * 1024


def start_once(work: Path, plugin_dir: Path, names: list[str]) -> tuple[float, int, list[str]]:
    """Start a satellite loading ``names``; seconds from spawn to serving, RSS then, method names."""
    with Processes(work) as procs:
        node = start_satellite(procs, f"load{len(names)}", plugin_dir, names)
        methods = list(node.call("co2.get_method_names"))
        rss = rss_bytes(node.proc.pid)
    return node.ready_after, rss, methods


def check_methods(methods: list[str], builtins: list[str], count: int) -> None:
    """The satellite must list one ``ping`` per package, plus the built-ins."""
    expected = set(builtins) | {f"{ping_name(i)}.m.ping" for i in range(count)}
    if set(methods) != expected or len(methods) != len(expected):
        missing = sorted(expected - set(methods))[:5]
        extra = sorted(set(methods) - expected)[:5]
        raise BenchError(f"{count} plugins: method names differ (missing {missing}, unexpected {extra})")


def measure(work: Path, sizes: Sizes, progress: Any) -> dict[int, dict[str, Any]]:
    """Median load time and RSS for each plugin count, over ``sizes.load_repeats`` starts."""
    results: dict[int, dict[str, Any]] = {}
    builtins: list[str] = []
    for count in sizes.plugin_counts:
        plugin_dir = work / f"plugins{count}"
        plugin_dir.mkdir()
        names = write_pings(plugin_dir, count)
        compileall.compile_dir(plugin_dir, quiet=1)  # every start reads bytecode, the first one too
        times, rss = [], []
        for _ in range(sizes.load_repeats):
            seconds, memory, methods = start_once(work, plugin_dir, names)
            if count == 0:
                builtins = methods
            check_methods(methods, builtins, count)
            times.append(seconds)
            rss.append(memory)
        results[count] = {
            "plugins": count,
            "load_s": statistics.median(times),
            "rss_bytes": int(statistics.median(rss)),
            "load_s_each": [round(t, 4) for t in times],
            "rss_bytes_each": rss,
            "methods": len(builtins) + count,
        }
        progress(
            f"{count} plugins: {results[count]['load_s']:.3f} s to serve, "
            f"{results[count]['rss_bytes'] / MIB:.1f} MiB"
        )
    return results


def figures(work: Path, sizes: Sizes, details: dict[str, Any], progress: Any) -> list[Row]:
    """The rows of figure 6: totals at the large count against the small one, then per-plugin margins."""
    results = measure(work, sizes, progress)
    empty, small, large = (results[count] for count in sizes.plugin_counts)
    n_small, n_large = small["plugins"], large["plugins"]

    def per_plugin_ms(r: dict[str, Any]) -> float:
        return (r["load_s"] - empty["load_s"]) / r["plugins"] * 1000

    def per_plugin_kib(r: dict[str, Any]) -> float:
        return (r["rss_bytes"] - empty["rss_bytes"]) / r["plugins"] / 1024

    details["plugins"] = {
        "runs": list(results.values()),
        "load_time": "wall time from spawning co2-satellite to its 'serving XML-RPC' line (median of starts)",
        "memory": "VmRSS once serving, after one co2.get_method_names() call (median of the starts)",
    }
    return [
        compare(
            f"satellite load time, {n_large:,} plugins",
            large["load_s"],
            "s",
            f"{n_small:,} plugins",
            small["load_s"],
            Target("<=", 11),
        ),
        compare(
            f"satellite memory (RSS), {n_large:,} plugins",
            large["rss_bytes"] / MIB,
            "MiB",
            f"{n_small:,} plugins",
            small["rss_bytes"] / MIB,
            Target("<=", 11),
        ),
        Row(
            f"load time per plugin above empty, {n_small:,} plugins",
            per_plugin_ms(small),
            "ms",
            "empty satellite load time",
            empty["load_s"] * 1000,
            "ms",
        ),
        compare(
            f"load time per plugin above empty, {n_large:,} plugins",
            per_plugin_ms(large),
            "ms",
            f"per plugin at {n_small:,}",
            per_plugin_ms(small),
        ),
        Row(
            f"memory per plugin above empty, {n_small:,} plugins",
            per_plugin_kib(small),
            "KiB",
            "empty satellite RSS",
            empty["rss_bytes"] / 1024,
            "KiB",
        ),
        compare(
            f"memory per plugin above empty, {n_large:,} plugins",
            per_plugin_kib(large),
            "KiB",
            f"per plugin at {n_small:,}",
            per_plugin_kib(small),
        ),
    ]
