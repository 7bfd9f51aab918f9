"""
Plugin isolation in a real ``co2-satellite``: plugins that raise, block the
reactor or never answer, loaded beside good ones, harm none of them.
"""

from __future__ import annotations

import http.client
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from xmlrpc.client import Fault, dumps

import pytest
from conftest import eventually

LOCAL = "tcp:0:interface=127.0.0.1"
EXIT_TIMEOUT = 0.5
NAP = 0.3
LONG_NAP = 1.2
STOP_BOUND = 5.0

GOOD = '''
from co2 import Co2Plugin


class X_Good(Co2Plugin):
    """Keeps the data it receives; records its __exit__ in exit_file."""

    def __init__(self, var_dict):
        Co2Plugin.__init__(self, var_dict)
        self.got = []

    def receive(self, data_dict):
        self.got.append(data_dict["data"]["n"])

    def x_got(self) -> list:
        """Return the n of every message received, in order."""
        return self.got

    def x_ping(self) -> str:
        """Return "pong"."""
        return "pong"

    def __exit__(self):
        with open(self.var_dict["exit_file"], "a") as f:
            f.write(self.var_dict["package"] + "\\n")
'''

RAISER = '''
from co2 import Co2Plugin


class X_Raiser(Co2Plugin):
    """Raises in receive, in x_boom and in __exit__."""

    def receive(self, data_dict):
        raise RuntimeError("receive exploded")

    def x_boom(self):
        raise RuntimeError("x_boom exploded")

    def __exit__(self):
        raise RuntimeError("__exit__ exploded")


class X_BadSender(Co2Plugin):
    """Sends what XML-RPC cannot carry from receive."""

    def receive(self, data_dict):
        self.send({"not": {1, 2}})
'''

BLOCKER = '''
import time

from co2 import Co2Plugin


class X_Blocker(Co2Plugin):
    """Sleeps in receive, in the reactor thread, for the message's nap."""

    def receive(self, data_dict):
        time.sleep(data_dict["data"]["nap"])
'''

HANGER = '''
from twisted.internet import defer

from co2 import Co2Plugin


class X_Hanger(Co2Plugin):
    """Returns a Deferred that never fires from receive, x_wait and __exit__."""

    def receive(self, data_dict):
        return defer.Deferred()

    def x_wait(self):
        return defer.Deferred()

    def __exit__(self):
        return defer.Deferred()
'''

QUITTER = '''
import sys

from co2 import Co2Plugin


class X_Quitter(Co2Plugin):
    """Calls sys.exit in receive and in __exit__."""

    def receive(self, data_dict):
        sys.exit("receive quit")

    def __exit__(self):
        sys.exit("__exit__ quit")
'''


@contextmanager
def pending_call(port: int, method: str) -> Iterator[http.client.HTTPConnection]:
    """Post a call to ``method`` and leave it unanswered; the connection is closed afterwards."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("POST", "/RPC2", dumps((), method), {"Content-Type": "text/xml"})
        yield connection
    finally:
        connection.close()


def unanswered(connection: http.client.HTTPConnection, wait: float) -> bool:
    """Whether ``connection`` still has no byte of answer after ``wait`` seconds."""
    assert connection.sock is not None
    connection.sock.settimeout(wait)
    try:
        connection.sock.recv(1, socket.MSG_PEEK)
    except TimeoutError:
        return True
    return False


@pytest.fixture
def offended(satellite, make_config, make_plugin, plugin_dir, tmp_path):
    """A serving satellite loading alpha (good), raiser, blocker, hanger, quitter, omega (good)."""
    make_plugin("alpha", "Good.", good=GOOD)
    make_plugin("raiser", "Raises everywhere.", m=RAISER)
    make_plugin("blocker", "Blocks the reactor.", m=BLOCKER)
    make_plugin("hanger", "Never answers.", m=HANGER)
    make_plugin("quitter", "Calls sys.exit.", m=QUITTER)
    make_plugin("omega", "Good.", good=GOOD)
    exit_file = str(tmp_path / "exits.txt")
    config = make_config(
        plugin_dir=str(plugin_dir),
        plugin_list=["alpha", "raiser", "blocker", "hanger", "quitter", "omega"],
        plugin_config={name: {"exit_file": exit_file} for name in ("alpha", "omega")},
        exit_timeout=EXIT_TIMEOUT,
    )
    proc = satellite("--config", config, "--listen", LOCAL)
    proc.wait_serving()
    return proc


def exits_of(tmp_path: Path) -> list[str]:
    """The packages whose ``__exit__`` wrote to ``exits.txt``, in order."""
    path = tmp_path / "exits.txt"
    return path.read_text().splitlines() if path.exists() else []


def assert_logged(proc: Any, *phrases: str) -> None:
    """Assert that ``proc``'s log holds each of ``phrases``."""
    for phrase in phrases:
        assert phrase in proc.stdout, f"{phrase!r} not logged\n{proc.describe()}"


def test_good_plugins_keep_receiving_and_answering_beside_offenders(offended):
    """Beside plugins that raise, quit, block and hang, good ones get every message and answer."""
    naps = [NAP, LONG_NAP, NAP, NAP]
    with pending_call(offended.port, "hanger.m.wait") as hung, offended.proxy(timeout=5) as proxy:
        for n, nap in enumerate(naps):
            assert proxy.notify({"data": {"n": n, "nap": nap}, "host_id": "1@127.0.0.1:9"}) is True
            assert proxy.alpha.good.ping() == "pong"
        with pytest.raises(Fault) as e:
            proxy.raiser.m.boom()
        assert (e.value.faultCode, e.value.faultString) == (-32500, "RuntimeError: x_boom exploded")
        expected = list(range(len(naps)))
        assert eventually(lambda: proxy.alpha.good.got() == expected), offended.describe()
        assert eventually(lambda: proxy.omega.good.got() == expected), offended.describe()
        assert proxy.omega.good.ping() == "pong"
        assert unanswered(hung, 0.2)
    assert_logged(
        offended,
        "raiser.m.X_Raiser.receive raised",
        "raiser.m.X_BadSender.receive raised",
        "raiser.m.X_BadSender cannot send dict",
        "blocker.m.X_Blocker.receive kept the reactor busy for",
        "raiser.m.boom (plugin raiser) raised",
        "quitter.m.X_Quitter.receive raised",
    )
    assert offended.count(r"blocker\.m\.X_Blocker\.receive kept the reactor busy") == 1


def test_sigterm_beside_offenders_exits_0_in_bounded_time(offended, tmp_path):
    """SIGTERM with a call hanging exits 0 after about exit_timeout; good plugins get __exit__."""
    with pending_call(offended.port, "hanger.m.wait") as hung:
        assert unanswered(hung, 0.2)
        started = time.monotonic()
        assert offended.stop(signal.SIGTERM, timeout=STOP_BOUND) == 0, offended.describe()
        took = time.monotonic() - started
        with pytest.raises(http.client.RemoteDisconnected):
            hung.getresponse()
    assert EXIT_TIMEOUT <= took < STOP_BOUND, offended.describe()
    assert exits_of(tmp_path) == ["omega", "alpha"]
    assert_logged(
        offended,
        f"hanger.m.X_Hanger.__exit__ failed or took over {EXIT_TIMEOUT}s",
        "raiser.m.X_Raiser.__exit__ failed",
        "quitter.m.X_Quitter.__exit__ failed",
        "co2 satellite stopped",
    )
    assert "shutdown took over" not in offended.stderr, offended.describe()
