"""
The endpoints ``docs/deployment.md`` deploys with, as the config checks
them: ``systemd:`` (a socket passed by socket activation) and
``haproxy:`` (the PROXY protocol in front of another endpoint), in
``listen`` and ``amp_listen``.  Nothing is bound: the checks parse.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tls_certificates import TLSFiles, make_tls_files
from twisted.internet.address import IPv4Address
from twisted.internet.endpoints import serverFromString
from twisted.internet.testing import MemoryReactorClock, StringTransport

from co2 import ConfigError
from co2._config import check_endpoint, proxied_endpoint
from co2._xmlrpc import dump_call, parse_response
from satellites import Dispatcher, Method, MethodRegistry, make_config, make_server

ACCEPTED = [
    "systemd:domain=INET:index=0",
    "systemd:domain=INET6:index=2",
    "systemd:domain=UNIX:index=0",
    "systemd:domain=INET:name=xmlrpc",
    "systemd:INET:0",
    "haproxy:tcp:2004:interface=127.0.0.1",
    "haproxy:tcp6:2004:interface=\\:\\:1",
    "haproxy:unix:/run/co2/satellite.sock",
    "haproxy:systemd:domain=INET:index=0",
    "haproxy:systemd:domain=INET:name=xmlrpc",
    "haproxy:interface=127.0.0.1:tcp:2004",
]

REFUSED = [
    ("systemd", "systemd: needs domain= (the socket's address family: INET, INET6 or UNIX)"),
    ("systemd:index=0", "systemd: needs domain="),
    ("systemd:domain=INET", "systemd: needs index=N (the socket's place among those systemd passes, from 0) "
                            "or name=NAME (its FileDescriptorName=)"),
    ("systemd:domain=inet:index=0", "systemd: domain='inet' is not an address family co2 can serve on: "
                                    "INET, INET6 or UNIX"),
    ("systemd:domain=PACKET:index=0", "systemd: domain='PACKET' is not an address family"),
    ("systemd:domain=INET:index=x", "systemd: index='x' is not a number from 0"),
    ("systemd:domain=INET:index=-1", "systemd: index='-1' is not a number from 0"),
    ("systemd:domain=INET:index=", "systemd: index='' is not a number from 0"),
    ("systemd:domain=INET:name=", "systemd: name= is empty"),
    ("systemd:domain=INET:index=0:name=xmlrpc", "systemd: index= and name= both pick a socket; give one"),
    ("systemd:domain=INET:domain=INET:index=0", "systemd: domain= is given twice"),
    ("systemd:INET:domain=INET:index=0", "systemd: domain= is given twice"),
    ("systemd:domain=INET:index=0:backlog=5", "systemd: takes domain=, then index= or name=, not backlog="),
    ("systemd:INET:0:web:more", "systemd: takes domain=, then index= or name=; 'more' is one too many"),
    ("haproxy", "haproxy: needs the endpoint it wraps after it, such as haproxy:tcp:2004:interface=127"),
    ("haproxy:", "haproxy: needs the endpoint it wraps after it"),
    ("haproxy:interface=127.0.0.1", "haproxy: needs the endpoint it wraps after it"),
    ("haproxy:haproxy:tcp:2004", "haproxy: wraps haproxy: again, but a connection starts with one PROXY"),
    ("haproxy:tcp:notaport", "invalid literal for int() with base 10: 'notaport'"),
    ("haproxy:bogus:2004", "Unknown endpoint type: 'bogus'"),
    ("haproxy:systemd:domain=INET", "systemd: needs index=N"),
]


@pytest.fixture(autouse=True)
def outside_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    """No socket is passed to these tests, whoever runs them."""
    for name in ("LISTEN_FDS", "LISTEN_FDNAMES", "LISTEN_PID"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("endpoint", ACCEPTED)
def test_deployment_endpoints_are_accepted(endpoint: str) -> None:
    """systemd: and haproxy: strings Twisted reads pass the check, with no socket passed to this process."""
    check_endpoint(endpoint)


@pytest.mark.parametrize(("endpoint", "problem"), REFUSED)
def test_a_malformed_one_is_named_with_what_is_wrong(endpoint: str, problem: str) -> None:
    """A malformed systemd: or haproxy: string is one ValueError naming the string and the problem."""
    with pytest.raises(ValueError) as raised:
        check_endpoint(endpoint)
    assert type(raised.value) is ValueError
    assert str(raised.value).startswith(f"{endpoint!r} is not a usable endpoint: ")
    assert problem in str(raised.value)


@pytest.mark.parametrize("endpoint", ["systemd:domain=INET:index=0", "haproxy:tcp:2004:interface=127.0.0.1"])
def test_client_strings_are_not_servers(endpoint: str) -> None:
    """A peer cannot be a systemd: or haproxy: string: they only listen."""
    with pytest.raises(ValueError, match="is not a usable endpoint"):
        check_endpoint(endpoint, server=False)


def test_proxied_endpoint_is_what_haproxy_wraps() -> None:
    """proxied_endpoint gives what follows haproxy:, positional parameters first; others as they are."""
    assert proxied_endpoint("haproxy:tcp:2004:interface=127.0.0.1") == "tcp:2004:interface=127.0.0.1"
    assert proxied_endpoint("haproxy:interface=127.0.0.1:tcp:2004") == "tcp:2004:interface=127.0.0.1"
    assert proxied_endpoint("haproxy:tcp6:2004:interface=\\:\\:1") == "tcp6:2004:interface=\\:\\:1"
    assert proxied_endpoint("tcp:2004") == "tcp:2004"
    assert proxied_endpoint("systemd:domain=INET:index=0") == "systemd:domain=INET:index=0"


@pytest.mark.parametrize("key", ["listen", "amp_listen"])
@pytest.mark.parametrize("endpoint", ["systemd:domain=INET:name=xmlrpc", "haproxy:tcp:0:interface=127.0.0.1"])
def test_the_config_keeps_them(tmp_path: Path, key: str, endpoint: str) -> None:
    """listen and amp_listen take systemd: and haproxy: strings as they are written."""
    config = make_config({key: endpoint}, str(tmp_path / "config.py"))
    kept = config.front.listen if key == "listen" else config.relay.amp_listen
    assert kept == endpoint


@pytest.mark.parametrize("key", ["listen", "amp_listen"])
def test_a_malformed_one_in_the_config_names_file_and_key(tmp_path: Path, key: str) -> None:
    """A malformed systemd: string is a config error (exit 2) naming the file, the key and the problem."""
    path = str(tmp_path / "config.py")
    with pytest.raises(ConfigError) as raised:
        make_config({key: "systemd:domain=INET"}, path)
    expected = f"{path}: {key}: 'systemd:domain=INET' is not a usable endpoint: systemd: needs index=N"
    assert str(raised.value).startswith(expected)


@pytest.fixture
def tls(tmp_path: Path) -> TLSFiles:
    """Certificates in ``tmp_path/etc/certs``; configs go in ``tmp_path/etc``."""
    return make_tls_files(tmp_path / "etc" / "certs")


def test_haproxy_ssl_paths_are_the_configs(tls: TLSFiles) -> None:
    """The key and certificate of haproxy:ssl:... are relative to the config file, as for ssl:..."""
    config = make_config(
        {"listen": "haproxy:ssl:2004:privateKey=certs/server.key:certKey=certs/server.pem"},
        str(tls.directory.parent / "config.py"),
    )
    assert config.front.listen == f"haproxy:ssl:2004:privateKey={tls.server_key}:certKey={tls.server_cert}"


def test_a_missing_haproxy_ssl_key_is_named(tmp_path: Path) -> None:
    """A key file haproxy:ssl:... names that is missing is named with its parameter, as for ssl:..."""
    path = str(tmp_path / "config.py")
    with pytest.raises(ConfigError) as raised:
        make_config({"listen": "haproxy:ssl:2004:privateKey=key.pem:certKey=cert.pem"}, path)
    assert str(raised.value) == f"{path}: listen: privateKey {tmp_path / 'key.pem'}: no such file"


@pytest.mark.parametrize("endpoint", ["systemd:domain=INET:index=0", "haproxy:tcp:2022:interface=127.0.0.1"])
def test_the_manhole_takes_neither(tmp_path: Path, endpoint: str) -> None:
    """The manhole listens on loopback only, which a passed socket or a proxy cannot promise."""
    with pytest.raises(ConfigError, match="the manhole listens on loopback only"):
        make_config({"manhole": endpoint}, str(tmp_path / "config.py"))


# The caller's address behind the PROXY protocol, in memory.

PROXY = IPv4Address("TCP", "127.0.0.1", 40404)
HOST = IPv4Address("TCP", "127.0.0.1", 2004)
HEADER = b"PROXY TCP4 203.0.113.7 127.0.0.1 5555 2004\r\n"


def _caller(caller: Any) -> list[Any]:
    return list(caller)


def _proxied_connection() -> Any:
    """A connection to a node's HTTP listener on haproxy:tcp:2004, as Twisted's endpoint wraps it."""
    registry = MethodRegistry()
    registry.add(Method.of("caller", _caller, takes_caller=True))
    reactor = MemoryReactorClock()
    serverFromString(reactor, "haproxy:tcp:2004:interface=127.0.0.1").listen(
        make_server(Dispatcher(registry), 4096, reactor)
    )
    ((_, wrapping, _, _),) = reactor.tcpServers
    protocol = wrapping.buildProtocol(PROXY)
    transport = StringTransport(peerAddress=PROXY, hostAddress=HOST)
    protocol.makeConnection(transport)
    return protocol, transport


def _ask(body: bytes) -> bytes:
    return (
        b"POST /RPC2 HTTP/1.1\r\nHost: 127.0.0.1:2004\r\nContent-Type: text/xml\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )


def test_the_caller_is_the_proxy_headers_source() -> None:
    """Behind haproxy:, a method taking the caller gets the PROXY header's source address, not the proxy's."""
    protocol, transport = _proxied_connection()
    protocol.dataReceived(HEADER + _ask(dump_call("caller", ())))
    body = transport.value().partition(b"\r\n\r\n")[2]
    assert parse_response(body) == ["203.0.113.7", 5555]
