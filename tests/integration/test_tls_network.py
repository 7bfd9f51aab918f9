"""
TLS between real ``co2-satellite`` processes on loopback, with
certificates made for the test: XML-RPC over https, AMP links over an
``ssl:`` listener checked against ``tls_ca``, a peer trusting another CA
refused, and a classic ``https://`` peer.

Certificate paths in the configs are relative to the config files, and
the processes run from the repository root, so resolving them from the
config's directory is exercised too.
"""

from __future__ import annotations

import http.client
import ssl
import time
import xmlrpc.client
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import Proc, eventually
from tls_certificates import TLSFiles, make_tls_files

LOCAL = "tcp:0:interface=127.0.0.1"
TLS_LOCAL = "ssl:0:privateKey=certs/server.key:certKey=certs/server.pem:interface=127.0.0.1"
LINK_UP = r"link \S+ up: "
WAIT = 15.0
SETTLE = 1.0
"""Seconds to keep checking that something does not happen."""


@pytest.fixture
def tls(tmp_path: Path) -> TLSFiles:
    """A CA, a server certificate for 127.0.0.1 it signed, and an unrelated CA, in ``tmp_path/certs``."""
    return make_tls_files(tmp_path / "certs")


class _TLSTransport(xmlrpc.client.SafeTransport):
    """An https XML-RPC transport whose socket gives up after ``timeout`` seconds."""

    def __init__(self, context: ssl.SSLContext, timeout: float) -> None:
        super().__init__(context=context)
        self.timeout = timeout

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        connection = super().make_connection(host)
        connection.timeout = self.timeout
        return connection


def https_proxy(proc: Proc, ca: Path, timeout: float = 20.0) -> xmlrpc.client.ServerProxy:
    """An XML-RPC client for ``proc``'s https listener, trusting the CA certificate ``ca``."""
    context = ssl.create_default_context(cafile=str(ca))
    return xmlrpc.client.ServerProxy(
        f"https://127.0.0.1:{proc.port}/", transport=_TLSTransport(context, timeout), allow_none=True
    )


def wait_for(probe: Callable[[], Any], what: str, *procs: Proc, timeout: float = WAIT) -> Any:
    """``probe()`` once it is true; fail naming ``what``, with the processes' output, after ``timeout``."""
    result = eventually(probe, timeout)
    if not result:
        pytest.fail(f"{what}: not within {timeout}s\n" + "\n".join(p.describe() for p in procs))
    return result


def start_node(
    satellite: Callable[..., Proc], make_config: Callable[..., Path], name: str, **settings: object
) -> Proc:
    """Start a satellite from ``<name>.py`` (plain XML-RPC on an ephemeral port unless told), serving."""
    settings.setdefault("listen", LOCAL)
    settings.setdefault("plugin_list", ["example"])
    proc = satellite("--config", make_config(filename=f"{name}.py", **settings))
    proc.wait_serving()
    return proc


def last(proc: Proc) -> list[Any]:
    """What the example plugin of ``proc`` (plain http) received last."""
    with proc.proxy() as proxy:
        return list(proxy.example.example.last())


def shout(proc: Proc, data: Any) -> None:
    """Make the example plugin of ``proc`` (plain http) send ``data``."""
    with proc.proxy() as proxy:
        assert proxy.example.example.shout(data) is True


def test_xmlrpc_over_https(
    satellite: Callable[..., Proc], make_config: Callable[..., Path], tls: TLSFiles
) -> None:
    """An ssl: listen serves XML-RPC to clients trusting its CA, and nothing over plain http or to others."""
    node = start_node(satellite, make_config, "https", listen=TLS_LOCAL)
    assert node.url.startswith("https://127.0.0.1:")
    with https_proxy(node, tls.ca) as proxy:
        assert "example.example.add" in proxy.co2.get_method_names()
        assert proxy.example.example.add(2, 3) == 5
    plain = xmlrpc.client.ServerProxy(f"http://127.0.0.1:{node.port}/", allow_none=True)
    with pytest.raises((OSError, http.client.HTTPException, xmlrpc.client.ProtocolError)):
        plain.example.example.add(2, 3)
    with pytest.raises(ssl.SSLCertVerificationError), https_proxy(node, tls.other_ca) as untrusting:
        untrusting.example.example.add(2, 3)
    with https_proxy(node, tls.ca) as proxy:
        assert proxy.example.example.add(4, 5) == 9


def test_xmlrpc_over_https_for_clients_offering_alpn(
    satellite: Callable[..., Proc], make_config: Callable[..., Path], tls: TLSFiles
) -> None:
    """A client that offers ALPN http/1.1 is served over https too."""
    node = start_node(satellite, make_config, "alpn", listen=TLS_LOCAL)
    context = ssl.create_default_context(cafile=str(tls.ca))
    context.set_alpn_protocols(["http/1.1"])
    proxy = xmlrpc.client.ServerProxy(
        f"https://127.0.0.1:{node.port}/", transport=_TLSTransport(context, 20.0), allow_none=True
    )
    with proxy:
        assert proxy.example.example.add(2, 3) == 5


def test_satellites_linked_over_tls(
    satellite: Callable[..., Proc], make_config: Callable[..., Path], tls: TLSFiles
) -> None:
    """Over an ssl: AMP listener checked against tls_ca, messages cross both ways and methods are found."""
    server = start_node(
        satellite, make_config, "server", plugin_list=["example", "ham"], amp_listen=TLS_LOCAL
    )
    amp_port = server.wait_amp()
    client = start_node(
        satellite, make_config, "client", peers=[f"ssl:host=127.0.0.1:port={amp_port}"], tls_ca="certs/ca.pem"
    )
    for proc in (server, client):
        wait_for(lambda proc=proc: proc.count(LINK_UP) >= 1, "the TLS link up", server, client)

    shout(server, "from the server")
    wait_for(lambda: "from the server" in last(client), "the server's message at the client", server, client)
    shout(client, {"from": "client"})
    wait_for(lambda: {"from": "client"} in last(server), "the client's message at the server", server, client)

    with client.proxy() as proxy:
        wait_for(lambda: "ham.spam.call_me" in proxy.co2.get_method_names(), "ham's method listed", client)
        assert proxy.ham.spam.call_me("tls") == "hello, tls, from ham.spam.X_Spam"


def test_peer_trusting_another_ca_refuses_the_server(
    satellite: Callable[..., Proc], make_config: Callable[..., Path], tls: TLSFiles
) -> None:
    """A peer whose tls_ca did not sign the server's certificate never links and logs why; others do."""
    server = start_node(satellite, make_config, "server", amp_listen=TLS_LOCAL)
    peer = f"ssl:host=127.0.0.1:port={server.wait_amp()}"
    refusing = start_node(satellite, make_config, "refusing", peers=[peer], tls_ca="certs/other-ca.pem")
    wait_for(
        lambda: refusing.count(r"Hello failed: .*certificate verify failed") >= 2,
        "two refused attempts, logged", refusing, server,
    )
    trusting = start_node(satellite, make_config, "trusting", peers=[peer], tls_ca="certs/ca.pem")
    wait_for(lambda: trusting.count(LINK_UP) >= 1, "the trusting peer linked", trusting, server)

    shout(server, "only to the trusting")
    wait_for(lambda: last(trusting) == ["only to the trusting"], "the message at the trusting peer", trusting)
    time.sleep(SETTLE)
    assert last(refusing) == []
    assert refusing.count(LINK_UP) == 0
    assert server.popen.poll() is None
    assert "Traceback" not in server.stdout + refusing.stdout


def test_classic_https_peer_receives_notify(
    satellite: Callable[..., Proc], make_config: Callable[..., Path], tls: TLSFiles
) -> None:
    """A classic https:// peer checked against tls_ca receives notify; one trusting another CA sends none."""
    receiver = start_node(satellite, make_config, "receiver", listen=TLS_LOCAL)
    url = f"https://127.0.0.1:{receiver.port}/"
    sender = start_node(satellite, make_config, "sender", peers=[url], tls_ca="certs/ca.pem")
    refused = start_node(satellite, make_config, "refused", peers=[url], tls_ca="certs/other-ca.pem")

    shout(refused, "not verified")
    shout(sender, "verified")
    with https_proxy(receiver, tls.ca) as proxy:
        wait_for(
            lambda: proxy.example.example.last() == ["verified"], "the notify at the receiver",
            receiver, sender,
        )
        wait_for(
            lambda: refused.count(r"unreachable, will retry: .*certificate verify failed") >= 1,
            "the refused post, logged", refused,
        )
        time.sleep(SETTLE)
        assert proxy.example.example.last() == ["verified"]
