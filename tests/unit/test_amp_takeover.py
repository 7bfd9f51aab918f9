"""
A Hello claiming the node id of a link already up: it replaces that link
only when it proves the same user; without authentication, as before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from doubles import MemoryLink, MemoryNetwork
from test_auth_throttle import Peer, co2_lines
from twisted.python.failure import Failure

from co2.protocol import PROTOCOL_VERSION, Hello, NodeIdTaken
from co2.testing import TestReactor
from relay import Relay
from satellites import Config, make_config

USERS = "memory:alice:pw-a:mallory:pw-m"


@pytest.fixture
def log(logged: list[dict[str, Any]]) -> Callable[[str], list[str]]:
    """``log(text)``: the lines co2 logged so far during the test that contain ``text``."""
    return lambda text: co2_lines(logged, text)


@pytest.fixture
def network() -> Iterator[MemoryNetwork]:
    """An in-memory network; its relays are stopped afterwards."""
    network = MemoryNetwork(TestReactor())
    yield network
    for node in network.nodes.values():
        node.close()
    network.reactor.advance(60)


def add_hub(network: MemoryNetwork, auth: tuple[str, ...] = (USERS,)) -> Relay:
    """A standalone relay "hub" at 10.0.0.1:2005 checking ``auth``."""
    hub = Relay(make_config({"auth": auth}), network.reactor, lambda *args: None)
    network.add("hub", hub, ("10.0.0.1", 2005))
    return hub


def hello(
    network: MemoryNetwork, source: tuple[str, int], node: str, user: str | None = None
) -> tuple[MemoryLink, Any]:
    """Say Hello to the hub from ``source`` as ``node`` (and ``user``); the link and the answer."""
    client = Peer()
    link = network.connect(client, "hub", source)
    answers: list[Any] = []
    credentials = {} if user is None else {"username": user, "password": f"pw-{user[0]}"}
    client.callRemote(Hello, node=node, host_id=f"1@{source[0]}:2004", version=PROTOCOL_VERSION,
                      **credentials).addBoth(answers.append)
    network.settle()
    return link, answers[0]


def test_another_user_cannot_take_over_a_node_id(network: MemoryNetwork, log: Any) -> None:
    """mallory's Hello claiming alice's node id is refused (NODE_ID_TAKEN); alice's link stays up."""
    hub = add_hub(network)
    alice, answer = hello(network, ("10.0.0.2", 4000), "n2", "alice")
    assert answer["node"] == hub.node_id
    mallory, refused = hello(network, ("192.0.2.66", 5000), "n2", "mallory")
    assert isinstance(refused, Failure) and refused.check(NodeIdTaken)
    assert refused.getErrorMessage() == "node n2 is linked here already, under another user name"
    assert mallory.closed and alice.up
    assert hub.links["node:n2"] is alice.server and alice.server.user == "alice"
    assert log("refused 192.0.2.66") == [
        "the AMP listener: refused 192.0.2.66:5000 (node n2) (user 'mallory'): "
        "node n2 is held by the link from 10.0.0.2:4000 of user 'alice'; that link stays up"
    ]


def test_the_same_user_may_replace_its_link(network: MemoryNetwork) -> None:
    """A node reconnecting as the same user replaces its old connection, as before."""
    hub = add_hub(network)
    old, _ = hello(network, ("10.0.0.2", 4000), "n2", "alice")
    new, answer = hello(network, ("10.0.0.2", 4001), "n2", "alice")
    assert answer["node"] == hub.node_id
    assert old.closed and new.up and hub.links["node:n2"] is new.server


def test_a_refused_claim_leaves_other_node_ids_free(network: MemoryNetwork) -> None:
    """The user refused one node id may still link under a node id nobody holds."""
    hub = add_hub(network)
    hello(network, ("10.0.0.2", 4000), "n2", "alice")
    link, answer = hello(network, ("192.0.2.66", 5000), "n66", "mallory")
    assert answer["node"] == hub.node_id and link.up
    assert sorted(hub.links) == ["node:n2", "node:n66"]


def test_a_dialling_relay_with_other_credentials_is_refused(network: MemoryNetwork) -> None:
    """A relay that dials with mallory's credentials and another's node id gets NodeIdTaken."""
    hub = add_hub(network)
    a = network.add("a", Relay(Config(), network.reactor, lambda *args: None))
    m = network.add("m", Relay(Config(), network.reactor, lambda *args: None))
    m.node_id = a.node_id
    first = network.link("a", "hub", credentials=("alice", "pw-a"))
    second = network.link("m", "hub", credentials=("mallory", "pw-m"))
    assert first.refused is None and first.up
    assert second.refused is not None and second.refused.check(NodeIdTaken)
    assert second.closed and m.links == {}
    assert hub.links[f"node:{a.node_id}"] is first.server


def test_without_authentication_a_hello_replaces_the_link(network: MemoryNetwork) -> None:
    """With no auth configured, any peer may claim any node id: the newest Hello wins (documented)."""
    hub = add_hub(network, auth=())
    assert hub.authentication is None
    old, _ = hello(network, ("10.0.0.2", 4000), "n2")
    new, answer = hello(network, ("192.0.2.66", 5000), "n2")
    assert answer["node"] == hub.node_id
    assert old.closed and new.up and hub.links["node:n2"] is new.server


def test_node_id_taken_is_a_fatal_error_of_hello() -> None:
    """NodeIdTaken is declared in Hello's schema, as fatal: the connection closes after the answer."""
    assert Hello.fatalErrors[NodeIdTaken] == b"NODE_ID_TAKEN"
