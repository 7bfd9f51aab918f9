"""
Load from ``wrk``: a Lua script that POSTs one XML-RPC body over keep-alive
connections and checks every response, and the parsing of what it reports.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from .procs import BenchError

THREADS = 2
CONNECTIONS = 4

SCRIPT = """\
-- POST one XML-RPC body; count the responses that are not what it expects.
wrk.method = "POST"
wrk.headers["Content-Type"] = "text/xml"
%(headers)swrk.body = %(body)s

local expect = %(expect)s
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  checked = 0
  bad = 0
  first_bad = ""
end

function response(status, headers, body)
  checked = checked + 1
  local ok = status == 200
    and not string.find(body, "<fault>", 1, true)
    and not string.find(body, "faultCode", 1, true)
    and (expect == "" or string.find(body, expect, 1, true))
  if not ok then
    bad = bad + 1
    if first_bad == "" then
      first_bad = status .. " " .. string.gsub(string.sub(body, 1, 300), "%%s+", " ")
    end
  end
end

function done(summary, latency, requests)
  local checked_all, bad_all, first = 0, 0, ""
  for _, thread in ipairs(threads) do
    checked_all = checked_all + thread:get("checked")
    bad_all = bad_all + thread:get("bad")
    if first == "" then first = thread:get("first_bad") end
  end
  local e = summary.errors
  io.write(string.format(
    "bench-result {\\"requests\\": %%d, \\"duration_us\\": %%d, \\"checked\\": %%d, \\"bad\\": %%d, "
    .. "\\"connect\\": %%d, \\"read\\": %%d, \\"write\\": %%d, \\"status\\": %%d, \\"timeout\\": %%d, "
    .. "\\"p50_us\\": %%d, \\"p99_us\\": %%d}\\n",
    summary.requests, summary.duration, checked_all, bad_all,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
  io.write("bench-first-bad " .. first .. "\\n")
end
"""


@dataclass
class WrkResult:
    """What one wrk run reported."""

    requests: int
    seconds: float
    checked: int
    bad: int
    errors: dict[str, int]
    p50_ms: float
    p99_ms: float
    first_bad: str = ""
    raw: str = field(default="", repr=False)

    @property
    def rate(self) -> float:
        """Requests per second."""
        return self.requests / self.seconds

    def as_dict(self) -> dict[str, object]:
        return {
            "requests": self.requests,
            "seconds": round(self.seconds, 3),
            "requests_per_s": round(self.rate, 1),
            "checked": self.checked,
            "bad": self.bad,
            "socket_errors": self.errors,
            "latency_p50_ms": self.p50_ms,
            "latency_p99_ms": self.p99_ms,
        }


def lua_string(text: str) -> str:
    """``text`` as a Lua long-bracket string literal."""
    level = 0
    while f"]{'=' * level}]" in text:
        level += 1
    eq = "=" * level
    return f"[{eq}[\n{text}]{eq}]"  # a newline right after the bracket is dropped by Lua


def write_script(path: Path, body: str, expect: str, headers: dict[str, str] | None = None) -> Path:
    """
    Write a wrk script POSTing ``body`` with ``headers`` too; a 200 response
    must hold ``expect`` (if any) and no fault.
    """
    # The spaces keep "[[" from reading as the start of a long string.
    lines = "".join(
        f"wrk.headers[ {lua_string(name)} ] = {lua_string(value)}\n"
        for name, value in (headers or {}).items()
    )
    path.write_text(SCRIPT % {"body": lua_string(body), "expect": lua_string(expect), "headers": lines})
    return path


def version() -> str:
    """wrk's version line."""
    wrk = shutil.which("wrk")
    if wrk is None:
        return "not found"
    out = subprocess.run([wrk, "-v"], capture_output=True, text=True, timeout=10)
    lines = (out.stdout + out.stderr).strip().splitlines()
    return lines[0].strip() if lines else "unknown"


def run(url: str, script: Path, seconds: int, *, timeout_s: int = 2) -> WrkResult:
    """Run ``wrk -t2 -c4 -d<seconds>s -s <script> <url>`` and parse its report."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise BenchError("wrk is not on PATH")
    args = [
        wrk,
        f"-t{THREADS}",
        f"-c{CONNECTIONS}",
        f"-d{seconds}s",
        f"--timeout={timeout_s}s",
        "-s",
        str(script),
        url,
    ]
    done = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 60)
    return parse(done.stdout + done.stderr, done.returncode)


def parse(output: str, returncode: int = 0) -> WrkResult:
    """Parse the ``bench-result`` line the script's ``done()`` writes."""
    result = first_bad = None
    for line in output.splitlines():
        if line.startswith("bench-result "):
            result = json.loads(line.removeprefix("bench-result "))
        elif line.startswith("bench-first-bad "):
            first_bad = line.removeprefix("bench-first-bad ")
    if result is None:
        raise BenchError(f"wrk did not report (exit status {returncode}):\n{output}")
    return WrkResult(
        requests=result["requests"],
        seconds=result["duration_us"] / 1e6,
        checked=result["checked"],
        bad=result["bad"],
        errors={key: result[key] for key in ("connect", "read", "write", "status", "timeout")},
        p50_ms=result["p50_us"] / 1000,
        p99_ms=result["p99_us"] / 1000,
        first_bad=first_bad or "",
        raw=output,
    )
