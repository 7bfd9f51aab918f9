"""
The docs run: the code blocks of README.md and docs/plugins.md marked as
runnable are run as written, in order, against real processes, in a
temporary copy of the repository (the repository itself is never
changed), and what the docs say they print is checked.

The markers are HTML comments, which GitHub does not render, each alone
on its line. All but ``wait`` apply to the next fenced block::

    <!-- run -->                 a ```sh block is typed into the document's one
                                 shell session (bash, in the copy's root), as
                                 into a terminal: variables, background jobs and
                                 the directory carry over from block to block;
                                 its last command must exit 0.  A ```python
                                 block is saved to a file and run as a script
                                 (by the Python running this test); it must
                                 exit 0.
    <!-- run: setup -->          the README's set-up line (see "Set-up" below).
    <!-- run: background -->     each line is a command a reader starts in a
                                 terminal of its own and leaves running: it is
                                 ready once it prints "serving XML-RPC at", and
                                 at the end it is stopped with Ctrl-C (SIGINT)
                                 and must exit 0.
    <!-- output -->              what the run block just before prints, standard
                                 output and error together, as a terminal shows
                                 them.  Compared line by line, trailing spaces
                                 dropped and runs of spaces taken as one, with
                                 pytest's duration ("in 0.31s") matching any.
    <!-- run: write PATH -->     the reader saves the block as PATH.
    <!-- run: expect PATH -->    PATH, written by a command before, holds exactly
                                 the block.
    <!-- run: wait PATH "TEXT" -->  the reader waits (at most 30 s) until the
                                 file PATH shows TEXT once more than it did just
                                 before the latest run block.

A ``<!-- run`` or ``<!-- output`` comment that is not one of these fails
the test, so a typo never turns a block silently off.

Ports: the docs name fixed ports (2004, 2005, 2010, 2011).  Each port that
a marked block, an output, a wait or a shipped config (``config.py``,
``network/*.py``) names as ``127.0.0.1:N``, ``tcp:N:`` or ``port=N`` is
mapped to a free loopback port chosen when the test starts, and the
number is replaced, as a whole word, in those texts and in the copy's
configs: the test runs beside anything else that holds those ports.

Set-up: the README's set-up line makes ``.venv`` (``python3 -m venv``)
and installs into it (``pip install``) from a package index.  By default
those two commands are checked rather than run: the copy's ``.venv`` is
a link to the virtualenv running this test, which must hold each thing
the line installs (``.`` is co2 itself); the rest of the line runs.
With ``CO2_DOCS_SETUP=1`` in the environment the whole line runs as
written, making a fresh virtualenv in the copy (allow a minute or two).
Either way the satellite it starts must serve, then exit 0 on Ctrl-C,
which the README says stops it.

The shell session and the scripts get the environment of a new
terminal: no virtualenv active (``VIRTUAL_ENV`` unset, its ``bin`` off
``PATH``), no ``PYTHONPATH``, no ``PYTHONUNBUFFERED``, nothing of pytest's.
Every process started here is ended (the session's whole process group,
the background commands by the ``start`` fixture), and every step is
bounded in time.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import BIN_DIR, REPO_ROOT, Proc, ProcessStarter

from co2.testing import OutputReader

DOCS = ("README.md", "docs/plugins.md")
CONFIGS = ("config.py", "network/alpha.py", "network/beta.py", "network/relay.py")
BLOCK_TIMEOUT = 120.0
"""At most this long for one block (a pytest run inside a test included)."""
WAIT_TIMEOUT = 30.0
SETUP_TIMEOUT = 600.0
SERVE_TIMEOUT = 30.0

MARKER = re.compile(r"^<!--\s*(run|output)\b(.*?)-->\s*$")
SUSPECT = re.compile(r"^\s*<!--\s*(run|output)\b")
FENCE = re.compile(r"^```(.*)$")
PORT = re.compile(r"(?:127\.0\.0\.1:|tcp:|port=)(\d{2,5})\b")
DURATION = re.compile(r"(\bin \d+(?:\.\d+)?s\b)")


@dataclass
class Step:
    """One marked thing of a document, in document order."""

    doc: str
    line: int
    kind: str  # run, setup, background, output, write, expect, wait
    lang: str = ""
    text: str = ""
    path: str = ""
    output: Step | None = None

    def where(self) -> str:
        return f"{self.doc}:{self.line} ({self.kind}{' ' + self.path if self.path else ''})"


def parse(doc: str, source: str) -> list[Step]:
    """The marked steps of ``source``, each ``output`` attached to its run block."""
    steps: list[Step] = []
    pending: Step | None = None
    lines = source.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        marker = MARKER.match(line)
        if SUSPECT.match(line) and not marker:
            raise ValueError(f"{doc}:{i + 1}: malformed marker {line!r}")
        if marker:
            if pending is not None:
                raise ValueError(f"{pending.where()}: marker with no fenced block before the next marker")
            step = _marker_step(doc, i + 1, marker.group(1), marker.group(2).strip())
            if step.kind == "wait":
                steps.append(step)
            else:
                pending = step
        fence = FENCE.match(line)
        if fence:
            end = lines.index("```", i + 1) if "```" in lines[i + 1:] else len(lines)
            if pending is not None:
                pending.lang = fence.group(1).strip()
                pending.text = "".join(f"{body}\n" for body in lines[i + 1:end])
                if pending.kind == "output":
                    before = steps[-1] if steps else None
                    if before is None or before.kind != "run" or before.output:
                        raise ValueError(f"{pending.where()}: an output must follow a run block")
                    before.output = pending
                else:
                    steps.append(pending)
                pending = None
            i = end
        i += 1
    if pending is not None:
        raise ValueError(f"{pending.where()}: marker with no fenced block after it")
    return steps


def _marker_step(doc: str, line: int, word: str, argument: str) -> Step:
    if word == "output":
        if argument:
            raise ValueError(f"{doc}:{line}: output takes nothing, got {argument!r}")
        return Step(doc, line, "output")
    argument = argument.removeprefix(":").strip()
    words = shlex.split(argument)
    if not words:
        return Step(doc, line, "run")
    kind, rest = words[0], words[1:]
    if kind in ("setup", "background") and not rest:
        return Step(doc, line, kind)
    if kind in ("write", "expect") and len(rest) == 1:
        return Step(doc, line, kind, path=rest[0])
    if kind == "wait" and len(rest) == 2:
        return Step(doc, line, kind, path=rest[0], text=rest[1])
    raise ValueError(f"{doc}:{line}: unknown marker 'run: {argument}'")


def doc_steps(doc: str) -> list[Step]:
    """The steps of the document at ``doc`` (relative to the repository root)."""
    return parse(doc, (REPO_ROOT / doc).read_text())


def free_ports(count: int) -> list[int]:
    """``count`` different loopback ports free now (held together while chosen)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class Ports:
    """The docs' fixed ports, each mapped to a free one."""

    def __init__(self, texts: list[str]) -> None:
        found = sorted({int(m) for text in texts for m in PORT.findall(text)})
        self.map = dict(zip(found, free_ports(len(found)), strict=True))
        self._pattern = re.compile(r"\b(" + "|".join(map(str, found)) + r")\b") if found else None

    def __call__(self, text: str) -> str:
        if self._pattern is None:
            return text
        return self._pattern.sub(lambda m: str(self.map[int(m.group(1))]), text)


def terminal_env() -> dict[str, str]:
    """The environment of a new terminal: no virtualenv active, nothing of pytest's."""
    env = {
        key: value for key, value in os.environ.items()
        if key not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYTHONUNBUFFERED")
        and not key.startswith("PYTEST_")
    }
    path = [p for p in env.get("PATH", "").split(os.pathsep) if p and Path(p).resolve() != BIN_DIR.resolve()]
    env["PATH"] = os.pathsep.join(path)
    return env


def copy_repository(destination: Path, fresh: set[Path]) -> Path:
    """
    A copy of the repository's working tree, without history, caches,
    tests, spools or its virtualenv, nor the paths in ``fresh`` (what the
    docs create, such as ``plugin/greeter``, left over in a checkout where
    someone followed them).
    """
    skipped_paths = {REPO_ROOT / ".venv", REPO_ROOT / "network" / "var", *(REPO_ROOT / p for p in fresh)}
    skip_at_root = {".git", "tests", "bench", "build", "dist"}

    def ignore(directory: str, names: list[str]) -> set[str]:
        here = Path(directory).resolve()
        skipped = {
            n for n in names
            if n in ("__pycache__", ".hypothesis") or n.endswith((".egg-info", "_cache"))
            or here / n in skipped_paths
        }
        if here == REPO_ROOT:
            skipped |= skip_at_root & set(names)
        return skipped

    root = destination / "repo"
    shutil.copytree(REPO_ROOT, root, ignore=ignore, symlinks=True)
    return root


class Shell:
    """
    One bash session, as a reader's terminal: each block is sourced from a
    file, with standard input from /dev/null, so that variables, jobs and
    the directory carry over and no command reads the next block.
    """

    def __init__(self, cwd: Path, env: dict[str, str], scripts: Path) -> None:
        self.scripts = scripts
        self.popen = subprocess.Popen(
            ["bash", "--norc", "--noprofile"], cwd=cwd, env=env, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.reader = OutputReader(self.popen.stdout)
        self.count = 0
        self.read = 0

    def run(self, text: str, timeout: float = BLOCK_TIMEOUT) -> tuple[int, str]:
        """Run ``text`` in the session; its last command's status and what it printed."""
        self.count += 1
        script = self.scripts / f"block{self.count}.sh"
        script.write_text(text)
        token = f"__docs_run_{os.getpid()}_{self.count}__"
        assert self.popen.stdin is not None
        self.popen.stdin.write(f". {shlex.quote(str(script))} < /dev/null\necho \"{token} $?\"\n")
        self.popen.stdin.flush()
        done = self.reader.wait_for(re.compile(re.escape(token) + r" (\d+)\n"), time.monotonic() + timeout)
        if done is None:
            pytest.fail(
                f"the block did not finish within {timeout}s (or the shell ended)\n"
                f"--- block ---\n{text}--- printed ---\n{self.reader.text[self.read:]}"
            )
        printed = self.reader.text[self.read:done.start()]
        self.read = done.end()
        return int(done.group(1)), printed

    def close(self) -> None:
        """End the session and everything it started (its whole process group)."""
        group = self.popen.pid
        if self.popen.stdin is not None:
            self.popen.stdin.close()
        try:
            os.killpg(group, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _group_alive(group):
            self.popen.poll()
            time.sleep(0.05)
        if _group_alive(group):
            os.killpg(group, signal.SIGKILL)
        self.popen.wait(10)
        self.reader.join(5)


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def same_output(expected: str, printed: str) -> bool:
    """Whether ``printed`` is ``expected``, as the module docstring says they are compared."""

    def lines(text: str) -> list[str]:
        return [re.sub(r"[ \t]+", " ", line.rstrip()) for line in text.rstrip("\n").split("\n")]

    want, got = lines(expected), lines(printed)
    if len(want) != len(got):
        return False
    for w, g in zip(want, got, strict=True):
        pattern = "".join(
            r"in \d+(?:\.\d+)?s" if DURATION.fullmatch(piece) else re.escape(piece)
            for piece in DURATION.split(w)
        )
        if not re.fullmatch(pattern, g):
            return False
    return True


def installed(requirement: str) -> bool:
    """Whether the virtualenv running this test holds ``requirement`` (``.`` is co2)."""
    if requirement in (".", "-e ."):
        return importlib.util.find_spec("co2") is not None
    name = re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0]
    try:
        importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def pip_requirements(command: str) -> list[str]:
    """The requirements a ``pip install`` command names (its options and their values left out)."""
    words = shlex.split(command)
    words = words[words.index("install") + 1:]
    taking_value = {
        "--config-settings", "-C", "-r", "--requirement", "-c", "--constraint", "-i", "--index-url",
    }
    requirements, skip = [], False
    for word in words:
        if skip:
            skip = False
        elif word in taking_value:
            skip = True
        elif not word.startswith("-"):  # -e's value is a requirement too; -q, -U... take none
            requirements.append(word)
    return requirements


class Runner:
    """Runs the steps of the docs in a copy of the repository."""

    def __init__(self, root: Path, scratch: Path, start: ProcessStarter, ports: Ports) -> None:
        self.root = root
        self.scratch = scratch
        self.start = start
        self.ports = ports
        self.env = terminal_env()
        self.shell: Shell | None = None
        self.background: list[tuple[Step, Proc]] = []
        self.baselines: dict[int, int] = {}
        self.timings: list[tuple[str, float]] = []
        self.printed: dict[int, str] = {}
        """What each run block printed, by ``id`` of its step."""
        for name in CONFIGS:
            (root / name).write_text(ports((REPO_ROOT / name).read_text()))

    def run(self, steps: list[Step]) -> None:
        """Run ``steps`` in order, then Ctrl-C the background commands."""
        for index, step in enumerate(steps):
            began = time.monotonic()
            if step.kind in ("run", "setup", "background"):
                self._note_baselines(steps[index + 1:])
            getattr(self, f"_{step.kind}")(step)
            self.timings.append((step.where(), time.monotonic() - began))
        self._stop_background()

    def close(self) -> None:
        """End the shell session and what it started."""
        if self.shell is not None:
            self.shell.close()

    def _note_baselines(self, rest: list[Step]) -> None:
        """Count, for each wait up to the next run block, its text in its file now."""
        for step in rest:
            if step.kind in ("run", "setup", "background"):
                return
            if step.kind == "wait":
                self.baselines[id(step)] = self._occurrences(step)

    def _occurrences(self, step: Step) -> int:
        path = self.root / step.path
        text = path.read_text(errors="replace") if path.exists() else ""
        return text.count(self.ports(step.text))

    def _check(self, step: Step, status: int, printed: str) -> None:
        text = self.ports(step.text)
        context = f"{step.where()}\n--- block ---\n{text}--- printed ---\n{printed}"
        context += "".join(f"--- running: {proc.describe()}" for _, proc in self.background)
        assert status == 0, f"exit status {status}: {context}"
        if step.output is not None:
            expected = self.ports(step.output.text)
            assert same_output(expected, printed), (
                f"output differs from the doc: {context}--- doc says ---\n{expected}"
            )

    def _run(self, step: Step) -> None:
        text = self.ports(step.text)
        if step.lang == "sh":
            if self.shell is None:
                self.shell = Shell(self.root, self.env, self.scratch)
            status, printed = self.shell.run(text)
        elif step.lang == "python":
            script = self.scratch / f"{Path(step.doc).stem}_{step.line}.py"
            script.write_text(text)
            done = subprocess.run(
                [sys.executable, str(script)], cwd=self.root, env=self.env, text=True,
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                timeout=BLOCK_TIMEOUT,
            )
            status, printed = done.returncode, done.stdout
        else:
            raise AssertionError(f"{step.where()}: cannot run a {step.lang!r} block")
        self.printed[id(step)] = printed
        self._check(step, status, printed)

    def _setup(self, step: Step) -> None:
        text = self.ports(step.text)
        if os.environ.get("CO2_DOCS_SETUP") == "1":
            self._serve(step, text, SETUP_TIMEOUT)
            return
        if sys.prefix == sys.base_prefix:
            pytest.skip("not run from a virtualenv to stand in for .venv; set CO2_DOCS_SETUP=1 to make one")
        rest = []
        for command in (part.strip() for part in text.strip().split("&&")):
            if command.startswith("python3 -m venv "):
                assert command == "python3 -m venv .venv", f"{step.where()}: the virtualenv is not .venv"
            elif "pip install" in command:
                missing = [r for r in pip_requirements(command) if not installed(r)]
                assert not missing, f"{step.where()}: the set-up line installs {missing}, missing here"
            else:
                rest.append(command)
        (self.root / ".venv").symlink_to(sys.prefix)
        if rest:
            self._serve(step, " && ".join(rest), SERVE_TIMEOUT)

    def _serve(self, step: Step, command: str, timeout: float) -> None:
        """Run ``command`` in its terminal until it serves, then Ctrl-C it: it must exit 0."""
        proc = self.start("bash", "-c", command, cwd=self.root)
        proc.wait_serving(timeout)
        self._interrupt(step, proc)

    @staticmethod
    def _interrupt(step: Step, proc: Proc) -> None:
        """Ctrl-C ``proc``: it must exit 0."""
        status = proc.stop(signal.SIGINT)
        assert status == 0, f"{step.where()}: Ctrl-C ended it with status {status}\n{proc.describe()}"

    def _background(self, step: Step) -> None:
        started = []
        for command in self.ports(step.text).splitlines():
            if command.strip():
                started.append(self.start("bash", "-c", command, cwd=self.root))
        for proc in started:
            proc.wait_serving(SERVE_TIMEOUT)
            self.background.append((step, proc))

    def _stop_background(self) -> None:
        """Ctrl-C each background command, the last started first: each exits 0."""
        while self.background:
            self._interrupt(*self.background.pop())

    def _write(self, step: Step) -> None:
        path = self.root / step.path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(step.text)

    def _expect(self, step: Step) -> None:
        path = self.root / step.path
        assert path.is_file(), f"{step.where()}: {step.path} was not written"
        assert path.read_text() == step.text, f"{step.where()}: {step.path} is not what the doc shows"

    def _wait(self, step: Step) -> None:
        baseline = self.baselines.get(id(step), 0)
        deadline = time.monotonic() + WAIT_TIMEOUT
        while self._occurrences(step) <= baseline:
            if time.monotonic() > deadline:
                path = self.root / step.path
                shown = path.read_text(errors="replace") if path.exists() else "(no such file)"
                pytest.fail(f"{step.where()}: {self.ports(step.text)!r} not seen in {WAIT_TIMEOUT}s\n{shown}")
            time.sleep(0.05)


RunDocs = Callable[[list[Step]], Runner]


@pytest.fixture
def docs_runner(tmp_path: Path, start: ProcessStarter) -> Iterator[RunDocs]:
    """``docs_runner(steps)`` runs ``steps`` in a fresh copy of the repository."""

    runners: list[Runner] = []

    def run(steps: list[Step]) -> Runner:
        assert steps, "no runnable blocks"
        texts = [s.text for s in steps if s.kind != "write" and s.kind != "expect"]
        texts += [s.output.text for s in steps if s.output is not None]
        texts += [(REPO_ROOT / name).read_text() for name in CONFIGS]
        scratch = tmp_path / "scratch"
        scratch.mkdir()
        fresh = {Path(*Path(s.path).parts[:2]) for s in steps if s.kind in ("write", "expect")}
        runner = Runner(copy_repository(tmp_path, fresh), scratch, start, Ports(texts))
        runners.append(runner)
        runner.run(steps)
        return runner

    try:
        yield run
    finally:
        for runner in runners:
            runner.close()
            took = "\n".join(f"  {seconds:6.2f}s  {where}" for where, seconds in runner.timings)
            print(f"\nports {runner.ports.map}\n{took}")


def test_markers_are_well_formed() -> None:
    """Every run/output marker in the docs is one the convention knows, before a fenced block."""
    for doc in [*DOCS, *(str(p.relative_to(REPO_ROOT)) for p in sorted((REPO_ROOT / "docs").glob("*.md")))]:
        doc_steps(doc)
    kinds = {doc: [s.kind for s in doc_steps(doc)] for doc in DOCS}
    assert {"setup", "background", "run"} <= set(kinds["README.md"])
    assert {"run", "write", "expect", "wait"} <= set(kinds["docs/plugins.md"])


def test_the_readme_runs(docs_runner: RunDocs) -> None:
    """The README's set-up line and three-node network run as written, and its script prints what it says."""
    docs_runner(doc_steps("README.md"))


def test_the_plugin_tutorial_runs(docs_runner: RunDocs) -> None:
    """After the README's set-up line, docs/plugins.md's tutorial runs as written, its outputs as stated."""
    setup = [s for s in doc_steps("README.md") if s.kind == "setup"]
    docs_runner(setup + doc_steps("docs/plugins.md"))


def test_what_new_plugin_prints_runs_as_printed(docs_runner: RunDocs) -> None:
    """In the tutorial's terminal, the test command new-plugin prints runs as printed and passes."""
    setup = [s for s in doc_steps("README.md") if s.kind == "setup"]
    tutorial = doc_steps("docs/plugins.md")
    made = next(i for i, s in enumerate(tutorial) if s.kind == "run" and "new-plugin" in s.text)
    runner = docs_runner(setup + tutorial[:made + 1])
    printed = runner.printed[id(tutorial[made])]
    [command] = re.findall(r"^\s*test it:\s*(.+)$", printed, re.M)
    assert runner.shell is not None
    status, output = runner.shell.run(command + "\n")
    assert status == 0, f"{command!r} printed:\n{output}"
    assert re.search(r"\b3 passed\b", output), output
    # And in a new terminal, without the virtualenv activated: the printed Python is the one with co2.
    clean = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(runner.root)}
    fresh = subprocess.run(["bash", "-c", command], cwd=runner.root, capture_output=True, text=True,
                           env=clean, timeout=120)
    assert fresh.returncode == 0 and re.search(r"\b3 passed\b", fresh.stdout), fresh.stdout + fresh.stderr
