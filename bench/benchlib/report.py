"""
The results: table rows with their targets, the Markdown table, the
description of the machine, and the JSON record of a run.
"""

from __future__ import annotations

import datetime
import json
import operator
import os
import platform
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from . import wrk

REPO = Path(__file__).resolve().parents[2]
TIMES = "\N{MULTIPLICATION SIGN}"
# A target's comparison: how the table shows it, and the test.
OPS: dict[str, tuple[str, Callable[[float, float], bool]]] = {
    ">=": ("≥", operator.ge),
    "<=": ("≤", operator.le),
    "<": ("<", operator.lt),
    ">": (">", operator.gt),
}


@dataclass(frozen=True)
class Target:
    """
    A bound on a row's ratio (``ratio >= value``…), or, when ``unit`` is
    given, on the row's own value in that unit (``value < 400 MiB``…).
    """

    op: str  # ">=", "<=", "<" or ">"
    value: float
    unit: str = ""  # "": a bound on the ratio; else on the row's value, whose unit this is

    def met(self, measured: float) -> bool:
        return OPS[self.op][1](measured, self.value)

    def __str__(self) -> str:
        return f"{OPS[self.op][0]} {self.value:g}{f' {self.unit}' if self.unit else TIMES}"

    def as_dict(self) -> dict[str, Any]:
        if self.unit:
            return {"co2": self.op, "value": self.value, "unit": self.unit}
        return {"ratio": self.op, "value": self.value}


@dataclass
class Row:
    """One line of the table: a co2 figure against a baseline measured in the same run."""

    figure: str
    value: float
    unit: str
    baseline: str = ""
    baseline_value: float | None = None
    baseline_unit: str = ""
    ratio: float | None = None
    target: Target | None = None

    @property
    def met(self) -> bool | None:
        if self.target is None:
            return None
        measured = self.value if self.target.unit else self.ratio
        return None if measured is None else self.target.met(measured)

    def as_dict(self) -> dict[str, Any]:
        return {
            "figure": self.figure,
            "co2": {"value": self.value, "unit": self.unit},
            "baseline": {
                "name": self.baseline,
                "value": self.baseline_value,
                "unit": self.baseline_unit or self.unit,
            },
            "ratio": self.ratio,
            "target": None if self.target is None else self.target.as_dict(),
            "met": self.met,
        }


def compare(
    figure: str,
    value: float,
    unit: str,
    baseline: str,
    baseline_value: float,
    target: Target | None = None,
    baseline_unit: str = "",
) -> Row:
    """A row whose ratio is ``value / baseline_value``."""
    ratio = value / baseline_value if baseline_value else None
    return Row(figure, value, unit, baseline, baseline_value, baseline_unit, ratio, target)


def number(value: float | None, unit: str = "") -> str:
    """``value`` with about three significant digits (thousands separated) and its unit."""
    if value is None:
        return ""
    size = abs(value)
    if isinstance(value, int):  # a count
        text = f"{value:,}"
    elif size >= 100:
        text = f"{value:,.0f}"
    elif size >= 10:
        text = f"{value:.1f}"
    elif size >= 1:
        text = f"{value:.2f}"
    else:
        text = f"{value:.3g}"
    return f"{text} {unit}".strip()


def table(rows: list[Row]) -> str:
    """The rows as a Markdown table."""
    lines = [
        "| figure | co2 | baseline | baseline value | ratio | target | met |",
        "| --- | ---: | --- | ---: | ---: | --- | --- |",
    ]
    for row in rows:
        met = {True: "yes", False: "no", None: ""}[row.met]
        ratio = "" if row.ratio is None else f"{row.ratio:.2f}{TIMES}"
        baseline_value = number(row.baseline_value, row.baseline_unit or row.unit)
        value = number(row.value, row.unit)
        cells = [row.figure, value, row.baseline, baseline_value, ratio, row.target, met]
        lines.append("| " + " | ".join("" if cell is None else str(cell) for cell in cells) + " |")
    return "\n".join(lines)


def _first(path: str, prefix: str) -> str:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(prefix):
                return line.split(":", 1)[1].strip() if ":" in line else line.split("=", 1)[1].strip()
    except OSError:
        pass
    return ""


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
    except OSError:
        return ""
    return out.stdout.strip()


def machine() -> dict[str, Any]:
    """CPU, cores, memory, OS and the versions of what the run used."""
    mem_kib = _first("/proc/meminfo", "MemTotal:").split()
    os_name = _first("/etc/os-release", "PRETTY_NAME=").strip('"') or platform.system()
    return {
        "cpu": _first("/proc/cpuinfo", "model name") or platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "memory_bytes": int(mem_kib[0]) * 1024 if mem_kib else None,
        "os": f"{os_name} (kernel {platform.release()}, {platform.machine()})",
        "python": platform.python_version(),
        "twisted": metadata.version("twisted"),
        "co2": metadata.version("co2"),
        "co2_commit": _git_commit(),
        "wrk": wrk.version(),
    }


def machine_line(described: dict[str, Any], quick: bool) -> str:
    """The line above the table: which machine its absolute figures are of."""
    run = "--quick (sizes too small to compare)" if quick else "full"
    return (
        f"Machine: {described['cpu']}, {described['cores']} cores, Python {described['python']}, "
        f"Twisted {described['twisted']}. Run: {run}. Absolute figures are of this machine, "
        "which may be shared and noisy: compare the ratios."
    )


def record(
    rows: list[Row],
    details: dict[str, Any],
    failures: list[str],
    quick: bool,
    seconds: float,
    described: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON record of a run; ``described``: :func:`machine`'s answer, asked for when not given."""
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "quick": quick,
        "seconds": round(seconds, 1),
        "machine": described or machine(),
        "rows": [row.as_dict() for row in rows],
        "details": details,
        "failures": failures,
    }


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
