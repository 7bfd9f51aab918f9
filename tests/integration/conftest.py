"""
Fixtures for the integration tests: real ``co2-satellite``, ``co2-relay``
and ``twistd`` processes, their output, and temporary plugin directories
and configs.

Every process started here is ended by a fixture finalizer (SIGTERM, a
bounded wait, then SIGKILL), whether or not its test passed.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import textwrap
import time
import xmlrpc.client
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from co2.testing import (
    AMP_LISTENING,
    SERVING,
    OutputReader,
    end_process,
    start_command,
    timeout_proxy,
    write_package,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN_DIR = Path(sys.executable).parent
START_TIMEOUT = 15.0
EXIT_TIMEOUT = 15.0
CALL_TIMEOUT = 20.0


def eventually(probe: Callable[[], Any], timeout: float = 5.0) -> Any:
    """Call ``probe`` until it returns something true or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.05)


class Proc:
    """A started command, its output so far, and ways to stop it."""

    def __init__(self, args: Sequence[str], cwd: Path) -> None:
        self.args = [str(a) for a in args]
        self.cwd = cwd
        self.popen = start_command(self.args, cwd)
        self._stdout = OutputReader(self.popen.stdout)
        self._stderr = OutputReader(self.popen.stderr)
        self.url = ""
        self.port = 0

    @property
    def stdout(self) -> str:
        return self._stdout.text

    @property
    def stderr(self) -> str:
        return self._stderr.text

    def describe(self) -> str:
        return (
            f"command: {self.args}\nexit status: {self.popen.poll()}\n"
            f"--- stdout ---\n{self.stdout}--- stderr ---\n{self.stderr}"
        )

    def wait_serving(self, timeout: float = START_TIMEOUT) -> str:
        """Wait for the ``serving XML-RPC at`` line; return the URL."""
        match = self._stdout.wait_for(SERVING, time.monotonic() + timeout)
        if match is None:
            pytest.fail(f"no 'serving XML-RPC at' line within {timeout}s\n{self.describe()}")
        self.url, self.port = match.group(1), int(match.group(2))
        return self.url

    def wait_output(self, pattern: str, timeout: float = START_TIMEOUT) -> re.Match[str]:
        """Wait until stdout matches the regular expression ``pattern``."""
        match = self._stdout.wait_for(re.compile(pattern), time.monotonic() + timeout)
        if match is None:
            pytest.fail(f"no output matching {pattern!r} within {timeout}s\n{self.describe()}")
        return match

    def wait_amp(self, timeout: float = START_TIMEOUT) -> int:
        """Wait for the ``listening for AMP links at`` line; return the port."""
        match = self._stdout.wait_for(AMP_LISTENING, time.monotonic() + timeout)
        if match is None:
            pytest.fail(f"no 'listening for AMP links' line within {timeout}s\n{self.describe()}")
        return int(match.group(1))

    def count(self, pattern: str) -> int:
        """How many times the regular expression ``pattern`` matches stdout so far."""
        return len(re.findall(pattern, self.stdout))

    def proxy(self, timeout: float = CALL_TIMEOUT) -> xmlrpc.client.ServerProxy:
        """A client for this process; a call gives up after ``timeout`` seconds."""
        assert self.url, "wait_serving() first"
        return timeout_proxy(self.url, timeout)

    def wait(self, timeout: float = EXIT_TIMEOUT) -> int:
        """Wait for the process to exit on its own; its exit status."""
        try:
            status = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running after {timeout}s\n{self.describe()}")
        self._stdout.join(5)
        self._stderr.join(5)
        return status

    def stop(self, sig: int = signal.SIGTERM, timeout: float = EXIT_TIMEOUT) -> int:
        """Send ``sig`` and wait for the process to exit; its exit status."""
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
        return self.wait(timeout)

    def kill(self) -> None:
        """End the process however it takes (for finalizers)."""
        end_process(self.popen, 5)
        self._stdout.join(2)
        self._stderr.join(2)


class ProcessStarter:
    """Starts commands and remembers them so they can all be ended."""

    def __init__(self) -> None:
        self.started: list[Proc] = []

    def __call__(self, *args: object, cwd: Path = REPO_ROOT) -> Proc:
        proc = Proc([str(a) for a in args], cwd)
        self.started.append(proc)
        return proc

    def restart(self, proc: Proc) -> Proc:
        """Start ``proc``'s command again, in the same directory (a new process)."""
        return self(*proc.args, cwd=proc.cwd)

    def end_all(self) -> None:
        for proc in self.started:
            proc.kill()


@contextmanager
def _starter() -> Iterator[ProcessStarter]:
    starter = ProcessStarter()
    try:
        yield starter
    finally:
        starter.end_all()


@pytest.fixture
def repo_root() -> Path:
    """The repository root (where ``config.py`` and ``plugin/`` are)."""
    return REPO_ROOT


@pytest.fixture
def start() -> Iterator[ProcessStarter]:
    """``start(program, *args, cwd=...)`` runs a command; all are ended afterwards."""
    with _starter() as starter:
        yield starter


@pytest.fixture
def satellite(start: ProcessStarter) -> Callable[..., Proc]:
    """``satellite(*args)`` runs ``co2-satellite *args`` from the repo root."""

    def run(*args: object, cwd: Path = REPO_ROOT) -> Proc:
        return start(BIN_DIR / "co2-satellite", *args, cwd=cwd)

    return run


@pytest.fixture
def relay(start: ProcessStarter) -> Callable[..., Proc]:
    """``relay(*args)`` runs ``co2-relay *args`` from the repo root."""

    def run(*args: object, cwd: Path = REPO_ROOT) -> Proc:
        return start(BIN_DIR / "co2-relay", *args, cwd=cwd)

    return run


def _twistd(start: ProcessStarter, plugin: str) -> Callable[..., Proc]:
    def run(*args: object, cwd: Path = REPO_ROOT) -> Proc:
        return start(BIN_DIR / "twistd", "-n", "--pidfile=", plugin, *args, cwd=cwd)

    return run


@pytest.fixture
def twistd(start: ProcessStarter) -> Callable[..., Proc]:
    """``twistd(*args)`` runs ``twistd -n --pidfile= co2-satellite *args``."""
    return _twistd(start, "co2-satellite")


@pytest.fixture
def twistd_relay(start: ProcessStarter) -> Callable[..., Proc]:
    """``twistd_relay(*args)`` runs ``twistd -n --pidfile= co2-relay *args``."""
    return _twistd(start, "co2-relay")


@pytest.fixture(scope="module")
def shipped_satellite() -> Iterator[Proc]:
    """One ``co2-satellite --config config.py`` with the shipped plugins, serving."""
    with _starter() as starter:
        proc = starter(
            BIN_DIR / "co2-satellite", "--config", "config.py",
            "--listen", "tcp:0:interface=127.0.0.1",
        )
        proc.wait_serving()
        yield proc


@pytest.fixture
def make_plugin(plugin_dir: Path) -> Callable[..., Path]:
    """
    ``make_plugin(name, description, module=source, ...)`` writes a plugin
    package into ``plugin_dir``: ``__init__.py`` with the description as its
    docstring and ``__all__`` listing the modules, and one file per module.
    """

    def make(name: str, description: str = "", **modules: str) -> Path:
        init = f'"""{description}"""\n\n__all__ = {sorted(modules)!r}\n'
        return write_package(plugin_dir, name, modules, init=init)

    return make


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., Path]:
    """
    ``make_config(text="", filename="config.py", **settings)`` writes
    ``filename`` in ``tmp_path``: ``text`` as it is, then
    ``name = repr(value)`` per setting.
    """

    def make(text: str = "", *, filename: str = "config.py", **settings: object) -> Path:
        lines = [textwrap.dedent(text)] + [f"{k} = {v!r}" for k, v in settings.items()]
        path = tmp_path / filename
        path.write_text("\n".join(lines) + "\n")
        return path

    return make


EXIT_RECORDER = '''
from co2 import Co2Plugin


class X_Recorder(Co2Plugin):
    """Appends its package's name to ``exit_file`` in ``__exit__``."""

    def __init__(self, var_dict):
        Co2Plugin.__init__(self, var_dict)

    def x_package(self) -> str:
        """Return the name of this plugin's package."""
        return self.var_dict["package"]

    def __exit__(self):
        with open(self.var_dict["exit_file"], "a") as f:
            f.write(self.var_dict["package"] + "\\n")
'''


@pytest.fixture
def exit_recorders(
    tmp_path: Path, make_plugin: Callable[..., Path]
) -> Callable[..., dict[str, dict[str, str]]]:
    """
    ``exit_recorders(*names)`` makes a plugin package per name that records
    its ``__exit__`` in ``tmp_path / "exits.txt"``; returns the
    ``plugin_config`` for them.
    """

    def make(*names: str) -> dict[str, dict[str, str]]:
        exit_file = str(tmp_path / "exits.txt")
        for name in names:
            make_plugin(name, f"Records the exit of {name}.", recorder=EXIT_RECORDER)
        return {name: {"exit_file": exit_file} for name in names}

    return make


@pytest.fixture
def exits(tmp_path: Path) -> Callable[[], list[str]]:
    """``exits()``: the packages whose ``__exit__`` ran, in order."""

    def read() -> list[str]:
        path = tmp_path / "exits.txt"
        return path.read_text().splitlines() if path.exists() else []

    return read
