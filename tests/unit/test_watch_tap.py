"""The router's tap and ``co2.watch``: the bounded buffer, cursors, missed counts and long polls."""

from __future__ import annotations

from xmlrpc.client import Fault

import pytest
from twisted.internet.task import Clock

from co2 import faults
from co2._message import encode_message
from co2.testing import write_package
from relay._router import LOCAL, Router
from relay._watch import MAX_ANSWER, MAX_WAIT, Tap

HOST_ID = "7@127.0.0.1:2004"


def body(data: object) -> bytes:
    return encode_message({"data": data, "host_id": HOST_ID})


def fill(tap: Tap, count: int, start: int = 0, turns: bool = True) -> None:
    """Record data ``start`` .. ``start + count - 1``: each in its turn, or all in one."""
    for i in range(start, start + count):
        tap.record(f"m.{i}", 16, body(i), LOCAL)
        if turns:
            tap.end_turn()
    tap.end_turn()


def datas(answer: dict) -> list:
    return [message["data"] for message in answer["messages"]]


def test_recorded_messages_are_shown_decoded_with_their_routing():
    """A message comes back with its sequence number, id, hops, source, host_id and data."""
    tap = Tap(Clock())
    tap.record("abc.1", 5, encode_message({"data": [1, b"x"], "host_id": HOST_ID, "tag": "t"}), "node:ff")
    assert tap.watch(0, 0)["messages"] == []  # kept as the turn ends
    tap.end_turn()
    answer = tap.watch(0, 0)
    assert answer == {
        "messages": [{
            "seq": 1, "id": "abc.1", "hops": 5, "source": "node:ff", "host_id": HOST_ID,
            "data": [1, b"x"], "extra": {"tag": "t"},
        }],
        "next": 1,
        "missed": 0,
    }


def test_cursor_gives_only_what_came_after_it():
    """Passing back ``next`` gives the messages recorded since, and nothing twice."""
    tap = Tap(Clock())
    fill(tap, 3)
    first = tap.watch(0, 0)
    assert datas(first) == [0, 1, 2]
    fill(tap, 2, start=3)
    second = tap.watch(first["next"], 0)
    assert datas(second) == [3, 4]
    assert second["next"] == 5
    assert tap.watch(second["next"], 0) == {"messages": [], "next": 5, "missed": 0}


def test_cursor_may_be_a_decimal_string():
    """A cursor beyond 32 bits can be given as its decimal string."""
    tap = Tap(Clock())
    fill(tap, 2)
    assert datas(tap.watch("1", 0)) == [1]


def test_buffer_is_bounded_by_count_and_a_late_watcher_is_told_what_it_missed():
    """Past ``size`` messages the oldest go; a cursor behind them gets the missed count."""
    tap = Tap(Clock(), size=10)
    fill(tap, 25)
    assert len(tap) == 10
    assert tap.first == 16
    answer = tap.watch(3, 0)
    assert answer["missed"] == 12
    assert datas(answer) == list(range(15, 25))
    assert tap.watch(0, 0)["missed"] == 15


def test_buffer_is_bounded_by_bytes():
    """The bodies held never exceed ``max_bytes``; a huge message pushes the others out."""
    tap = Tap(Clock(), size=1000, max_bytes=10_000)
    for i in range(100):
        tap.record(f"m.{i}", 1, body("x" * 500), LOCAL)
        tap.end_turn()
    assert 0 < len(tap) <= 20
    tap.record("big", 1, body("y" * 50_000), LOCAL)
    tap.end_turn()
    assert len(tap) == 0  # even the big one: held bytes stay bounded
    assert tap.watch(0, 0)["missed"] == 101


def test_a_turn_over_the_bounds_keeps_its_last_messages():
    """One turn of more than ``size`` messages keeps its last ``size``, and nothing older."""
    tap = Tap(Clock(), size=10)
    fill(tap, 5)
    fill(tap, 25, start=5, turns=False)
    assert len(tap) == 10
    answer = tap.watch(0, 0)
    assert datas(answer) == list(range(20, 30))
    assert answer["missed"] == 20


def test_turns_of_many_messages_hold_between_size_and_twice_size():
    """Whole turns are dropped, the oldest first: at least ``size`` are held, under twice that."""
    tap = Tap(Clock(), size=10)
    for turn in range(20):
        fill(tap, 6, start=turn * 6, turns=False)
        assert min(tap.last, 10) <= len(tap) < 20
    answer = tap.watch(0, 0)
    assert datas(answer) == list(range(120 - len(tap), 120))
    assert answer["missed"] == 120 - len(tap)
    assert datas(tap.watch(110, 0)) == list(range(110, 120))


def test_no_unbounded_growth_over_many_messages():
    """A million-message stream leaves the buffer at its size."""
    tap = Tap(Clock(), size=100)
    message = body(0)
    for i in range(100_000):
        tap.record("m", 1, message, LOCAL)
        if i % 7 == 0:
            tap.end_turn()
    tap.end_turn()
    assert 100 <= len(tap) < 200
    assert tap.last == 100_000


def test_one_answer_holds_at_most_max_answer_messages():
    """A watcher far behind gets MAX_ANSWER messages, then the rest at its next call."""
    tap = Tap(Clock(), size=MAX_ANSWER * 2)
    fill(tap, MAX_ANSWER + 5)
    first = tap.watch(0, 0)
    assert len(first["messages"]) == MAX_ANSWER
    assert len(tap.watch(first["next"], 0)["messages"]) == 5


def test_long_poll_waits_for_the_next_message():
    """With nothing new, the answer waits; the next message answers it, at the end of the turn."""
    clock = Clock()
    tap = Tap(clock)
    d = tap.watch(-1, 10)
    assert not d.called
    clock.advance(3)
    assert not d.called
    tap.record("m.0", 16, body(0), LOCAL)
    tap.record("m.1", 16, body(1), LOCAL)
    assert not d.called  # answered as the turn ends, with all of it
    tap.end_turn()
    answer = d.result
    assert datas(answer) == [0, 1]
    assert answer["next"] == 2
    assert not clock.getDelayedCalls()


def test_long_poll_times_out_with_no_messages():
    """No message within the timeout: an empty answer with the same cursor."""
    clock = Clock()
    tap = Tap(clock)
    fill(tap, 4)
    d = tap.watch(4, 2.5)
    clock.advance(2.4)
    assert not d.called
    clock.advance(0.1)
    assert d.result == {"messages": [], "next": 4, "missed": 0}
    assert not clock.getDelayedCalls()


def test_from_now_skips_what_is_held():
    """Cursor -1 waits for messages recorded after the call, not before."""
    clock = Clock()
    tap = Tap(clock)
    fill(tap, 5)
    d = tap.watch(-1, 5)
    fill(tap, 1, start=5)
    assert datas(d.result) == [5]


def test_wait_is_bounded_by_max_wait():
    """A timeout above max_wait waits max_wait."""
    clock = Clock()
    tap = Tap(clock, max_wait=4)
    d = tap.watch(-1, 1000)
    clock.advance(4)
    assert d.called
    assert Tap(Clock()).max_wait == MAX_WAIT


def test_cursor_from_before_a_restart_starts_over():
    """A cursor beyond the last message (the node restarted) reads from the start."""
    tap = Tap(Clock())
    fill(tap, 3)
    assert datas(tap.watch(500, 0)) == [0, 1, 2]


def test_close_answers_every_waiter():
    """Stopping the node answers the waiting watchers at once and leaves no timer."""
    clock = Clock()
    tap = Tap(clock)
    waiting = [tap.watch(-1, 20) for _ in range(3)]
    tap.close()
    assert all(d.called for d in waiting)
    assert not clock.getDelayedCalls()


@pytest.mark.parametrize("after, timeout", [(1.5, 1), (None, 1), (True, 1), (0, "soon"), (0, True)])
def test_bad_arguments_are_refused(after, timeout):
    """A cursor that is not an int (or decimal string), or a timeout that is not a number, is fault -32602."""
    with pytest.raises(Fault) as e:
        Tap(Clock()).watch(after, timeout)
    assert e.value.faultCode == faults.INVALID_PARAMS


def test_router_records_what_it_takes_once():
    """The router records each new message it takes; a duplicate is not recorded again."""
    clock = Clock()
    router = Router(clock, lambda messages: None)
    router.send(body("a"), ["127.0.0.1", 2004])
    router.route("x.1", 3, body("b"), "node:aa", ["127.0.0.2", 1])
    router.route("x.1", 3, body("b"), "node:bb", ["127.0.0.3", 1])
    assert router.tap.watch(0, 0)["messages"] == []  # kept as the turn ends
    clock.advance(0)
    answer = router.tap.watch(0, 0)
    assert [(m["data"], m["source"], m["hops"]) for m in answer["messages"]] == [
        ("a", LOCAL, 16), ("b", "node:aa", 3),
    ]
    router.close()


def test_router_records_nothing_a_relay_plugin_drops():
    """A message dropped by a relay plugin did not pass through the node."""

    class DropAll:
        name = "drop_all"

        def inspect(self, message, source):
            return None

    from zope.interface import directlyProvides

    from relay._plugins import IRelayPlugin

    plugin = DropAll()
    directlyProvides(plugin, IRelayPlugin)
    router = Router(Clock(), lambda messages: None, plugins=[plugin])
    router.route("x.1", 3, body("b"), "node:aa", ["127.0.0.2", 1])
    router.turn.flush()
    assert len(router.tap) == 0 and router.tap.last == 0


WATCHED = '''
from co2 import Co2Plugin

class X_Talker(Co2Plugin):
    def x_say(self, data):
        self.send(data)
        return True
'''


@pytest.fixture
def talker(make_node, plugin_dir):
    write_package(plugin_dir, "talk", {"talker": WATCHED})
    return make_node("talk")


def test_co2_watch_is_a_listed_documented_method(talker):
    """co2.watch is in system.listMethods, with help."""
    assert "co2.watch" in talker.call("system.listMethods")
    assert "cursor" in talker.call("system.methodHelp", "co2.watch")


def test_co2_watch_long_polls_over_xmlrpc(talker):
    """A co2.watch call waiting over XML-RPC is answered by the next message a plugin sends."""
    d = talker.client.call("co2.watch", -1, 5)
    talker.reactor.advance(0)
    assert not d.called
    assert talker.call("talk.talker.say", {"n": 1}) is True
    talker.reactor.advance(0)
    answer = d.result
    assert [m["data"] for m in answer["messages"]] == [{"n": 1}]
    assert answer["messages"][0]["source"] == LOCAL
    assert answer["next"] == 1


def test_co2_watch_refuses_bad_params(talker):
    """A cursor of the wrong type, or too many arguments, is fault -32602."""
    for params in ([[1], 1], ["x"], [0, 1, 2]):
        with pytest.raises(Fault) as e:
            talker.call("co2.watch", *params)
        assert e.value.faultCode == faults.INVALID_PARAMS


def test_co2_watch_waits_less_than_call_timeout(make_node):
    """The wait is bounded under call_timeout, so the node answers rather than timing out."""
    node = make_node(call_timeout=2.0)
    d = node.client.call("co2.watch", -1, 30)
    node.reactor.advance(1.9)
    assert d.called
    assert d.result["messages"] == []
