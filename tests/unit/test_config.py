"""config.py: defaults, checking, one-line errors naming file and key."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from dataclasses import dataclass, fields
from pathlib import Path

import pytest
from twisted.logger import LogLevel

from co2 import ConfigError
from co2._config import Section, split_settings, want_str
from satellites import Config, load_config, make_config
from satellites._settings import SECTIONS, default_plugin_dir

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path, text, name="config.py"):
    """Write a config file; its path."""
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_defaults():
    """An empty config gives the documented defaults."""
    config = make_config({})
    assert config == Config()
    assert config.host.plugin_list == () and config.host.plugin_config == {}
    assert config.front.listen == "tcp:2004:interface=127.0.0.1"
    assert config.relay.amp_listen is None and config.relay.peers == () and config.relay.spool is None
    assert config.node.log_level == "info" and config.node.max_request_size == 1024 * 1024
    assert config.host.plugin_dir == default_plugin_dir()


def test_shipped_config_is_valid():
    """The config.py at the top of the project loads the example plugins."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    config = load_config(os.path.join(root, "config.py"))
    assert config.host.plugin_list == ("example", "ham")
    assert config.host.plugin_dir == os.path.join(root, "plugin")


def test_relay_settings(tmp_path):
    """The relay settings are read and checked."""
    path = write(tmp_path, (
        "relay_plugins = ['relay.shape', 'mine']\n"
        "relay_plugin_config = {'relay.shape': {'accept': ['struct']}}\n"
        "outbox_limit = 10\noutbox_bytes = 1000\ncall_timeout = 2.5\n"
        "max_hops = 4\nseen_limit = 50\n"
    ))
    config = load_config(path)
    relay = config.relay
    assert relay.relay_plugins == ("relay.shape", "mine")
    assert relay.relay_plugin_config == {"relay.shape": {"accept": ["struct"]}}
    assert (relay.outbox_limit, relay.outbox_bytes, config.node.call_timeout) == (10, 1000, 2.5)
    assert (relay.max_hops, relay.seen_limit) == (4, 50)


def test_shipped_network_configs_are_valid():
    """The three configs in network/ load, and the satellites dial the relay's AMP port."""
    root = os.path.join(os.path.dirname(default_plugin_dir()), "network")
    relay = load_config(os.path.join(root, "relay.py"))
    port = relay.relay.amp_listen.split(":")[1]
    for name in ("alpha.py", "beta.py"):
        config = load_config(os.path.join(root, name))
        assert config.relay.peers == (f"tcp:host=127.0.0.1:port={port}",)
        assert config.relay.spool.startswith(os.path.join(root, "var"))


def test_relative_paths_are_relative_to_the_config_file(tmp_path):
    """plugin_dir and spool are taken from the config file's directory."""
    (tmp_path / "plugs").mkdir()
    config = load_config(write(tmp_path, "plugin_dir = 'plugs'\nspool = 'data/spool'\n"))
    assert config.host.plugin_dir == str(tmp_path / "plugs")
    assert config.relay.spool == str(tmp_path / "data" / "spool")


def test_full_config(tmp_path):
    """Every setting is read."""
    path = write(tmp_path, """
import os
plugin_list = ["a", "b"]
plugin_config = {"a": {"x": 1}}
listen = "tcp:0:interface=127.0.0.1"
amp_listen = "tcp:0:interface=127.0.0.1"
peers = ["tcp:host=127.0.0.1:port=2005", "http://127.0.0.1:2006/"]
log_level = "DEBUG"
max_request_size = 4096
exit_timeout = 0.5
_private = object()
def helper():
    pass
""")
    config = load_config(path)
    assert config.host.plugin_list == ("a", "b")
    assert config.host.plugin_config == {"a": {"x": 1}}
    assert config.relay.peers == ("tcp:host=127.0.0.1:port=2005", "http://127.0.0.1:2006/")
    assert config.node.log_level == "debug" and config.node.max_request_size == 4096
    assert config.host.exit_timeout == 0.5 and config.path == path


def test_unknown_names_are_warned_about(tmp_path):
    """An unknown name is named in a warning and otherwise ignored."""
    warnings: list[str] = []
    load_config(write(tmp_path, "colour = 'blue'\n"), warn=warnings.append)
    assert len(warnings) == 1 and "colour" in warnings[0] and "config.py" in warnings[0]


BAD = {
    "plugin_dir": ["42", "'does/not/exist'"],
    "plugin_list": ["'ham'", "['a-b']", "['a', 'a']", "[1]", "['class']"],
    "plugin_config": ["[]", "{'a': 1}", "{1: {}}", "{'a': {1: 2}}"],
    "listen": ["42", "'nonsense:1'", "'tcp:notaport'"],
    "amp_listen": ["7", "'tcp:x'"],
    "peers": ["'http://h:1/'", "[1]", "['http://:80/']", "['bogus:thing']"],
    "spool": ["3"],
    "log_level": ["'loud'", "1"],
    "max_request_size": ["0", "-1", "'big'", "True", "1.5"],
    "exit_timeout": ["0", "'x'"],
    "max_xml_depth": ["0", "True", "2.5"],
    "max_connections": ["0", "-3", "'many'"],
    "idle_timeout": ["0", "-1", "None"],
    "request_timeout": ["0", "False"],
    "relay_plugins": ["'relay.shape'", "['a-b']", "['a..b']", "[3]", "['a', 'a']", "['x.class']"],
    "relay_plugin_config": ["[]", "{'a': 1}"],
    "outbox_limit": ["0", "1.5"],
    "outbox_bytes": ["-1", "'64M'"],
    "call_timeout": ["0", "'30'"],
    "max_hops": ["0", "True"],
    "seen_limit": ["0", "None"],
    "forget_after": ["0", "-5"],
    "max_response_size": ["0", "'32M'", "True"],
    "allowed_hosts": [
        "'sat1.example'", "['http://sat1.example']", "['sat1.example:2004']", "['a..b']", "[1]", "['']",
    ],
    "allowed_origins": [
        "'https://a.example'", "['a.example']", "['https://a.example/path']", "['ftp://a']", "[None]",
    ],
}


@pytest.mark.parametrize(
    "key,value", [(k, v) for k, values in BAD.items() for v in values], ids=str
)
def test_wrong_values_name_file_and_key(tmp_path, key, value):
    """A wrong type or value raises ConfigError: one line with file, key and problem."""
    path = write(tmp_path, f"{key} = {value}\n")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    message = str(e.value)
    assert message.startswith(f"{path}: {key}: ")
    assert "\n" not in message


def test_browser_settings_are_read(tmp_path):
    """allowed_hosts and allowed_origins are kept lower case; max_response_size as given."""
    config = load_config(write(tmp_path, (
        "allowed_hosts = ['Sat1.Example', '[::1]', '*']\n"
        "allowed_origins = ['https://Dash.Example:8443']\n"
        "max_response_size = 1000\n"
    )))
    assert config.front.allowed_hosts == ("sat1.example", "[::1]", "*")
    assert config.front.allowed_origins == ("https://dash.example:8443",)
    assert config.front.max_response_size == 1000


def test_missing_file(tmp_path):
    """A missing config file is named with the reason."""
    path = str(tmp_path / "absent.py")
    with pytest.raises(ConfigError, match=r"absent\.py: cannot read: No such file"):
        load_config(path)


def test_syntax_error_names_the_line(tmp_path):
    """A config with a syntax error names its line."""
    with pytest.raises(ConfigError, match=r"config.py: line 2: syntax error"):
        load_config(write(tmp_path, "a = 1\nb = (\n"))


def test_exception_while_running_names_the_line(tmp_path):
    """A config that raises names the line and the exception."""
    with pytest.raises(ConfigError, match=r"line 3: raised ZeroDivisionError"):
        load_config(write(tmp_path, "a = 1\n\nb = 1 / 0\n"))


DOCUMENTED = frozenset(re.findall(r"^\| \[`(\w+)`\]", (ROOT / "docs" / "config.md").read_text(), re.M))
"""The keys docs/config.md lists in its table of settings."""


@pytest.mark.parametrize("section", SECTIONS, ids=lambda section: section.__name__)
def test_each_section_checks_exactly_the_keys_it_owns(section):
    """A section's checks name its fields, no more and no fewer."""
    assert set(section.checks("/")) == {f.name for f in fields(section)}


def test_every_documented_key_belongs_to_one_section():
    """The sections together own every key docs/config.md lists, each key once."""
    owned = [key for section in SECTIONS for key in section.checks("/")]
    assert len(owned) == len(set(owned)), sorted(key for key in owned if owned.count(key) > 1)
    assert set(owned) == DOCUMENTED
    assert {f.name for f in fields(Config)} == {"path", "node", "auth", "relay", "host", "front", "manhole"}


def test_a_key_owned_twice_is_refused():
    """Two sections claiming one key is a mistake in the code, found at once."""

    @dataclass(frozen=True)
    class Twice(Section):
        listen: str = ""

        @classmethod
        def checks(cls, base):
            return {"listen": want_str}

    with pytest.raises(TypeError, match="listen is owned by both FrontSettings and Twice"):
        split_settings({}, (*SECTIONS, Twice))


def test_each_setting_lands_in_its_section(tmp_path):
    """A flat config.py is split by owner: node, auth, relay, host, front."""
    config = load_config(write(tmp_path, (
        "log_level = 'warn'\nauth_methods = ['ham.*']\nmax_hops = 3\nexit_timeout = 2\nidle_timeout = 9\n"
    )))
    assert config.node.log_level_constant == LogLevel.warn
    assert config.auth.auth_methods == ("ham.*",)
    assert (config.relay.max_hops, config.host.exit_timeout, config.front.idle_timeout) == (3, 2, 9)


def test_reading_a_config_loads_no_manhole_module():
    """co2's config reading imports neither twisted.conch nor the manhole's checks (satellites._ssh)."""
    code = (
        "import sys, co2, co2._config, co2._settings\n"
        "co2.NodeSettings(), co2.AuthSettings()\n"
        "print(sorted(m for m in sys.modules if m.startswith(('twisted.conch', 'satellites', 'relay'))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
    # Nor later, from inside a check: no import of them anywhere in the modules.
    for module in ("_config.py", "_settings.py"):
        nodes = list(ast.walk(ast.parse((ROOT / "co2" / module).read_text())))
        imported = {alias.name for node in nodes if isinstance(node, ast.Import) for alias in node.names}
        imported |= {node.module or "" for node in nodes if isinstance(node, ast.ImportFrom)}
        assert not {name for name in imported if "ssh" in name or "conch" in name}, module


def test_data_dir_holds_the_spool_unless_spool_names_one(tmp_path):
    """data_dir gives the spool (and with it the plugins' state) a home; spool still wins."""
    config = make_config({"data_dir": "var"}, str(tmp_path / "config.py"))
    assert config.relay.data_dir == str(tmp_path / "var")
    assert config.relay.spool == str(tmp_path / "var" / "spool.sqlite")
    config = make_config({"data_dir": "var", "spool": "elsewhere.db"}, str(tmp_path / "config.py"))
    assert config.relay.spool == str(tmp_path / "elsewhere.db")
    assert make_config({}).relay.spool is None
