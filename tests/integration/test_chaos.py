"""A short run of tests/chaos.py: nodes killed and links cut under a stream, every message once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from co2.testing import OutputReader, end_process, start_command

CHAOS = Path(__file__).resolve().parents[1] / "chaos.py"
SECONDS = 10
BOUND = 120.0
"""The longest the run may take, start-up and convergence included (it takes about 15 s)."""


def test_a_short_chaos_run_loses_and_repeats_nothing(tmp_path):
    """Under kills and cuts, every message sent reaches every other plugin once; every node stops cleanly."""
    figures_path = tmp_path / "chaos.json"
    proc = start_command(
        [sys.executable, CHAOS, "--seconds", SECONDS, "--seed", 20261122, "--json", figures_path],
        tmp_path,
    )
    out, err = OutputReader(proc.stdout), OutputReader(proc.stderr)
    try:
        status = proc.wait(BOUND)
    except subprocess.TimeoutExpired:
        end_process(proc, 30)  # chaos.py ends its nodes on SIGTERM
        raise AssertionError(f"chaos.py still running after {BOUND}s\n{out.text}\n{err.text}") from None
    finally:
        out.join(5)
        err.join(5)
    report = f"exit status {status}\n--- stdout ---\n{out.text}--- stderr ---\n{err.text}"
    assert status == 0, report
    figures = json.loads(figures_path.read_text())
    assert figures["passed"] and figures["problems"] == [], report
    assert figures["lost"] == 0 and figures["duplicated"] == 0, report
    assert figures["kills"] >= 1 and figures["restarts"] == figures["kills"] + figures["stops"], report
    assert figures["cuts"] >= 1, report
    assert figures["sent"] >= SECONDS * 10, report
    assert figures["expected"] >= 5 * figures["sent"], report
    assert figures["clean_stops"] == figures["nodes"] == 5, report
