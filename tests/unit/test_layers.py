"""The layers run one way: the import-linter contracts of setup.cfg hold."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 120


def _env() -> dict[str, str]:
    """The environment of a child that imports this checkout's packages first."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def test_import_contracts_are_kept() -> None:
    """lint-imports finds every contract kept (co2, relay and plugin import no layer above)."""
    command = Path(sys.executable).with_name("lint-imports")
    assert command.exists(), f"{command} is missing: pip install -e '.[test]' installs import-linter"
    result = subprocess.run(
        [str(command), "--no-cache"],
        cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=TIMEOUT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_co2_loads_no_other_package_at_run_time() -> None:
    """Importing co2 and building its sections imports none of relay, satellites, plugin."""
    code = (
        "import sys, co2\n"
        "node, auth = co2.NodeSettings(), co2.AuthSettings()\n"
        "assert node.log_level and auth.auth_methods, (node, auth)\n"
        "print(sorted({'relay', 'satellites', 'plugin'} & set(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=TIMEOUT,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
