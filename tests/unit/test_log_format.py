"""--log-format: text (the default) or one JSON object per line."""

from __future__ import annotations

import io
import json

import pytest
from twisted.logger import Logger, LogLevel, LogPublisher
from twisted.python import usage

from co2.testing import SERVING
from satellites._cli import Options
from satellites._logging import log_observer
from satellites._relay_command import Options as RelayOptions


def emit(log_format, level=LogLevel.info):
    """A publisher writing to a StringIO in ``log_format`` from ``level`` up; both."""
    out = io.StringIO()
    publisher = LogPublisher(log_observer(log_format, level, out))
    return Logger(namespace="co2.test", observer=publisher), out


def records(out):
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_json_has_time_level_namespace_and_message():
    """Each event is one line holding a JSON object with time, level, namespace and the text."""
    log, out = emit("json")
    log.info("serving XML-RPC at {url} with {n} plugin(s)", url="http://127.0.0.1:2004/", n=2)
    log.warn("second")
    [first, second] = records(out)
    assert first["message"] == "serving XML-RPC at http://127.0.0.1:2004/ with 2 plugin(s)"
    assert (first["level"], first["namespace"]) == ("info", "co2.test")
    assert first["time"].endswith("+00:00")
    assert "failure" not in first
    assert second["level"] == "warn"
    assert SERVING.search(out.getvalue().splitlines()[0])


def test_json_holds_the_failure_text():
    """An event with a failure carries its traceback in failure."""
    log, out = emit("json")
    try:
        raise ZeroDivisionError("division by zero")
    except ZeroDivisionError:
        log.failure("{what} broke", what="it")
    [record] = records(out)
    assert record["message"] == "it broke"
    assert record["level"] == "critical"
    assert "ZeroDivisionError" in record["failure"]
    assert "Traceback" in record["failure"]


def test_json_lines_stay_lines():
    """A message with newlines or unusual values is still one line of JSON."""
    log, out = emit("json")
    log.info("a\nb {thing}", thing=object())
    assert len(out.getvalue().splitlines()) == 1
    assert records(out)[0]["message"].startswith("a\nb <object object")


def test_the_level_filter_applies_to_json():
    """Events below the log level are not written."""
    log, out = emit("json", LogLevel.warn)
    log.info("quiet")
    log.error("loud")
    assert [r["message"] for r in records(out)] == ["loud"]


def test_text_is_the_usual_format():
    """--log-format text writes Twisted's text lines."""
    log, out = emit("text")
    log.info("hello")
    assert "[co2.test#info] hello" in out.getvalue()


def test_the_default_is_text(tmp_path):
    """Without --log-format the format is text; both commands take json."""
    (tmp_path / "config.py").write_text("")
    for options_class in (Options, RelayOptions):
        options = options_class()
        options.parseOptions(["--config", str(tmp_path / "config.py")])
        assert options["log-format"] == "text"
        options = options_class()
        options.parseOptions(["--config", str(tmp_path / "config.py"), "--log-format", "json"])
        assert options["log-format"] == "json"


def test_an_unknown_format_is_a_usage_error(tmp_path):
    """--log-format xml is a usage error naming the option and the choices."""
    (tmp_path / "config.py").write_text("")
    with pytest.raises(usage.UsageError, match=r"--log-format: expected one of text, json, got 'xml'"):
        Options().parseOptions(["--config", str(tmp_path / "config.py"), "--log-format", "xml"])
