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
    size_runs: tuple[tuple[int, int], ...]  # (size, messages) blasted beside the 100-byte blast
    stream_frames: int  # 1 MiB frames of the raw Int32StringReceiver baseline
    steady_rate: int  # messages a second
    steady_seconds: float
    steady_warmup: float  # seconds of the steady stream left out
    fanout_messages: int  # per blast, for each fan-out
    fanout_min_cpu: float  # relay CPU seconds the blast to one receiver must take (grown until it does)
    fanout_max_messages: int  # how far that blast may grow
    fanouts: tuple[int, ...]  # receivers; CPU compares the first and the last
    chain_relays: int  # relays in line for the chain blast (sizes.messages)
    nats_repeats: int  # co2 and NATS runs each; the median is kept
    backbone_messages: int  # per blast, A -> relay1 -> NATS backbone (or AMP) -> relay2 -> B
    backbone_repeats: int  # blasts through the backbone and through AMP each; the median is kept
    overload_one_call: int  # messages sent in one reactor turn, A -> relay -> B, default settings
    overload_total: int  # messages sent in slices to two receivers, default settings
    overload_slice: int
    overload_quiet: float  # seconds the counts must stay unchanged to be final
    overload_cap: float  # seconds an overload run is waited for at most
    plugin_counts: tuple[int, int, int]  # empty, small, large
    load_repeats: int  # starts per plugin count; the median is kept


FULL = Sizes(
    wrk_seconds=10,
    messages=100_000,
    amp_calls=100_000,
    warmup_messages=2_000,
    message_size=100,
    size_runs=((10_240, 20_000), (1 << 20, 300)),
    stream_frames=2_000,
    steady_rate=1_000,
    steady_seconds=21.0,
    steady_warmup=1.0,
    fanout_messages=100_000,
    fanout_min_cpu=1.0,
    fanout_max_messages=2_000_000,
    fanouts=(1, 4, 8, 16),
    chain_relays=3,
    nats_repeats=3,
    backbone_messages=100_000,
    backbone_repeats=3,
    overload_one_call=300_000,
    overload_total=1_000_000,
    overload_slice=25_000,
    overload_quiet=5.0,
    overload_cap=300.0,
    plugin_counts=(0, 100, 1_000),
    load_repeats=3,
)

QUICK = Sizes(
    wrk_seconds=1,
    messages=3_000,
    amp_calls=3_000,
    warmup_messages=200,
    message_size=100,
    size_runs=((10_240, 300), (1 << 20, 10)),
    stream_frames=30,
    steady_rate=1_000,
    steady_seconds=2.0,
    steady_warmup=1.0,
    fanout_messages=2_000,
    fanout_min_cpu=0.05,
    fanout_max_messages=20_000,
    fanouts=(1, 4, 8, 16),
    chain_relays=3,
    nats_repeats=1,
    backbone_messages=3_000,
    backbone_repeats=1,
    overload_one_call=6_000,
    overload_total=20_000,
    overload_slice=5_000,
    overload_quiet=2.0,
    overload_cap=30.0,
    plugin_counts=(0, 10, 100),
    load_repeats=1,
)
