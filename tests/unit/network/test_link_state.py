"""
A link's life as a state machine (relay._link_state): every transition
the table allows, every event it refuses and with what error, and the
same rules as one LinkProtocol lives them over a StringTransport.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.protocols import amp
from twisted.python.failure import Failure

from co2.protocol import (
    PROTOCOL_VERSION,
    Announce,
    Call,
    Deliver,
    Hello,
    NotIntroduced,
    SameNode,
    UnexpectedHello,
    encode_batch,
)
from relay._errors import RelayError
from relay._link_state import TRANSITIONS, LinkEvent, LinkMachine, LinkState
from relay._links import BOX_OVERHEAD, LinkProtocol, LinkStats
from relay._outbox import Outbox

S, E = LinkState, LinkEvent
PEER_NODE = "fedcba9876543210"
PEER_HOST_ID = "2@10.0.0.2:2004"
PEER_ADDRESS = IPv4Address("TCP", "10.0.0.2", 40000)
PEER_ERRORS = {
    E.HELLO_HEARD: (UnexpectedHello, "Hello is said once, by the node that connects"),
    E.COMMAND_HEARD: (NotIntroduced, "send Hello first"),
}


# The table alone.


@pytest.mark.parametrize(("before", "event"), sorted(TRANSITIONS, key=str), ids=str)
def test_each_transition_of_the_table_leads_where_it_says(before: S, event: E) -> None:
    """Firing an event the table allows moves the machine to the state the table names, and returns it."""
    machine = LinkMachine(before, lambda: "link peer:x")
    assert machine.fire(event) is TRANSITIONS[before, event]
    assert machine.state is TRANSITIONS[before, event]


ILLEGAL = sorted(((state, event) for state in LinkState for event in LinkEvent
                  if (state, event) not in TRANSITIONS), key=str)


@pytest.mark.parametrize(("before", "event"), ILLEGAL, ids=str)
def test_each_event_the_table_lacks_is_refused_and_changes_nothing(before: S, event: E) -> None:
    """A pair missing from the table raises the peer's error for what the peer did, else a RelayError."""
    machine = LinkMachine(before, lambda: "link peer:x")
    bug = f"link peer:x: {event.value} cannot happen when the link is {before.value}; a bug in co2"
    error, message = PEER_ERRORS.get(event, (RelayError, bug))
    with pytest.raises(error) as raised:
        machine.fire(event)
    assert str(raised.value) == message
    assert machine.state is before


def test_every_state_but_down_can_end_and_only_live_states_can_breach() -> None:
    """LOST leads to DOWN from every state but DOWN; BREACH to REFUSING from every state still reading."""
    assert {state for (state, event) in TRANSITIONS if event is E.LOST} == set(LinkState) - {S.DOWN}
    breachable = {state for (state, event) in TRANSITIONS if event is E.BREACH}
    assert breachable == set(LinkState) - {S.REFUSING, S.DOWN}


def test_the_peer_may_send_hello_only_while_awaited_and_commands_only_once_up() -> None:
    """HELLO_HEARD is allowed in AWAITING_HELLO alone, COMMAND_HEARD in UP alone."""
    assert {state for (state, event) in TRANSITIONS if event is E.HELLO_HEARD} == {S.AWAITING_HELLO}
    assert {state for (state, event) in TRANSITIONS if event is E.COMMAND_HEARD} == {S.UP}


# One link, over a StringTransport.


@dataclass
class Owner:
    """A LinkOwner whose router and directory record what the link asks of them."""

    reactor: Clock = field(default_factory=Clock)
    authentication: Any = None
    node_id: str = "0123456789abcdef"
    host_id: str = "1@10.0.0.1:2004"
    max_box_size: int = 256 * 1024 + BOX_OVERHEAD
    hello_timeout: float = 7.0
    links: dict[str, LinkProtocol] = field(default_factory=dict)
    link_stats: LinkStats = field(default_factory=LinkStats)
    calls: list[tuple[Any, ...]] = field(default_factory=list)
    call_timeout: float = 10.0

    @property
    def router(self) -> Owner:
        return self

    @property
    def directory(self) -> Owner:
        return self

    def attach(self, key: str, sender: Any) -> Outbox:
        self.calls.append(("attach", key))
        return Outbox(100, 1 << 20)

    def detach(self, key: str, sender: Any) -> None:
        self.calls.append(("detach", key))

    def arrived(self, envelopes: Any, key: str, address: list[Any]) -> Deferred[None]:
        self.calls.append(("arrived", key, len(envelopes)))
        return succeed(None)

    def link_up(self, link: LinkProtocol) -> None:
        self.calls.append(("link_up", link.key))

    def link_down(self, link: LinkProtocol) -> None:
        self.calls.append(("link_down", link.key))


class HeldChecker:
    """An Authentication whose checks answer when the test says."""

    def __init__(self) -> None:
        self.pending: list[Deferred[str]] = []
        self.refusals: list[str] = []

    def check(self, username: str, password: str, source: str | None = None) -> Deferred[str]:
        self.pending.append(Deferred())
        return self.pending[-1]

    def refuse(self, where: str, who: str, username: str | None, why: str) -> None:
        self.refusals.append(why)


def connected(owner: Owner, key: str | None = None) -> tuple[LinkProtocol, StringTransport]:
    """A link of ``owner`` (dialled when ``key`` is given) on a StringTransport to 10.0.0.2."""
    link = LinkProtocol(owner, key)
    transport = StringTransport(peerAddress=PEER_ADDRESS)
    link.makeConnection(transport)
    return link, transport


def command(name: type[amp.Command], tag: bytes = b"1", **arguments: Any) -> bytes:
    """The bytes of a box asking ``name`` with ``arguments``."""
    box = name.makeArguments(arguments, None)
    box[amp.COMMAND], box[amp.ASK] = name.commandName, tag
    return box.serialize()


def hello(tag: bytes = b"1", **credentials: str) -> bytes:
    """A Hello from the peer node."""
    return command(Hello, tag, node=PEER_NODE, host_id=PEER_HOST_ID, version=PROTOCOL_VERSION, **credentials)


def answers(transport: StringTransport) -> list[amp.AmpBox]:
    """The boxes the link wrote, and forget them."""
    boxes = amp.parseString(transport.value())
    transport.clear()
    return boxes


def refusal(box: amp.AmpBox) -> tuple[bytes, bytes]:
    """The error code and description of an error box."""
    return box[amp.ERROR_CODE], box[amp.ERROR_DESCRIPTION]


def test_a_link_starts_dialled_when_this_node_dialled_it_and_awaiting_hello_otherwise() -> None:
    """The first state follows who connected: DIALLED with a key, AWAITING_HELLO without."""
    assert connected(Owner(), "peer:b")[0].machine.state is S.DIALLED
    assert connected(Owner())[0].machine.state is S.AWAITING_HELLO


def test_a_dialled_link_says_hello_and_comes_up_when_answered() -> None:
    """DIALLED -> SAYING_HELLO -> UP: the link takes its key in the owner and the router."""
    owner = Owner()
    link, transport = connected(owner, "peer:b")
    results: list[Any] = []
    link.say_hello().addBoth(results.append)
    (sent,) = answers(transport)
    assert sent[amp.COMMAND] == b"Hello" and link.machine.state is S.SAYING_HELLO
    version = str(PROTOCOL_VERSION).encode()
    link.dataReceived(amp.AmpBox({amp.ANSWER: sent[amp.ASK], b"node": PEER_NODE.encode(),
                                  b"host_id": PEER_HOST_ID.encode(), b"version": version}).serialize())
    assert results == [None] and link.machine.state is S.UP and link.introduced
    assert owner.links == {"peer:b": link} and owner.calls == [("attach", "peer:b")]
    owner.reactor.advance(0)
    assert owner.calls[-1] == ("link_up", "peer:b")


def test_a_refused_hello_takes_the_dialled_link_back_to_dialled() -> None:
    """SAYING_HELLO -> DIALLED when the peer refuses the Hello; the refusal reaches the caller."""
    link, transport = connected(Owner(), "peer:b")
    results: list[Any] = []
    link.say_hello().addBoth(results.append)
    (sent,) = answers(transport)
    link.dataReceived(amp.AmpBox({amp.ERROR: sent[amp.ASK], amp.ERROR_CODE: b"SAME_NODE",
                                  amp.ERROR_DESCRIPTION: b"a node cannot link to itself"}).serialize())
    assert results[0].check(SameNode) and link.machine.state is S.DIALLED


def test_a_hello_cut_short_by_the_connection_s_end_leaves_the_link_down() -> None:
    """A Hello still unanswered when the connection ends fails; the link stays DOWN."""
    link, _ = connected(Owner(), "peer:b")
    results: list[Any] = []
    link.say_hello().addBoth(results.append)
    link.connectionLost(Failure(ConnectionLost()))
    assert results[0].check(ConnectionLost) and link.machine.state is S.DOWN


def test_saying_hello_twice_is_a_bug_refused_with_a_relay_error() -> None:
    """say_hello on a link already saying it raises RelayError naming the link, the event and the state."""
    link, transport = connected(Owner(), "peer:b")
    link.say_hello()
    with pytest.raises(RelayError) as raised:
        link.say_hello()
    assert str(raised.value) == (
        "peer:b: saying Hello cannot happen when the link is saying hello; a bug in co2"
    )
    assert len(answers(transport)) == 1


def test_a_hello_needing_no_credentials_brings_the_listening_link_up() -> None:
    """AWAITING_HELLO -> UP at once: the answer names this node and the Hello timer stops."""
    owner = Owner()
    link, transport = connected(owner)
    assert len(owner.reactor.getDelayedCalls()) == 1
    link.dataReceived(hello())
    (answer,) = answers(transport)
    assert answer[b"node"] == owner.node_id.encode() and link.machine.state is S.UP
    assert set(owner.links) == {f"node:{PEER_NODE}"}
    assert (link.peer_node, link.peer_host_id) == (PEER_NODE, PEER_HOST_ID)
    owner.reactor.advance(owner.hello_timeout)
    assert link.machine.state is S.UP


def test_a_hello_with_credentials_waits_in_checking_credentials_then_comes_up() -> None:
    """AWAITING_HELLO -> CHECKING_CREDENTIALS until the checker accepts, then UP with the user noted."""
    checker = HeldChecker()
    owner = Owner(authentication=checker)
    link, transport = connected(owner)
    link.dataReceived(hello(username="alice", password="pw"))
    assert link.machine.state is S.CHECKING_CREDENTIALS and answers(transport) == []
    checker.pending[0].callback("alice")
    assert link.machine.state is S.UP and link.user == "alice"
    assert answers(transport)[0][b"node"] == owner.node_id.encode()


def test_a_hello_during_the_credential_check_is_unexpected() -> None:
    """A second Hello while the first is checked is refused UNEXPECTED_HELLO; the check goes on."""
    link, transport = connected(Owner(authentication=HeldChecker()))
    link.dataReceived(hello(username="alice", password="pw"))
    link.dataReceived(hello())
    (answer,) = answers(transport)
    assert refusal(answer) == (b"UNEXPECTED_HELLO", b"Hello is said once, by the node that connects")
    assert link.machine.state is S.CHECKING_CREDENTIALS


def test_a_refused_check_takes_the_link_back_to_awaiting_hello() -> None:
    """CHECKING_CREDENTIALS -> AWAITING_HELLO when the checker refuses; the peer gets UNAUTHORIZED."""
    checker = HeldChecker()
    link, transport = connected(Owner(authentication=checker))
    link.dataReceived(hello(username="alice", password="wrong"))
    checker.pending[0].errback(UnauthorizedLogin())
    (answer,) = answers(transport)
    assert refusal(answer) == (b"UNAUTHORIZED", b"wrong user name or password")
    assert link.machine.state is S.AWAITING_HELLO and checker.refusals == ["wrong user name or password"]


def test_a_check_that_ends_after_the_connection_closed_brings_nothing_up() -> None:
    """Credentials accepted once the link is DOWN are refused and logged; the link stays DOWN, unowned."""
    checker = HeldChecker()
    owner = Owner(authentication=checker)
    link, _ = connected(owner)
    link.dataReceived(hello(username="alice", password="pw"))
    link.connectionLost(Failure(ConnectionDone()))
    checker.pending[0].callback("alice")
    assert link.machine.state is S.DOWN and owner.links == {}
    assert checker.refusals == ["the connection closed during the check"]


def test_a_second_hello_on_an_up_link_is_unexpected() -> None:
    """Hello on a link that is UP is refused UNEXPECTED_HELLO; the link stays up."""
    link, transport = connected(Owner())
    link.dataReceived(hello())
    answers(transport)
    link.dataReceived(hello(b"2"))
    (answer,) = answers(transport)
    assert refusal(answer) == (b"UNEXPECTED_HELLO", b"Hello is said once, by the node that connects")
    assert link.machine.state is S.UP


def test_commands_before_hello_are_refused_with_hello_first() -> None:
    """Deliver and Call before Hello get HELLO_FIRST; Announce, which asks no answer, gets nothing."""
    owner = Owner()
    link, transport = connected(owner)
    link.dataReceived(command(Deliver, b"1", batch=encode_batch([])))
    link.dataReceived(command(Call, b"2", node=PEER_NODE, hops=3, request=b"<methodCall/>"))
    link.dataReceived(command(Announce, b"3", node=PEER_NODE, host_id=PEER_HOST_ID, version=1,
                              hops=0, ttl=60.0, methods=b"x.m.f"))
    assert [refusal(box) for box in answers(transport)] == [(b"HELLO_FIRST", b"send Hello first")] * 3
    assert owner.calls == [] and link.machine.state is S.AWAITING_HELLO


def test_deliver_once_up_goes_to_the_router() -> None:
    """Deliver on an UP link hands the batch to the router under the link's key, and is answered."""
    owner = Owner()
    link, transport = connected(owner)
    link.dataReceived(hello())
    answers(transport)
    link.dataReceived(command(Deliver, b"2", batch=encode_batch([])))
    assert answers(transport)[0][amp.ANSWER] == b"2"
    assert owner.calls[-1] == ("arrived", f"node:{PEER_NODE}", 0)


def test_a_box_after_a_breach_is_dropped_unread() -> None:
    """Once a box too large made the link REFUSING, a Hello that follows is neither read nor answered."""
    owner = Owner(max_box_size=1000)
    link, transport = connected(owner)
    link.dataReceived(command(Deliver, batch=b"\x00" * 2000))
    assert link.machine.state is S.REFUSING and transport.disconnecting
    link.dataReceived(hello())
    assert transport.value() == b"" and link.machine.state is S.REFUSING and owner.links == {}


def test_no_hello_within_the_timeout_is_a_breach() -> None:
    """A listening link that hears no Hello within hello_timeout goes REFUSING and closes."""
    owner = Owner()
    link, transport = connected(owner)
    owner.reactor.advance(6.9)
    assert link.machine.state is S.AWAITING_HELLO
    owner.reactor.advance(0.1)
    assert link.machine.state is S.REFUSING and transport.disconnecting


def test_a_breach_while_up_takes_the_link_down_at_once() -> None:
    """A stray box on an UP link: the router and the directory forget the link before it closes."""
    owner = Owner()
    link, transport = connected(owner)
    link.dataReceived(hello())
    link.dataReceived(amp.AmpBox({b"stray": b"x"}).serialize())
    key = f"node:{PEER_NODE}"
    assert link.machine.state is S.REFUSING and not link.introduced and transport.disconnecting
    assert owner.links == {} and ("detach", key) in owner.calls and ("link_down", key) in owner.calls


def test_an_up_link_whose_connection_ends_goes_down() -> None:
    """UP -> DOWN: the router and the directory forget the link, once."""
    owner = Owner()
    link, _ = connected(owner)
    link.dataReceived(hello())
    link.connectionLost(Failure(ConnectionDone()))
    key = f"node:{PEER_NODE}"
    assert link.machine.state is S.DOWN and owner.links == {}
    assert owner.calls.count(("detach", key)) == 1 and owner.calls.count(("link_down", key)) == 1


def test_a_newer_connection_from_the_same_node_supersedes_the_up_link() -> None:
    """UP -> SUPERSEDED: the old link goes down and closes, the new one holds the key."""
    owner = Owner()
    old, old_transport = connected(owner)
    old.dataReceived(hello())
    new, _ = connected(owner)
    new.dataReceived(hello())
    assert old.machine.state is S.SUPERSEDED and old_transport.disconnecting
    assert new.machine.state is S.UP and owner.links == {f"node:{PEER_NODE}": new}


def test_bytes_after_the_connection_ended_are_a_bug() -> None:
    """dataReceived on a DOWN link raises RelayError naming the link; nothing is read."""
    owner = Owner()
    link, _ = connected(owner)
    link.connectionLost(Failure(ConnectionDone()))
    with pytest.raises(RelayError) as raised:
        link.dataReceived(hello())
    assert str(raised.value) == (
        "link from 10.0.0.2:40000: bytes from the peer cannot happen when the link is down; a bug in co2"
    )
    assert owner.links == {}
