"""
Broadcast without waste, measured as an operator would: five relays in a
full mesh, a satellite on three of them, each a real process; once the
network has settled, the duplicate arrivals every node's ``/status.json``
counts stay at (about) none per message, and every plugin gets every
message once.
"""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

from test_network import (  # noqa: F401  (the network fixture)
    LINK_UP,
    by_order,
    call,
    emitted,
    free_port,
    listen_at,
    network,
    peer_at,
    received,
    wait_until,
)

from relay._tree import SETTLE

RELAYS = 5
MESSAGES = 100  # from each satellite


def status(proc: Any) -> dict[str, Any]:
    with urllib.request.urlopen(proc.url.rstrip("/") + "/status.json", timeout=10) as answer:
        return dict(json.load(answer))


def duplicates(procs: list[Any]) -> int:
    return sum(status(proc)["counters"]["duplicates"] for proc in procs)


def test_a_settled_five_relay_mesh_carries_each_message_to_each_node_once(network):  # noqa: F811
    ports = [free_port() for _ in range(RELAYS)]
    relays = [
        network.relay(f"r{i}", amp_listen=listen_at(ports[i]), peers=[peer_at(ports[j]) for j in range(i)])
        for i in range(RELAYS)
    ]
    satellites = [network.satellite(f"s{i}", f"pkg{i}", peers=[peer_at(ports[i])]) for i in range(3)]
    nodes = relays + satellites
    for proc in nodes:
        proc.wait_serving()
    for i, proc in enumerate(relays):
        wait_until(lambda proc=proc, i=i: proc.count(LINK_UP) >= RELAYS - 1 + (i < 3), "the mesh up", *nodes)
    for proc in satellites:
        wait_until(lambda proc=proc: proc.count(LINK_UP) >= 1, "the satellites linked", *nodes)
    time.sleep(SETTLE + 1)  # every node's map has settled

    before = duplicates(nodes)
    for i, proc in enumerate(satellites):
        call(proc, f"pkg{i}.rec.emit", MESSAGES, f"from{i}")
    for i, proc in enumerate(satellites):
        expected = [item for j in range(3) if j != i for item in emitted(f"from{j}", MESSAGES)]
        count = len(expected)
        wait_until(lambda proc=proc, i=i, count=count: len(received(proc, f"pkg{i}")) >= count,
                   "every message", *nodes)
        time.sleep(0.5)
        assert by_order(received(proc, f"pkg{i}")) == by_order(expected)
    extra = duplicates(nodes) - before
    assert extra / (3 * MESSAGES) <= 0.1, f"{extra} duplicate arrivals for {3 * MESSAGES} messages"

