"""Classic links (XML-RPC notify to http:// peers) and notify carrying id and hops."""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any
from xmlrpc.client import Fault

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionRefusedError
from twisted.logger import formatEvent
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone
from twisted.web.http_headers import Headers

from co2 import faults
from co2._ratelog import LINES
from co2._xmlrpc import dump_fault, dump_response, parse_call
from co2.protocol import decode_envelope
from co2.testing import HTTPResponse, MemoryXMLRPCClient
from relay import Links
from satellites import Satellite, make_server

_LINKS: weakref.WeakKeyDictionary[Any, Links] = weakref.WeakKeyDictionary()


def links_of(satellite: Satellite) -> Links:
    """The links service of ``satellite``'s relay, made once: its classic link is a child."""
    links = _LINKS.get(satellite.relay)
    if links is None:
        links = _LINKS[satellite.relay] = Links(satellite.relay)
    return links

URL = "http://10.0.0.2:2004/"


class Collector:
    """A consumer that keeps what a body producer writes."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.parts.append(data)


class Response:
    """An HTTP response whose body is delivered at once."""

    def __init__(self, code: int, body: bytes) -> None:
        self.code = code
        self.phrase = b"OK" if code == 200 else b"Error"
        self.headers = Headers()
        self.length = len(body)
        self.body = body

    def deliverBody(self, protocol: Any) -> None:
        protocol.dataReceived(self.body)
        protocol.connectionLost(Failure(ResponseDone()))


@dataclass
class Posted:
    """One request made through the fake agent."""

    method: bytes
    uri: bytes
    headers: Headers
    body: bytes
    answer: Deferred[Any]

    @property
    def struct(self) -> dict[str, Any]:
        """The struct of the notify call the body holds."""
        name, (struct,) = parse_call(self.body)
        assert name == "notify"
        return struct

    def reply(self, value: Any) -> None:
        """Answer with an XML-RPC value."""
        self.answer.callback(Response(200, dump_response(value)))

    def fault(self, code: int) -> None:
        """Answer with an XML-RPC fault."""
        self.answer.callback(Response(200, dump_fault(code, "no thanks")))


class FakeAgent:
    """An agent whose requests a test answers by hand."""

    def __init__(self) -> None:
        self.posted: list[Posted] = []

    def request(self, method: bytes, uri: bytes, headers: Headers, body: Any) -> Deferred[Any]:
        collector = Collector()
        answer: Deferred[Any] = Deferred()

        def sent(_: object) -> None:
            self.posted.append(Posted(method, uri, headers, b"".join(collector.parts), answer))

        body.startProducing(collector).addCallback(sent)
        return answer


def retry(failures: int) -> float:
    """A deterministic backoff: 2 s per consecutive failure."""
    return 2.0 * failures


@pytest.fixture
def sender(reactor, build, stop):
    """Satellite 1 (10.0.0.1) with the classic peer URL, its link driven by a fake agent."""
    satellite = build(reactor, 1, "rec", peers=(URL,))
    link = links_of(satellite).getServiceNamed(URL)
    link.agent = FakeAgent()
    link.retry = retry
    links_of(satellite).startService()
    yield satellite, link, link.agent
    stop([satellite], reactor)


def test_messages_are_posted_one_at_a_time_in_order(reactor, sender):
    """Each message is a notify(struct) with data, this node's host_id, id and hops; the next waits."""
    satellite, link, agent = sender
    for k in range(3):
        satellite.plugins[0].send({"k": k})
    reactor.advance(0)
    for k in range(3):
        assert len(agent.posted) == k + 1
        posted = agent.posted[k]
        assert (posted.method, posted.uri) == (b"POST", URL.encode())
        assert posted.headers.getRawHeaders(b"content-type") == [b"text/xml"]
        struct = posted.struct
        assert struct.pop("id") in satellite.relay.router.seen
        assert struct == {"data": {"k": k}, "host_id": satellite.host_id,
                          "hops": satellite.config.relay.max_hops - 1}
        reactor.advance(0)
        assert len(agent.posted) == k + 1  # nothing more until this one is answered
        posted.reply(True)
        reactor.advance(0)  # the next body is written on the reactor
    assert len({p.struct["id"] for p in agent.posted}) == 3
    assert len(link.outbox) == 0 and link.refused == 0


def test_an_unreachable_peer_gets_the_message_again_after_a_delay(reactor, sender):
    """A failed post keeps the message and tries again after the backoff, which a success resets."""
    satellite, _, agent = sender
    satellite.plugins[0].send("first")
    satellite.plugins[0].send("second")
    reactor.advance(0)
    agent.posted[0].answer.errback(ConnectionRefusedError())
    reactor.advance(1.99)
    assert len(agent.posted) == 1
    reactor.advance(0.01)
    assert len(agent.posted) == 2
    agent.posted[1].answer.callback(Response(500, b"busy"))
    reactor.advance(3.99)
    assert len(agent.posted) == 2
    reactor.advance(0.01)
    assert [p.struct["data"] for p in agent.posted] == ["first"] * 3
    assert len({p.struct["id"] for p in agent.posted}) == 1
    agent.posted[2].reply(True)
    reactor.advance(0)
    assert agent.posted[3].struct["data"] == "second"
    agent.posted[3].answer.errback(ConnectionRefusedError())
    reactor.advance(2.0)
    assert [p.struct["data"] for p in agent.posted[4:]] == ["second"]


def test_new_messages_wait_for_the_retry(reactor, sender):
    """While a retry is pending, new messages do not cause a post; they follow in order."""
    satellite, link, agent = sender
    satellite.plugins[0].send("a")
    reactor.advance(0)
    agent.posted[0].answer.errback(ConnectionRefusedError())
    satellite.plugins[0].send("b")
    reactor.advance(1)
    assert len(agent.posted) == 1
    reactor.advance(1)
    agent.posted[1].reply(True)
    reactor.advance(0)
    agent.posted[2].reply(True)
    assert [p.struct["data"] for p in agent.posted] == ["a", "a", "b"]
    assert len(link.outbox) == 0


def test_a_peer_that_is_stopping_gets_the_message_again_later(reactor, sender):
    """Fault -32003 (the peer is stopping) is not a refusal: the message is kept and posted again."""
    satellite, link, agent = sender
    satellite.plugins[0].send("wait for me")
    reactor.advance(0)
    agent.posted[0].fault(-32003)
    assert link.refused == 0 and len(link.outbox) == 1
    reactor.advance(2)
    assert agent.posted[1].struct["data"] == "wait for me"
    agent.posted[1].reply(True)
    assert len(link.outbox) == 0


def test_a_stopping_satellite_refuses_notify_for_now(reactor, build, stop):
    """Once a satellite stops taking messages, notify gets fault -32003 and no plugin gets the message."""
    satellite = build(reactor, 2, "rec")
    client = MemoryXMLRPCClient(make_server(satellite.dispatcher, 1 << 20, reactor),
                                client=("10.0.0.1", 40000))
    satellite.relay.router.turn.hold()
    results: list[Any] = []
    client.call("notify", {"data": "late", "host_id": "7@10.0.0.1:2004"}).addBoth(results.append)
    reactor.advance(0)
    assert results[0].value.faultCode == -32003
    assert satellite.plugins[0].got == []
    stop([satellite], reactor)


def test_a_fault_answer_drops_the_message(reactor, sender, logged):
    """A peer that answers with a fault refused the message for good: counted, logged, not sent again."""
    satellite, link, agent = sender
    satellite.plugins[0].send("unwanted")
    satellite.plugins[0].send("next")
    reactor.advance(0)
    agent.posted[0].fault(-32602)
    reactor.advance(0)
    assert link.refused == 1
    assert agent.posted[1].struct["data"] == "next"
    agent.posted[1].reply(True)
    reactor.advance(60)
    assert len(agent.posted) == 2 and len(link.outbox) == 0
    assert any("refused message" in str(e.get("log_format")) for e in logged)


def test_a_loopback_host_id_is_replaced_by_the_address_the_peer_sees(reactor, build, stop, monkeypatch):
    """
    A node whose host_id names loopback sends the address it reaches the peer from, looked up once, in the
    reactor's thread pool (getaddrinfo may block).
    """
    looked_up: list[str] = []

    def lookup(host: str) -> str:
        looked_up.append(host)
        return "10.0.0.77"

    monkeypatch.setattr("relay._classic.local_address_toward", lookup)
    in_pool: list[object] = []
    run_in_pool = reactor.pool.callInThreadWithCallback
    monkeypatch.setattr(reactor.pool, "callInThreadWithCallback",
                        lambda done, f, *args: in_pool.append(f) or run_in_pool(done, f, *args))
    satellite = build(reactor, 1, "rec", peers=(URL,))
    satellite.host_id = "5@127.0.0.1:2004"
    link = links_of(satellite).getServiceNamed(URL)
    link.agent = agent = FakeAgent()
    links_of(satellite).startService()
    satellite.plugins[0].send("x")
    reactor.advance(0)
    assert agent.posted == []  # the answer of the lookup comes back through callFromThread
    reactor.advance(0)
    assert agent.posted[0].struct["host_id"] == "5@10.0.0.77:2004"
    agent.posted[0].reply(True)
    satellite.plugins[0].send("y")
    reactor.advance(0)
    reactor.advance(0)
    assert agent.posted[1].struct["host_id"] == "5@10.0.0.77:2004"
    assert looked_up == ["10.0.0.2"] and in_pool == [lookup]  # the peer's host, once
    stop([satellite], reactor)


class ForwardingAgent:
    """An agent that posts to a satellite's site in memory; ``lose`` answers to drop on the way back."""

    def __init__(self, receiver: Satellite, client: tuple[str, int]) -> None:
        site = make_server(receiver.dispatcher, 1 << 20, receiver.reactor)
        self.client = MemoryXMLRPCClient(site, client=client)
        self.lose = 0
        self.posts = 0

    def request(self, method: bytes, uri: bytes, headers: Headers, body: Any) -> Deferred[Any]:
        collector = Collector()
        self.posts += 1
        d = body.startProducing(collector)
        d.addCallback(lambda _: self.client.post(b"".join(collector.parts), path=b"/"))
        return d.addCallback(self._answer)

    def _answer(self, response: HTTPResponse) -> Response:
        if self.lose:
            self.lose -= 1
            raise ConnectionRefusedError("the answer was lost")
        return Response(response.status, response.body)


def test_a_classic_peer_receives_each_message_once(reactor, build, stop):
    """Through a real notify the peer's plugins get each message once, even one sent again."""
    sending = build(reactor, 1, "rec", peers=(URL,))
    receiving = build(reactor, 2, "rec")
    link = links_of(sending).getServiceNamed(URL)
    link.agent = agent = ForwardingAgent(receiving, ("10.0.0.1", 41000))
    link.retry = retry
    links_of(sending).startService()
    links_of(receiving).startService()
    agent.lose = 1
    sending.plugins[0].send({"n": 1})
    sending.plugins[0].send({"n": 2})
    reactor.advance(0)
    reactor.advance(2)
    reactor.advance(0)
    assert agent.posts == 3
    got = receiving.plugins[0].got
    assert [m["data"] for m in got] == [{"n": 1}, {"n": 2}]
    assert got[0] == {"data": {"n": 1}, "host_id": sending.host_id, "client_address": ["10.0.0.1", 41000]}
    assert receiving.relay.router.counters.duplicates == 1
    assert len(link.outbox) == 0
    stop([sending, receiving], reactor)


def test_a_message_from_a_classic_peer_is_not_sent_back_to_it(reactor, build, stop):
    """notify from a node listed in peers is routed to the other links only."""
    receiving = build(reactor, 2, "rec", peers=("http://10.0.0.1:2004/",))
    receiving.relay.router.outbox("peer:elsewhere")
    client = MemoryXMLRPCClient(make_server(receiving.dispatcher, 1 << 20, reactor),
                                client=("10.0.0.1", 40000))
    client.call("notify", {"data": 1, "host_id": "7@10.0.0.1:2004", "id": "c.1", "hops": 3})
    reactor.advance(0)
    assert len(receiving.relay.router.outboxes["http://10.0.0.1:2004/"]) == 0
    assert len(receiving.relay.router.outboxes["peer:elsewhere"]) == 1
    stop([receiving], reactor)


# notify with id and hops

@pytest.fixture
def notify(reactor, build, stop) -> Any:
    """Call notify on satellite 2 from 10.0.0.1; returns (call, satellite)."""
    satellite = build(reactor, 2, "rec")
    satellite.relay.router.outbox("peer:next")
    client = MemoryXMLRPCClient(make_server(satellite.dispatcher, 1 << 20, reactor),
                                client=("10.0.0.1", 40000))

    def call(**struct: Any) -> Any:
        results: list[Any] = []
        client.call("notify", {"data": "d", "host_id": "7@10.0.0.1:2004", **struct}).addBoth(results.append)
        reactor.advance(0)
        if isinstance(results[0], Failure):
            results[0].raiseException()
        return results[0]

    yield call, satellite
    stop([satellite], reactor)


def owed_hops(satellite: Satellite) -> list[int]:
    """The hops of what the satellite queued for its next hop."""
    _, entries = satellite.relay.router.outboxes["peer:next"].take(1 << 30)
    return [decode_envelope(e.body).hops for e in entries]


def test_two_notifies_with_one_id_deliver_once(notify):
    """Both are accepted; the plugins and the next hop get the message once."""
    call, satellite = notify
    assert call(id="dup.1", data="one") is True
    assert call(id="dup.1", data="again") is True
    assert [m["data"] for m in satellite.plugins[0].got] == ["one"]
    assert len(owed_hops(satellite)) == 1


def test_plugins_do_not_see_id_and_hops(notify):
    """What a plugin receives holds data, host_id and client_address only."""
    call, satellite = notify
    call(id="x.1", hops=4, data={"id": "inner"})
    assert satellite.plugins[0].got == [
        {"data": {"id": "inner"}, "host_id": "7@10.0.0.1:2004", "client_address": ["10.0.0.1", 40000]}
    ]


def test_hops_limit_how_far_a_notified_message_goes(notify):
    """hops 0 stays here, hops n is queued with n - 1, none or too many with max_hops - 1."""
    call, satellite = notify
    call(id="h.0", hops=0)
    call(id="h.5", hops=5)
    call(id="h.none")
    call(id="h.huge", hops=2**31 - 1)
    top = satellite.config.relay.max_hops - 1
    assert owed_hops(satellite) == [4, top, top]
    assert len(satellite.plugins[0].got) == 4


def test_notify_without_an_id_gets_a_new_one_each_time(notify):
    """Two notifies without id are two messages."""
    call, satellite = notify
    call(data="same")
    call(data="same")
    assert [m["data"] for m in satellite.plugins[0].got] == ["same", "same"]


@pytest.mark.parametrize(
    "routing",
    [{"id": 5}, {"id": ""}, {"id": ["x"]}, {"hops": -1}, {"hops": "3"}, {"hops": True}, {"hops": 1.5}],
)
def test_bad_id_or_hops_is_invalid_params(notify, routing):
    """An id that is not a non-empty string or hops that is not an int >= 0 is fault -32602."""
    call, satellite = notify
    with pytest.raises(Fault) as e:
        call(**routing)
    assert e.value.faultCode == faults.INVALID_PARAMS
    assert satellite.plugins[0].got == []


def refuse_each(reactor: Any, satellite: Satellite, agent: FakeAgent, count: int) -> None:
    """Send ``count`` messages; the peer refuses each with fault -32602."""
    for n in range(count):
        satellite.plugins[0].send(n)
    reactor.advance(0)
    for n in range(count):
        agent.posted[n].fault(-32602)
        reactor.advance(0)


def refusal_lines(logged: list[dict[str, Any]]) -> list[str]:
    return [line for line in map(formatEvent, logged) if URL in line and "refused" in line]


def test_a_flood_of_refused_messages_is_logged_a_few_at_a_time(reactor, sender, logged):
    """Fifty refusals: LINES lines as they come, then one line counting the others when 10 s end."""
    satellite, link, agent = sender
    refuse_each(reactor, satellite, agent, 50)
    assert link.refused == 50
    assert len(refusal_lines(logged)) == LINES
    reactor.advance(10)
    lines = refusal_lines(logged)
    assert len(lines) == LINES + 1
    assert lines[-1] == (
        f"messages refused: {50 - LINES} more within 10s not logged one by one; "
        f"the last: link {URL} refused message {agent.posted[49].struct['id']}: -32602 no thanks"
    )


def test_a_flood_of_failed_posts_is_logged_a_few_at_a_time(reactor, sender, logged):
    """A peer that answers HTTP 503 to post after post, retried every 0.1 s: LINES lines, then a count."""
    satellite, link, agent = sender
    link.retry = lambda failures: 0.1
    satellite.plugins[0].send("again and again")
    reactor.advance(0)
    for n in range(30):
        agent.posted[n].answer.callback(Response(503, b"busy"))
        reactor.advance(0.1)
    assert len(agent.posted) == 31

    def lines() -> list[str]:
        return [line for line in map(formatEvent, logged) if "HTTP 503" in line]

    assert len(lines()) == LINES
    reactor.advance(10)
    assert lines()[LINES:] == [
        f"HTTP errors: {30 - LINES} more within 10s not logged one by one; "
        f"the last: link {URL} answered HTTP 503, will retry"
    ]


def test_stopping_the_link_logs_the_count_and_leaves_no_timer(reactor, sender, logged):
    """A classic link that stops logs what its log counted at once; none of its timers is left."""
    satellite, link, agent = sender
    refuse_each(reactor, satellite, agent, LINES + 4)
    links_of(satellite).stopService()
    assert refusal_lines(logged)[-1].startswith("messages refused: 4 more within 10s")
    assert len(link.limited) == 0  # no window open, so no timer


@pytest.mark.parametrize(
    ("host", "replaced"),
    [("127.0.0.1", True), ("127.0.0.3", True), ("::1", True), ("0.0.0.0", True), ("::", True),
     ("10.0.0.7", False), ("192.0.2.1", False), ("relay.example", False)],
)
def test_a_host_id_on_any_loopback_or_every_interface_is_rewritten_for_the_peer(host, replaced):
    """A node on 127.0.0.3 connects out from 127.0.0.1: its host_id must name what the peer sees."""
    from relay._classic import _not_seen_by_peers

    assert _not_seen_by_peers(host) is replaced
