"""
TLS in config.py: the files of ``ssl:`` endpoints are relative to the
config file, a missing one is a one-line error naming the setting, the
parameter and the file, and ``peer_credentials`` still finds its peers.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tls_certificates import TLSFiles, make_tls_files

from co2 import ConfigError
from co2._config import check_endpoint
from satellites import load_config, make_config


@pytest.fixture
def tls(tmp_path: Path) -> TLSFiles:
    """Certificates in ``tmp_path/etc/certs``; configs go in ``tmp_path/etc``."""
    return make_tls_files(tmp_path / "etc" / "certs")


def _config_path(tls: TLSFiles) -> str:
    return str(tls.directory.parent / "config.py")


def _error(settings: dict[str, object], path: str) -> str:
    with pytest.raises(ConfigError) as caught:
        make_config(settings, path)
    return str(caught.value)


def test_listen_and_amp_listen_files_are_relative_to_the_config(tls: TLSFiles) -> None:
    """privateKey and certKey of ssl: listeners are read from the config file's directory."""
    listen = "ssl:0:privateKey=certs/server.key:certKey=certs/server.pem:interface=127.0.0.1"
    config = make_config({"listen": listen, "amp_listen": listen}, _config_path(tls))
    expected = (
        f"ssl:0:privateKey={tls.server_key}:certKey={tls.server_cert}:interface=127.0.0.1"
    )
    assert config.front.listen == expected and config.relay.amp_listen == expected


def test_tls_network_config_file_loads(tls: TLSFiles, tmp_path: Path) -> None:
    """A config file with ssl: listeners, an ssl: peer and tls_ca loads, every path absolute."""
    path = tls.directory.parent / "config.py"
    path.write_text(
        'listen = "ssl:2004:privateKey=certs/server.key:certKey=certs/server.pem"\n'
        'peers = ["ssl:host=127.0.0.1:port=2011", "https://127.0.0.1:2010/"]\n'
        'tls_ca = "certs/ca.pem"\n'
    )
    config = load_config(str(path))
    assert config.front.listen == f"ssl:2004:privateKey={tls.server_key}:certKey={tls.server_cert}"
    assert config.relay.peers == ("ssl:host=127.0.0.1:port=2011", "https://127.0.0.1:2010/")
    assert config.node.tls_ca == str(tls.ca)


def test_missing_server_key_is_a_config_error(tls: TLSFiles) -> None:
    """A missing key or certificate file names the setting, the parameter and the file."""
    path = _config_path(tls)
    etc = tls.directory.parent
    assert _error({"listen": "ssl:2004:privateKey=nope.key:certKey=certs/server.pem"}, path) == (
        f"{path}: listen: privateKey {etc / 'nope.key'}: no such file"
    )
    assert _error({"amp_listen": "ssl:2011:privateKey=certs/server.key:certKey=nope.pem"}, path) == (
        f"{path}: amp_listen: certKey {etc / 'nope.pem'}: no such file"
    )
    assert _error({"listen": "ssl:2004"}, path) == (
        f"{path}: listen: privateKey {etc / 'server.pem'}: no such file"
    )


def test_mismatched_server_key_is_a_config_error(tls: TLSFiles) -> None:
    """A key that is not the certificate's is refused when the config is read."""
    listen = "ssl:2004:privateKey=certs/client.key:certKey=certs/server.pem"
    message = _error({"listen": listen}, _config_path(tls))
    assert ": listen: " in message and "keys do not match" in message


def test_peer_files_are_relative_to_the_config(tls: TLSFiles) -> None:
    """certKey, privateKey and caCertsDir of an ssl: peer are read from the config file's directory."""
    peer = (
        "ssl:host=127.0.0.1:port=2011:certKey=certs/client.pem:privateKey=certs/client.key"
        ":caCertsDir=certs"
    )
    config = make_config({"peers": [peer]}, _config_path(tls))
    assert config.relay.peers == (
        f"ssl:host=127.0.0.1:port=2011:certKey={tls.client_cert}:privateKey={tls.client_key}"
        f":caCertsDir={tls.directory}",
    )


def test_missing_peer_files_are_config_errors(tls: TLSFiles) -> None:
    """A peer's missing certificate or CA directory is named, relative to the config file."""
    path = _config_path(tls)
    etc = tls.directory.parent
    assert _error({"peers": ["ssl:host=h:port=1:certKey=nope.pem"]}, path) == (
        f"{path}: peers: certKey {etc / 'nope.pem'}: no such file"
    )
    assert _error({"peers": ["ssl:host=h:port=1:caCertsDir=nope"]}, path) == (
        f"{path}: peers: caCertsDir {etc / 'nope'}: not a directory"
    )
    assert "ssl: takes no bogus" in _error({"peers": ["ssl:host=h:port=1:bogus=x"]}, path)


def test_credentials_follow_resolved_peers(tls: TLSFiles) -> None:
    """peer_credentials keyed by a peer as written is found under the peer as config.relay.peers has it."""
    peer = "ssl:host=127.0.0.1:port=2011:certKey=certs/client.pem:privateKey=certs/client.key"
    config = make_config(
        {
            "peers": [peer, "https://127.0.0.1:2010/", "tcp:host=127.0.0.1:port=2012"],
            "peer_credentials": {
                peer: ("alice", "a"),
                "https://127.0.0.1:2010/": ("bob", "b"),
                "*": ("carol", "c"),
            },
        },
        _config_path(tls),
    )
    resolved, classic, plain = config.relay.peers
    assert resolved != peer
    assert config.relay.credentials_for(resolved) == ("alice", "a")
    assert config.relay.credentials_for(classic) == ("bob", "b")
    assert config.relay.credentials_for(plain) == ("carol", "c")


def test_check_endpoint_reads_from_the_working_directory(
    tls: TLSFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    """check_endpoint (used for --listen) leaves paths alone: they are the working directory's."""
    listen = "ssl:0:privateKey=certs/server.key:certKey=certs/server.pem"
    monkeypatch.chdir(tls.directory.parent)
    check_endpoint(listen)
    monkeypatch.chdir(tls.directory)
    with pytest.raises(ValueError, match=r"privateKey certs/server\.key: no such file"):
        check_endpoint(listen)


def test_a_tls_ca_without_a_certificate_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "empty.pem").write_text("not a certificate\n")
    with pytest.raises(ConfigError) as raised:
        make_config({"tls_ca": "empty.pem"}, str(tmp_path / "config.py"))
    assert str(raised.value) == (
        f"{tmp_path / 'config.py'}: tls_ca: {tmp_path / 'empty.pem'}: holds no PEM certificate "
        "(-----BEGIN CERTIFICATE-----)"
    )
