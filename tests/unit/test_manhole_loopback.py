"""
The manhole's endpoint is checked as Twisted would bind it: loopback
only, whatever the string repeats or leaves out.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from co2._errors import ConfigError
from satellites import make_config
from satellites._ssh import check_loopback

WANTED = "the manhole listens on loopback only: tcp:PORT:interface=127.0.0.1 (or ::1), or unix:PATH"


@pytest.mark.parametrize("endpoint", [
    "tcp:0:interface=127.0.0.1",
    "tcp:2022:interface=127.0.0.1:backlog=5",
    "tcp:0:interface=0.0.0.0:interface=127.0.0.1",
    "tcp:0:interface=\\:\\:1",
    "tcp6:0:interface=\\:\\:1",
    "tcp6:port=0:interface=\\:\\:1",
    "unix:/tmp/manhole.sock",
    "unix:/tmp/manhole.sock:mode=600:lockfile=1",
])
def test_loopback_and_unix_endpoints_pass(endpoint: str) -> None:
    """What Twisted binds to 127.0.0.1, ::1 or a UNIX socket passes, whatever came before."""
    check_loopback(endpoint)


@pytest.mark.parametrize(("endpoint", "bound"), [
    ("tcp:2022:interface=127.0.0.1:interface=0.0.0.0", "'0.0.0.0'"),
    ("tcp:2022:interface=127.0.0.1:interface=", "every interface"),
    ("tcp:2022:interface=", "every interface"),
    ("tcp:2022", "every interface"),
    ("tcp6:2022", "'::'"),
    ("tcp6:2022:interface=\\:\\:", "'::'"),
    ("tcp6:2022:interface=\\:\\:1:interface=\\:\\:", "'::'"),
    ("tcp:2022:interface=192.168.1.20", "'192.168.1.20'"),
    ("tcp:2022:interface=localhost", "'localhost'"),
])
def test_what_twisted_would_bind_beyond_loopback_is_refused(endpoint: str, bound: str) -> None:
    """The last interface= is the one Twisted binds; none, '' or :: is every interface."""
    with pytest.raises(ValueError) as raised:
        check_loopback(endpoint)
    assert str(raised.value) == f"{endpoint!r}: Twisted would bind {bound}; {WANTED}"


@pytest.mark.parametrize("endpoint", ["ssl:2022:interface=127.0.0.1", "systemd:domain=INET:index=0", ""])
def test_other_kinds_of_endpoint_are_refused_unparsed(endpoint: str) -> None:
    """ssl:, systemd: and the like are refused before Twisted reads them (no key file is opened)."""
    with pytest.raises(ValueError) as raised:
        check_loopback(endpoint)
    assert str(raised.value) == f"{endpoint!r}: {WANTED}"


@pytest.mark.parametrize("endpoint", ["tcp:notaport:interface=127.0.0.1", "tcp", "TCP:0:interface=127.0.0.1"])
def test_a_string_twisted_cannot_read_is_a_plain_value_error(endpoint: str) -> None:
    """Twisted's TypeError or ValueError become one ValueError naming the string and the fix."""
    with pytest.raises(ValueError) as raised:
        check_loopback(endpoint)
    assert type(raised.value) is ValueError
    message = str(raised.value)
    assert message.startswith(f"{endpoint!r} is not an endpoint Twisted can read (")
    assert message.endswith(f"); {WANTED}")


@pytest.mark.parametrize(("endpoint", "message"), [
    ("tcp:2022:interface=127.0.0.1:interface=0.0.0.0", "Twisted would bind '0.0.0.0'"),
    ("tcp:2022:interface=", "Twisted would bind every interface"),
    ("tcp6:2022:interface=\\:\\:", "Twisted would bind '::'"),
    ("tcp:2022:interface=127.0.0.1:port=x", "is not a usable endpoint"),
])
def test_the_config_names_the_manhole_key(tmp_path: Path, endpoint: str, message: str) -> None:
    """A manhole endpoint beyond loopback is a config error (exit 2) naming the file and the key."""
    path = str(tmp_path / "config.py")
    with pytest.raises(ConfigError) as raised:
        make_config({"manhole": endpoint}, path)
    assert str(raised.value).startswith(f"{path}: manhole: {endpoint!r}")
    assert message in str(raised.value)


def test_a_loopback_manhole_in_the_config_passes_this_check(tmp_path: Path) -> None:
    """With ::1 the config gets past the endpoint to the next check (a way in is needed)."""
    with pytest.raises(ConfigError, match="manhole: needs manhole_passwords or manhole_keys"):
        make_config({"manhole": "tcp6:0:interface=\\:\\:1"}, str(tmp_path / "config.py"))
