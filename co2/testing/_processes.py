"""
Running co2's commands as real processes, for tests and measurements that
need them: starting one, reading what it prints as it prints it, and
calling it over XML-RPC without waiting for ever.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
import xmlrpc.client
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from co2._client import TimedTransport

__all__ = [
    "AMP_LISTENING", "SERVING", "OutputReader", "end_process", "rss_bytes", "start_command", "timeout_proxy",
]

SERVING = re.compile(r"serving XML-RPC at (https?://127\.0\.0\.1:(\d+)/)")
"""The line a node on loopback logs once it serves XML-RPC: its URL, then its port."""

AMP_LISTENING = re.compile(r"listening for AMP links at (?:tcp|ssl)://127\.0\.0\.1:(\d+)/")
"""The line a node on loopback logs once it listens for AMP links: the port."""


def _default_sigint() -> None:
    # A shell running its caller in the background hands SIG_IGN for SIGINT
    # down to its children, and Twisted then leaves SIGINT alone; undo that.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_command(
    args: Sequence[object],
    cwd: str | Path,
    stdout: Any = subprocess.PIPE,
    stderr: Any = subprocess.PIPE,
) -> subprocess.Popen[str]:
    """
    Start ``args`` in ``cwd``, in a session of its own (so a signal to the
    caller's group does not reach it), with unbuffered Python output, no
    standard input, SIGINT at its default, and text pipes for ``stdout``
    and ``stderr`` unless other targets are given.
    """
    return subprocess.Popen(
        [str(arg) for arg in args],
        cwd=cwd,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        text=True,
        start_new_session=True,
        preexec_fn=_default_sigint,
    )


class OutputReader:
    """The lines a pipe has produced so far, each with its arrival time, read by a daemon thread."""

    def __init__(self, pipe: IO[str] | None) -> None:
        assert pipe is not None
        self._pipe = pipe
        self._lines: list[tuple[float, str]] = []
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in iter(self._pipe.readline, ""):
            arrived = time.monotonic()
            with self._changed:
                self._lines.append((arrived, line))
                self._changed.notify_all()
        self._pipe.close()

    @property
    def text(self) -> str:
        """Everything read so far."""
        with self._changed:
            return "".join(line for _, line in self._lines)

    def find(self, pattern: re.Pattern[str]) -> tuple[float, re.Match[str]] | None:
        """The arrival time and match of the first line so far matching ``pattern``."""
        with self._changed:
            lines = list(self._lines)
        for arrived, line in lines:
            match = pattern.search(line)
            if match:
                return arrived, match
        return None

    def wait_for(self, pattern: re.Pattern[str], deadline: float) -> re.Match[str] | None:
        """The first match of ``pattern`` in the text, waiting until ``deadline`` (monotonic) or the end."""
        with self._changed:
            while True:
                reading = self._thread.is_alive()  # before searching: no line is missed
                match = pattern.search("".join(line for _, line in self._lines))
                left = deadline - time.monotonic()
                if match or left <= 0 or not reading:
                    return match
                self._changed.wait(min(left, 0.2))

    def wait(self, timeout: float) -> None:
        """Wait at most ``timeout`` seconds for another line (or the end of the pipe)."""
        with self._changed:
            if self._thread.is_alive():
                self._changed.wait(timeout)

    def join(self, timeout: float) -> None:
        """Wait at most ``timeout`` seconds for the pipe to end."""
        self._thread.join(timeout)


def timeout_proxy(url: str, timeout: float = 30.0) -> xmlrpc.client.ServerProxy:
    """An ``xmlrpc.client`` proxy for ``url`` (nil allowed) whose calls give up after ``timeout`` seconds."""
    transport = TimedTransport()
    transport.timeout = timeout
    return xmlrpc.client.ServerProxy(url, transport=transport, allow_none=True)


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` (VmRSS of /proc/PID/status), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise LookupError(f"no VmRSS for process {pid}")


def end_process(popen: subprocess.Popen[Any], timeout: float) -> bool:
    """
    End ``popen`` however it takes: SIGTERM, up to ``timeout`` seconds for
    it to exit, then SIGKILL (and again up to ``timeout``).  True when it
    exited by itself or on SIGTERM; False when it had to be killed.
    """
    if popen.poll() is None:
        popen.terminate()
    try:
        popen.wait(timeout)
    except subprocess.TimeoutExpired:
        popen.kill()
        popen.wait(timeout)
        return False
    return True
