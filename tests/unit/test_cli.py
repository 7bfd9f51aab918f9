"""The co2-satellite command line, step by step."""

from __future__ import annotations

import io

import pytest
from twisted.internet.testing import MemoryReactorClock
from twisted.python import usage

from co2.testing import TestReactor, write_package
from satellites import node_service
from satellites._cli import Options, list_plugins, service_for


def options_for(tmp_path, text, *args):
    """Parse a command line with a config file holding ``text``."""
    path = tmp_path / "config.py"
    path.write_text(text)
    options = Options()
    options.parseOptions(["--config", str(path), *args])
    return options


def test_listen_overrides_the_config(tmp_path):
    """--listen replaces listen from the config."""
    options = options_for(tmp_path, "", "--listen", "tcp:0:interface=127.0.0.1")
    assert options.config.front.listen == "tcp:0:interface=127.0.0.1"


def test_bad_listen_option_is_a_usage_error(tmp_path):
    """A --listen that is no endpoint is a usage error naming the option."""
    with pytest.raises(usage.UsageError, match="--listen"):
        options_for(tmp_path, "", "--listen", "nonsense:42")


def test_config_errors_are_usage_errors(tmp_path):
    """A wrong config value becomes a usage error with the one-line message."""
    with pytest.raises(usage.UsageError, match=r"config\.py: listen: expected a string"):
        options_for(tmp_path, "listen = 42\n")


def test_list_plugins_marks_enabled_and_missing(tmp_path):
    """--list-plugins output names each package, enabled or not, with its description."""
    plugins = tmp_path / "p"
    write_package(plugins, "ham", {}, init='"""Ham."""\n')
    write_package(plugins, "eggs", {}, init='"""Eggs."""\n')
    options = options_for(tmp_path, "plugin_dir = 'p'\nplugin_list = ['ham', 'gone']\n")
    out = io.StringIO()
    list_plugins(options.config, out)
    lines = out.getvalue().splitlines()
    assert lines[1].split() == ["eggs", "disabled", "Eggs."]
    assert lines[2].split() == ["ham", "enabled", "Ham."]
    assert lines[3].split()[:2] == ["gone", "missing"]


def test_service_listens_loads_and_stops(tmp_path):
    """The service binds its endpoint, loads plugins, and on stop closes and exits them."""
    plugins = tmp_path / "p"
    write_package(plugins, "ham", {"m": "from co2 import Co2Plugin\nclass X_A(Co2Plugin):\n"
                                        "    def __exit__(self):\n        self.var_dict['out']"
                                        ".append('exit')\n"})
    out: list[str] = []
    options = options_for(tmp_path, "plugin_dir = 'p'\nplugin_list = ['ham']\n"
                                    "listen = 'tcp:2004:interface=127.0.0.1'\n")
    options.config.host.plugin_config["ham"] = {"out": out}  # type: ignore[index]
    reactor = MemoryReactorClock()
    node = service_for(options, reactor)
    service = node.service
    service.privilegedStartService()
    service.startService()
    started: list[object] = []
    service.started.addCallback(started.append)
    assert started == [None]
    assert reactor.tcpServers[0][0] == 2004
    assert node.relay.host_id.endswith("@127.0.0.1:2004")
    assert [str(p) for p in node.satellite.plugins] == ["ham.m.X_A"]
    service.stopService()
    reactor.advance(10)
    assert out == ["exit"]


def test_strict_fails_the_start_when_a_plugin_breaks(tmp_path):
    """With --strict a broken package makes started fail with StrictLoadError."""
    from satellites import StrictLoadError

    plugins = tmp_path / "p"
    write_package(plugins, "ham", {"m": "raise ImportError('x')\n"})
    options = options_for(tmp_path, "plugin_dir = 'p'\nplugin_list = ['ham']\n", "--strict")
    service = service_for(options, MemoryReactorClock()).service
    service.startService()
    failures: list[object] = []
    service.started.addErrback(failures.append)
    assert failures and failures[0].check(StrictLoadError)


def test_a_listen_failure_fails_the_start(tmp_path):
    """An endpoint that cannot be bound makes started fail with ListenError naming it."""
    from twisted.internet.error import CannotListenError

    from satellites import ListenError

    class Refusing(MemoryReactorClock):
        def listenTCP(self, port, factory, backlog=50, interface=""):
            raise CannotListenError(interface, port, OSError("in use"))

    options = options_for(tmp_path, "")
    service = node_service(options.config, Refusing()).service
    service.startService()
    failures: list[object] = []
    service.started.addErrback(failures.append)
    assert failures[0].check(ListenError)
    assert "tcp:2004:interface=127.0.0.1" in failures[0].getErrorMessage()


def test_test_reactor_runs_thread_work_inline():
    """The testing reactor's pool runs work at once and reports its result."""
    reactor = TestReactor()
    results: list[object] = []
    reactor.getThreadPool().callInThreadWithCallback(lambda ok, r: results.append((ok, r)),
                                                     lambda: 5)
    assert results == [(True, 5)]


def test_start_up_objects_are_left_out_of_later_collections():
    """Once a node has started, what start-up made is frozen out of garbage collection."""
    import gc

    from satellites._cli import _freeze_heap

    gc.unfreeze()
    try:
        _freeze_heap()
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
