"""
Baseline for big messages: a raw Twisted ``Int32StringReceiver`` stream
between two processes.

- ``sink``: prints ``int32 sink at tcp://127.0.0.1:PORT/`` once listening.
  On each connection it reads a header frame (JSON: ``frames``, ``size``),
  then that many frames, checking each one's sequence number and length,
  and answers with one JSON frame of what it counted.
- ``send``: sends the header and ``--frames`` frames of ``--size`` bytes,
  one each time the connection's buffer has drained (a pull producer), and
  prints one line ``int32-result {json}``: MB/s from the first frame
  written to the sink's answer.
"""

import argparse
import json
import time

from run_once import run_once
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.interfaces import IPullProducer
from twisted.internet.protocol import Factory
from twisted.protocols.basic import Int32StringReceiver
from zope.interface import implementer

MAX_FRAME = 64 << 20  # Int32StringReceiver refuses frames over 99,999 bytes by default


def payload(i, size):
    return f"{i:012d}".encode().ljust(size, b"x")


class Sink(Int32StringReceiver):
    MAX_LENGTH = MAX_FRAME

    def connectionMade(self):
        self.header = None
        self.count = 0
        self.wrong = 0

    def stringReceived(self, frame):
        if self.header is None:
            self.header = json.loads(frame)
            return
        self.wrong += len(frame) != self.header["size"] or int(frame[:12]) != self.count
        self.count += 1
        if self.count == self.header["frames"]:
            self.sendString(json.dumps({"received": self.count, "wrong": self.wrong}).encode())


@implementer(IPullProducer)
class Frames:
    """Writes the next frame each time the transport asks for more."""

    def __init__(self, protocol, frames, size):
        self.protocol = protocol
        self.frames = frames
        self.size = size
        self.sent = 0

    def resumeProducing(self):
        if self.sent < self.frames:
            self.protocol.sendString(payload(self.sent, self.size))
            self.sent += 1
            if self.sent == self.frames:
                self.protocol.transport.unregisterProducer()

    def stopProducing(self):
        self.sent = self.frames


class Sender(Int32StringReceiver):
    MAX_LENGTH = MAX_FRAME

    def __init__(self):
        self.answer = defer.Deferred()

    def stringReceived(self, frame):
        self.answer.callback(json.loads(frame))

    def connectionLost(self, reason):
        if not self.answer.called:
            self.answer.errback(reason)


@defer.inlineCallbacks
def send(args):
    sender = yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", args.port), Sender())
    sender.sendString(json.dumps({"frames": args.frames, "size": args.size}).encode())
    start = time.perf_counter()
    sender.transport.registerProducer(Frames(sender, args.frames, args.size), False)
    answer = yield sender.answer
    seconds = time.perf_counter() - start
    total = args.frames * args.size
    result = {
        "frames": args.frames,
        "size": args.size,
        "seconds": seconds,
        "frames_per_s": args.frames / seconds,
        "mb_per_s": total / seconds / 1e6,
        "received": answer["received"],
        "wrong": answer["wrong"],
    }
    print("int32-result " + json.dumps(result), flush=True)
    sender.transport.loseConnection()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("mode", choices=["sink", "send"])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--frames", type=int, default=1_000)
    parser.add_argument("--size", type=int, default=1 << 20)
    args = parser.parse_args()
    if args.mode == "sink":
        port = reactor.listenTCP(args.port, Factory.forProtocol(Sink), interface="127.0.0.1")
        print(f"int32 sink at tcp://127.0.0.1:{port.getHost().port}/", flush=True)
        reactor.run()
        return
    run_once(lambda: send(args), "int32")


if __name__ == "__main__":
    main()
