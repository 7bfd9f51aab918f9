"""
Figures 1 and 2: XML-RPC calls per second of ``bench.calls.add`` under wrk
(4 keep-alive connections), single calls against the baseline servers, and
100 calls per ``system.multicall`` request.
"""

from __future__ import annotations

import base64
import xmlrpc.client
from pathlib import Path
from typing import Any

from . import wrk
from .baselines import XMLRPC_BASELINES, start_xmlrpc
from .nodes import start_satellite
from .plugins import write_calls
from .procs import BenchError, Processes, proxy
from .report import Row, Target, compare
from .sizes import Sizes

POINT = {"x": 1, "y": 2}
MULTICALL_SIZE = 100
SINGLE_BODY = xmlrpc.client.dumps((POINT,), "bench.calls.add")
MULTI_BODY = xmlrpc.client.dumps(
    ([{"methodName": "bench.calls.add", "params": [POINT]}] * MULTICALL_SIZE,), "system.multicall"
)


USER, PASSWORD = "bench", "bench-pw"
AUTHORIZATION = {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}
WITH_AUTH = "co2 with auth"
"""A satellite with ``auth`` (an in-memory checker): every call gives HTTP Basic credentials."""


def check_single(url: str) -> None:
    """One call with xmlrpc.client: the answer must be 3."""
    with proxy(url) as server:
        answer = server.bench.calls.add(POINT)
    if answer != 3:
        raise BenchError(f"{url}: bench.calls.add({POINT}) answered {answer!r}, not 3")


def check_multicall(url: str) -> None:
    """One multicall with xmlrpc.client: every answer must be 3."""
    with proxy(url) as server:
        multi = xmlrpc.client.MultiCall(server)
        for _ in range(MULTICALL_SIZE):
            multi.bench.calls.add(POINT)
        answers = list(multi())
    if answers != [3] * MULTICALL_SIZE:
        raise BenchError(f"{url}: system.multicall of {MULTICALL_SIZE} adds answered {answers[:3]!r}…")


def load(name: str, url: str, script: Path, seconds: int) -> wrk.WrkResult:
    """wrk on ``url`` with ``script``; every response must have passed the script's check."""
    result = wrk.run(url, script, seconds)
    if result.checked == 0:
        raise BenchError(f"{name}: wrk got no response at all")
    if result.bad:
        raise BenchError(
            f"{name}: {result.bad} of {result.checked} responses wrong; first: {result.first_bad}"
        )
    return result


MULTICALL_BASELINES = ("SimpleXMLRPCServer", "SimpleXMLRPCServer+ThreadingMixIn")
"""The baselines that answer system.multicall (twisted.web.xmlrpc has none)."""


def measure(
    work: Path, sizes: Sizes, progress: Any
) -> tuple[dict[str, wrk.WrkResult], dict[str, wrk.WrkResult]]:
    """wrk results of co2 and of each baseline, for single calls and for multicalls."""
    plugin_dir = work / "calls-plugins"
    package = write_calls(plugin_dir)
    single = wrk.write_script(work / "single.lua", SINGLE_BODY, "<int>3</int>")
    multi = wrk.write_script(work / "multi.lua", MULTI_BODY, "")
    results = {}
    multicalls = {}
    with Processes(work) as procs:
        node = start_satellite(procs, "calls", plugin_dir, [package])
        check_single(node.url)
        results["co2"] = load("co2", node.url, single, sizes.wrk_seconds)
        progress(f"co2: {results['co2'].rate:,.0f} calls/s")
        check_multicall(node.url)
        multicalls["co2"] = load("co2 multicall", node.url, multi, sizes.wrk_seconds)
        progress(f"co2 multicall: {multicalls['co2'].rate * MULTICALL_SIZE:,.0f} calls/s")
    with Processes(work) as procs:
        node = start_satellite(procs, "calls-auth", plugin_dir, [package], auth=f"memory:{USER}:{PASSWORD}")
        check_single(node.url.replace("http://", f"http://{USER}:{PASSWORD}@"))
        with_auth = wrk.write_script(work / "single-auth.lua", SINGLE_BODY, "<int>3</int>", AUTHORIZATION)
        results[WITH_AUTH] = load(WITH_AUTH, node.url, with_auth, sizes.wrk_seconds)
        progress(f"{WITH_AUTH}: {results[WITH_AUTH].rate:,.0f} calls/s")
    for name in XMLRPC_BASELINES:
        with Processes(work) as procs:
            url = start_xmlrpc(procs, name)
            check_single(url)
            results[name] = load(name, url, single, sizes.wrk_seconds)
            progress(f"{name}: {results[name].rate:,.0f} calls/s")
            if name in MULTICALL_BASELINES:
                check_multicall(url)
                multicalls[name] = load(f"{name} multicall", url, multi, sizes.wrk_seconds)
                progress(f"{name} multicall: {multicalls[name].rate * MULTICALL_SIZE:,.0f} calls/s")
    return results, multicalls


def figures(work: Path, sizes: Sizes, details: dict[str, Any], progress: Any) -> list[Row]:
    """The rows of figures 1 and 2."""
    results, multicalls = measure(work, sizes, progress)
    multicall = multicalls["co2"]
    co2 = results["co2"].rate
    simple = {
        name: results[name].rate for name in ("SimpleXMLRPCServer", "SimpleXMLRPCServer+ThreadingMixIn")
    }
    best = max(simple, key=lambda name: simple[name])
    multi_calls = multicall.rate * MULTICALL_SIZE
    details["xmlrpc_calls"] = {
        "load": f"wrk -t{wrk.THREADS} -c{wrk.CONNECTIONS} -d{sizes.wrk_seconds}s, bench.calls.add({POINT})",
        "calls_per_s": {name: round(result.rate, 1) for name, result in results.items()},
        "simplexmlrpcserver_best": best,
        "note": "the plain SimpleXMLRPCServer serves one keep-alive connection at a time; the others wait",
        "wrk": {name: result.as_dict() for name, result in results.items()},
    }
    baseline_multi = {name: multicalls[name].rate * MULTICALL_SIZE for name in MULTICALL_BASELINES}
    best_multi = max(baseline_multi, key=lambda name: baseline_multi[name])
    details["xmlrpc_multicall"] = {
        "calls_per_request": MULTICALL_SIZE,
        "calls_per_s": {name: round(result.rate * MULTICALL_SIZE, 1) for name, result in multicalls.items()},
        "wrk": {name: result.as_dict() for name, result in multicalls.items()},
    }
    unit = "calls/s"
    return [
        compare(
            "XML-RPC calls/s, 4 keep-alive connections",
            co2,
            unit,
            f"{best} (best of plain/threading)",
            simple[best],
            Target(">=", 1.2),
        ),
        compare(
            "XML-RPC calls/s, 4 keep-alive connections",
            co2,
            unit,
            "twisted.web.xmlrpc",
            results["twisted.web.xmlrpc"].rate,
            Target(">=", 1.5),
        ),
        compare(
            "XML-RPC calls/s with auth (HTTP Basic, memory: checker)",
            results[WITH_AUTH].rate,
            unit,
            "co2 without auth (above)",
            co2,
            None,
        ),
        compare(
            f"calls/s via system.multicall, {MULTICALL_SIZE} per request",
            multi_calls,
            unit,
            "co2 single calls (above)",
            co2,
            Target(">=", 10),
        ),
        compare(
            f"calls/s via system.multicall, {MULTICALL_SIZE} per request",
            multi_calls,
            unit,
            f"{best_multi} multicall (best of plain/threading)",
            baseline_multi[best_multi],
            None,
        ),
    ]
