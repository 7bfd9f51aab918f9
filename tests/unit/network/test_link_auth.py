"""Links to a node that requires credentials: Hello proves who connects before anything else."""

from __future__ import annotations

import re
from typing import Any

from doubles import format_events
from twisted.internet.defer import Deferred
from twisted.protocols import amp

from co2.protocol import Deliver, Hello, NotIntroduced, Unauthorized, encode_batch


def test_a_listener_with_auth_refuses_a_hello_without_credentials(network, make_satellite, logged) -> None:
    a = make_satellite("a")
    make_satellite("b", auth=("memory:node-a:pw",))
    link = network.link("a", "b")
    assert link.refused is not None and link.refused.check(Unauthorized)
    assert "requires a user name and password" in link.refused.getErrorMessage()
    assert a.relay.links == {} and network.relay("b").links == {}
    assert link.closed
    assert re.search(
        rf"the AMP listener: refused 10\.0\.0\.1:\d+ \(node {a.relay.node_id}\): no credentials given",
        format_events(logged),
    )


def test_a_listener_with_auth_refuses_wrong_credentials(network, make_satellite, logged) -> None:
    make_satellite("a")
    make_satellite("b", auth=("memory:node-a:pw",))
    link = network.link("a", "b", credentials=("node-a", "wrong"))
    assert link.refused is not None and "wrong user name or password" in link.refused.getErrorMessage()
    assert network.relay("b").links == {} and link.closed
    assert "(user 'node-a'): wrong user name or password" in format_events(logged)


def test_right_credentials_bring_the_link_up(network, make_satellite) -> None:
    a = make_satellite("a", "rec")
    b = make_satellite("b", "rec", auth=("memory:node-a:pw",))
    link = network.link("a", "b", credentials=("node-a", "pw"))
    assert link.refused is None
    a.plugins[0].send("over")
    network.settle()
    assert [m["data"] for m in b.plugins[0].got] == ["over"]


def test_nothing_is_accepted_before_the_hello_is_checked(network, make_satellite, reactor) -> None:
    """A Deliver sent right behind the Hello, before the check answers, is refused (HELLO_FIRST)."""
    make_satellite("b", "rec", auth=("memory:node-a:pw",))
    relay = network.relay("b")
    pending: list[Any] = []
    original = relay.authentication.check

    def slow_check(username: str, password: str, source: str | None = None) -> Any:
        d = original(username, password, source)
        later: Deferred[Any] = Deferred()
        pending.append((d, later))
        return later

    relay.authentication.check = slow_check
    client = amp.AMP()
    link = network.connect(client, "b", ("10.0.0.7", 5000))
    hello: list[Any] = []
    client.callRemote(Hello, node="n7", host_id="7@10.0.0.7:2004", version=2,
                              username="node-a", password="pw").addBoth(hello.append)
    early: list[Any] = []
    client.callRemote(Deliver, batch=encode_batch([])).addBoth(early.append)
    link.pump.flush()
    assert early[0].check(NotIntroduced)
    (d, later), = pending
    d.chainDeferred(later)
    link.pump.flush()
    assert hello[0]["node"] == relay.node_id


def test_unauthorized_is_a_known_error_of_hello() -> None:
    assert Hello.fatalErrors[Unauthorized] == b"UNAUTHORIZED"


def test_config_without_auth_accepts_credentials_it_does_not_need(network, make_satellite) -> None:
    make_satellite("a")
    make_satellite("b")
    assert network.link("a", "b", credentials=("who", "ever")).refused is None


