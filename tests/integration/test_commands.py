"""
The ``co2-satellite`` command and ``twistd co2-satellite``, run as real
processes and called over XML-RPC.
"""

from __future__ import annotations

import ast
import re
import shutil
import signal
import socket
import subprocess
import xmlrpc.client
from pathlib import Path

import pytest
from conftest import BIN_DIR, eventually

import co2

LOCAL = "tcp:0:interface=127.0.0.1"
GOOD_PLUGIN = '''
def x_ping() -> str:
    """Return "pong"."""
    return "pong"
'''
BROKEN_PLUGIN = "def x_oops(:\n    pass\n"


def test_call_me_answers(shipped_satellite):
    """ham.spam.call_me returns a greeting holding its argument."""
    with shipped_satellite.proxy() as proxy:
        answer = proxy.ham.spam.call_me("x")
    assert isinstance(answer, str)
    assert "x" in answer


def test_get_method_names(shipped_satellite):
    """co2.get_method_names is a sorted list of the plugins' and the server's methods."""
    with shipped_satellite.proxy() as proxy:
        names = proxy.co2.get_method_names()
    assert names == sorted(names)
    assert {"ham.spam.call_me", "notify", "system.multicall"} <= set(names)


def test_unknown_method_is_fault_32601(shipped_satellite):
    """Calling a method that does not exist gives fault -32601."""
    with shipped_satellite.proxy() as proxy, pytest.raises(xmlrpc.client.Fault) as info:
        proxy.no.such.method()
    assert info.value.faultCode == -32601


def test_notify_reaches_every_plugin(shipped_satellite):
    """notify answers True, then every plugin receives the message."""
    with shipped_satellite.proxy() as proxy:
        before = proxy.ham.spam.received()
        assert proxy.notify({"data": [1, "two"], "host_id": "1@127.0.0.1:9"}) is True
        assert eventually(lambda: proxy.ham.spam.received() == before + 1)
        assert proxy.ham.spam.received() == before + 1
        assert proxy.example.example.last()[-1] == [1, "two"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_runs_every_exit_in_reverse_order(
    sig, satellite, make_config, plugin_dir, exit_recorders, exits
):
    """SIGTERM or SIGINT calls every plugin's __exit__, last loaded first, and exits 0."""
    plugin_config = exit_recorders("alpha", "beta")
    config = make_config(
        plugin_dir=str(plugin_dir), plugin_list=["alpha", "beta"], plugin_config=plugin_config
    )
    proc = satellite("--config", config, "--listen", LOCAL)
    proc.wait_serving()
    with proc.proxy() as proxy:
        assert proxy.alpha.recorder.package() == "alpha"
        assert proxy.beta.recorder.package() == "beta"
    assert exits() == []
    assert proc.stop(sig) == 0, proc.describe()
    assert exits() == ["beta", "alpha"]


def test_twistd_serves_and_stops(
    twistd, repo_root, make_config, plugin_dir, exit_recorders, exits
):
    """twistd co2-satellite serves ham.spam.call_me; SIGTERM runs __exit__ and exits 0."""
    shutil.copytree(repo_root / "plugin" / "ham", plugin_dir / "ham")
    plugin_config = exit_recorders("recorder")
    config = make_config(
        plugin_dir=str(plugin_dir), plugin_list=["ham", "recorder"], plugin_config=plugin_config
    )
    proc = twistd("--config", config, "--listen", LOCAL)
    proc.wait_serving()
    with proc.proxy() as proxy:
        assert "x" in proxy.ham.spam.call_me("x")
    assert proc.stop(signal.SIGTERM) == 0, proc.describe()
    assert exits() == ["recorder"]


def test_missing_config_exits_2(satellite, tmp_path):
    """A config file that does not exist exits 2 with one stderr line naming it."""
    missing = tmp_path / "missing_config.py"
    proc = satellite("--config", missing, "--listen", LOCAL)
    assert proc.wait() == 2, proc.describe()
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.describe()
    assert str(missing) in lines[0]


def test_listen_not_a_string_exits_2(satellite, make_config):
    """A config with listen = 42 exits 2 naming listen."""
    config = make_config("listen = 42")
    proc = satellite("--config", config)
    assert proc.wait() == 2, proc.describe()
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.describe()
    assert "listen" in lines[0]
    assert str(config) in lines[0]


def test_unknown_setting_warns_and_starts(satellite, make_config):
    """An unknown setting is warned about by name and the satellite still starts."""
    config = make_config("colour = 1", plugin_list=["ham"])
    proc = satellite("--config", config, "--listen", LOCAL)
    proc.wait_serving()
    assert re.search(r"warning: .*colour", proc.stderr), proc.describe()
    with proc.proxy() as proxy:
        assert "x" in proxy.ham.spam.call_me("x")


def test_listen_endpoint_in_use_exits_1(satellite):
    """An endpoint that cannot be bound exits 1 naming the endpoint."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        endpoint = f"tcp:{taken.getsockname()[1]}:interface=127.0.0.1"
        proc = satellite("--config", "config.py", "--listen", endpoint)
        assert proc.wait() == 1, proc.describe()
    assert endpoint in proc.stderr, proc.describe()


def test_strict_with_broken_plugin_exits_2(
    satellite, make_config, make_plugin, plugin_dir, exit_recorders, exits
):
    """--strict exits 2 naming the package that failed, after the loaded ones' __exit__."""
    make_plugin("broken", "Does not compile.", bad=BROKEN_PLUGIN)
    plugin_config = exit_recorders("alpha")
    config = make_config(
        plugin_dir=str(plugin_dir), plugin_list=["alpha", "broken"], plugin_config=plugin_config
    )
    proc = satellite("--config", config, "--listen", LOCAL, "--strict")
    assert proc.wait() == 2, proc.describe()
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.describe()
    assert "broken" in lines[0]
    assert "alpha" not in lines[0]
    assert exits() == ["alpha"]


@pytest.fixture
def serve_packages(satellite, make_config, plugin_dir):
    """Start a satellite loading ``plugin_dir``'s packages named, in order; wait until it serves."""

    def serve(*names):
        config = make_config(plugin_dir=str(plugin_dir), plugin_list=list(names))
        proc = satellite("--config", config, "--listen", LOCAL)
        proc.wait_serving()
        return proc

    return serve


def test_broken_plugin_is_logged_and_others_answer(serve_packages, make_plugin):
    """Without --strict a broken plugin is one warning saying where, and the rest serve."""
    make_plugin("broken", "Does not compile.", bad=BROKEN_PLUGIN)
    make_plugin("good", "Answers ping.", ping=GOOD_PLUGIN)
    proc = serve_packages("broken", "good")
    with proc.proxy() as proxy:
        assert proxy.good.ping.ping() == "pong"
        names = proxy.co2.get_method_names()
    assert not any(name.startswith("broken.") for name in names)
    log = proc.stdout
    [line] = [line for line in log.splitlines() if "plugin package broken left out" in line]
    assert "#warn" in line and "SyntaxError" in line, proc.describe()
    assert line.endswith("(at broken/bad.py:1)"), proc.describe()
    assert "Traceback" not in log and "<frozen importlib" not in log, proc.describe()  # debug only


def _first_doc_line(package: Path) -> str:
    tree = ast.parse((package / "__init__.py").read_text())
    return (ast.get_docstring(tree) or "").strip().splitlines()[0]


def test_list_plugins(satellite, repo_root):
    """--list-plugins exits 0 listing example and ham as enabled, with their descriptions."""
    proc = satellite("--config", "config.py", "--list-plugins")
    assert proc.wait() == 0, proc.describe()
    for name in ("example", "ham"):
        description = _first_doc_line(repo_root / "plugin" / name)
        line = rf"^\s+{name}\s+enabled\s+{re.escape(description)}$"
        assert re.search(line, proc.stdout, re.MULTILINE), proc.describe()


JSON_PLUGIN = '''
import json


def x_dumps(value) -> str:
    """Return ``value`` as JSON, made by the standard json module."""
    return json.dumps(value, sort_keys=True)


def x_json_file() -> str:
    """Return where the json module this plugin imported lives."""
    return json.__file__
'''


def test_plugin_package_named_json(serve_packages, make_plugin, plugin_dir):
    """A plugin package named json loads and answers, and the stdlib json still works in it."""
    make_plugin("json", "A plugin that shadows nothing.", dump=JSON_PLUGIN)
    make_plugin("good", "Answers ping.", ping=GOOD_PLUGIN)
    proc = serve_packages("json", "good")
    with proc.proxy() as proxy:
        assert proxy.json.dump.dumps({"b": [1, "two"], "a": None}) == (
            '{"a": null, "b": [1, "two"]}'
        )
        assert plugin_dir not in Path(proxy.json.dump.json_file()).parents
        assert proxy.good.ping.ping() == "pong"


@pytest.mark.parametrize(("command", "option"), [
    ("co2-satellite", "--help-auth"), ("co2-relay", "--help-auth"), ("co2", "--help"), ("co2", "--version"),
])
def test_help_into_a_pipe_closed_early_ends_without_a_traceback(command, option):
    """`co2-satellite --help-auth | head -1`: the reader goes away; the command says nothing more."""
    process = subprocess.Popen(
        [str(BIN_DIR / command), option], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # before it writes: every write meets a closed pipe
    stderr = process.stderr.read().decode()
    process.stderr.close()
    process.wait(timeout=20)
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr


@pytest.mark.parametrize("command", ["co2-satellite", "co2-relay", "co2"])
def test_version_names_co2_then_twisted(command):
    result = subprocess.run([str(BIN_DIR / command), "--version"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    assert result.stdout.splitlines()[0] == f"co2 {co2.__version__}"
    assert result.stdout.splitlines()[1].startswith("Twisted ")


@pytest.mark.parametrize("fixture", ["twistd", "twistd_relay"])
def test_twistd_with_a_bad_config_says_one_line_and_exits_2(request, fixture, make_config):
    """Under twistd a config error is one line on stderr (no help before it) and exit status 2."""
    config = make_config(listen=5)
    proc = request.getfixturevalue(fixture)("--config", config)
    assert proc.wait() == 2, proc.describe()
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, proc.describe()
    assert "listen: expected a string, got 5 (int)" in lines[0] and str(config) in lines[0]
