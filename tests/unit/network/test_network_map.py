"""
The network map: every node learns every other node's profile (role,
version, plugins, links) from its announcements, and ``/network.json``
lists them; what a peer says of itself is read as untrusted input.
"""

from __future__ import annotations

import json

import msgpack
import pytest

import co2
from relay._profile import MAX_ITEMS, MAX_PROFILE_BYTES, encode_profile, read_profile
from satellites._network import NetworkJSON
from satellites._service import NodeParts


def by_role(network: dict) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for node in network["nodes"]:
        found.setdefault(node["role"], []).append(node)
    return found


def test_every_node_knows_every_other_with_its_role_plugins_and_links(network, make_satellite):
    hub = make_satellite("hub")  # no plugins: a relay as the network sees it
    hub.relay.role = "relay"
    a = make_satellite("a", "rec")
    b = make_satellite("b", "rec")
    network.link("a", "hub")
    network.link("b", "hub")
    ids = {a.relay.node_id, b.relay.node_id, hub.relay.node_id}
    for node in (a, b, hub):
        assert {entry["node_id"] for entry in node.relay.network()["nodes"]} == ids
    seen = {entry["node_id"]: entry for entry in b.relay.network()["nodes"]}
    entry = seen[a.relay.node_id]
    assert entry["role"] == "satellite" and entry["version"] == co2.__version__
    assert entry["host_id"] == a.host_id and entry["plugins"] == ["rec.m.X_Recorder"]
    [link] = entry["links"]
    assert link["peer"] == hub.relay.node_id and link["state"] == "up" and link["peer_host_id"] == hub.host_id
    assert seen[hub.relay.node_id]["role"] == "relay"
    assert {link["peer"] for link in seen[hub.relay.node_id]["links"]} == {a.relay.node_id, b.relay.node_id}


def test_a_link_that_goes_down_is_shown_down_on_the_far_nodes(network, make_satellite):
    a = make_satellite("a", "rec")
    b = make_satellite("b", "rec")
    c = make_satellite("c", "rec")
    network.link("a", "b")
    network.link("b", "c")
    network.link("a", "c")
    network.cut("a", "b")
    network.settle()
    seen = {entry["node_id"]: entry for entry in c.relay.network()["nodes"]}
    states = {link["peer"]: link["state"] for link in seen[a.relay.node_id]["links"]}
    assert states[b.relay.node_id] == "down" and states[c.relay.node_id] == "up"


def test_network_json_is_the_map_as_json(network, make_satellite, reactor):
    a = make_satellite("a", "rec")
    page = NetworkJSON(NodeParts.of(a))
    nodes = json.loads(page.render())["nodes"]
    assert [node["node_id"] for node in nodes] == [a.relay.node_id]
    assert page.content_type == b"application/json"


def test_a_profile_keeps_only_what_co2_knows_within_bounds():
    hostile = {
        "role": "relay\x1b[31m", "version": "9" * 500, "extra": "ignored",
        "plugins": ["ok"] * (MAX_ITEMS + 50) + [7],
        "links": [{"peer": "not a node id", "state": "sideways", "queued": -5, "in_rate": float("nan")},
                  "not a link"],
    }
    profile = read_profile(msgpack.packb(hostile))
    assert profile["role"] == "" and len(profile["version"]) == 200 and "extra" not in profile
    assert len(profile["plugins"]) == MAX_ITEMS
    assert profile["links"] == [{"peer": "", "peer_host_id": "", "link": "", "state": "down", "queued": 0,
                                 "in_rate": 0.0, "out_rate": 0.0}]
    assert len(read_profile(encode_profile({"plugins": ["p"] * 1000}))["plugins"]) == MAX_ITEMS


@pytest.mark.parametrize("data", [b"\xc1", msgpack.packb([1, 2]), b"\x00" * (MAX_PROFILE_BYTES + 1)])
def test_what_is_not_a_profile_is_refused(data):
    with pytest.raises(ValueError):
        read_profile(data)
