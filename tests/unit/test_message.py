"""host_id and message rules."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from co2 import check_message, make_host_id, parse_host_id
from co2._message import host_matches


def test_make_host_id_has_random_ip_and_port():
    """A host_id is <random>@<ip>:<port>, different each time."""
    first, second = make_host_id("127.0.0.1", 2004), make_host_id("127.0.0.1", 2004)
    assert first != second
    parsed = parse_host_id(first)
    assert (parsed.host, parsed.port) == ("127.0.0.1", 2004) and parsed.nonce.isdigit()


@given(st.ip_addresses(), st.integers(0, 65535))
def test_host_id_round_trips(ip, port):
    """Any IP and port survive make and parse, IPv6 included."""
    parsed = parse_host_id(make_host_id(str(ip), port))
    assert (parsed.host, parsed.port) == (str(ip), port)
    assert host_matches(parsed, str(ip))


@pytest.mark.parametrize("bad", [
    None, 5, "", "nohost", "@127.0.0.1:1", "1@127.0.0.1", "1@:80", "1@127.0.0.1:x",
    "1@127.0.0.1:70000",
])
def test_malformed_host_ids_are_refused(bad):
    """Anything not of the form <random>@<ip>:<port> raises ValueError."""
    with pytest.raises(ValueError):
        parse_host_id(bad)


def test_host_matches_compares_addresses():
    """The host part matches the same address in any spelling, and nothing else."""
    assert host_matches(parse_host_id("1@127.0.0.1:1"), "::ffff:127.0.0.1")
    assert host_matches(parse_host_id("1@[::1]:1"), "0:0:0:0:0:0:0:1")
    assert not host_matches(parse_host_id("1@127.0.0.2:1"), "127.0.0.1")
    assert not host_matches(parse_host_id("1@localhost:1"), "127.0.0.1")


def test_check_message():
    """A message is a struct with data and a well-formed host_id."""
    assert check_message({"data": None, "host_id": "1@127.0.0.1:2"})
    for bad in [[], {"data": 1}, {"host_id": "1@127.0.0.1:2"}, {"data": 1, "host_id": 3}]:
        with pytest.raises(ValueError):
            check_message(bad)
