"""The manhole's settings, its host key and its sessions' edge cases, in memory."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from co2._errors import ConfigError
from satellites import make_config
from satellites._manhole import _Session, host_key, manhole_factory
from satellites._ssh import check_loopback


def public_key_file(path: Path) -> Path:
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    path.write_bytes(key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
                     + b" ops@test\n")
    return path


@pytest.mark.parametrize("endpoint", ["tcp:0:interface=127.0.0.1", "tcp:2022:interface=127.0.0.5",
                                      "tcp6:0:interface=\\:\\:1", "unix:/tmp/manhole.sock"])
def test_loopback_endpoints_are_accepted(endpoint: str) -> None:
    check_loopback(endpoint)


@pytest.mark.parametrize("endpoint", ["tcp:2022", "tcp:2022:interface=0.0.0.0", "tcp:0:interface=10.0.0.1",
                                      "ssl:0:interface=127.0.0.1", "tcp:0:interface=localhost"])
def test_other_endpoints_are_refused(endpoint: str) -> None:
    with pytest.raises(ValueError, match="loopback"):
        check_loopback(endpoint)


def test_a_manhole_needs_a_way_in(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="manhole: needs manhole_passwords or manhole_keys"):
        make_config({"manhole": "tcp:0:interface=127.0.0.1"}, str(tmp_path / "config.py"))


def test_keys_and_host_key_paths_are_relative_to_the_config(tmp_path: Path) -> None:
    public_key_file(tmp_path / "ops.pub")
    settings = {"manhole": "tcp:0:interface=127.0.0.1", "manhole_keys": {"ops": "ops.pub"}}
    config = make_config(settings, str(tmp_path / "config.py"))
    assert config.manhole.manhole_keys == {"ops": str(tmp_path / "ops.pub")}
    assert config.manhole.manhole_host_key == str(tmp_path / "manhole_host_key")


@pytest.mark.parametrize(("settings", "message"), [
    ({"manhole_keys": {"ops": "bad.pub"}}, "bad.pub, line 1: not a public key"),
    ({"manhole_keys": {"ops": "missing.pub"}}, "missing.pub: no such file"),
    ({"manhole_keys": {"a:b": "bad.pub"}}, "'a:b' is not a user name"),
    ({"manhole_keys": ["ops.pub"]}, "expected a dict of user name to authorized_keys file"),
    ({"manhole": "tcp:2022"}, "loopback only"),
])
def test_bad_manhole_settings_are_config_errors(
    tmp_path: Path, settings: dict[str, Any], message: str
) -> None:
    (tmp_path / "bad.pub").write_text("ssh-ed25519 not-base64\n")
    with pytest.raises(ConfigError) as raised:
        make_config(settings, str(tmp_path / "config.py"))
    assert message in str(raised.value)


def test_the_host_key_is_made_once_for_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "host"
    first = host_key(str(path))
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert host_key(str(path)).fingerprint() == first.fingerprint()


def test_a_session_takes_a_resized_terminal_and_the_end_of_input() -> None:
    """Twisted's own manhole session raises on both; these end or resize the session quietly."""
    closed: list[bool] = []

    class Channel:
        def loseConnection(self) -> None:
            closed.append(True)

    session = _Session(object())
    session.windowChanged((40, 120, 0, 0))  # before the shell opens: nothing to resize
    session._protocol = Channel()
    session.eofReceived()
    assert closed == [True]


def test_the_factory_needs_a_checker(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="manhole_passwords or manhole_keys"):
        manhole_factory({}, host_key(str(tmp_path / "host")))


def test_a_password_file_lets_its_users_in(tmp_path: Path) -> None:
    from twisted.conch.interfaces import IConchUser
    from twisted.cred.credentials import UsernamePassword

    (tmp_path / "passwords").write_text("ops:s3cret\n")
    factory = manhole_factory({}, host_key(str(tmp_path / "host")), passwords=str(tmp_path / "passwords"))
    results: list[Any] = []
    factory.portal.login(UsernamePassword(b"ops", b"s3cret"), None, IConchUser).addBoth(results.append)
    factory.portal.login(UsernamePassword(b"ops", b"guess"), None, IConchUser).addBoth(results.append)
    assert results[0][0] is IConchUser
    assert results[1].getErrorMessage() is not None and not isinstance(results[1], tuple)
