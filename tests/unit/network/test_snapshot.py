"""What a relay snapshot tells the status page: the peer of each link, since when, the last message."""

from __future__ import annotations

import time


def test_a_link_names_its_peer_and_when_it_last_changed(network, make_satellite):
    a = make_satellite("a", "rec")
    b = make_satellite("b", "rec")
    before = time.time()
    network.link("a", "b")
    [link] = a.relay.snapshot().links
    assert link.up and link.peer_node == b.relay.node_id and link.peer_host_id == b.host_id
    assert link.since is not None and link.since >= before
    network.cut("a", "b")
    [link] = a.relay.snapshot().links
    assert not link.up and link.peer_node == b.relay.node_id  # still named while down
    assert link.since is not None and link.since >= before


def test_notify_is_counted_and_the_last_message_is_timed(network, make_satellite, reactor):
    a = make_satellite("a", "rec")
    snapshot = a.relay.snapshot()
    assert snapshot.last_message is None and snapshot.started <= time.time()
    a.relay.accept_notify(("10.0.0.9", 5555), {"data": 1, "host_id": "1@10.0.0.9:2004"})
    reactor.advance(0)
    snapshot = a.relay.snapshot()
    assert snapshot.counters["notified"] == 1
    assert snapshot.last_message is not None and snapshot.last_message >= snapshot.started
