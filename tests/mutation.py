"""
A small mutation tester for co2's core modules; no dependency beyond the
standard library and the project's own test suite.

Each mutant is one small change to a module's syntax tree (a comparison
flipped, an int constant moved by one, ``and`` swapped for ``or``, a
condition negated, a call statement deleted, a return value replaced by
None, True swapped for False, ``+`` for ``-``...).  The tests that exercise
the module then run against it, in a subprocess, in a copy of the
repository under ``/tmp``: the real source files are never written, so the
tool is safe to run while others edit the tree.  A mutant is *killed* when
the tests fail, *survives* when they pass, and *times out* when they run
longer than a few times the unmutated run (an infinite loop is a kill in
practice, but it is counted apart).

Run from the repository root::

    .venv/bin/python tests/mutation.py                      # the core modules
    .venv/bin/python tests/mutation.py --module relay/_outbox.py --list-survivors
    .venv/bin/python tests/mutation.py --list-mutants --module co2/_values.py

The score is killed (timeouts included) over mutants, leaving out those
listed in :data:`EQUIVALENT`: mutants judged to behave exactly as the
original, each with why, in ``docs/testing.md``.  CI does not run this.
"""

from __future__ import annotations

import argparse
import ast
import concurrent.futures
import copy
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_ALWAYS = ["tests/unit/test_what_breaks.py"]

_ROUTING_TESTS = [
    *_ALWAYS,
    "tests/unit/test_outbox.py",
    "tests/unit/test_router_spool.py",
    "tests/unit/test_router_turn.py",
    "tests/unit/test_plugin_state.py",
    "tests/unit/test_relay_plugins.py",
    "tests/unit/test_watch_tap.py",
    "tests/unit/test_watch_waiters.py",
    "tests/unit/test_delivery.py",
    "tests/unit/network",
]

MODULES: dict[str, list[str]] = {
    "co2/_message.py": [
        *_ALWAYS,
        "tests/unit/test_message.py",
        "tests/unit/test_values.py",
        "tests/unit/test_protocol.py",
        "tests/unit/test_properties.py",
    ],
    "co2/_values.py": [
        *_ALWAYS,
        "tests/unit/test_values.py",
        "tests/unit/test_message.py",
        "tests/unit/test_protocol.py",
        "tests/unit/test_properties.py",
    ],
    "relay/_seen.py": [
        *_ALWAYS,
        "tests/unit/test_outbox.py",
        "tests/unit/test_router_spool.py",
    ],
    "relay/_outbox.py": [
        *_ALWAYS,
        "tests/unit/test_outbox.py",
        "tests/unit/test_router_spool.py",
        "tests/unit/test_router_turn.py",
        "tests/unit/network/test_routing.py",
        "tests/unit/network/test_metrics.py",
    ],
    "relay/_router.py": _ROUTING_TESTS,
    "relay/_turn.py": _ROUTING_TESTS,
}
"""Each core module and the tests that exercise it, quickest to fail first."""

_COMPACT = "elif head > _COMPACT_AFTER and 2 * head > len(waiting):"
_WRITE = "self.turn.write()"
_DROP = "dropped = self._waiting[self._head : self._head + drop] if drop > 0 else []"

EQUIVALENT: dict[str, set[tuple[str, str, str]]] = {
    # (function, source line, mutation) of mutants judged equivalent; why, in docs/testing.md.
    "co2/_message.py": {
        ("_normalise", 'ip = ipaddress.ip_address(address.split("%", 1)[0])', "1 -> 2"),
        ("read_message", "if len(message) == 2:", "2 -> 1"),
    },
    "co2/_values.py": {
        ("", r'ASCII_NOT_XML = tuple(chr(c) for c in range(0x20) if c not in b"\t\n\r")', "32 -> 33"),
        ("", "LONG_TEXT = 512", "512 -> 513"),
        ("", "LONG_TEXT = 512", "512 -> 511"),
        ("check_text", "if len(text) < LONG_TEXT or not text.isascii():", "< -> <="),
        ("_check", "if len(key) >= LONG_TEXT or not key.isprintable():", ">= -> >"),
        ("_check_items", "if len(item) >= LONG_TEXT or not item.isprintable():", ">= -> >"),
    },
    "relay/_outbox.py": {
        ("", "_COMPACT_AFTER = 4096", "4096 -> 4097"),
        ("", "_COMPACT_AFTER = 4096", "4096 -> 4095"),
        ("put", "if self._count < self.limit and self._bytes + size <= self.limit_bytes:", "<= -> <"),
        ("_make_room", "if excess > 0:", "> -> >="),
        ("_make_room", "if excess > 0:", "0 -> -1"),
        ("_make_room", _DROP, "> -> >="),
        ("_make_room", _DROP, "0 -> -1"),
        ("_advance", _COMPACT, "if head > _COMPACT_AFTER and 2 * head > len -> not"),
        ("_advance", _COMPACT, "and -> or"),
        ("_advance", _COMPACT, "> -> >="),
        ("_advance", _COMPACT, "* -> //"),
        ("_advance", _COMPACT, "2 -> 3"),
        ("_advance", _COMPACT, "2 -> 1"),
    },
    "relay/_router.py": {
        ("forget", _WRITE, "delete self.turn.write()"),
        ("acked", _WRITE, "delete self.turn.write()"),
        ("_take",
         "route(message_id, hops if hops < max_hops else max_hops, message, key, client_address, FROM_LINK)",
         "< -> <="),
        ("close", "self._expiries.clear()", "delete self._expiries.clear()"),
    },
}

_PLUGIN = '''
"""Loaded by tests/mutation.py in its copy of the repository: deterministic Hypothesis."""
from hypothesis import settings

settings.register_profile("mutation", database=None, derandomize=True, deadline=None)
settings.load_profile("mutation")
'''


@dataclass(frozen=True)
class Mutant:
    """One change to a module: the ``index``-th candidate site, and how it changes."""

    index: int
    choice: int
    line: int
    what: str
    code: str
    function: str = ""


_FLIP = {
    ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.Is: ast.IsNot, ast.IsNot: ast.Is,
    ast.In: ast.NotIn, ast.NotIn: ast.In,
}
_SYMBOL = {
    ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!=",
    ast.Is: "is", ast.IsNot: "is not", ast.In: "in", ast.NotIn: "not in",
    ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.FloorDiv: "//",
}
_ARITH = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.FloorDiv, ast.FloorDiv: ast.Mult}


def _skipped(node: ast.AST) -> bool:
    """Docstrings, ``__all__`` and type-only code are not mutated."""
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
        return isinstance(node.value.value, str)
    if isinstance(node, ast.Assign):
        return any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)
    if isinstance(node, ast.ImportFrom | ast.Import):
        return True
    return isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def _walk(node: ast.AST) -> Iterator[ast.AST]:
    """Every node in a fixed order, leaving out annotations and skipped statements."""
    if _skipped(node):
        return
    yield node
    for name, value in ast.iter_fields(node):
        if name in ("annotation", "returns", "type_comment", "decorator_list"):
            continue
        children = value if isinstance(value, list) else [value]
        for child in children:
            if isinstance(child, ast.AST):
                yield from _walk(child)


def _choices(node: ast.AST) -> list[str]:
    """What each mutation of ``node`` is, in words; empty when it has none."""
    if isinstance(node, ast.Compare):
        return [f"{_SYMBOL[type(op)]} -> {_SYMBOL[_FLIP[type(op)]]}" for op in node.ops]
    if isinstance(node, ast.Constant):
        if node.value is True or node.value is False:
            return [f"{node.value} -> {not node.value}"]
        if type(node.value) is int:
            return [f"{node.value} -> {node.value + 1}", f"{node.value} -> {node.value - 1}"]
        return []
    if isinstance(node, ast.BoolOp):
        return ["and -> or" if isinstance(node.op, ast.And) else "or -> and"]
    if isinstance(node, ast.BinOp) and type(node.op) in _ARITH:
        return [f"{_SYMBOL[type(node.op)]} -> {_SYMBOL[_ARITH[type(node.op)]]}"]
    if isinstance(node, ast.AugAssign) and type(node.op) in _ARITH:
        return [f"{_SYMBOL[type(node.op)]}= -> {_SYMBOL[_ARITH[type(node.op)]]}="]
    if isinstance(node, ast.If | ast.While | ast.IfExp):
        keyword = {ast.If: "if", ast.While: "while", ast.IfExp: "if-expression"}[type(node)]
        return [f"{keyword} {ast.unparse(node.test)[:40]} -> not"]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return ["not x -> x"]
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
        return [f"delete {ast.unparse(node.value)[:60]}"]
    if isinstance(node, ast.Return) and node.value is not None:
        if not (isinstance(node.value, ast.Constant) and node.value.value is None):
            return ["return ... -> return None"]
    return []


def _sites(tree: ast.Module) -> list[ast.AST]:
    return [node for node in _walk(tree) if _choices(node)]


def mutants(source: str) -> list[Mutant]:
    """Every mutant of ``source``, in a stable order."""
    found = []
    lines = source.splitlines()
    tree = ast.parse(source)
    # The function each node is in (the innermost), for telling like lines apart.
    function: dict[int, str] = {}
    for outer in ast.walk(tree):
        if isinstance(outer, ast.FunctionDef | ast.AsyncFunctionDef):
            for node in ast.walk(outer):
                function[id(node)] = outer.name
    for index, node in enumerate(_sites(tree)):
        line = getattr(node, "lineno", 0)
        for choice, what in enumerate(_choices(node)):
            code = lines[line - 1].strip()
            found.append(Mutant(index, choice, line, what, code, function.get(id(node), "")))
    return found


class _Replace(ast.NodeTransformer):
    """Replaces one node of a tree (found by identity) by another, or deletes it."""

    def __init__(self, target: ast.AST, replacement: ast.AST | None) -> None:
        self.target = target
        self.replacement = replacement

    def visit(self, node: ast.AST) -> ast.AST | None:
        if node is self.target:
            return self.replacement
        return self.generic_visit(node)


def apply(source: str, mutant: Mutant) -> str:
    """``source`` with ``mutant`` made."""
    tree = ast.parse(source)
    node = _sites(tree)[mutant.index]
    new: ast.AST | None = copy.copy(node)
    if isinstance(node, ast.Compare):
        assert isinstance(new, ast.Compare)
        ops = list(node.ops)
        ops[mutant.choice] = _FLIP[type(ops[mutant.choice])]()
        new.ops = ops
    elif isinstance(node, ast.Constant):
        if isinstance(node.value, bool):
            new = ast.Constant(not node.value)
        else:
            new = ast.Constant(node.value + (1 if mutant.choice == 0 else -1))
    elif isinstance(node, ast.BoolOp):
        assert isinstance(new, ast.BoolOp)
        new.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
    elif isinstance(node, ast.BinOp | ast.AugAssign):
        assert isinstance(new, ast.BinOp | ast.AugAssign)
        new.op = _ARITH[type(node.op)]()
    elif isinstance(node, ast.If | ast.While | ast.IfExp):
        assert isinstance(new, ast.If | ast.While | ast.IfExp)
        new.test = ast.UnaryOp(ast.Not(), node.test)
    elif isinstance(node, ast.UnaryOp):
        new = node.operand
    elif isinstance(node, ast.Expr):
        new = ast.Pass()
    elif isinstance(node, ast.Return):
        new = ast.Return(ast.Constant(None))
    tree = _Replace(node, new).visit(tree)
    return ast.unparse(ast.fix_missing_locations(tree))


def _copy_repository(where: Path) -> None:
    ignore = shutil.ignore_patterns(".venv", ".git", "__pycache__", ".hypothesis", ".mypy_cache",
                                    ".ruff_cache", ".pytest_cache", "*.egg-info")
    shutil.copytree(ROOT, where, ignore=ignore, symlinks=True)
    (where / "_mutation_hypothesis.py").write_text(_PLUGIN)


def _run(where: Path, tests: list[str], timeout: float) -> str:
    """Run ``tests`` in the copy at ``where``: "passed", "failed" or "timeout"."""
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", PYTHONPATH=str(where))
    command = [
        sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:randomly", "-p", "no:cacheprovider",
        "-p", "_mutation_hypothesis", "--no-header", "--tb=no", *tests,
    ]
    process = subprocess.Popen(command, cwd=where, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        code = process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return "timeout"
    return "passed" if code == 0 else "failed"


@dataclass
class Result:
    """What became of the mutants of one module."""

    module: str
    killed: list[Mutant]
    survived: list[Mutant]
    timed_out: list[Mutant]
    equivalent: list[Mutant]

    @property
    def score(self) -> float:
        counted = len(self.killed) + len(self.timed_out) + len(self.survived)
        return 100.0 * (len(self.killed) + len(self.timed_out)) / counted if counted else 100.0


def _survivors_in(report: Path) -> set[tuple[str, int, str]]:
    """The (module, line, mutation) of each survivor a ``--list-survivors`` report lists."""
    found = set()
    for line in report.read_text().splitlines():
        for prefix in ("  survived ", "  timed out "):
            if line.startswith(prefix):
                where, _, rest = line[len(prefix):].partition(": ")
                module, _, number = where.rpartition(":")
                found.add((module, int(number), rest.rsplit("    | ", 1)[0]))
    return found


def run_module(module: str, workers: list[Path], jobs: int, limit: int | None,
               exclude: tuple[str, ...] = (), recheck: set[tuple[str, int, str]] | None = None) -> Result:
    """
    Make and test every mutant of ``module``, ``jobs`` at a time; with
    ``recheck``, only those it names (the others were killed already).
    """
    source = (ROOT / module).read_text()
    tests = [t for t in MODULES[module] if (workers[0] / t).exists() and t not in exclude]
    tests += [f"--deselect={t}" for t in exclude if "::" in t]
    every = mutants(source)[:limit]
    found = every if recheck is None else [m for m in every if (module, m.line, m.what) in recheck]
    for where in workers:
        (where / module).write_text(source)
    started = time.monotonic()
    if _run(workers[0], tests, timeout=600) != "passed":
        raise SystemExit(f"{module}: the tests fail without any mutant; fix that first")
    timeout = 3 * (time.monotonic() - started) + 10
    free = list(workers)
    outcomes: dict[Mutant, str] = {}

    def one(mutant: Mutant) -> tuple[Mutant, str]:
        where = free.pop()
        try:
            (where / module).write_text(apply(source, mutant))
            return mutant, _run(where, tests, timeout)
        finally:
            (where / module).write_text(source)
            free.append(where)

    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        for mutant, outcome in pool.map(one, found):
            outcomes[mutant] = outcome
            mark = {"failed": ".", "passed": "S", "timeout": "T"}[outcome]
            print(mark, end="", flush=True, file=sys.stderr)
    print(file=sys.stderr)
    equivalent = EQUIVALENT.get(module, set())
    result = Result(module, [], [], [], [])
    for mutant in every:
        outcome = outcomes.get(mutant, "failed")
        if outcome == "passed" and (mutant.function, mutant.code, mutant.what) in equivalent:
            result.equivalent.append(mutant)
        elif outcome == "passed":
            result.survived.append(mutant)
        elif outcome == "timeout":
            result.timed_out.append(mutant)
        else:
            result.killed.append(mutant)
    return result


def main(argv: list[str] | None = None) -> int:
    """The command line: see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--module", action="append", choices=sorted(MODULES),
                        help="mutate only this module (may be repeated); default: all of them")
    parser.add_argument("--list-survivors", action="store_true", help="print each surviving mutant")
    parser.add_argument("--list-mutants", action="store_true", help="print the mutants and run nothing")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="mutants tested at once")
    parser.add_argument("--exclude", action="append", default=[], metavar="TEST",
                        help="leave this test file (or test, path::name) out")
    parser.add_argument("--recheck", type=Path, metavar="REPORT",
                        help="test again only the survivors a --list-survivors report lists")
    parser.add_argument("--limit", type=int, help="test only the first LIMIT mutants of each module")
    parser.add_argument("--show", metavar="N", type=int, help="print the source of mutant N and stop")
    options = parser.parse_args(argv)
    modules = options.module or sorted(MODULES)
    if options.list_mutants or options.show is not None:
        for module in modules:
            source = (ROOT / module).read_text()
            for n, mutant in enumerate(mutants(source)):
                if options.show is None:
                    print(f"{module}:{mutant.line}: #{n} {mutant.what}    | {mutant.code}")
                elif options.show == n:
                    print(apply(source, mutant))
        return 0
    base = Path(tempfile.mkdtemp(prefix=f"mut-{os.getpid()}-"))
    try:
        workers = []
        for n in range(max(1, options.jobs)):
            _copy_repository(base / str(n))
            workers.append(base / str(n))
        results = []
        for module in modules:
            print(f"{module}: testing its mutants ...", file=sys.stderr)
            result = run_module(module, workers, len(workers), options.limit, tuple(options.exclude),
                                None if options.recheck is None else _survivors_in(options.recheck))
            results.append(result)
            _report(result, options.list_survivors)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print()
    print(f"{'module':20} {'mutants':>7} {'killed':>6} {'timeout':>7} {'survived':>8} "
          f"{'equiv.':>6} {'score':>6}")
    for r in results:
        total = len(r.killed) + len(r.timed_out) + len(r.survived) + len(r.equivalent)
        print(f"{r.module:20} {total:7} {len(r.killed):6} {len(r.timed_out):7} {len(r.survived):8} "
              f"{len(r.equivalent):6} {r.score:5.1f}%")
    return 0 if all(not r.survived for r in results) else 1


def _report(result: Result, survivors: bool) -> None:
    print(f"{result.module}: {len(result.killed)} killed, {len(result.timed_out)} timed out, "
          f"{len(result.survived)} survived, {len(result.equivalent)} equivalent: {result.score:.1f}%",
          flush=True)
    if survivors:
        for mutant in result.survived:
            print(f"  survived {result.module}:{mutant.line}: {mutant.what}    | {mutant.code}", flush=True)
        for mutant in result.timed_out:
            print(f"  timed out {result.module}:{mutant.line}: {mutant.what}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
