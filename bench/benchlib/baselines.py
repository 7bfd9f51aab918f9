"""
The baseline processes: the XML-RPC servers of ``bench/servers`` and the
raw Twisted AMP echo server and its load client.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from co2.testing import SERVING

from .procs import BenchError, Processes

SERVERS = Path(__file__).resolve().parent.parent / "servers"
AMP_ECHO = re.compile(r"amp echo at tcp://127\.0\.0\.1:(\d+)/")

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


def run_amp_client(port: int, mode: str, timeout: float, **options: Any) -> dict[str, Any]:
    """Run the AMP load client to the end (``mode`` ``throughput`` or ``steady``); its result."""
    args = [sys.executable, str(SERVERS / "amp_load.py"), mode, "--port", str(port)]
    for key, value in options.items():
        args += [f"--{key}", str(value)]
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise BenchError(f"AMP client ({mode}) still running after {timeout:g}s") from e
    for line in done.stdout.splitlines():
        if line.startswith("amp-result "):
            result: dict[str, Any] = json.loads(line.removeprefix("amp-result "))
            if result["wrong"]:
                raise BenchError(f"AMP baseline: {result['wrong']} echo answers differ from what was sent")
            return result
    raise BenchError(
        f"AMP client ({mode}) failed (exit status {done.returncode}):\n{done.stdout}{done.stderr}"
    )
