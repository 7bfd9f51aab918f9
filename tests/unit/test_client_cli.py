"""The ``co2`` client command, without sockets: its command line, JSON both ways, errors and watch loop."""

from __future__ import annotations

import datetime
import io
import json
import xmlrpc.client
from typing import Any

import pytest

from co2 import _client
from co2._client import Client, ClientError, UsageError, from_json, parse_args, render, watch


def usage_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exit_:
        parse_args(argv)
    assert exit_.value.code == 2
    return capsys.readouterr().err


def test_call_arguments_are_read_as_json():
    """Each ARG of call is a JSON value, in order."""
    args = parse_args(["call", "http://127.0.0.1:2004/", "a.b.c", "1", '"two"', "[3, null]", '{"k": true}'])
    assert (args.command, args["method"]) == ("call", "a.b.c")
    assert args["params"] == (1, "two", [3, None], {"k": True})


def test_a_bare_word_is_a_usage_error_naming_the_argument_and_the_quoting(capsys):
    """A word that is not JSON exits 2, naming the argument and how to quote it."""
    err = usage_error(capsys, ["call", "http://h:1/", "ham.spam.call_me", "1", "world"])
    assert "argument 2 of ham.spam.call_me is not JSON: 'world'" in err
    assert """'"world"'""" in err
    assert "usage: co2 call" in err


def test_notify_data_is_json(capsys):
    """notify takes one JSON value; a bad one exits 2."""
    assert parse_args(["notify", "http://h:1/", '{"a": [1, 2]}'])["value"] == {"a": [1, 2]}
    assert "the message's data is not JSON" in usage_error(capsys, ["notify", "http://h:1/", "{a}"])


def test_watch_options():
    """watch takes --count, --seconds and --backlog."""
    args = parse_args(["watch", "http://h:1/", "--count", "3", "--seconds", "2.5", "--backlog"])
    assert (args["count"], args["seconds"], args["backlog"]) == (3, 2.5, True)
    assert parse_args(["watch", "http://h:1/"])["count"] is None


@pytest.mark.parametrize("argv", [
    ["watch", "http://h:1/", "--count", "0"],
    ["watch", "http://h:1/", "--seconds", "-1"],
    ["call", "http://h:1/"],
    ["methods", "ftp://h/"],
    ["methods", "http://h:99999/"],
    ["frobnicate", "http://h:1/"],
    [],
])
def test_bad_usage_exits_2(capsys, argv):
    """A bad command line exits 2 with a usage line, then one line saying what is wrong."""
    usage_line, message = usage_error(capsys, argv).splitlines()
    assert usage_line.startswith("usage: co2 ")
    assert message.startswith("co2: ")


def test_url_without_scheme_is_http():
    """host:port alone means http://host:port."""
    assert parse_args(["methods", "127.0.0.1:2004"])["url"] == "http://127.0.0.1:2004"


def test_markers_stand_for_binary_and_datetime():
    """{"$base64": ...} is binary data and {"$datetime": ...} a dateTime; other structs stay structs."""
    assert from_json({"$base64": "aGk="}) == b"hi"
    assert from_json([{"$datetime": "2024-01-02T03:04:05"}]) == [datetime.datetime(2024, 1, 2, 3, 4, 5)]
    assert from_json({"$base64": "aGk=", "other": 1}) == {"$base64": "aGk=", "other": 1}
    for bad in ({"$base64": "!!"}, {"$datetime": "yesterday"}, float("nan")):
        with pytest.raises(ValueError):
            from_json(bad)


def test_render_is_sorted_pretty_json_with_markers():
    """Results print as indented JSON, keys sorted, binary as $base64 and dateTime as ISO text."""
    value = {"b": b"hi", "a": datetime.datetime(2024, 1, 2, 3, 4, 5), "c": [1, None, 2.5, "é"]}
    text = render(value)
    assert text.splitlines()[0] == "{"
    assert json.loads(text) == {
        "a": "2024-01-02T03:04:05", "b": {"$base64": "aGk="}, "c": [1, None, 2.5, "é"],
    }
    assert list(json.loads(text)) == ["a", "b", "c"]
    assert render({"z": 1, "y": xmlrpc.client.Binary(b"x")}, pretty=False) == '{"y":{"$base64":"eA=="},"z":1}'
    assert render(xmlrpc.client.DateTime("20240102T03:04:05")) == '"2024-01-02T03:04:05"'


def test_big_ints_are_sent_as_i8():
    """Ints beyond 32 bits go as <i8> (which co2 reads); beyond 64 bits they are refused."""
    body = _client._request_body("m", (5, 2**40))
    assert b"<int>5</int>" in body and b"<i8>1099511627776</i8>" in body
    assert xmlrpc.client.loads(body, use_builtin_types=True) == ((5, 2**40), "m")
    with pytest.raises(UsageError):
        Client("http://127.0.0.1:1/").call("m", 2**70)


def test_password_is_hidden_in_messages():
    """A URL shown in a message has its password replaced."""
    assert _client.shown_url("http://al:s3cret@h:1/") == "http://al:***@h:1/"
    assert _client.shown_url("http://h:1/") == "http://h:1/"


@pytest.mark.parametrize("url, error, expected", [
    ("http://h:1/", ConnectionRefusedError(111, "Connection refused"),
     "cannot reach http://h:1/: Connection refused"),
    ("http://h:1/", TimeoutError("timed out"), "no answer from http://h:1/ within 30s"),
    ("http://h:1/", xmlrpc.client.ProtocolError("h:1/", 401, "Unauthorized", {}),
     "http://h:1/ needs credentials (HTTP 401): give them in the URL, as http://USER:PASSWORD@h:1/"),
    ("http://a:b@h:1/", xmlrpc.client.ProtocolError("h:1/", 401, "Unauthorized", {}),
     "http://a:***@h:1/ refused the credentials given (HTTP 401)"),
    ("http://h:1/", xmlrpc.client.ProtocolError("h:1/", 404, "Not Found", {}),
     "http://h:1/ answered HTTP 404 Not Found"),
    ("http://h:1/", xmlrpc.client.ResponseError("bad"), "http://h:1/ did not answer in XML-RPC: bad"),
])
def test_failures_become_one_line(url, error, expected):
    """Each failure of a call becomes a ClientError with one readable line."""
    client = Client(url)
    with pytest.raises(ClientError) as e, client._errors():
        raise error
    assert str(e.value) == expected


def test_faults_pass_through_as_faults():
    """A fault is not translated: main prints its code and string."""
    with pytest.raises(xmlrpc.client.Fault), Client("http://h:1/")._errors():
        raise xmlrpc.client.Fault(-32601, "no method 'x' here")


@pytest.mark.parametrize("raised, status, line", [
    (xmlrpc.client.Fault(-32601, "no method 'x' here"), 1, "co2: fault -32601: no method 'x' here"),
    (ClientError("cannot reach http://h:1/: Connection refused"), 1,
     "co2: cannot reach http://h:1/: Connection refused"),
    (KeyboardInterrupt(), 0, ""),
])
def test_main_exit_status_and_message(monkeypatch, capsys, raised, status, line):
    """main prints one line for a failure, never a traceback, and exits 1 (0 for Ctrl-C)."""

    def run(args: Any, out: Any, err: Any) -> None:
        raise raised

    monkeypatch.setattr(_client, "run", run)
    with pytest.raises(SystemExit) as exit_:
        _client.main(["methods", "http://h:1/"])
    assert exit_.value.code == status
    assert capsys.readouterr().err.strip() == line


class FakeClient:
    """Answers co2.watch from a script of answers; records the calls."""

    def __init__(self, answers: list[dict[str, Any]], clock: list[float]) -> None:
        self.url = "http://h:1/"
        self.answers = answers
        self.calls: list[tuple[Any, ...]] = []
        self.clock = clock

    def set_timeout(self, timeout: float) -> None:
        self.timeout = timeout

    def call(self, method: str, *params: Any) -> Any:
        self.calls.append((method, *params))
        self.clock[0] += params[1]  # the long poll waits its time
        return self.answers.pop(0) if self.answers else {"messages": [], "next": params[0], "missed": 0}


def message(seq: int) -> dict[str, Any]:
    return {"seq": seq, "id": f"x.{seq}", "hops": 15, "source": "node:ab", "host_id": "1@h:2", "data": [seq]}


def test_watch_prints_json_lines_and_passes_the_cursor_on():
    """Each message is one JSON line; each call passes the previous answer's next; --count stops it."""
    clock = [0.0]
    client = FakeClient([
        {"messages": [message(1), message(2)], "next": 2, "missed": 0},
        {"messages": [], "next": 2, "missed": 0},
        {"messages": [message(3), message(4)], "next": 4, "missed": 0},
    ], clock)
    out, err = io.StringIO(), io.StringIO()
    watch(client, out, err, count=3, timer=lambda: clock[0], poll=5)  # type: ignore[arg-type]
    lines = out.getvalue().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [1, 2, 3]
    assert lines[0] == '{"data":[1],"hops":15,"host_id":"1@h:2","id":"x.1","seq":1,"source":"node:ab"}'
    assert [call[1] for call in client.calls] == [-1, 2, 2]
    assert err.getvalue() == ""


def test_watch_notes_what_it_missed():
    """A missed count becomes a note on stderr, not a JSON line."""
    clock = [0.0]
    client = FakeClient([{"messages": [message(50)], "next": 50, "missed": 7}], clock)
    out, err = io.StringIO(), io.StringIO()
    watch(client, out, err, count=1, backlog=True, timer=lambda: clock[0], poll=5)  # type: ignore[arg-type]
    assert client.calls[0][1] == 0
    assert err.getvalue() == "co2: note: missed 7 message(s): the node no longer held them when asked\n"
    assert len(out.getvalue().splitlines()) == 1


def test_watch_stops_after_its_seconds():
    """--seconds bounds the whole watch: the last poll waits only what is left."""
    clock = [0.0]
    client = FakeClient([], clock)
    watch(client, io.StringIO(), io.StringIO(), seconds=12, timer=lambda: clock[0], poll=5)  # type: ignore[arg-type]
    assert [call[2] for call in client.calls] == [5, 5, 2]
    assert client.timeout == 2 + _client.WATCH_MARGIN


def test_watch_pauses_after_an_early_empty_answer():
    """A node that answers at once with nothing (its watchers are full) is polled again after a pause."""
    clock = [0.0]
    slept: list[float] = []

    class Busy(FakeClient):
        def call(self, method: str, *params: Any) -> Any:
            self.calls.append((method, *params))
            return {"messages": [], "next": params[0], "missed": 0}

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    client = Busy([], clock)
    watch(client, io.StringIO(), io.StringIO(), seconds=3.5, timer=lambda: clock[0], poll=5,  # type: ignore[arg-type]
          sleep=sleep)
    assert slept == [1.0, 1.0, 1.0, 0.5]
    assert len(client.calls) == 4


def test_watch_sends_big_cursors_as_strings():
    """A cursor beyond 32 bits goes as its decimal string, which any XML-RPC library can send."""
    clock = [0.0]
    client = FakeClient([{"messages": [message(2**33)], "next": 2**33, "missed": 0}], clock)
    watch(client, io.StringIO(), io.StringIO(), seconds=6, timer=lambda: clock[0], poll=5)  # type: ignore[arg-type]
    assert client.calls[1][1] == str(2**33)
