"""The NATS backbone's parts that need no server: its peers entry, what it reads, the reactor it needs."""

from __future__ import annotations

import msgpack
import pytest

from co2._config import check_peer, parse_backbone
from co2._errors import ConfigError
from co2.testing import TestReactor
from relay import Relay
from satellites import make_config

nats = pytest.importorskip("nats", reason="the backbone needs nats-py")

from relay._backbone import BackboneLink, NotAsyncio, read_announcement  # noqa: E402


def test_a_backbone_peer_names_a_server_and_a_stream():
    assert parse_backbone("nats://127.0.0.1:4222/sites") == ("nats://127.0.0.1:4222", "sites", False)
    assert parse_backbone("tls://nats.example:4443/eu-west_1").tls
    assert check_peer("nats://127.0.0.1:4222/sites") == "nats://127.0.0.1:4222/sites"


@pytest.mark.parametrize(
    ("peer", "says"),
    [
        ("nats://127.0.0.1/sites", "has no port"),
        ("nats://:4222/sites", "has no host"),
        ("nats://h:99999/sites", "bad port"),
        ("nats://h:4222/", "the name after the port"),
        ("nats://h:4222/a.b", "the name after the port"),
        ("nats://h:4222/a b", "the name after the port"),
        ("nats://u:p@h:4222/sites", "credentials go in peer_credentials"),
        ("nats://h:4222/sites?x=1", "nothing but"),
    ],
)
def test_a_malformed_backbone_peer_says_what_is_wrong(peer, says):
    with pytest.raises(ValueError, match=says):
        check_peer(peer)


def test_a_config_takes_a_backbone_and_its_retention():
    config = make_config({"peers": ["nats://127.0.0.1:4222/sites"], "backbone_max_age": 600,
                          "backbone_max_bytes": 1 << 20})
    assert config.relay.peers == ("nats://127.0.0.1:4222/sites",)
    assert config.relay.backbone_max_age == 600
    with pytest.raises(ConfigError, match="backbone_max_bytes"):
        make_config({"backbone_max_bytes": 0})


def announcement(**changes):
    fields = {"sender": "0123456789abcdef", "sender_host_id": "1@127.0.0.2:2004", "node": "fedcba9876543210",
              "host_id": "2@127.0.0.3:2004", "version": 5, "hops": 1, "ttl": 180.0,
              "methods": ["a.b.c"], "neighbours": ["0123456789abcdef"]}
    fields.update(changes)
    return msgpack.packb(list(fields.values()))


def test_an_announcement_from_the_backbone_is_read_whole():
    read = read_announcement(announcement())
    sender, node, host_id, version, hops, ttl, methods, neighbours, profile = read
    assert sender == ("0123456789abcdef", "1@127.0.0.2:2004")
    assert (node, host_id, version, hops, ttl) == ("fedcba9876543210", "2@127.0.0.3:2004", 5, 1, 180.0)
    assert methods == ["a.b.c"] and neighbours == ["0123456789abcdef"]
    assert read_announcement(announcement(neighbours=None))[-2] is None
    assert profile is None
    with_profile = msgpack.packb([*msgpack.unpackb(announcement()), b"\x80"])
    assert read_announcement(with_profile)[-1] == b"\x80"


@pytest.mark.parametrize(
    "payload",
    [
        b"\xc1",  # not msgpack
        msgpack.packb([1, 2, 3]),
        announcement(node="has space"),
        announcement(sender=""),
        announcement(host_id="x" * 300),
        announcement(hops=-1),
        announcement(version="5"),
        announcement(ttl=float("nan")),
        announcement(methods="a.b.c"),
        announcement(methods=[1]),
        announcement(neighbours=["ok", "not one"]),
        announcement(neighbours="0123"),
    ],
)
def test_a_malformed_announcement_is_refused(payload):
    with pytest.raises(ValueError):
        read_announcement(payload)


def test_a_backbone_needs_the_asyncio_reactor():
    relay = Relay(make_config({"peers": ["nats://127.0.0.1:4222/sites"]}), TestReactor(), lambda *args: None)
    link = BackboneLink(relay, "nats://127.0.0.1:4222/sites")
    with pytest.raises(NotAsyncio, match="asyncio reactor"):
        link.startService()
