"""Authentication: twisted.cred checkers, HTTP Basic on XML-RPC (both lanes) and Hello on AMP links."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from test_http import Connection, post
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.testing import MemoryReactorClock

from co2 import AuthSettings
from co2._auth import REPORT_EVERY, Authentication, basic_authorization, make_authentication
from co2._errors import ConfigError
from co2._xmlrpc import dump_call, parse_response
from satellites import Dispatcher, Method, MethodRegistry, make_config, make_server


def result_of(d: Any) -> Any:
    results: list[Any] = []
    d.addBoth(results.append)
    assert results, "the Deferred has not fired"
    return results[0]


def warnings_about(logged: list[dict[str, Any]], text: str) -> list[str]:
    from twisted.logger import formatEvent

    return [formatEvent(e) for e in logged if text in formatEvent(e)]


# The checkers

@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "passwd"
    path.write_text("alice:secret\nbob:hunter2\n")
    return path


@pytest.mark.parametrize("kind", ["memory", "file"])
def test_a_checker_accepts_the_right_password_only(kind: str, password_file: Path) -> None:
    """memory: compares text and file: bytes; both are asked in the form they expect."""
    description = "memory:alice:secret:bob:hunter2" if kind == "memory" else f"file:{password_file}"
    auth = Authentication([description], ["*"], MemoryReactorClock())
    assert result_of(auth.check("alice", "secret")) == "alice"
    assert result_of(auth.check(b"bob", b"hunter2")) == "bob"
    assert result_of(auth.check("alice", "hunter2")).check(UnauthorizedLogin)
    assert result_of(auth.check("carol", "secret")).check(UnauthorizedLogin)


def test_several_checkers_are_tried_in_turn(password_file: Path) -> None:
    auth = Authentication(["memory:carol:pw", f"file:{password_file}"], ["*"], MemoryReactorClock())
    assert result_of(auth.check("carol", "pw")) == "carol"
    assert result_of(auth.check("alice", "secret")) == "alice"


def test_no_checker_means_no_authentication() -> None:
    assert make_authentication((), ["*"], MemoryReactorClock()) is None


@pytest.mark.parametrize(
    ("patterns", "names", "needed"),
    [
        (["*"], ["system.listMethods"], True),
        (["ham.*"], ["ham.spam.call_me"], True),
        (["ham.*"], ["system.listMethods"], False),
        (["ham.*"], ["system.multicall", "system.listMethods", "ham.spam.x"], True),
        (["notify", "co2.*"], ["notify"], True),
        (["notify"], ["notify_me"], False),
    ],
)
def test_which_methods_need_credentials(patterns: list[str], names: list[str], needed: bool) -> None:
    auth = Authentication(["memory:a:b"], patterns, MemoryReactorClock())
    assert auth.needs_credentials(names) is needed


def test_refusals_are_logged_a_few_at_a_time(logged: list[dict[str, Any]]) -> None:
    """A flood of refusals logs five lines, then one summary line per window."""
    clock = MemoryReactorClock()
    auth = Authentication(["memory:a:b"], ["*"], clock)
    for _ in range(20):
        auth.refuse("the XML-RPC listener", "10.0.0.9:4000", "mallory", "wrong user name or password")
    clock.advance(REPORT_EVERY)
    auth.refuse("the XML-RPC listener", "10.0.0.9:4000", None, "no credentials given")
    lines = warnings_about(logged, "refused")
    assert len(lines) == 6 and auth.refused == 21
    assert lines[0] == (
        "the XML-RPC listener: refused 10.0.0.9:4000 (user 'mallory'): wrong user name or password"
    )
    assert lines[-1] == "the XML-RPC listener: refused 10.0.0.9:4000: no credentials given"
    assert warnings_about(logged, "15 more refusal(s)")


# Config and command line

def test_config_reads_auth_relative_to_the_config_file(tmp_path: Path, password_file: Path) -> None:
    config = make_config(
        {"auth": "file:passwd", "auth_methods": ["ham.*"], "peer_credentials": ("n1", "pw")},
        str(tmp_path / "config.py"),
    )
    assert config.auth.auth == (f"file:{password_file}",)
    assert config.auth.auth_methods == ("ham.*",)
    assert config.relay.credentials_for("tcp:host=h:port=1") == ("n1", "pw")
    assert "pw" not in repr(config) and "passwd" not in repr(config)


def test_peer_credentials_by_peer(tmp_path: Path) -> None:
    config = make_config({"peer_credentials": {"tcp:host=a:port=1": ("x", "y"), "*": ("d", "e")}})
    assert config.relay.credentials_for("tcp:host=a:port=1") == ("x", "y")
    assert config.relay.credentials_for("tcp:host=b:port=1") == ("d", "e")
    assert make_config({}).relay.credentials_for("tcp:host=b:port=1") is None


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"auth": "nosuch:x"}, "'nosuch' is not a kind of password checker (known: file, memory, unix)"),
        ({"auth": "anonymous"}, "'anonymous' is not a kind of password checker"),
        ({"auth": "file:missing"}, "missing: no such file"),
        ({"auth": "file:"}, "file: needs the path of a password file"),
        ({"auth": 3}, "expected a checker description or a list of them, got int"),
        ({"auth_methods": "ham.*"}, "expected a list of method name patterns"),
        ({"peer_credentials": ("only-one",)}, "expected a (username, password) pair"),
        ({"peer_credentials": {"tcp:host=a:port=1": ("a:b", "c")}}, "without ':' in the name"),
    ],
)
def test_bad_auth_settings_are_config_errors(tmp_path: Path, settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        make_config(settings, str(tmp_path / "config.py"))
    assert message in str(raised.value)


def test_auth_on_the_command_line_replaces_the_config(tmp_path: Path) -> None:
    from satellites._cli import Options

    config = tmp_path / "config.py"
    config.write_text("auth = 'memory:a:b'\n")
    options = Options()
    options.parseOptions(["--config", str(config), "--auth", "memory:x:y", "--auth", "memory:z:w"])
    assert options.config.auth.auth == ("memory:x:y", "memory:z:w")
    options = Options()
    options.parseOptions(["--config", str(config)])
    assert options.config.auth.auth == ("memory:a:b",)


def test_help_auth_lists_the_password_checkers(capsys: pytest.CaptureFixture[str]) -> None:
    from satellites._cli import Options

    options = Options()
    options.authOutput = __import__("io").StringIO()
    with pytest.raises(SystemExit) as exited:
        options.parseOptions(["--help-auth"])
    assert exited.value.code == 0
    listed = options.authOutput.getvalue()
    assert all(kind in listed for kind in ("memory", "file", "unix"))
    assert "anonymous" not in listed


# XML-RPC

@pytest.fixture
def calls() -> list[str]:
    return []


def server(calls: list[str], protected: list[str], *descriptions: str) -> Any:
    registry = MethodRegistry()
    registry.add(Method.of("ham.add", lambda x, y: calls.append("ham.add") or x + y))
    registry.add(Method.of("open.add", lambda x, y: calls.append("open.add") or x + y))
    clock = MemoryReactorClock()
    auth = make_authentication(descriptions or ("memory:alice:secret",), protected, clock)
    return make_server(Dispatcher(registry), 4096, clock, authentication=auth)


def basic(user: str, password: str) -> bytes:
    return b"Authorization: " + basic_authorization(user, password) + b"\r\n"


def call(method: str, *params: Any, extra: bytes = b"") -> bytes:
    return post(dump_call(method, params), extra=extra)


def test_every_method_needs_credentials_by_default(calls: list[str], logged: list[dict[str, Any]]) -> None:
    """No or wrong credentials: 401 with a Basic challenge, nothing called, the connection kept."""
    connection = Connection(server(calls, ["*"]))
    connection.send(call("open.add", 1, 2))
    connection.send(call("open.add", 1, 2, extra=basic("alice", "wrong")))
    connection.send(call("open.add", 1, 2, extra=b"Authorization: Bearer abc\r\n"))
    connection.send(call("open.add", 1, 2, extra=b"Authorization: Basic !!!\r\n"))
    connection.send(call("open.add", 1, 2, extra=basic("alice", "secret")))
    answers = connection.responses()
    assert [status for status, _, _ in answers] == [401, 401, 401, 401, 200]
    assert answers[0][1][b"www-authenticate"] == b'Basic realm="co2"'
    assert parse_response(answers[-1][2]) == 3
    assert calls == ["open.add"]
    assert not connection.transport.disconnecting
    lines = warnings_about(logged, "refused")
    assert lines[0] == "the XML-RPC listener: refused 10.1.2.3:40404: no credentials given"
    assert lines[1] == (
        "the XML-RPC listener: refused 10.1.2.3:40404 (user 'alice'): wrong user name or password"
    )


def test_only_the_protected_methods_need_credentials(calls: list[str]) -> None:
    """Anonymous callers may call the rest; a multicall with a protected call in it is refused whole."""
    connection = Connection(server(calls, ["ham.*"]))
    connection.send(call("open.add", 1, 2))
    connection.send(call("ham.add", 1, 2))
    connection.send(call("system.multicall", [
        {"methodName": "open.add", "params": [1, 1]},
        {"methodName": "ham.add", "params": [2, 2]},
    ]))
    connection.send(call("ham.add", 2, 3, extra=basic("alice", "secret")))
    connection.send(call("open.add", 2, 3, extra=basic("alice", "nope")))
    answers = connection.responses()
    assert [status for status, _, _ in answers] == [200, 401, 401, 200, 401]
    assert calls == ["open.add", "ham.add"]


def test_a_refusal_follows_the_answers_before_it_in_order(calls: list[str]) -> None:
    """Pipelined requests are answered in order, refusals among them, and Connection: close is kept."""
    connection = Connection(server(calls, ["*"]))
    connection.send(
        call("open.add", 1, 1, extra=basic("alice", "secret"))
        + call("open.add", 1, 2)
        + call("open.add", 1, 3, extra=basic("alice", "secret") + b"Connection: close\r\n")
    )
    answers = connection.responses()
    assert [status for status, _, _ in answers] == [200, 401, 200]
    assert connection.transport.disconnecting


def test_http_1_0_is_guarded_the_same(calls: list[str], logged: list[dict[str, Any]]) -> None:
    """HTTP/1.0 requests get the same answers and the same log lines as HTTP/1.1."""
    factory = server(calls, ["ham.*"])

    def send(request: bytes) -> int:
        connection = Connection(factory)
        connection.send(request.replace(b"HTTP/1.1", b"HTTP/1.0"))
        ((status, _, _),) = connection.responses()
        return status

    assert send(call("ham.add", 1, 2)) == 401
    assert send(call("ham.add", 1, 2, extra=basic("alice", "bad"))) == 401
    assert send(call("ham.add", 1, 2, extra=basic("alice", "secret"))) == 200
    assert send(call("open.add", 1, 2)) == 200
    assert calls == ["ham.add", "open.add"]
    lines = warnings_about(logged, "refused")
    assert lines == [
        "the XML-RPC listener: refused 10.1.2.3:40404: no credentials given",
        "the XML-RPC listener: refused 10.1.2.3:40404 (user 'alice'): wrong user name or password",
    ]


def test_with_every_method_protected_a_get_of_the_xmlrpc_path_reveals_nothing(calls: list[str]) -> None:
    """A node without pages answers GET / with 405, credentials or not; nothing is called."""
    connection = Connection(server(calls, ["*"]))
    connection.send(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    ((status, headers, _),) = connection.responses()
    assert status == 405 and headers[b"allow"] == b"POST" and calls == []


def test_a_non_ascii_user_name_and_password(calls: list[str]) -> None:
    factory = server(calls, ["*"], "memory:zoë:pässwörd")
    connection = Connection(factory)
    token = base64.b64encode("zoë:pässwörd".encode())
    connection.send(call("open.add", 1, 2, extra=b"Authorization: Basic " + token + b"\r\n"))
    assert [s for s, _, _ in connection.responses()] == [200]


def test_config_default_is_no_auth() -> None:
    assert AuthSettings().auth == () and AuthSettings().auth_methods == ("*",)


def test_the_unix_checker_refuses_a_wrong_password() -> None:
    """unix checks the machine's accounts: a wrong password, or no access to them, is a refusal."""
    auth = Authentication(["unix"], ["*"], MemoryReactorClock())
    assert result_of(auth.check("root", "certainly not the password")).check(UnauthorizedLogin)
    assert result_of(auth.check("no-such-user-here", "x")).check(UnauthorizedLogin)


def test_a_checker_that_answers_later_holds_the_answer_in_order(calls: list[str]) -> None:
    """A checker that answers later (unix:, or one of a plugin's) delays only its request's answer."""
    from twisted.internet.defer import Deferred

    factory = server(calls, ["*"])
    pending: list[Deferred[Any]] = []

    class Later:
        def requestAvatarId(self, given: Any) -> Deferred[Any]:
            d: Deferred[Any] = Deferred()
            pending.append(d)
            return d

    factory.responding.responder.authentication.checker = Later()
    connection = Connection(factory)
    connection.send(call("open.add", 1, 2, extra=basic("alice", "secret"))
                    + call("open.add", 2, 2, extra=basic("mallory", "x")))
    assert connection.responses() == [] and len(pending) == 2
    pending[1].errback(UnauthorizedLogin())
    assert connection.responses() == []
    pending[0].callback("alice")
    assert [status for status, _, _ in connection.responses()] == [200, 401]
    assert calls == ["open.add"]


def test_guessing_over_http_is_throttled_per_address(calls: list[str], logged: list[dict[str, Any]]) -> None:
    """
    After 10 wrong passwords within 10 s from one address, its logins get 429 unchecked, the right password
    too, until the window ends (the listener used to let one connection try 27,600 passwords a second).
    """
    factory = server(calls, ["*"])
    clock = factory.reactor
    connection = Connection(factory)
    for _ in range(10):
        connection.send(call("open.add", 1, 2, extra=basic("alice", "guess")))
    connection.send(call("open.add", 1, 2, extra=basic("alice", "guess")))
    connection.send(call("open.add", 1, 2, extra=basic("alice", "secret")))
    answers = connection.responses()
    assert [status for status, _, _ in answers] == [401] * 10 + [429, 429]
    assert answers[-1][1][b"retry-after"] == b"10"
    assert calls == []
    clock.advance(10)
    connection.send(call("open.add", 1, 2, extra=basic("alice", "secret")))
    assert [status for status, _, _ in connection.responses()] == [200]
    assert len(warnings_about(logged, "refused")) == 5  # then one count for the other 7
    assert [e["count"] for e in logged if "count" in e and e.get("where") == "the XML-RPC listener"] == [7]
