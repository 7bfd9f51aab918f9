"""Hot reload of a running co2-satellite: co2.reload over XML-RPC, then SIGHUP."""

from __future__ import annotations

import signal
import xmlrpc.client
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import eventually

from co2 import faults

LOCAL = "tcp:0:interface=127.0.0.1"

V1 = '''
from co2 import Co2Plugin


class X_Live(Co2Plugin):
    def x_version(self) -> int:
        return 1
'''

V2 = V1.replace("def x_version(self) -> int:\n        return 1",
                "def x_version(self) -> int:\n        return 2\n\n"
                "    def x_added(self) -> str:\n        return 'new'")

V3 = V1.replace("return 1", "return 3")


def test_reload_by_xmlrpc_then_by_sighup(
    satellite: Callable[..., object], make_plugin: Callable[..., Path],
    make_config: Callable[..., Path], tmp_path: Path,
) -> None:
    """co2.reload makes an edit live, a syntax error keeps the old code, SIGHUP reloads, SIGTERM exits 0."""
    package = make_plugin("live", "Changes while it runs.", m=V1)
    config = make_config(listen=LOCAL, plugin_dir="plugins", plugin_list=["live"])
    proc = satellite("--config", config, cwd=tmp_path)
    proc.wait_serving()
    sat = proc.proxy()
    assert sat.live.m.version() == 1

    (package / "m.py").write_text(V2)
    answer = sat.co2.reload("live")
    assert answer == {"package": "live", "plugins": ["live.m.X_Live"],
                      "methods": ["live.m.added", "live.m.version"]}
    assert sat.live.m.version() == 2 and sat.live.m.added() == "new"

    (package / "m.py").write_text("def x_version(:\n")
    with pytest.raises(xmlrpc.client.Fault) as info:
        sat.co2.reload("live")
    assert info.value.faultCode == faults.RELOAD_FAILED
    assert "SyntaxError" in info.value.faultString and "Traceback" not in info.value.faultString
    assert sat.live.m.version() == 2
    proc.wait_output(r"reload of plugin package live failed; the running version is kept")

    with pytest.raises(xmlrpc.client.Fault) as info:
        sat.co2.reload("nope")
    assert info.value.faultCode == faults.INVALID_PARAMS

    (package / "m.py").write_text(V3)
    reloaded = r"reloaded plugin package live"
    assert proc.count(reloaded) == 1
    proc.popen.send_signal(signal.SIGHUP)
    assert eventually(lambda: proc.count(reloaded) == 2), proc.describe()
    assert sat.live.m.version() == 3
    assert "live.m.added" not in sat.co2.get_method_names()

    proc.popen.send_signal(signal.SIGHUP)
    proc.wait_output(r"plugin package live unchanged; not reloaded")
    assert proc.stop() == 0, proc.describe()


def test_sighup_reloads_under_twistd(
    twistd: Callable[..., object], make_plugin: Callable[..., Path],
    make_config: Callable[..., Path], tmp_path: Path,
) -> None:
    """twistd co2-satellite reloads the changed packages on SIGHUP too, and still stops with 0."""
    package = make_plugin("live", "Changes while it runs.", m=V1)
    config = make_config(listen=LOCAL, plugin_dir="plugins", plugin_list=["live"])
    proc = twistd("--config", config, cwd=tmp_path)
    proc.wait_serving()
    sat = proc.proxy()
    assert sat.live.m.version() == 1
    (package / "m.py").write_text(V3)
    proc.popen.send_signal(signal.SIGHUP)
    assert eventually(lambda: proc.count(r"reloaded plugin package live") == 1), proc.describe()
    assert sat.live.m.version() == 3
    assert proc.stop() == 0, proc.describe()
