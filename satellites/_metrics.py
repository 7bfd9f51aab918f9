"""
``GET /metrics``: what a node has done, in Prometheus's text format.

The hot paths only count: plain dict and list increments in the links
(read through :meth:`relay.Relay.snapshot`), the satellite (:class:`PluginStats`) and
the XML-RPC responder (:class:`CallStats`).  ``prometheus_client`` turns
those counts into metric families when a scraper asks, in the reactor
thread, so that nothing is read while it changes.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from co2 import __version__
from co2.faults import METHOD_NOT_FOUND

__all__ = [
    "BUCKETS", "UNKNOWN_METHOD", "UNREADABLE", "CallStats", "MetricsPage", "PluginStats", "node_registry",
]

BUCKETS = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0)
"""Upper bounds (seconds) of the ``receive`` latency histogram's buckets."""

UNKNOWN_METHOD = "(unknown)"
"""The ``method`` label of calls to names the node does not know: callers cannot grow the label set."""

UNREADABLE = "(unreadable)"
"""The ``method`` label of requests that are not XML-RPC calls."""


class PluginStats:
    """Per plugin: messages handed to ``receive``, the ones it raised on, and how long it took."""

    def __init__(self) -> None:
        self.errors: Counter[str] = Counter()
        # Per plugin: the count of each bucket (the last is +Inf), and the sum of seconds.
        self._buckets: dict[str, list[int]] = {}
        self._sums: dict[str, float] = {}

    @property
    def deliveries(self) -> Counter[str]:
        """Messages handed to each plugin's ``receive``."""
        return Counter({plugin: sum(counts) for plugin, counts in self._buckets.items()})

    def delivered(self, plugin: str, seconds: float, failed: bool) -> None:
        """One ``receive`` of ``plugin`` ran for ``seconds``; ``failed`` if it raised."""
        counts = self._buckets.get(plugin)
        if counts is None:
            counts = self._buckets[plugin] = [0] * (len(BUCKETS) + 1)
            self._sums[plugin] = 0.0
        counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        self._sums[plugin] += seconds
        if failed:
            self.errors[plugin] += 1

    def failed_later(self, plugin: str) -> None:
        """A ``receive`` of ``plugin`` returned a Deferred that failed."""
        self.errors[plugin] += 1

    def histogram(self) -> Iterator[tuple[str, list[tuple[str, int]], float]]:
        """Per plugin: cumulative ``(le, count)`` buckets and the sum of seconds."""
        for plugin, counts in self._buckets.items():
            total = 0
            buckets = []
            for bound, count in zip((*map(str, BUCKETS), "+Inf"), counts, strict=True):
                total += count
                buckets.append((bound, total))
            yield plugin, buckets, self._sums[plugin]


class CallStats:
    """XML-RPC requests by method and by the fault code answered (0: no fault)."""

    def __init__(self) -> None:
        self.calls: Counter[tuple[str, int]] = Counter()

    def answered(self, method: str, code: int) -> None:
        """A request for ``method`` answered with fault ``code`` (0: none); unknown names count as one."""
        if code == METHOD_NOT_FOUND:
            method = UNKNOWN_METHOD
        self.calls[method, code] += 1


class _NodeCollector:
    """Reads a node's counts into metric families."""

    def __init__(self, node: Any, calls: CallStats) -> None:
        self.node = node
        self.calls = calls

    def collect(self) -> Iterator[Metric]:
        snapshot = self.node.relay.snapshot()
        links = snapshot.links
        yield InfoMetricFamily("co2_build", "The co2 this node runs.", value={"version": __version__})
        up = GaugeMetricFamily("co2_link_up", "1 while each link is up, 0 while it is down.", labels=["link"])
        for link in links:
            up.add_metric([link.key], 1 if link.up else 0)
        yield up
        # Every series from zero: a rate needs the zero before the first count.
        yield _counter("co2_link_messages_in", "Messages that arrived over each link.", "link",
                       {link.key: link.messages_in for link in links})
        yield _counter("co2_link_messages_out", "Messages sent over each link.", "link",
                       {link.key: link.messages_out for link in links})
        yield _counter("co2_link_reconnects", "Times each link came up again after its first time.",
                       "link", {link.key: link.reconnects for link in links})
        depth = GaugeMetricFamily("co2_outbox_depth", "Messages each link's outbox holds.", labels=["link"])
        for link in links:
            depth.add_metric([link.key], link.queued)
        yield depth
        messages = CounterMetricFamily(
            "co2_router_messages", "Messages the router handled, by what happened.", labels=["outcome"]
        )
        for outcome, count in snapshot.counters.items():
            messages.add_metric([outcome], count)
        yield messages
        yield from _flow_metrics(snapshot.flow)
        satellite = self.node.satellite
        if satellite is None:
            yield from _plugin_metrics(PluginStats(), [])
        else:
            yield from _plugin_metrics(satellite.plugin_stats, [str(plugin) for plugin in satellite.plugins])
        calls = CounterMetricFamily(
            "co2_xmlrpc_calls", "XML-RPC requests by method and fault code (0: answered without a fault).",
            labels=["method", "fault"],
        )
        for (method, code), count in sorted(self.calls.calls.items()):
            calls.add_metric([method, str(code)], count)
        yield calls


_FLOW = (
    ("co2_congested", "congested", "1 while the router takes nothing more (an up link's outbox is full)."),
    ("co2_parked_batches", "parked", "Batches from links waiting, unanswered, for the router to take again."),
    ("co2_send_queue_messages", "queued", "Messages the plugins sent that wait in the send queue."),
    ("co2_send_queue_bytes", "queued_bytes", "Bytes of the messages waiting in the send queue."),
)


def _flow_metrics(flow: dict[str, int | bool]) -> Iterator[Metric]:
    for name, key, documentation in _FLOW:
        yield GaugeMetricFamily(name, documentation, value=int(flow[key]))


def _plugin_metrics(plugins: PluginStats, loaded: list[str]) -> Iterator[Metric]:
    """The plugins' series; each plugin of ``loaded`` has them all, from zero."""
    zero = dict.fromkeys(loaded, 0)
    yield _counter("co2_plugin_deliveries", "Messages handed to each plugin's receive.", "plugin",
                   {**zero, **plugins.deliveries})
    yield _counter("co2_plugin_errors", "receive calls of each plugin that raised or failed.", "plugin",
                   {**zero, **plugins.errors})
    latency = HistogramMetricFamily(
        "co2_plugin_receive_seconds", "Time each plugin's receive kept the reactor.", labels=["plugin"]
    )
    for plugin, buckets, total in plugins.histogram():
        latency.add_metric([plugin], buckets, total)
    yield latency


def _counter(name: str, documentation: str, label: str, counts: Any) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=[label])
    for key, count in sorted(counts.items()):
        family.add_metric([key], count)
    return family


def node_registry(node: Any, calls: CallStats) -> CollectorRegistry:
    """A registry of its own for one node (tests run many nodes in one process)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_NodeCollector(node, calls))
    ProcessCollector(registry=registry)  # the process's CPU, memory and open files, where /proc has them
    return registry


class MetricsPage:
    """``GET /metrics``: the registry in Prometheus's text format, made in the reactor thread."""

    name = "metrics"
    """What ``auth_methods`` calls this page."""

    content_type = CONTENT_TYPE_LATEST.encode()

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def render(self) -> bytes:
        """The metrics as they are now."""
        return generate_latest(self.registry)
