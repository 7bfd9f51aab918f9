"""``--log-format json``: a real satellite and relay write only JSON lines."""

from __future__ import annotations

import json
import xmlrpc.client

import pytest

from co2.testing import SERVING

LOCAL = "tcp:0:interface=127.0.0.1"


def test_satellite_logs_only_json_lines(satellite, make_config):
    """Every stdout line is a JSON object; the serving line is one, found by SERVING as before."""
    config = make_config(plugin_list=["ham", "example"])
    proc = satellite("--config", config, "--listen", LOCAL, "--log-format", "json")
    url = proc.wait_serving()
    with proc.proxy() as proxy:
        assert "x" in proxy.ham.spam.call_me("x")
        with pytest.raises(xmlrpc.client.Fault):
            proxy.example.example.add(1, "x")  # logged with a traceback
    assert proc.stop() == 0, proc.describe()
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert records and all(
        {"time", "level", "namespace", "message"} <= set(record) for record in records
    ), proc.describe()
    [serving] = [r for r in records if SERVING.search(r["message"])]
    match = SERVING.search(serving["message"])
    assert match is not None and match.group(1) == url
    assert serving["namespace"] == "co2.satellite"
    [raised] = [r for r in records if "example.example.add (plugin example) raised" in r["message"]]
    assert raised["level"] == "error"
    assert "TypeError" in raised["failure"]
    assert any(r["message"] == "co2 satellite stopped" for r in records)
    assert any(r["namespace"] == "log_legacy" for r in records)  # Twisted's "(TCP Port ... Closed)"


def test_config_errors_stay_one_plain_line(satellite, tmp_path):
    """A config error with --log-format json is still one plain line on stderr, exit 2."""
    proc = satellite("--config", tmp_path / "missing.py", "--log-format", "json")
    assert proc.wait() == 2, proc.describe()
    assert len(proc.stderr.splitlines()) == 1
    assert proc.stderr.startswith("co2-satellite: ")
    assert proc.stdout == ""


def test_twistd_says_log_format_is_not_applied(twistd, make_config):
    """Under twistd, --log-format json is logged as not applied and twistd's text log is kept."""
    proc = twistd("--config", make_config(), "--listen", LOCAL, "--log-format", "json")
    proc.wait_serving()
    with proc.proxy() as proxy:  # an answer: the reactor runs, with its signal handlers
        assert "notify" in proxy.co2.get_method_names()
    assert "--log-format is not applied under twistd" in proc.stdout, proc.describe()
    assert proc.stop() == 0, proc.describe()


def test_relay_logs_json_too(relay, make_config):
    """co2-relay --log-format json writes its serving line as JSON."""
    config = make_config()
    proc = relay("--config", config, "--listen", LOCAL, "--log-format", "json")
    proc.wait_serving()
    assert proc.stop() == 0, proc.describe()
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert any("co2 relay" in r["message"] and SERVING.search(r["message"]) for r in records)
