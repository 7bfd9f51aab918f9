"""
Baseline: a raw Twisted AMP server answering ``Echo`` with its ``data``.

Prints ``amp echo at tcp://127.0.0.1:PORT/`` once listening.
"""

from twisted.internet import reactor
from twisted.internet.protocol import Factory
from twisted.protocols import amp


class Echo(amp.Command):
    arguments = [(b"data", amp.String())]
    response = [(b"data", amp.String())]


class EchoServer(amp.AMP):
    @Echo.responder
    def echo(self, data):
        return {"data": data}


def main() -> None:
    port = reactor.listenTCP(0, Factory.forProtocol(EchoServer), interface="127.0.0.1")
    print(f"amp echo at tcp://127.0.0.1:{port.getHost().port}/", flush=True)
    reactor.run()


if __name__ == "__main__":
    main()
