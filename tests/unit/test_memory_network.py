"""MemoryNetwork (co2.testing, also in tests/doubles.py): the in-memory network the routing tests run on."""

from __future__ import annotations

import itertools

import pytest
from doubles import MemoryNetwork, NotSettled

from co2.protocol import Hello
from co2.testing import TestReactor
from relay import Relay
from relay._links import LinkProtocol
from satellites import Config


def relay(reactor: TestReactor) -> Relay:
    """A relay with no plugins."""
    return Relay(Config(), reactor, lambda *args: None)


def test_link_says_hello_and_keys_the_link_by_peer_name():
    """link(a, b) leaves a with peer:b and b with node:<a's id>, both up, at the given addresses."""
    reactor = TestReactor()
    network = MemoryNetwork(reactor)
    a = network.add("a", relay(reactor), ("10.1.0.1", 2005))
    b = network.add("b", relay(reactor), ("10.1.0.2", 2006))
    link = network.link("a", "b")
    assert link.up and link.refused is None
    assert set(a.links) == {"peer:b"} and set(b.links) == {f"node:{a.node_id}"}
    assert link.client_address[0] == "10.1.0.1" and link.server_address == ("10.1.0.2", 2006)
    assert b.links[f"node:{a.node_id}"].peer_address == list(link.client_address)
    assert a.links["peer:b"].peer_address == ["10.1.0.2", 2006]
    assert a.directory.announcing and b.directory.announcing


def test_cut_takes_both_sides_down():
    """After cut both relays have forgotten the link and the link is closed."""
    reactor = TestReactor()
    network = MemoryNetwork(reactor)
    a, b = network.add("a", relay(reactor)), network.add("b", relay(reactor))
    link = network.link("a", "b")
    network.cut("b", "a")
    assert link.closed and not link.up
    assert a.links == {} and b.links == {}
    assert network.between("a", "b") == []
    with pytest.raises(KeyError):
        network.cut("a", "b")


def test_settle_gives_up_on_a_network_that_never_settles():
    """settle raises NotSettled after max_rounds when a link keeps talking."""
    reactor = TestReactor()
    network = MemoryNetwork(reactor, max_rounds=50)
    network.add("b", relay(reactor))
    chatter = LinkProtocol(relay(reactor), "peer:chatter")
    network.connect(chatter, "b", ("192.0.2.1", 1234))

    def again(_: object) -> None:
        chatter.callRemote(Hello, node="c", host_id="", version=0).addBoth(again)

    again(None)
    with pytest.raises(NotSettled, match="50 rounds"):
        network.settle()


def test_settle_does_not_let_time_pass():
    """settle runs what is due now and leaves later calls alone."""
    reactor = TestReactor()
    network = MemoryNetwork(reactor)
    ran: list[str] = []
    reactor.callLater(0, ran.append, "now")
    reactor.callLater(1, ran.append, "later")
    network.settle()
    assert ran == ["now"] and reactor.seconds() == 0


def test_names_are_unique():
    """Adding a second node under a name is a ValueError."""
    reactor = TestReactor()
    network = MemoryNetwork(reactor)
    network.add("a", relay(reactor))
    with pytest.raises(ValueError, match="'a'"):
        network.add("a", relay(reactor))


def test_a_round_is_one_hop():
    """Along a line of relays a message goes one hop a round (the first writes it); carried counts it."""
    reactor = TestReactor()
    network = MemoryNetwork(reactor)
    line = [network.add(name, relay(reactor)) for name in "abcde"]
    for a, b in itertools.pairwise("abcde"):
        network.link(a, b, settle=False)
    network.settle()
    carried = network.carried
    line[0].originate("along the line")
    arrived: dict[int, int] = {}
    for rounds in range(1, 20):
        network.step()
        for index, node in enumerate(line[1:], 1):
            if node.snapshot().counters["received"] and index not in arrived:
                arrived[index] = rounds
    assert arrived == {1: 2, 2: 3, 3: 4, 4: 5}
    assert network.carried > carried


def test_links_made_without_settling_come_up_at_the_next_settle():
    """link(..., settle=False) only dials; the Hello crosses when the network settles."""
    reactor = TestReactor()
    network = MemoryNetwork(reactor)
    network.add("a", relay(reactor))
    network.add("b", relay(reactor))
    link = network.link("a", "b", settle=False)
    assert not link.up
    network.settle()
    assert link.up and link.refused is None
