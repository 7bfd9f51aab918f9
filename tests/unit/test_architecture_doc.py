"""docs/architecture.md matches the code: every module it names exists and holds the names it gives."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "architecture.md").read_text()

# `relay/_router.py` alone, or followed by (`Router`) / (Router) / Router.
_MENTION = re.compile(r"`?((?:co2|relay|satellites)/[\w/]+\.py)`?(?:\s+\(?`?([A-Z]\w+)`?\)?)?")
# `Router.route` and the like, in the paths of a message and of a call.
_QUALIFIED = re.compile(r"\b([A-Z]\w+)\.(\w+)\b")


def _defined(path: Path) -> set[str]:
    """The classes, functions and methods defined in ``path`` (qualified as Class.method too)."""
    names: set[str] = set()
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            names.add(node.name)
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    names.add(f"{node.name}.{item.name}")
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
    return names


MENTIONS = sorted({(path, name or "") for path, name in _MENTION.findall(DOC)})


@pytest.mark.parametrize(("path", "name"), MENTIONS)
def test_each_module_named_exists_and_holds_what_the_page_says(path, name):
    """A module the page names is a file of the project, and a class it puts beside it is defined there."""
    file = ROOT / path
    assert file.is_file(), f"docs/architecture.md names {path}, which does not exist"
    if name:
        assert name in _defined(file), f"docs/architecture.md says {path} holds {name}"


def test_each_method_on_the_paths_exists():
    """Each ``Class.method`` in the paths of a message and of a call is defined in the project."""
    defined: set[str] = set()
    for package in ("co2", "relay", "satellites"):
        for file in (ROOT / package).rglob("*.py"):
            defined |= _defined(file)
    wanted = {f"{cls}.{method}" for cls, method in _QUALIFIED.findall(DOC)}
    missing = sorted(name for name in wanted if name not in defined)
    assert not missing, f"docs/architecture.md names what the code does not define: {missing}"


def test_the_service_tree_is_drawn_in_the_order_the_node_starts():
    """The children of RelayService start in the order the page draws them."""
    from twisted.internet.testing import MemoryReactorClock

    from satellites import make_config, node_service

    config = make_config({"plugin_list": [], "amp_listen": "tcp:0:interface=127.0.0.1",
                          "manhole": "tcp:0:interface=127.0.0.1", "manhole_passwords": __file__})
    service = node_service(config, MemoryReactorClock()).service
    assert service is not None
    drawn = re.findall(r"^ \+-- (\w+)", DOC, re.MULTILINE)
    assert [child.name for child in service] == drawn == ["links", "host", "front", "manhole"]
