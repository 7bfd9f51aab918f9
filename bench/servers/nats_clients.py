"""
Baseline: a nats-py publisher and subscriber (asyncio) on NATS core.

Each message is the dict ``{"seq": i, "sensor": "t-17", "values": [1.5,
2.5, 3.5], "tags": {"site": "x"}}`` JSON-encoded, on subject
``bench.flow``.

- ``sub``: subscribes, prints ``nats-sub ready``, then counts what arrives
  (received, distinct ``seq``, duplicates, missing) until it has
  ``--count`` distinct messages, or nothing arrived for ``--quiet``
  seconds, or ``--cap`` seconds passed; prints ``nats-result {json}``.
- ``pub``: publishes ``--count`` messages, flushes, and prints
  ``nats-result {json}``.

Both report the CPU time (user + system) they spent from being ready to
being done, and wall-clock times (``time.time()``) of the first publish
and the last arrival, so that messages/s is counted as co2's are.
"""

import argparse
import asyncio
import json
import os
import time

import nats

SUBJECT = "bench.flow"


def cpu():
    times = os.times()
    return times.user + times.system


def record(seq):
    return {"seq": seq, "sensor": "t-17", "values": [1.5, 2.5, 3.5], "tags": {"site": "x"}}


async def subscribe(args):
    errors = []

    async def error(e):
        errors.append(f"{type(e).__name__}: {e}")

    nc = await nats.connect(args.url, error_cb=error, allow_reconnect=False)
    seen = bytearray(args.count)
    state = {"received": 0, "distinct": 0, "duplicates": 0, "out_of_range": 0, "first": None, "last": None}
    complete = asyncio.Event()

    async def got(msg):
        seq = json.loads(msg.data)["seq"]
        now = time.time()
        state["received"] += 1
        if state["first"] is None:
            state["first"] = now
        state["last"] = now
        if not 0 <= seq < args.count:
            state["out_of_range"] += 1
        elif seen[seq]:
            state["duplicates"] += 1
        else:
            seen[seq] = 1
            state["distinct"] += 1
            if state["distinct"] == args.count:
                complete.set()

    await nc.subscribe(SUBJECT, cb=got)
    await nc.flush()
    started, cpu_started = time.monotonic(), cpu()
    print("nats-sub ready", flush=True)
    last_seen, last_change = -1, time.monotonic()
    while not complete.is_set():
        try:
            await asyncio.wait_for(complete.wait(), 0.1)
        except TimeoutError:
            pass
        now = time.monotonic()
        if state["received"] != last_seen:
            last_seen, last_change = state["received"], now
        elif (state["received"] and now - last_change > args.quiet) or now - started > args.cap:
            break
    cpu_s = cpu() - cpu_started
    await asyncio.sleep(0.2)  # let late duplicates show
    await nc.close()
    return {**state, "missing": args.count - state["distinct"], "cpu_s": cpu_s, "errors": errors[:5]}


async def publish(args):
    nc = await nats.connect(args.url, allow_reconnect=False)
    cpu_started = cpu()
    first = time.time()
    for i in range(args.count):
        await nc.publish(SUBJECT, json.dumps(record(i)).encode())
    await nc.flush()
    result = {"published": args.count, "first": first, "last": time.time(), "cpu_s": cpu() - cpu_started}
    await nc.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("mode", choices=["pub", "sub"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--quiet", type=float, default=5.0)
    parser.add_argument("--cap", type=float, default=120.0)
    args = parser.parse_args()
    result = asyncio.run(subscribe(args) if args.mode == "sub" else publish(args))
    print("nats-result " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
