"""
The manhole: OpenSSH's own client logs in to a running satellite with a
key and gets a Python shell holding the satellite; a key not listed is
refused.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

SSH = shutil.which("ssh")
KEYGEN = shutil.which("ssh-keygen")

pytestmark = pytest.mark.skipif(SSH is None or KEYGEN is None, reason="needs OpenSSH's ssh and ssh-keygen")

MANHOLE = r"manhole \(SSH\) at ssh://127\.0\.0\.1:(\d+)/"


def make_key(path: Path) -> Path:
    assert KEYGEN is not None
    subprocess.run([KEYGEN, "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True, timeout=30)
    return path


def ssh(key: Path, port: int, user: str, typed: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Log in with ``key`` and type ``typed`` into the shell; the end of the input ends the session."""
    assert SSH is not None
    return subprocess.run(
        [SSH, "-tt", "-p", str(port), "-i", str(key), "-F", "/dev/null",
         "-o", "StrictHostKeyChecking=no", "-o", f"UserKnownHostsFile={tmp_path / 'known_hosts'}",
         "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", f"{user}@127.0.0.1"],
        input=typed, capture_output=True, text=True, timeout=30,
    )


def test_a_listed_key_gets_a_shell_on_the_running_satellite(
    satellite: Any, make_config: Any, tmp_path: Path
) -> None:
    ops_key = make_key(tmp_path / "ops")
    stranger = make_key(tmp_path / "stranger")
    config = make_config(
        listen="tcp:0:interface=127.0.0.1", plugin_list=["ham"],
        manhole="tcp:0:interface=127.0.0.1", manhole_keys={"ops": "ops.pub"},
    )
    proc = satellite("--config", config, cwd=tmp_path)
    proc.wait_serving()
    port = int(proc.wait_output(MANHOLE).group(1))
    assert (tmp_path / "manhole_host_key").stat().st_mode & 0o077 == 0

    session = ssh(ops_key, port, "ops", "print('host is', satellite.host_id)\r", tmp_path)
    assert "host is " + proc.wait_output(r"co2 satellite (\S+) serving").group(1) in session.stdout, (
        session, proc.describe())
    assert "ham.spam.X_Spam" in ssh(
        ops_key, port, "ops", "print([str(p) for p in satellite.plugins])\r", tmp_path
    ).stdout

    refused = ssh(stranger, port, "ops", "", tmp_path)
    assert refused.returncode == 255 and "Permission denied" in refused.stderr
    refused = ssh(ops_key, port, "root", "", tmp_path)
    assert refused.returncode == 255

    assert proc.proxy().ham.spam.call_me("still") == "hello, still, from ham.spam.X_Spam"
    assert proc.stop() == 0


def test_the_manhole_listens_on_loopback_only(satellite: Any, make_config: Any, tmp_path: Path) -> None:
    make_key(tmp_path / "ops")
    config = make_config(manhole="tcp:0", manhole_keys={"ops": "ops.pub"})
    proc = satellite("--config", config, cwd=tmp_path)
    assert proc.wait() == 2
    assert "manhole" in proc.stderr and "loopback only" in proc.stderr
