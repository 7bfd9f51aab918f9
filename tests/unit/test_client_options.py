"""The ``co2`` command line on ``twisted.python.usage``: option order, checks, messages, help and dispatch."""

from __future__ import annotations

import ast
import io
from pathlib import Path
from typing import Any

import pytest
from twisted.python import usage

import co2
import twisted
from co2 import _client
from co2._client import parse_args, run

URL = "http://h:1/"
REPO = Path(__file__).resolve().parents[2]


def usage_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> list[str]:
    """The lines parse_args writes to stderr before it exits 2."""
    with pytest.raises(SystemExit) as exit_:
        parse_args(argv)
    assert exit_.value.code == 2
    return capsys.readouterr().err.splitlines()


def exits_0(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """What parse_args prints before it exits 0."""
    with pytest.raises(SystemExit) as exit_:
        parse_args(argv)
    assert exit_.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("argv", [
    ["call", URL, "m", "1", "--raw", "--timeout", "5"],
    ["call", "--raw", URL, "m", "--timeout=5", "1"],
    ["call", "--timeout", "5", URL, "--raw", "m", "1"],
    ["call", URL, "m", "--ra", "--time", "5", "1"],
])
def test_options_may_come_anywhere(argv):
    """Options go before, between or after the arguments, as --opt value, --opt=value or a unique prefix."""
    options = parse_args(argv)
    assert isinstance(options, usage.Options)
    assert (options["method"], options["params"], options["raw"], options["timeout"]) == ("m", (1,), 1, 5.0)


def test_negative_json_numbers_are_arguments():
    """-1, -0.5 and -2.5e3 are JSON arguments, not options (argparse refused -2.5e3)."""
    assert parse_args(["call", URL, "m", "-1", "-0.5", "-2.5e3"])["params"] == (-1, -0.5, -2500.0)


def test_double_dash_ends_the_options(capsys):
    """After --, a word that looks like an option is an argument."""
    assert usage_error(capsys, ["call", URL, "m", "--", "--raw"])[1].startswith(
        "co2: argument 1 of m is not JSON: '--raw'"
    )


def test_defaults():
    """Without options: a 30 s timeout, the system's CAs, JSON output, and a watch without end."""
    options = parse_args(["watch", URL])
    assert [options[key] for key in ("timeout", "ca", "count", "seconds")] == [30.0, None, None, None]
    assert not options["backlog"]
    assert not parse_args(["call", URL, "m"])["raw"]


WATCH = "usage: co2 watch [options] URL"
CALL = "usage: co2 call [options] URL METHOD [ARG ...]"
CO2 = "usage: co2 [--help] [--version] {methods,call,notify,watch} ..."


@pytest.mark.parametrize("argv, synopsis, message", [
    (["watch", URL, "--count", "0"], WATCH, "--count: '0' is not a whole number >= 1"),
    (["watch", URL, "--count=2.5"], WATCH, "--count: '2.5' is not a whole number >= 1"),
    (["watch", URL, "--seconds", "-1"], WATCH, "--seconds: '-1' is not a number of seconds >= 0"),
    (["call", URL, "m", "--timeout", "inf"], CALL, "--timeout: 'inf' is not a number of seconds >= 0"),
    (["call", URL, "m", "--timeout"], CALL, "option --timeout requires an argument"),
    (["call", URL, "m", "--raw=1"], CALL, "option --raw must not have an argument"),
    (["watch", URL, "--c", "3"], WATCH, "option --c not a unique prefix"),
    (["methods", URL, "--bogus"], "usage: co2 methods [options] URL", "option --bogus not recognized"),
    (["call", URL], CALL, "the following arguments are required: METHOD"),
    (["notify", URL, "1", "2"], "usage: co2 notify [options] URL JSON", "unrecognized arguments: 2"),
    (["methods", "ftp://h/"], "usage: co2 methods [options] URL", "URL ftp://h/ must start with http:// or https://"),
    (["frobnicate", URL], CO2, "Unknown command: frobnicate"),
    ([], CO2, "the following arguments are required: COMMAND"),
])
def test_bad_usage_is_a_usage_line_then_one_line(capsys, argv, synopsis, message):
    """Bad usage writes the command's usage line, then one line naming what is wrong, and exits 2."""
    assert usage_error(capsys, argv) == [synopsis, f"co2: {message}"]


def test_help_lists_the_commands(capsys):
    """co2 --help (or -h) lists every command and exits 0."""
    out = exits_0(capsys, ["--help"])
    assert out.startswith("usage: co2 ")
    for command in ("methods", "call", "notify", "watch", "--version"):
        assert command in out
    assert exits_0(capsys, ["-h"]) == out


@pytest.mark.parametrize("argv, expected", [
    (["call", "--help"], [CALL, "--timeout=", "--ca=", "--raw", "[default: 30.0]", '{"$base64": "aGk="}']),
    (["watch", URL, "-h"], [WATCH, "--count=", "--seconds=", "--backlog"]),
    (["notify", "--help"], ["usage: co2 notify [options] URL JSON", "--timeout="]),
])
def test_command_help_lists_its_options(capsys, argv, expected):
    """co2 COMMAND --help shows the command's usage and options and exits 0, whatever else is given."""
    out = exits_0(capsys, argv)
    for text in expected:
        assert text in out


@pytest.mark.parametrize("argv", [["--version"], ["call", "--version"]])
def test_version_is_co2s(capsys, argv):
    """--version prints co2's version, then Twisted's, and exits 0."""
    assert exits_0(capsys, argv) == f"co2 {co2.__version__}\nTwisted {twisted.__version__}\n"


def test_main_exits_2_on_bad_usage(capsys):
    """main, the console script, exits 2 for bad usage without calling anything."""
    with pytest.raises(SystemExit) as exit_:
        _client.main(["watch", URL, "--seconds", "soon"])
    assert exit_.value.code == 2
    message = "co2: --seconds: 'soon' is not a number of seconds >= 0"
    assert capsys.readouterr().err.splitlines() == [WATCH, message]


class Recorder:
    """Stands for Client and the four commands: records what run passes them."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[Any, ...]] = []
        monkeypatch.setattr(_client, "Client", self.client)
        for name in ("list_methods", "call_method", "notify", "watch"):
            monkeypatch.setattr(_client, name, self.command(name))

    def client(self, url: str, timeout: float, ca: str | None) -> Recorder:
        self.calls.append(("Client", url, timeout, ca))
        return self

    def command(self, name: str) -> Any:
        def record(client: Any, *args: Any) -> None:
            self.calls.append((name, *(a for a in args if not isinstance(a, io.IOBase))))  # not out, err

        return record

    def close(self) -> None:
        self.calls.append(("close",))


@pytest.mark.parametrize("argv, client, expected", [
    (["methods", "h:1", "--timeout=2", "--ca=ca.pem"], ("http://h:1", 2.0, "ca.pem"), ("list_methods",)),
    (["call", URL, "m", "[1]", '"x"', "--raw"], (URL, 30.0, None), ("call_method", "m", ([1], "x"), True)),
    (["notify", URL, '{"a": 1}'], (URL, 30.0, None), ("notify", {"a": 1})),
    (["watch", URL, "--count=3", "--seconds=1.5", "--backlog"], (URL, 30.0, None), ("watch", 3, 1.5, True)),
])
def test_run_carries_out_the_command_given(monkeypatch, argv, client, expected):
    """run opens a Client with the URL, --timeout and --ca, runs the command with its arguments, closes it."""
    recorder = Recorder(monkeypatch)
    run(parse_args(argv), io.StringIO(), io.StringIO())
    assert recorder.calls == [("Client", *client), expected, ("close",)]


def test_no_argparse_in_the_project():
    """One command-line framework: no module of co2, relay or satellites imports argparse."""
    for package in ("co2", "relay", "satellites"):
        for path in (REPO / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
                module = node.module if isinstance(node, ast.ImportFrom) else None
                assert "argparse" not in [*names, module], path
