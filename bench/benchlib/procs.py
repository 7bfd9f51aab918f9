"""
Processes the suite starts, their output, and how they are ended.

Every process is started in its own session, with its standard output and
error read by daemon threads, and registered with a :class:`Processes`
group; leaving the group's ``with`` block ends them all (SIGTERM, a bounded
wait, then SIGKILL), whatever happened inside it.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import time
import xmlrpc.client
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from co2.testing import OutputReader, end_process, start_command, timeout_proxy

BIN_DIR = Path(sys.executable).parent
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
MIB = 1024 * 1024

ERROR_LINE = re.compile(r"#(error|critical)\]|Traceback|Unhandled")
# What the processes ended so far logged at error level, or how they exited
# when that was not the clean exit SIGTERM asks for: reported with the run.
PROBLEMS: list[str] = []


class BenchError(Exception):
    """Something the suite needed did not happen: the run fails."""


class Proc:
    """A started command: its pid, output so far, and the time it was spawned."""

    def __init__(
        self, name: str, args: Sequence[object], cwd: Path, watch_log: bool = False, one_shot: bool = False
    ) -> None:
        self.name = name
        self.watch_log = watch_log  # report error lines of its log (co2 nodes)
        self.one_shot = one_shot  # exits on its own when done: status 0 then is no problem
        self.args = [str(a) for a in args]
        self.spawned = time.monotonic()
        self.popen = start_command(self.args, cwd)
        self.stdout = OutputReader(self.popen.stdout)
        self.stderr = OutputReader(self.popen.stderr)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def line_count(self) -> int:
        """The lines of stdout and stderr read so far."""
        return self.stdout.text.count("\n") + self.stderr.text.count("\n")

    def describe(self, tail: int = 40) -> str:
        """The command, its status and the end of its output, for error messages."""
        out = self.stdout.text.splitlines()[-tail:]
        err = self.stderr.text.splitlines()[-tail:]
        return (
            f"{self.name}: {' '.join(self.args)} (exit status {self.popen.poll()})\n"
            + "--- stdout (end) ---\n"
            + "\n".join(out)
            + "\n--- stderr (end) ---\n"
            + "\n".join(err)
        )

    def wait_line(
        self, pattern: re.Pattern[str], timeout: float = START_TIMEOUT
    ) -> tuple[float, re.Match[str]]:
        """Wait for a line of stdout or stderr matching ``pattern``; its arrival time and match."""
        deadline = time.monotonic() + timeout
        while True:
            exited = self.popen.poll() is not None
            if exited:  # let the readers take the last lines
                self.stdout.join(2)
                self.stderr.join(2)
            for stream in (self.stdout, self.stderr):
                found = stream.find(pattern)
                if found:
                    return found
            if exited or time.monotonic() >= deadline:
                raise BenchError(
                    f"no line matching {pattern.pattern!r} within {timeout:g}s\n{self.describe()}"
                )
            self.stdout.wait(0.05)

    def end(self) -> int | None:
        """End the process however it takes: SIGTERM, a bounded wait, then SIGKILL; note any trouble."""
        exited_before = self.popen.poll() is not None
        if not end_process(self.popen, STOP_TIMEOUT):
            PROBLEMS.append(f"{self.name}: still running {STOP_TIMEOUT:g}s after SIGTERM; killed")
        self.stdout.join(2)
        self.stderr.join(2)
        self._note_problems(exited_before)
        return self.popen.returncode

    def _note_problems(self, exited_before: bool) -> None:
        status = self.popen.returncode
        if exited_before and not (self.one_shot and status == 0):
            PROBLEMS.append(f"{self.name}: exited on its own with status {status}")
        elif status not in (0, -signal.SIGTERM, -signal.SIGKILL):
            PROBLEMS.append(f"{self.name}: exit status {status} after SIGTERM")
        output = (self.stdout.text + self.stderr.text).splitlines()
        errors = [line for line in output if ERROR_LINE.search(line)] if self.watch_log else []
        if errors:
            shown = "\n    ".join(errors[:3])
            PROBLEMS.append(f"{self.name}: {len(errors)} error line(s) in its log, first:\n    {shown}")


class Processes:
    """A group of started processes, all ended when its ``with`` block is left."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.started: list[Proc] = []

    def start(self, name: str, *args: object, watch_log: bool = False, one_shot: bool = False) -> Proc:
        """
        Start a command; ``watch_log``: report the error lines of its log when
        it ends; ``one_shot``: it exits on its own, which is no problem with status 0.
        """
        proc = Proc(name, args, self.cwd, watch_log, one_shot)
        self.started.append(proc)
        return proc

    def end_all(self) -> None:
        """End every process, last started first; an interrupt does not stop the others from ending."""
        pending: BaseException | None = None
        for proc in reversed(self.started):
            try:
                proc.end()
            except BaseException as e:  # keep ending the rest, then re-raise
                pending = pending or e
        self.started.clear()
        if pending is not None:
            raise pending

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is not None and exc_type is not KeyboardInterrupt:
            for proc in self.started:  # what each process said last, to tell why it failed
                PROBLEMS.append(f"(when a figure failed) {proc.describe(tail=15)}")
        self.end_all()


def proxy(url: str, timeout: float = 30.0) -> xmlrpc.client.ServerProxy:
    """An XML-RPC client for ``url`` whose calls give up after ``timeout`` seconds."""
    return timeout_proxy(url, timeout)


def call(url: str, method: str, *args: Any, timeout: float = 30.0) -> Any:
    """Call ``method`` at ``url`` once, on a fresh connection."""
    with proxy(url, timeout) as server:
        return getattr(server, method)(*args)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of ``pid`` so far (fields 14 and 15 of /proc/PID/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # fields from the 3rd (state) on
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def status_bytes(pid: int, field: str) -> int:
    """
    A size of /proc/PID/status, in bytes: ``VmRSS`` (resident now),
    ``VmHWM`` (the peak resident size since the process started)…
    """
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise BenchError(f"no {field} in /proc/{pid}/status")
