"""
``co2-satellite new-plugin``, run for real: the package it writes passes
its own tests, loads in a real satellite and answers over XML-RPC; and
the harness example of docs/plugins.md runs as written.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from conftest import BIN_DIR, REPO_ROOT

from satellites._scaffold import files_for

LOCAL = "tcp:0:interface=127.0.0.1"


def run(*args: object, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run a command to its end (at most 60 s) and capture its output."""
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=60,
        stdin=subprocess.DEVNULL,
    )


def pytest_in(path: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run pytest on ``path`` in a fresh interpreter."""
    return run(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", path, cwd=cwd)


def test_new_plugin_passes_its_tests_and_answers_in_a_satellite(tmp_path, satellite, make_config):
    """The package new-plugin writes passes its generated tests, then loads and answers over XML-RPC."""
    made = run(BIN_DIR / "co2-satellite", "new-plugin", "greeter", "--dir", "plugins", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert made.stderr == ""
    package = tmp_path / "plugins" / "greeter"
    tested = pytest_in(package, tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert re.search(r"\b3 passed\b", tested.stdout), tested.stdout

    config = make_config(plugin_dir=str(tmp_path / "plugins"), plugin_list=["greeter"])
    listed = run(BIN_DIR / "co2-satellite", "--config", config, "--list-plugins", cwd=tmp_path)
    assert re.search(r"greeter\s+enabled\s+The greeter plugin", listed.stdout), listed.stdout
    proc = satellite("--config", config, "--listen", LOCAL, "--strict")
    proc.wait_serving()
    with proc.proxy() as proxy:
        assert proxy.greeter.greeter.hello("x") == "hello, x"
        assert proxy.system.methodSignature("greeter.greeter.hello") == [["string", "string"]]
    assert proc.stop() == 0, proc.describe()


def test_new_plugin_refuses_in_one_line(tmp_path):
    """A reserved name exits 2 with one line on stderr and writes nothing."""
    refused = run(BIN_DIR / "co2-satellite", "new-plugin", "relay", cwd=tmp_path)
    assert refused.returncode == 2
    assert refused.stderr.splitlines() == [
        "co2-satellite: new-plugin: 'relay' is a reserved name (reserved: co2, relay, sys, system, web)"
    ]
    assert list(tmp_path.iterdir()) == []


def doc_files(section: str) -> dict[str, str]:
    """The files of a docs section: each code block after a line naming `plugin/greeter/PATH`:."""
    pattern = re.compile(r"^`plugin/greeter/([\w/.]+)`:\n\n```python\n(.*?)^```\n", re.M | re.S)
    return {path: text for path, text in pattern.findall(section)}


def test_the_harness_example_of_the_docs_is_what_new_plugin_writes_and_passes(tmp_path):
    """docs/plugins.md's testing walk-through shows new-plugin's files, and its tests pass."""
    docs = (REPO_ROOT / "docs" / "plugins.md").read_text()
    section = docs.split("## Testing plugins", 1)[1].split("\n## ", 1)[0]
    files = doc_files(section)
    assert {name: files[name] for name in files_for("greeter")} == files_for("greeter")
    package = tmp_path / "plugin" / "greeter"
    for name, text in files.items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(text)
    tested = pytest_in(package, tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    count = sum(text.count("\ndef test_") for text in files.values())
    assert re.search(rf"\b{count} passed\b", tested.stdout), tested.stdout


def test_a_plugin_named_like_the_standard_library_passes_its_tests(tmp_path):
    """pytest imports the generated test alone, never the package: a package called json passes."""
    made = run(BIN_DIR / "co2-satellite", "new-plugin", "json", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    tested = pytest_in(tmp_path / "plugin" / "json", tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr
