"""
co2._tls: endpoint strings split and joined as Twisted does, paths made
absolute, and TLS client endpoints and web policies that check the
server's chain and name, shown by handshakes held in memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st
from tls_certificates import TLSFiles, make_tls_files
from twisted.internet import endpoints
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IHandshakeListener
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import Certificate, CertificateOptions, PrivateCertificate
from twisted.internet.testing import MemoryReactorClock
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.test.iosim import FakeTransport, connect
from zope.interface import implementer

from co2._tls import (
    ca_certificates,
    client_endpoint,
    endpoint_files,
    join_parameters,
    parameters,
    resolve_paths,
    web_policy,
)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    """A CA, its server and client certificates, and an unrelated CA."""
    return make_tls_files(tmp_path_factory.mktemp("tls"))


# Endpoint strings

_text = st.text(st.sampled_from("ab:=\\/. "), max_size=8)


@given(
    st.lists(st.tuples(st.none() | _text.filter(bool), _text), max_size=6),
)
def test_parameters_join_round_trip(tail: list[tuple[str | None, str]]) -> None:
    """Joined parameters split back into the same ones, and Twisted reads the string the same way."""
    params = [(None, "ssl"), *tail]
    description = join_parameters(params)
    assert parameters(description) == params
    args, kwargs = endpoints._parse(description)  # Twisted's own reading
    assert args == [value for name, value in params if name is None]
    assert kwargs == {name: value for name, value in params if name is not None}


def test_parameters_refuse_a_trailing_backslash() -> None:
    """A string ending with a lone backslash is a ValueError."""
    with pytest.raises(ValueError, match="ends with a backslash"):
        parameters("ssl:host=h\\")


def test_server_paths_are_made_absolute() -> None:
    """privateKey, certKey, extraCertChain and dhParameters of a server ssl: string become absolute."""
    resolved = resolve_paths(
        "ssl:2004:privateKey=k.pem:certKey=sub/c.pem:extraCertChain=chain.pem:dhParameters=dh.pem"
        ":interface=127.0.0.1",
        "/etc/co2", server=True,
    )
    assert resolved == (
        "ssl:2004:privateKey=/etc/co2/k.pem:certKey=/etc/co2/sub/c.pem:extraCertChain=/etc/co2/chain.pem"
        ":dhParameters=/etc/co2/dh.pem:interface=127.0.0.1"
    )


def test_positional_server_paths_are_made_absolute() -> None:
    """Paths given by position (ssl:PORT:KEY:CERT) are resolved too."""
    resolved = resolve_paths("ssl:2004:k.pem:c.pem", "/etc/co2", server=True)
    assert resolved == "ssl:2004:/etc/co2/k.pem:/etc/co2/c.pem"


def test_default_private_key_is_spelt_out() -> None:
    """A server ssl: string without privateKey gets Twisted's server.pem, in the config's directory."""
    assert resolve_paths("ssl:2004", "/etc/co2", server=True) == "ssl:2004:privateKey=/etc/co2/server.pem"
    assert endpoint_files("ssl:2004", server=True) == [("privateKey", "server.pem")]


def test_absolute_paths_and_other_kinds_are_unchanged() -> None:
    """A string with nothing relative, and a tcp:, unix: or tls: one, is returned as it was."""
    for description, server in [
        ("ssl:2004:privateKey=/k.pem:certKey=/c.pem", True),
        ("ssl:host=h:port=1:certKey=/c.pem:privateKey=/k.pem:caCertsDir=/ca", False),
        ("tcp:2004:interface=127.0.0.1", True),
        ("unix:co2.sock", True),
        ("tls:h:1:certificate=c.pem", False),
    ]:
        assert resolve_paths(description, "/etc/co2", server) == description


def test_client_paths_are_made_absolute_and_escaped() -> None:
    """certKey, privateKey and caCertsDir of a client string become absolute; a ':' in the base is escaped."""
    resolved = resolve_paths("ssl:host=h:port=1:certKey=c.pem:privateKey=k.pem:caCertsDir=cas", "/a:b", False)
    assert resolved == "ssl:host=h:port=1:certKey=/a\\:b/c.pem:privateKey=/a\\:b/k.pem:caCertsDir=/a\\:b/cas"
    assert endpoint_files(resolved, server=False) == [
        ("certKey", "/a:b/c.pem"), ("privateKey", "/a:b/k.pem"), ("caCertsDir", "/a:b/cas"),
    ]


# Handshakes in memory


@implementer(IHandshakeListener)
class _Peer(Protocol):
    """Says hello, keeps what it hears, and records the handshake and the end."""

    def __init__(self) -> None:
        self.handshake = False
        self.received = b""
        self.lost: Failure | None = None
        self.peer_certificate: Certificate | None = None

    def connectionMade(self) -> None:
        self.transport.write(b"hello")

    def handshakeCompleted(self) -> None:
        self.handshake = True
        try:
            self.peer_certificate = Certificate.peerFromTransport(self.transport)
        except Exception:  # the client did not show one
            self.peer_certificate = None

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.lost = reason


def _server_options(tls: TLSFiles, *, client_ca: Path | None = None) -> CertificateOptions:
    private = PrivateCertificate.loadPEM(tls.server_cert.read_bytes() + tls.server_key.read_bytes())
    if client_ca is None:
        return private.options()
    return private.options(Certificate.loadPEM(client_ca.read_bytes()))


def _talk(client: Protocol, server_options: CertificateOptions, clock: MemoryReactorClock) -> _Peer:
    """Connect ``client`` (a TLS protocol) to a TLS server in memory; the server's protocol."""
    server_peer = _Peer()
    server = TLSMemoryBIOFactory(server_options, False, Factory.forProtocol(lambda: server_peer), clock=clock)
    server_protocol = server.buildProtocol(IPv4Address("TCP", "127.0.0.1", 443))
    pump = connect(
        server_protocol, FakeTransport(server_protocol, isServer=True),
        client, FakeTransport(client, isServer=False), clock=clock,
    )
    pump.flush()
    return server_peer


def _through_endpoint(
    description: str, tls: TLSFiles, tls_ca: Path | None = None, **server: Any
) -> tuple[_Peer, _Peer, MemoryReactorClock]:
    """Connect through ``client_endpoint(description)`` to the test server; (client, server, reactor)."""
    reactor = MemoryReactorClock()
    endpoint = client_endpoint(reactor, description, None if tls_ca is None else str(tls_ca))
    client_peer = _Peer()
    endpoint.connect(Factory.forProtocol(lambda: client_peer))
    reactor.advance(0)
    host, port, factory, _, _ = reactor.tcpClients[0]
    server_peer = _talk(
        factory.buildProtocol(IPv4Address("TCP", host, port)), _server_options(tls, **server), reactor
    )
    return client_peer, server_peer, reactor


def _refused_for(peer: _Peer) -> str:
    assert not peer.handshake and peer.lost is not None
    return str(peer.lost.value)


def test_ip_peer_verified_against_tls_ca(tls: TLSFiles) -> None:
    """ssl:host=127.0.0.1 with tls_ca set: the chain and the IP subjectAltName check out; data flows."""
    client, server, _ = _through_endpoint("ssl:host=127.0.0.1:port=2011", tls, tls_ca=tls.ca)
    assert client.handshake and server.handshake
    assert (client.received, server.received) == (b"hello", b"hello")


def test_dns_peer_verified_against_tls_ca(tls: TLSFiles) -> None:
    """ssl:host=localhost: the DNS subjectAltName checks out."""
    client, _, _ = _through_endpoint("ssl:host=localhost:port=2011", tls, tls_ca=tls.ca)
    assert client.handshake and client.received == b"hello"


def test_unrelated_ca_refuses_the_server(tls: TLSFiles) -> None:
    """Trusting only another CA, the handshake fails on certificate verification; nothing is heard."""
    client, server, _ = _through_endpoint("ssl:host=127.0.0.1:port=2011", tls, tls_ca=tls.other_ca)
    assert "certificate verify failed" in _refused_for(client)
    assert client.received == b"" and server.received == b""


def test_name_not_in_certificate_is_refused(tls: TLSFiles) -> None:
    """A trusted certificate that does not name the host dialled (hostname=) is refused."""
    client, _, _ = _through_endpoint(
        "ssl:host=127.0.0.1:port=2011:hostname=elsewhere.example", tls, tls_ca=tls.ca
    )
    assert "elsewhere.example" in _refused_for(client)
    assert client.received == b""


def test_ip_not_in_certificate_is_refused(tls: TLSFiles) -> None:
    """An IP address the certificate does not list is refused, though the chain is good."""
    client, _, _ = _through_endpoint("ssl:host=127.0.0.2:port=2011", tls, tls_ca=tls.ca)
    assert "127.0.0.2" in _refused_for(client)


def test_platform_trust_when_nothing_is_set(tls: TLSFiles) -> None:
    """Without tls_ca or caCertsDir the platform's store is used: never unverified, so a private CA fails."""
    client, _, _ = _through_endpoint("ssl:host=127.0.0.1:port=2011", tls)
    assert "certificate verify failed" in _refused_for(client)


def test_ca_certs_dir_of_the_peer_wins_over_tls_ca(tls: TLSFiles, tmp_path: Path) -> None:
    """A peer's own caCertsDir is trusted instead of the node's tls_ca, both ways round."""
    good, bad = tmp_path / "good", tmp_path / "bad"
    for directory, ca in [(good, tls.ca), (bad, tls.other_ca)]:
        directory.mkdir()
        (directory / "ca.pem").write_bytes(ca.read_bytes())
        (directory / "notes.txt").write_text("not a certificate")
    client, _, _ = _through_endpoint(f"ssl:host=127.0.0.1:port=1:caCertsDir={good}", tls, tls_ca=tls.other_ca)
    assert client.handshake
    client, _, _ = _through_endpoint(f"ssl:host=127.0.0.1:port=1:caCertsDir={bad}", tls, tls_ca=tls.ca)
    assert "certificate verify failed" in _refused_for(client)


def test_tls_ca_may_hold_several_certificates(tls: TLSFiles, tmp_path: Path) -> None:
    """A tls_ca bundle trusts every CA in it."""
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(tls.other_ca.read_bytes() + tls.ca.read_bytes())
    assert len(ca_certificates(str(bundle))) == 2
    client, _, _ = _through_endpoint("ssl:host=127.0.0.1:port=2011", tls, tls_ca=bundle)
    assert client.handshake


def test_client_certificate_is_shown(tls: TLSFiles) -> None:
    """certKey and privateKey give the certificate a server asking for one sees."""
    client, server, _ = _through_endpoint(
        f"ssl:host=127.0.0.1:port=2011:certKey={tls.client_cert}:privateKey={tls.client_key}",
        tls, tls_ca=tls.ca, client_ca=tls.ca,
    )
    assert client.handshake and server.peer_certificate is not None
    subject = server.peer_certificate.original.to_cryptography().subject
    assert subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "co2 test client"


def test_connection_parameters_reach_tcp(tls: TLSFiles) -> None:
    """Host and port (by name or position), timeout and bindAddress are those of the TCP connection."""
    reactor = MemoryReactorClock()
    description = "ssl:127.0.0.1:2011:timeout=7:bindAddress=127.0.0.1"
    client_endpoint(reactor, description, str(tls.ca)).connect(Factory.forProtocol(Protocol))
    reactor.advance(0)
    host, port, _, timeout, bind = reactor.tcpClients[0]
    assert (host, port, timeout, bind) == ("127.0.0.1", 2011, 7.0, ("127.0.0.1", 0))


def test_other_kinds_are_twisted_s_own() -> None:
    """tcp: and unix: strings are Twisted's clientFromString."""
    reactor = MemoryReactorClock()
    assert isinstance(client_endpoint(reactor, "tcp:host=h:port=1", None), endpoints.TCP4ClientEndpoint)
    assert isinstance(client_endpoint(reactor, "unix:/tmp/x.sock"), endpoints.UNIXClientEndpoint)


# Bad input


def _refusal(description: str, tls_ca: str | None = None) -> str:
    with pytest.raises(ValueError) as caught:
        client_endpoint(MemoryReactorClock(), description, tls_ca)
    return str(caught.value)


def test_missing_tls_ca_is_named(tmp_path: Path) -> None:
    """A tls_ca that cannot be read is a ValueError naming it."""
    missing = tmp_path / "nope.pem"
    assert _refusal("ssl:host=h:port=1", str(missing)) == (
        f"tls_ca {missing}: cannot read: No such file or directory"
    )


def test_tls_ca_without_certificate_is_named(tls: TLSFiles, tmp_path: Path) -> None:
    """A tls_ca holding no certificate (a key, say) or a broken one is a ValueError naming it."""
    assert _refusal("ssl:host=h:port=1", str(tls.server_key)) == (
        f"tls_ca {tls.server_key}: holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
    )
    broken = tmp_path / "broken.pem"
    broken.write_text("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n")
    assert _refusal("ssl:host=h:port=1", str(broken)).startswith(
        f"tls_ca {broken}: certificate 1 cannot be read"
    )
    with pytest.raises(ValueError, match="holds no PEM certificate"):
        web_policy(str(tls.server_key))
    with pytest.raises(ValueError) as caught:
        ca_certificates(str(tls.server_key), what="")
    assert str(caught.value).startswith(f"{tls.server_key}: holds no PEM certificate")


def test_ca_certs_dir_without_certificate_is_named(tmp_path: Path) -> None:
    """A caCertsDir with no certificate in its .pem files, or that is no directory, is named."""
    assert _refusal(f"ssl:host=h:port=1:caCertsDir={tmp_path}") == (
        f"caCertsDir {tmp_path}: no certificate in its .pem files"
    )
    missing = tmp_path / "x"
    assert _refusal(f"ssl:host=h:port=1:caCertsDir={missing}") == f"caCertsDir {missing}: not a directory"


def test_bad_client_certificates_are_named(tls: TLSFiles) -> None:
    """A key without a certificate, a certificate without its key, or the wrong key is a ValueError."""
    base = f"ssl:host=h:port=1:caCertsDir={tls.directory}"
    assert "privateKey is given without certKey" in _refusal(f"{base}:privateKey={tls.client_key}")
    assert _refusal(f"{base}:certKey={tls.client_cert}").startswith(
        f"privateKey {tls.client_cert}: not a PEM private key"
    )
    assert _refusal(f"{base}:certKey={tls.client_cert}:privateKey={tls.server_key}") == (
        f"privateKey {tls.server_key}: is not the key of certKey {tls.client_cert}"
    )


@pytest.mark.parametrize(
    ("description", "problem"),
    [
        ("ssl:port=1", "no host"),
        ("ssl:host=h", "port None is not a number"),
        ("ssl:host=h:port=x", "port 'x' is not a number"),
        ("ssl:host=h:port=70000", "port 70000 is out of range"),
        ("ssl:host=h:port=1:timeout=soon", "timeout 'soon' is not a number"),
        ("ssl:h:1:2", "too many positional parameters"),
        ("ssl:host=h:port=1:trustRoots=x", "ssl: takes no trustRoots"),
    ],
)
def test_bad_ssl_strings(description: str, problem: str, tls: TLSFiles) -> None:
    """A malformed ssl: string is a ValueError saying what is wrong."""
    assert problem in _refusal(description, str(tls.ca))


# Web policy


def _web_handshake(policy: Any, host: bytes, tls: TLSFiles) -> _Peer:
    client_peer = _Peer()
    clock = MemoryReactorClock()
    creator = policy.creatorForNetloc(host, 443)
    factory = TLSMemoryBIOFactory(creator, True, Factory.forProtocol(lambda: client_peer), clock=clock)
    _talk(factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 443)), _server_options(tls), clock)
    return client_peer


def test_web_policy_default_is_twisted_s() -> None:
    """Without tls_ca there is no policy: the Agent keeps Twisted's default."""
    assert web_policy(None) is None


@pytest.mark.parametrize(
    ("ca", "host", "verified"),
    [
        ("ca", b"127.0.0.1", True),
        ("ca", b"localhost", True),
        ("other_ca", b"127.0.0.1", False),
        ("ca", b"elsewhere.example", False),
    ],
)
def test_web_policy_checks_chain_and_name(tls: TLSFiles, ca: str, host: bytes, verified: bool) -> None:
    """The https:// policy trusts tls_ca only, and checks the URL's host against the certificate."""
    client = _web_handshake(web_policy(str(getattr(tls, ca))), host, tls)
    assert client.handshake is verified
    assert (client.received == b"hello") is verified
