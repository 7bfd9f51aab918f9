"""
The ``co2`` client command, run as a real process against real
``co2-satellite`` and ``co2-relay`` processes on loopback.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import BIN_DIR, REPO_ROOT, Proc, eventually

CO2 = BIN_DIR / "co2"
LOCAL = "tcp:0:interface=127.0.0.1"
RUN_TIMEOUT = 30.0


def co2(*args: object) -> subprocess.CompletedProcess[str]:
    """Run ``co2 *args`` to its end (bounded); its status and output."""
    return subprocess.run(
        [str(CO2), *map(str, args)], capture_output=True, text=True, timeout=RUN_TIMEOUT,
        stdin=subprocess.DEVNULL, cwd=REPO_ROOT,
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_methods_lists_one_name_per_line(shipped_satellite):
    """co2 methods prints every method, sorted, co2.watch included."""
    result = co2("methods", shipped_satellite.url)
    assert result.returncode == 0, result.stderr
    names = result.stdout.splitlines()
    assert names == sorted(names)
    assert {"co2.watch", "co2.get_method_names", "ham.spam.call_me", "notify"} <= set(names)


def test_call_with_json_arguments_and_a_fault(shipped_satellite):
    """co2 call reads arguments as JSON and prints the result as JSON; a fault exits 1 with its code."""
    result = co2("call", shipped_satellite.url, "example.example.add", "40", "2")
    assert (result.returncode, result.stdout, result.stderr) == (0, "42\n", "")
    result = co2("call", shipped_satellite.url, "system.methodSignature", '"example.example.add"')
    assert result.returncode == 0 and isinstance(json.loads(result.stdout), (list, str))
    result = co2("call", shipped_satellite.url, "no.such.method", "[1, {\"a\": null}]")
    assert result.returncode == 1
    assert result.stderr == "co2: fault -32601: no method 'no.such.method' here\n"
    assert result.stdout == ""


def test_bare_word_argument_is_a_usage_error(shipped_satellite):
    """A word that is not JSON exits 2 and says how to quote it, with no call made."""
    result = co2("call", shipped_satellite.url, "ham.spam.call_me", "world")
    assert result.returncode == 2
    assert "argument 1 of ham.spam.call_me is not JSON" in result.stderr
    assert "Traceback" not in result.stderr


def test_notify_reaches_the_plugins(satellite, make_config, tmp_path):
    """co2 notify sends a message the node accepts (host_id of the caller's address); plugins receive it."""
    config = make_config(listen=LOCAL, plugin_list=["example"])
    proc = satellite("--config", config, cwd=tmp_path)
    proc.wait_serving()
    result = co2("notify", proc.url, '{"from": "cli", "n": [1, 2.5, null]}')
    assert (result.returncode, result.stdout.strip()) == (0, "true"), result.stderr
    last = eventually(lambda: co2("call", proc.url, "example.example.last").stdout.strip() != "[]")
    assert last
    assert json.loads(co2("call", proc.url, "example.example.last").stdout) == [
        {"from": "cli", "n": [1, 2.5, None]},
    ]


def test_unreachable_url_exits_1():
    """Nobody listening: one line naming the URL and the reason, exit 1."""
    url = f"http://127.0.0.1:{free_port()}/"
    result = co2("methods", url)
    assert result.returncode == 1
    assert result.stderr == f"co2: cannot reach {url}: Connection refused\n"


def test_credentials(satellite, make_config, tmp_path):
    """A node that requires credentials: none or wrong ones exit 1 saying so; right ones work."""
    config = make_config(listen=LOCAL, plugin_list=["ham"])
    proc = satellite("--config", config, "--auth", "memory:carol:c-pw", cwd=tmp_path)
    url = proc.wait_serving()
    result = co2("methods", url)
    assert result.returncode == 1
    assert "needs credentials (HTTP 401)" in result.stderr
    with_user = url.replace("http://", "http://carol:wrong@")
    result = co2("methods", with_user)
    assert result.returncode == 1
    assert result.stderr.strip() == f"co2: {url.replace('http://', 'http://carol:***@')} " \
        "refused the credentials given (HTTP 401)"
    result = co2("call", url.replace("http://", "http://carol:c-pw@"), "ham.spam.call_me", '"x"')
    assert result.returncode == 0 and "hello, x" in result.stdout


@pytest.fixture
def hub_and_satellite(relay, satellite, make_config, tmp_path):
    """A relay and a satellite with the shipped plugins linked to it, link up."""
    hub = relay("--config", make_config(filename="hub.py", listen=LOCAL, amp_listen=LOCAL), cwd=tmp_path)
    hub.wait_serving()
    amp_port = hub.wait_amp()
    sat = satellite("--config", make_config(
        filename="sat.py", listen=LOCAL, plugin_list=["example"],
        peers=[f"tcp:host=127.0.0.1:port={amp_port}"],
    ), cwd=tmp_path)
    sat.wait_serving()
    hub.wait_output(r"link \S+ up: ")
    return hub, sat


def _lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def test_watch_on_a_relay_prints_what_a_satellite_sends(hub_and_satellite, start):
    """co2 watch on a relay prints, one JSON line each, the messages a satellite sends through it."""
    hub, sat = hub_and_satellite
    watcher = start(CO2, "watch", hub.url, "--count", "2", "--seconds", "20")
    started = time.monotonic()
    # The watcher starts from now: shout until two shouts reach it.
    sent = 0
    while watcher.popen.poll() is None and time.monotonic() - started < 20:
        assert co2("call", sat.url, "example.example.shout", json.dumps(f"hi {sent}")).returncode == 0
        sent += 1
        time.sleep(0.2)
    assert watcher.wait() == 0, watcher.describe()
    lines = _lines(watcher.stdout)
    assert len(lines) == 2
    first, second = lines
    assert second["seq"] == first["seq"] + 1
    assert first["data"].startswith("hi ") and first["source"].startswith("node:")
    assert first["host_id"].endswith(f"@127.0.0.1:{sat.port}")
    assert set(first) == {"seq", "id", "hops", "source", "host_id", "data"}
    assert watcher.stderr == ""


def test_watch_backlog_prints_what_the_relay_still_holds(hub_and_satellite):
    """--backlog starts from the oldest message the relay holds: a scripted run sees past messages."""
    hub, sat = hub_and_satellite
    for word in ("one", "two", "three"):
        assert co2("call", sat.url, "example.example.shout", json.dumps(word)).returncode == 0
    result = co2("watch", hub.url, "--backlog", "--count", "3", "--seconds", "15")
    assert result.returncode == 0, result.stderr
    assert [line["data"] for line in _lines(result.stdout)] == ["one", "two", "three"]


def _has_socket(pid: int) -> bool:
    fds = Path(f"/proc/{pid}/fd")
    try:
        return any(os.readlink(fds / fd).startswith("socket:") for fd in os.listdir(fds))
    except OSError:
        return False


def test_watch_ends_cleanly_on_sigint(shipped_satellite, start):
    """Ctrl-C ends a watch with status 0 and no traceback."""
    watcher: Proc = start(CO2, "watch", shipped_satellite.url)
    assert eventually(lambda: _has_socket(watcher.popen.pid), timeout=15), watcher.describe()
    assert watcher.stop(signal.SIGINT) == 0, watcher.describe()
    assert watcher.stderr == ""
    assert watcher.stdout == ""
