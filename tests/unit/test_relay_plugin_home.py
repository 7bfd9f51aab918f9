"""Relay plugins have a home: docs/relay.md's example, saved beside the config as shown, loads as shown."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from co2.testing import TestReactor
from relay import Relay
from satellites import load_config

DOC = Path(__file__).resolve().parents[2] / "docs" / "relay.md"


def doc_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)


def stamp_module() -> str:
    [block] = [block for block in doc_blocks() if block.startswith("# mynet/stamp.py")]
    return block


def stamp_config() -> str:
    [block] = [block for block in doc_blocks() if block.startswith('relay_plugins = ["mynet.stamp"]')]
    return block


@pytest.fixture
def forget_mynet():
    yield
    for name in [name for name in sys.modules if name == "mynet" or name.startswith("mynet.")]:
        del sys.modules[name]


@pytest.mark.parametrize("where", ["beside", "relay_plugin_dir"])
def test_the_docs_relay_plugin_loads_from_beside_the_config(tmp_path, where, forget_mynet):
    home = tmp_path if where == "beside" else tmp_path / "plugins"
    (home / "mynet").mkdir(parents=True)
    (home / "mynet" / "stamp.py").write_text(stamp_module())
    config = stamp_config() + ('relay_plugin_dir = "plugins"\n' if where == "relay_plugin_dir" else "")
    (tmp_path / "config.py").write_text(config)
    relay = Relay(load_config(str(tmp_path / "config.py")), TestReactor(), lambda *args: None)
    try:
        [plugin] = relay.router.plugins
        assert plugin.name == "stamp" and plugin.tag == "hub-1"
        assert str(home) not in sys.path  # looked in, not left on the path
    finally:
        relay.close()
