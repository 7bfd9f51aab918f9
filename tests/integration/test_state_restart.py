"""self.state across restarts of a real satellite: data_dir keeps it, even through kill -9."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

MEMORY = '''
from co2 import Co2Plugin


class X_Memory(Co2Plugin):
    """Remembers values in self.state."""

    def x_remember(self, key, value):
        self.state[key] = value
        return True

    def x_recall(self, key):
        return self.state.get(key, "")
'''


def test_state_survives_a_restart_and_a_kill(
    satellite: Any, start: Any, make_config: Any, make_plugin: Any, plugin_dir: Path, tmp_path: Path
) -> None:
    make_plugin("memory", "Remembers values.", m=MEMORY)
    config = make_config(listen="tcp:0:interface=127.0.0.1", plugin_dir=str(plugin_dir),
                         plugin_list=["memory"], data_dir="var")
    proc = satellite("--config", config, cwd=tmp_path)
    proc.wait_serving()
    assert proc.proxy().memory.m.remember("colour", {"name": "teal", "rgb": [0, 128, 128]}) is True
    assert proc.stop() == 0
    assert (tmp_path / "var" / "spool.sqlite").exists()

    proc = start.restart(proc)
    proc.wait_serving()
    assert proc.proxy().memory.m.recall("colour") == {"name": "teal", "rgb": [0, 128, 128]}
    assert proc.proxy().memory.m.remember("answered", 42) is True
    assert proc.stop(signal.SIGKILL) == -signal.SIGKILL

    proc = start.restart(proc)
    proc.wait_serving()
    assert proc.proxy().memory.m.recall("answered") == 42
    assert proc.stop() == 0
