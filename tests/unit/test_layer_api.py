"""
The plugin host uses the routing engine through its public API only.

The import-linter contracts (test_layers.py) say which package may import
which; this says how: satellites and co2.testing import relay's top-level
package, never one of its private modules, and read no attribute of the
router behind the relay.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

USERS = sorted([*(ROOT / "satellites").glob("*.py"), *(ROOT / "co2" / "testing").glob("*.py")])


def _relay_imports(tree: ast.AST) -> list[str]:
    """The relay modules a module imports, as written."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "relay":
            found.append(node.module)
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if alias.name.split(".")[0] == "relay"]
    return found


@pytest.mark.parametrize("path", USERS, ids=lambda path: str(path.relative_to(ROOT)))
def test_only_relays_public_api_is_imported(path):
    """``from relay import ...``: no ``relay._router``, ``relay._links`` and the like."""
    private = [name for name in _relay_imports(ast.parse(path.read_text())) if name != "relay"]
    assert not private, f"{path.relative_to(ROOT)} imports relay's private modules {private}"


def _reaches(tree: ast.AST) -> list[int]:
    """Lines that read a ``router`` attribute, outside ``manhole_namespace`` (the operator's window)."""
    lines = []
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.FunctionDef) and node.name == "manhole_namespace":
            continue
        if isinstance(node, ast.Attribute) and node.attr == "router":
            lines.append(node.lineno)
        lines += _reaches(node)
    return lines


@pytest.mark.parametrize("path", USERS, ids=lambda path: str(path.relative_to(ROOT)))
def test_the_router_is_not_reached_through_the_relay(path):
    """No ``relay.router.…``: what the plugin host needs of routing is a method of the Relay."""
    reached = _reaches(ast.parse(path.read_text()))
    assert not reached, f"{path.relative_to(ROOT)} reaches into the router at lines {reached}"
