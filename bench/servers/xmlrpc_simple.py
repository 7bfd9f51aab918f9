"""
Baseline: ``bench.calls.add`` and ``bench.calls.text`` served by the
standard library's ``SimpleXMLRPCServer`` over HTTP/1.1 keep-alive, without
request logging; ``--threading`` serves each connection in its own thread.

Prints ``serving XML-RPC at http://127.0.0.1:PORT/`` once listening.
"""

import argparse
import socketserver
from xmlrpc.server import SimpleXMLRPCRequestHandler, SimpleXMLRPCServer


class KeepAliveHandler(SimpleXMLRPCRequestHandler):
    protocol_version = "HTTP/1.1"


class ThreadingXMLRPCServer(socketserver.ThreadingMixIn, SimpleXMLRPCServer):
    daemon_threads = True


# As bench/benchlib/plugins.py builds it; the bench checks the answer before loading.
TEXT = ("hello world, this is text. " * 3793)[:102400]


def add(point):
    return point["x"] + point["y"]


def text():
    return TEXT


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--threading", action="store_true", help="one thread per connection")
    args = parser.parse_args()
    server_class = ThreadingXMLRPCServer if args.threading else SimpleXMLRPCServer
    server = server_class(("127.0.0.1", 0), requestHandler=KeepAliveHandler, logRequests=False)
    server.register_function(add, "bench.calls.add")
    server.register_function(text, "bench.calls.text")
    server.register_multicall_functions()
    print(f"serving XML-RPC at http://127.0.0.1:{server.server_address[1]}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
