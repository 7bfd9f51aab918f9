"""
Failed logins: the rate-limited refusal log reports a burst's size when
its window ends, and a source that keeps failing is refused unchecked
for a while, at both doors (the API the HTTP front end calls, and Hello).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from doubles import MemoryNetwork
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.logger import formatEvent
from twisted.protocols import amp
from twisted.python.failure import Failure

from co2._auth import (
    FAILURES_ALLOWED,
    LOCAL_SOURCE,
    MAX_SOURCES,
    REPORT_EVERY,
    THROTTLE_WINDOW,
    Authentication,
    LoginThrottled,
    login_source,
)
from co2.protocol import PROTOCOL_VERSION, Announce, Hello, Unauthorized
from co2.testing import TestReactor
from relay import Relay
from satellites import make_config

XMLRPC = "the XML-RPC listener"
AMP = "the AMP listener"


@pytest.fixture
def log(logged: list[dict[str, Any]]) -> Any:
    """``log(text)``: the lines co2 logged so far during the test that contain ``text``."""
    return lambda text: co2_lines(logged, text)


def co2_lines(events: list[dict[str, Any]], text: str) -> list[str]:
    """The lines of ``events`` logged by co2 (not by Twisted) that contain ``text``."""
    ours = [e for e in events if str(e.get("log_namespace", "")).startswith("co2.")]
    return [line for line in map(formatEvent, ours) if text in line]


def outcome(d: Deferred[Any]) -> Any:
    """What ``d`` fired with already (a Failure if it failed)."""
    results: list[Any] = []
    d.addBoth(results.append)
    assert results, "the Deferred has not fired"
    return results[0]


def burst(auth: Authentication, count: int, where: str = XMLRPC) -> None:
    for _ in range(count):
        auth.refuse(where, "10.0.0.9:4000", "mallory", "wrong user name or password")


# A: the refusal log


def test_a_burst_then_silence_logs_its_count_when_the_window_ends(log: Any) -> None:
    """Twenty refusals then nothing: five lines at once, the other fifteen counted at the window's end."""
    clock = Clock()
    auth = Authentication(["memory:a:b"], ["*"], clock)
    burst(auth, 20)
    assert len(log("refused 10.0.0.9:4000")) == 5
    clock.advance(REPORT_EVERY - 0.5)
    assert log("more refusal") == []
    clock.advance(0.5)
    assert log("more refusal") == [
        f"{XMLRPC}: 15 more refusal(s) within {REPORT_EVERY:g}s not logged one by one"
    ]
    assert clock.getDelayedCalls() == []


def test_a_small_burst_sets_no_timer(log: Any) -> None:
    """Refusals all logged one by one leave nothing to count, and no DelayedCall."""
    clock = Clock()
    auth = Authentication(["memory:a:b"], ["*"], clock)
    burst(auth, 5)
    assert clock.getDelayedCalls() == []
    clock.advance(REPORT_EVERY)
    assert len(log("refused")) == 5 and log("more refusal") == []


def test_the_count_names_each_listener(log: Any) -> None:
    """Each listener has its own few lines per window, and its own count of the others."""
    clock = Clock()
    auth = Authentication(["memory:a:b"], ["*"], clock)
    burst(auth, 6)
    burst(auth, 8, AMP)
    assert len(log(f"{XMLRPC}: refused")) == len(log(f"{AMP}: refused")) == 5
    clock.advance(REPORT_EVERY)
    assert sorted(log("more refusal")) == [
        f"{AMP}: 3 more refusal(s) within {REPORT_EVERY:g}s not logged one by one",
        f"{XMLRPC}: 1 more refusal(s) within {REPORT_EVERY:g}s not logged one by one",
    ]
    assert auth.refused == 14


def test_close_logs_the_count_at_once_and_leaves_no_timer(log: Any) -> None:
    """A node that stops closes its Authentication: the refusals held back are counted now, no timer left."""
    clock = Clock()
    auth = Authentication(["memory:a:b"], ["*"], clock)
    burst(auth, 12)
    auth.close()
    assert log("more refusal") == [
        f"{XMLRPC}: 7 more refusal(s) within {REPORT_EVERY:g}s not logged one by one"
    ]
    assert clock.getDelayedCalls() == []


def test_each_window_reports_its_own_count_once(log: Any) -> None:
    """A second burst after the first window is logged afresh; each count is logged once."""
    clock = Clock()
    auth = Authentication(["memory:a:b"], ["*"], clock)
    burst(auth, 8)
    clock.advance(REPORT_EVERY)
    burst(auth, 9)
    assert len(log("refused 10.0.0.9:4000")) == 10
    clock.advance(REPORT_EVERY)
    clock.advance(REPORT_EVERY)
    assert log("more refusal") == [
        f"{XMLRPC}: {count} more refusal(s) within {REPORT_EVERY:g}s not logged one by one"
        for count in (3, 4)
    ]
    assert clock.getDelayedCalls() == []


# B: the throttle, on Authentication


class CountingChecker:
    """A checker that counts the credentials it is asked about, and asks ``real``."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.asked = 0
        self.credentialInterfaces = real.credentialInterfaces

    def requestAvatarId(self, given: Any) -> Deferred[Any]:
        self.asked += 1
        d: Deferred[Any] = self.real.requestAvatarId(given)
        return d


def guarded() -> tuple[Authentication, Clock, CountingChecker]:
    clock = Clock()
    auth = Authentication(["memory:alice:secret"], ["*"], clock)
    counting = CountingChecker(auth.checker)
    auth.checker = counting  # type: ignore[assignment]
    return auth, clock, counting


def fail_from(auth: Authentication, source: str, times: int = FAILURES_ALLOWED) -> None:
    for n in range(times):
        assert outcome(auth.check("alice", f"guess{n}", source=source)).check(UnauthorizedLogin)


def test_a_source_is_throttled_after_its_allowed_failures() -> None:
    """After FAILURES_ALLOWED wrong passwords, even the right one is refused from that source, unchecked."""
    auth, _, counting = guarded()
    fail_from(auth, "192.0.2.66", FAILURES_ALLOWED - 1)
    assert not auth.throttled("192.0.2.66")
    fail_from(auth, "192.0.2.66", 1)
    assert auth.throttled("192.0.2.66")
    failure = outcome(auth.check("alice", "secret", source="192.0.2.66"))
    assert failure.check(LoginThrottled) and failure.check(UnauthorizedLogin)
    assert failure.getErrorMessage() == (
        f"too many failed logins from 192.0.2.66 ({FAILURES_ALLOWED} within {THROTTLE_WINDOW:g}s); "
        f"try again in {THROTTLE_WINDOW:g}s"
    )
    assert failure.value.source == "192.0.2.66" and failure.value.retry_after == THROTTLE_WINDOW
    assert counting.asked == FAILURES_ALLOWED


def test_check_refuses_a_throttled_source_at_once() -> None:
    """check answers a throttled source with a Deferred that has already failed with LoginThrottled."""
    auth, clock, _ = guarded()
    fail_from(auth, "192.0.2.66")
    clock.advance(4)
    refused = outcome(auth.check("alice", "secret", source="192.0.2.66"))
    assert isinstance(refused, Failure) and refused.check(LoginThrottled)
    assert refused.value.retry_after == THROTTLE_WINDOW - 4
    assert refused.getErrorMessage().endswith("try again in 6s")


def test_the_throttle_ends_when_the_window_passes() -> None:
    """THROTTLE_WINDOW seconds after its first failure, a source is checked again."""
    auth, clock, _ = guarded()
    fail_from(auth, "192.0.2.66")
    clock.advance(THROTTLE_WINDOW - 0.5)
    assert auth.throttled("192.0.2.66") and auth.retry_after("192.0.2.66") == 0.5
    clock.advance(0.5)
    assert not auth.throttled("192.0.2.66") and auth.retry_after("192.0.2.66") == 0
    assert outcome(auth.check("alice", "secret", source="192.0.2.66")) == "alice"


def test_a_success_resets_nothing() -> None:
    """A right password, from this source or another, does not wipe a source's failures."""
    auth, _, _ = guarded()
    fail_from(auth, "192.0.2.66", FAILURES_ALLOWED - 1)
    assert outcome(auth.check("alice", "secret", source="192.0.2.66")) == "alice"
    assert outcome(auth.check("alice", "secret", source="192.0.2.7")) == "alice"
    fail_from(auth, "192.0.2.66", 1)
    assert auth.throttled("192.0.2.66")


def test_other_sources_are_not_throttled() -> None:
    """One source's failures keep out that source only."""
    auth, _, _ = guarded()
    fail_from(auth, "192.0.2.66")
    assert not auth.throttled("192.0.2.7")
    assert outcome(auth.check("alice", "secret", source="192.0.2.7")) == "alice"


def test_checks_without_a_source_are_neither_counted_nor_throttled() -> None:
    """check() without a source behaves as before: each attempt is checked."""
    auth, _, counting = guarded()
    for n in range(3 * FAILURES_ALLOWED):
        assert outcome(auth.check("alice", f"guess{n}")).check(UnauthorizedLogin)
    assert outcome(auth.check("alice", "secret")) == "alice"
    assert counting.asked == 3 * FAILURES_ALLOWED + 1 and len(auth.throttle) == 0


def test_failures_answered_later_are_counted_too() -> None:
    """A checker that answers with a pending Deferred still counts the failure when it fires."""
    auth, _, _ = guarded()
    pending: list[Deferred[Any]] = []

    class Later:
        credentialInterfaces = auth.checker.credentialInterfaces

        def requestAvatarId(self, given: Any) -> Deferred[Any]:
            d: Deferred[Any] = Deferred()
            pending.append(d)
            return d

    auth.checker = Later()  # type: ignore[assignment]
    answers = [auth.check("alice", f"guess{n}", source="192.0.2.66") for n in range(FAILURES_ALLOWED)]
    assert not any(answer.called for answer in answers)
    assert not auth.throttled("192.0.2.66")
    for d, answer in zip(pending, answers, strict=True):
        answer.addErrback(lambda f: f.trap(UnauthorizedLogin))
        d.errback(UnauthorizedLogin())
    assert auth.throttled("192.0.2.66")


def test_a_checker_error_is_not_a_failed_login() -> None:
    """Only a wrong user name or password counts; a checker that breaks does not throttle anyone."""
    auth, _, _ = guarded()

    class Broken:
        credentialInterfaces = auth.checker.credentialInterfaces

        def requestAvatarId(self, given: Any) -> Deferred[Any]:
            return succeed(None).addCallback(lambda _: 1 / 0)

    auth.checker = Broken()  # type: ignore[assignment]
    for _ in range(FAILURES_ALLOWED):
        assert outcome(auth.check("alice", "x", source="192.0.2.66")).check(ZeroDivisionError)
    assert not auth.throttled("192.0.2.66")


def test_unix_socket_clients_are_one_source() -> None:
    """A client with no IP (a UNIX socket) is the source "local"; others are their IP."""
    assert login_source(None) == login_source("") == LOCAL_SOURCE == "local"
    assert login_source("192.0.2.66") == "192.0.2.66"
    assert login_source("::1") == "::1"


def test_tracked_sources_expire_with_their_window() -> None:
    """Entries whose window has passed are forgotten as new failures arrive."""
    auth, clock, _ = guarded()
    for n in range(100):
        auth.record_failure(f"10.1.0.{n}")
    assert len(auth.throttle) == 100
    clock.advance(THROTTLE_WINDOW)
    auth.record_failure("10.2.0.1")
    assert len(auth.throttle) == 1


def test_at_most_max_sources_are_tracked_the_oldest_dropped() -> None:
    """Past MAX_SOURCES sources the oldest entry is dropped: memory stays bounded."""
    auth, clock, _ = guarded()
    fail_from(auth, "192.0.2.66")
    clock.advance(1)
    for n in range(MAX_SOURCES - 1):
        auth.record_failure(f"s{n}")
    assert len(auth.throttle) == MAX_SOURCES and auth.throttled("192.0.2.66")
    auth.record_failure("one-more")
    assert len(auth.throttle) == MAX_SOURCES and not auth.throttled("192.0.2.66")


# B: the throttle, on AMP links


@pytest.fixture
def hub() -> Iterator[tuple[MemoryNetwork, Relay]]:
    """A standalone relay "hub" requiring alice's password, on an in-memory network."""
    reactor = TestReactor()
    network = MemoryNetwork(reactor)
    relay = Relay(make_config({"auth": ("memory:alice:secret",)}), reactor, lambda *args: None)
    network.add("hub", relay, ("10.0.0.1", 2005))
    yield network, relay
    relay.close()
    reactor.advance(60)


class Peer(amp.AMP):
    """A bare AMP peer that takes the hub's announcements and does nothing else."""

    @Announce.responder
    def announced(self, **arguments: Any) -> dict[str, Any]:
        return {}


def hello(network: MemoryNetwork, source: tuple[str, int], password: str, node: str = "n66") -> Any:
    """Say Hello to the hub from ``source`` as user alice; what the answer was (a Failure if refused)."""
    client = Peer()
    network.connect(client, "hub", source)
    answers: list[Any] = []
    client.callRemote(Hello, node=node, host_id=f"1@{source[0]}:2004", version=PROTOCOL_VERSION,
                      username="alice", password=password).addBoth(answers.append)
    network.settle()
    return answers[0]


def test_a_hello_from_a_throttled_source_is_unauthorized_with_the_reason(hub: Any) -> None:
    """After FAILURES_ALLOWED wrong Hellos, the right password from that IP is refused: too many failures."""
    network, relay = hub
    for n in range(FAILURES_ALLOWED):
        answer = hello(network, ("192.0.2.66", 5000 + n), "wrong")
        assert answer.check(Unauthorized) and answer.getErrorMessage() == "wrong user name or password"
    answer = hello(network, ("192.0.2.66", 6000), "secret")
    assert answer.check(Unauthorized)
    assert answer.getErrorMessage() == (
        f"too many failed logins from 192.0.2.66 ({FAILURES_ALLOWED} within {THROTTLE_WINDOW:g}s); "
        f"try again in {THROTTLE_WINDOW:g}s"
    )
    assert relay.links == {}
    assert not isinstance(hello(network, ("192.0.2.7", 5000), "secret"), Failure)
    assert list(relay.links) == ["node:n66"]


def test_the_throttle_on_hello_ends_with_its_window(hub: Any) -> None:
    """A throttled IP may say Hello again once THROTTLE_WINDOW has passed."""
    network, relay = hub
    for n in range(FAILURES_ALLOWED):
        hello(network, ("192.0.2.66", 5000 + n), "wrong")
    network.reactor.advance(THROTTLE_WINDOW)
    assert not isinstance(hello(network, ("192.0.2.66", 6000), "secret"), Failure)
    assert list(relay.links) == ["node:n66"]


def test_refused_hellos_are_logged_through_the_rate_limited_log(hub: Any, log: Any) -> None:
    """Wrong and throttled Hellos give five lines, then a count: no line per attempt."""
    network, _ = hub
    for n in range(3 * FAILURES_ALLOWED):
        hello(network, ("192.0.2.66", 5000 + n), "wrong")
    assert len(log("192.0.2.66")) == 5
    assert len(log("too many failed logins")) == 0  # held back: the five lines are the first five
    network.reactor.advance(REPORT_EVERY)
    assert log("more refusal") == [
        f"{AMP}: {3 * FAILURES_ALLOWED - 5} more refusal(s) within {REPORT_EVERY:g}s not logged one by one"
    ]
