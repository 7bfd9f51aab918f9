"""config.py: defaults, checking, one-line errors naming file and key."""

from __future__ import annotations

import os

import pytest

from co2 import Config, ConfigError, load_config, make_config
from co2._config import default_plugin_dir


def write(tmp_path, text, name="config.py"):
    """Write a config file; its path."""
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_defaults():
    """An empty config gives the documented defaults."""
    config = make_config({})
    assert config == Config()
    assert config.plugin_list == () and config.plugin_config == {}
    assert config.listen == "tcp:2004:interface=127.0.0.1"
    assert config.amp_listen is None and config.peers == () and config.spool is None
    assert config.log_level == "info" and config.max_request_size == 1024 * 1024
    assert config.plugin_dir == default_plugin_dir()


def test_shipped_config_is_valid():
    """The config.py at the top of the project loads the example plugins."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    config = load_config(os.path.join(root, "config.py"))
    assert config.plugin_list == ("example", "ham")
    assert config.plugin_dir == os.path.join(root, "plugin")


def test_relay_settings(tmp_path):
    """The relay settings are read and checked."""
    path = write(tmp_path, (
        "relay_plugins = ['relay.shape', 'mine']\n"
        "relay_plugin_config = {'relay.shape': {'accept': ['struct']}}\n"
        "outbox_limit = 10\noutbox_bytes = 1000\ncall_timeout = 2.5\n"
        "max_hops = 4\nseen_limit = 50\n"
    ))
    config = load_config(path)
    assert config.relay_plugins == ("relay.shape", "mine")
    assert config.relay_plugin_config == {"relay.shape": {"accept": ["struct"]}}
    assert (config.outbox_limit, config.outbox_bytes, config.call_timeout) == (10, 1000, 2.5)
    assert (config.max_hops, config.seen_limit) == (4, 50)


def test_shipped_network_configs_are_valid():
    """The three configs in network/ load, and the satellites dial the relay's AMP port."""
    root = os.path.join(os.path.dirname(default_plugin_dir()), "network")
    relay = load_config(os.path.join(root, "relay.py"))
    port = relay.amp_listen.split(":")[1]
    for name in ("alpha.py", "beta.py"):
        config = load_config(os.path.join(root, name))
        assert config.peers == (f"tcp:host=127.0.0.1:port={port}",)
        assert config.spool.startswith(os.path.join(root, "var"))


def test_relative_paths_are_relative_to_the_config_file(tmp_path):
    """plugin_dir and spool are taken from the config file's directory."""
    (tmp_path / "plugs").mkdir()
    config = load_config(write(tmp_path, "plugin_dir = 'plugs'\nspool = 'data/spool'\n"))
    assert config.plugin_dir == str(tmp_path / "plugs")
    assert config.spool == str(tmp_path / "data" / "spool")


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
    assert config.plugin_list == ("a", "b")
    assert config.plugin_config == {"a": {"x": 1}}
    assert config.peers == ("tcp:host=127.0.0.1:port=2005", "http://127.0.0.1:2006/")
    assert config.log_level == "debug" and config.max_request_size == 4096
    assert config.exit_timeout == 0.5 and config.path == path


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
    assert config.allowed_hosts == ("sat1.example", "[::1]", "*")
    assert config.allowed_origins == ("https://dash.example:8443",)
    assert config.max_response_size == 1000


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


def test_settings_for_every_config_field():
    """Every Config field but path can be set from a config file."""
    from dataclasses import fields

    from co2._config import _checks

    assert set(_checks("/")) == {f.name for f in fields(Config)} - {"path"}


def test_data_dir_holds_the_spool_unless_spool_names_one(tmp_path):
    """data_dir gives the spool (and with it the plugins' state) a home; spool still wins."""
    config = make_config({"data_dir": "var"}, str(tmp_path / "config.py"))
    assert config.data_dir == str(tmp_path / "var")
    assert config.spool == str(tmp_path / "var" / "spool.sqlite")
    config = make_config({"data_dir": "var", "spool": "elsewhere.db"}, str(tmp_path / "config.py"))
    assert config.spool == str(tmp_path / "elsewhere.db")
    assert make_config({}).spool is None
