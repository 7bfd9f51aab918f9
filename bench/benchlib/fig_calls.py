"""
Figures 1 and 2: XML-RPC calls per second of ``bench.calls.add`` under wrk
(4 keep-alive connections), single calls against the baseline servers, and
100 calls per ``system.multicall`` request; and of ``bench.calls.text()``,
whose answer is a 100 KiB text, against the threading SimpleXMLRPCServer.
"""

from __future__ import annotations

import base64
import xmlrpc.client
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import wrk
from .baselines import XMLRPC_BASELINES, start_xmlrpc
from .nodes import start_satellite
from .plugins import TEXT, TEXT_SIZE, write_calls
from .procs import BenchError, Processes, proxy
from .report import Row, Target, compare
from .sizes import Sizes

POINT = {"x": 1, "y": 2}
MULTICALL_SIZE = 100
SINGLE_BODY = xmlrpc.client.dumps((POINT,), "bench.calls.add")
MULTI_BODY = xmlrpc.client.dumps(
    ([{"methodName": "bench.calls.add", "params": [POINT]}] * MULTICALL_SIZE,), "system.multicall"
)
TEXT_BODY = xmlrpc.client.dumps((), "bench.calls.text")
TEXT_EXPECT = f"<string>{TEXT}</string>"  # the whole answer: co2 and xmlrpc.client both write it so
TEXT_BASELINES = ("SimpleXMLRPCServer+ThreadingMixIn",)
"""The baselines the text answer is measured against."""


USER, PASSWORD = "bench", "bench-pw"
AUTHORIZATION = {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}
WITH_AUTH = "co2 with auth"
"""A satellite with ``auth`` (an in-memory checker): every call gives HTTP Basic credentials."""


def check_call(url: str, method: str, params: tuple[Any, ...], expected: Any) -> None:
    """One call of ``method(*params)`` with xmlrpc.client: the answer must be ``expected``."""
    with proxy(url) as server:
        answer = getattr(server, method)(*params)
    if answer != expected:
        call = f"{method}({', '.join(map(repr, params))})"
        raise BenchError(f"{url}: {call} answered {short(answer)}, not {short(expected)}")


def short(value: Any, most: int = 80) -> str:
    """``repr(value)``, cut after ``most`` characters."""
    text = repr(value)
    return text if len(text) <= most else f"{text[:most]}… ({len(text):,} characters in all)"


def check_single(url: str) -> None:
    """One call of bench.calls.add: the answer must be 3."""
    check_call(url, "bench.calls.add", (POINT,), 3)


def check_text(url: str) -> None:
    """One call of bench.calls.text: the answer must be the 100 KiB text."""
    check_call(url, "bench.calls.text", (), TEXT)


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


@dataclass
class Measured:
    """wrk results by server name: single adds, multicalls, text answers."""

    single: dict[str, wrk.WrkResult] = field(default_factory=dict)
    multicall: dict[str, wrk.WrkResult] = field(default_factory=dict)
    text: dict[str, wrk.WrkResult] = field(default_factory=dict)


def text_mb_per_s(result: wrk.WrkResult) -> float:
    """MB/s of text answered (the text alone, as figure 3 counts data)."""
    return result.rate * TEXT_SIZE / 1e6


def measure_text(name: str, url: str, script: Path, sizes: Sizes, measured: Measured, progress: Any) -> None:
    """Check one text answer from ``url``, then load it with wrk."""
    check_text(url)
    result = measured.text[name] = load(f"{name} text", url, script, sizes.wrk_seconds)
    progress(f"{name} text: {result.rate:,.0f} calls/s ({text_mb_per_s(result):,.1f} MB/s of text)")


def measure(work: Path, sizes: Sizes, progress: Any) -> Measured:
    """wrk results of co2 and of each baseline, for single calls, multicalls and text answers."""
    plugin_dir = work / "calls-plugins"
    package = write_calls(plugin_dir)
    single = wrk.write_script(work / "single.lua", SINGLE_BODY, "<int>3</int>")
    multi = wrk.write_script(work / "multi.lua", MULTI_BODY, "")
    text = wrk.write_script(work / "text.lua", TEXT_BODY, TEXT_EXPECT)
    measured = Measured()
    results, multicalls = measured.single, measured.multicall
    with Processes(work) as procs:
        node = start_satellite(procs, "calls", plugin_dir, [package])
        check_single(node.url)
        results["co2"] = load("co2", node.url, single, sizes.wrk_seconds)
        progress(f"co2: {results['co2'].rate:,.0f} calls/s")
        check_multicall(node.url)
        multicalls["co2"] = load("co2 multicall", node.url, multi, sizes.wrk_seconds)
        progress(f"co2 multicall: {multicalls['co2'].rate * MULTICALL_SIZE:,.0f} calls/s")
        measure_text("co2", node.url, text, sizes, measured, progress)
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
            if name in TEXT_BASELINES:
                measure_text(name, url, text, sizes, measured, progress)
    return measured


def figures(work: Path, sizes: Sizes, details: dict[str, Any], progress: Any) -> list[Row]:
    """The rows of figures 1 and 2."""
    measured = measure(work, sizes, progress)
    results, multicalls, texts = measured.single, measured.multicall, measured.text
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
    (text_baseline,) = TEXT_BASELINES
    details["xmlrpc_text"] = {
        "load": f"wrk -t{wrk.THREADS} -c{wrk.CONNECTIONS} -d{sizes.wrk_seconds}s, bench.calls.text()",
        "answer": f"{TEXT_SIZE:,} ASCII characters of words, the same each call, checked whole",
        "calls_per_s": {name: round(result.rate, 1) for name, result in texts.items()},
        "text_mb_per_s": {name: round(text_mb_per_s(result), 1) for name, result in texts.items()},
        "wrk": {name: result.as_dict() for name, result in texts.items()},
    }
    text_figure = f"XML-RPC {TEXT_SIZE // 1024} KiB text answer, 4 keep-alive connections"
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
            f"{text_figure}: calls/s",
            texts["co2"].rate,
            unit,
            text_baseline,
            texts[text_baseline].rate,
            Target(">=", 1.5),
        ),
        compare(
            f"{text_figure}: MB/s of text",
            text_mb_per_s(texts["co2"]),
            "MB/s",
            text_baseline,
            text_mb_per_s(texts[text_baseline]),
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
