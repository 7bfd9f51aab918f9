"""How big each figure's run is: full (stable numbers) or ``--quick`` (the suite runs)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Sizes:
    wrk_seconds: int  # per server
    messages: int  # per blast, A -> relay -> B
    amp_calls: int  # raw AMP baseline calls
    warmup_messages: int  # blasted and discarded before a measured blast
    message_size: int
    steady_rate: int  # messages a second
    steady_seconds: float
    steady_warmup: float  # seconds of the steady stream left out
    fanout_messages: int  # per blast, for each fan-out
    fanout_min_cpu: float  # relay CPU seconds the blast to one receiver must take (grown until it does)
    fanout_max_messages: int  # how far that blast may grow
    fanouts: tuple[int, int]
    plugin_counts: tuple[int, int, int]  # empty, small, large
    load_repeats: int  # starts per plugin count; the median is kept


FULL = Sizes(
    wrk_seconds=10,
    messages=100_000,
    amp_calls=100_000,
    warmup_messages=2_000,
    message_size=100,
    steady_rate=1_000,
    steady_seconds=21.0,
    steady_warmup=1.0,
    fanout_messages=100_000,
    fanout_min_cpu=1.0,
    fanout_max_messages=2_000_000,
    fanouts=(1, 16),
    plugin_counts=(0, 100, 1_000),
    load_repeats=3,
)

QUICK = Sizes(
    wrk_seconds=1,
    messages=3_000,
    amp_calls=3_000,
    warmup_messages=200,
    message_size=100,
    steady_rate=1_000,
    steady_seconds=2.0,
    steady_warmup=1.0,
    fanout_messages=2_000,
    fanout_min_cpu=0.05,
    fanout_max_messages=20_000,
    fanouts=(1, 16),
    plugin_counts=(0, 10, 100),
    load_repeats=1,
)
