"""
Baseline: ``bench.calls.add`` served by a bare ``twisted.web.xmlrpc.XMLRPC``
resource on a default ``twisted.web.server.Site``; the dotted name resolves
through sub-handlers ``bench`` and ``calls``.

Prints ``serving XML-RPC at http://127.0.0.1:PORT/`` once listening.
"""

from twisted.internet import reactor
from twisted.web import server, xmlrpc


class Calls(xmlrpc.XMLRPC):
    def xmlrpc_add(self, point):
        return point["x"] + point["y"]


def main() -> None:
    root = xmlrpc.XMLRPC()
    package = xmlrpc.XMLRPC()
    package.putSubHandler("calls", Calls())
    root.putSubHandler("bench", package)
    port = reactor.listenTCP(0, server.Site(root), interface="127.0.0.1")
    print(f"serving XML-RPC at http://127.0.0.1:{port.getHost().port}/", flush=True)
    reactor.run()


if __name__ == "__main__":
    main()
