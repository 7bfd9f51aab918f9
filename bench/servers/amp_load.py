"""
Baseline load on a raw Twisted AMP server (``amp_echo.py``), as a client
process.  Prints one line ``amp-result {json}``.

- ``throughput``: ``--calls`` Echo calls of ``--size`` bytes, ``--inflight``
  kept outstanding at a time; calls per second from the first call to the
  last answer.
- ``steady``: one Echo call per tick of a ``LoopingCall`` at ``--rate`` a
  second (missed ticks send the missed calls) for ``--seconds``; round-trip
  percentiles in ms, the first ``--warmup`` seconds of calls left out.
"""

import argparse
import json
import time

from amp_echo import Echo
from run_once import run_once
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.task import LoopingCall
from twisted.protocols import amp


def percentile(ordered, p):
    """The nearest-rank p-th percentile of the sorted list ordered."""
    rank = max(1, -(-len(ordered) * p // 100))
    return ordered[int(rank) - 1]


def failer(done):
    """An errback that fails ``done`` with the first failure only."""

    def fail(failure):
        if not done.called:
            done.errback(failure)

    return fail


def payload(i, size):
    return f"{i:012d}".ljust(size, "x").encode()


def throughput(client, calls, inflight, size):
    """Keep ``inflight`` calls outstanding until ``calls`` were answered."""
    done = defer.Deferred()
    fail = failer(done)
    state = {"issued": 0, "answered": 0, "wrong": 0}
    start = time.perf_counter()

    def issue():
        i = state["issued"]
        state["issued"] += 1
        sent = payload(i, size)
        client.callRemote(Echo, data=sent).addCallbacks(lambda answer: answered(answer, sent), fail)

    def answered(answer, sent):
        state["answered"] += 1
        state["wrong"] += answer["data"] != sent
        if state["issued"] < calls:
            issue()
        elif state["answered"] == calls and not done.called:
            seconds = time.perf_counter() - start
            done.callback(
                {"calls": calls, "seconds": seconds, "calls_per_s": calls / seconds, "wrong": state["wrong"]}
            )

    for _ in range(min(inflight, calls)):
        issue()
    return done


def steady(client, rate, seconds, warmup, size):
    """One call per tick at ``rate`` a second for ``seconds``; round-trip percentiles."""
    total = int(rate * seconds)
    done = defer.Deferred()
    state = {"issued": 0, "answered": 0, "wrong": 0}
    fail = failer(done)
    rtts = []
    start = time.perf_counter()

    def answered(answer, sent, at):
        now = time.perf_counter()
        state["answered"] += 1
        state["wrong"] += answer["data"] != sent
        if at - start >= warmup:
            rtts.append((now - at) * 1000.0)
        if state["answered"] == total and not done.called:
            ordered = sorted(rtts)
            done.callback(
                {
                    "calls": total,
                    "counted": len(ordered),
                    "wrong": state["wrong"],
                    "p50_ms": percentile(ordered, 50),
                    "p99_ms": percentile(ordered, 99),
                    "max_ms": ordered[-1],
                }
            )

    def tick(count):
        for _ in range(count):
            if state["issued"] >= total:
                if loop.running:
                    loop.stop()
                return
            sent = payload(state["issued"], size)
            state["issued"] += 1
            at = time.perf_counter()
            client.callRemote(Echo, data=sent).addCallbacks(
                lambda answer, sent=sent, at=at: answered(answer, sent, at), fail
            )

    loop = LoopingCall.withCount(tick)
    loop.start(1.0 / rate, now=True)
    return done


@defer.inlineCallbacks
def run(args):
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", args.port)
    client = yield connectProtocol(endpoint, amp.AMP())
    if args.mode == "throughput":
        result = yield throughput(client, args.calls, args.inflight, args.size)
    else:
        result = yield steady(client, args.rate, args.seconds, args.warmup, args.size)
    print("amp-result " + json.dumps(result), flush=True)
    client.transport.loseConnection()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("mode", choices=["throughput", "steady"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--inflight", type=int, default=100)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    args = parser.parse_args()
    run_once(lambda: run(args), "amp")


if __name__ == "__main__":
    main()
