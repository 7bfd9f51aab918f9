"""
co2 reads no private attribute of another library's objects (Twisted's
included) and never ends the process with ``os._exit``: the code keeps
to public APIs, so a Twisted release cannot break it unannounced.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

OWN = {
    # Private attributes of co2's own classes, read by the module that owns them.
    ("co2/_state.py", "state._here"),
    ("satellites/_http.py", "channel._counted"),
    ("satellites/_http_framing.py", "request._transfer"),
    ("satellites/_http_framing.py", "request._length"),
}


def _reaches() -> set[tuple[str, str]]:
    """``(file, expression)`` of every ``x._name`` where x is not ``self`` or ``cls``."""
    found = set()
    for package in ("co2", "relay", "satellites"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if (
                    isinstance(node, ast.Attribute) and node.attr.startswith("_")
                    and not node.attr.startswith("__")
                    and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
                ):
                    found.add((str(path.relative_to(ROOT)), ast.unparse(node)))
    return found


def test_only_co2s_own_private_attributes_are_read():
    """Every ``x._name`` outside ``self`` is one of co2's own classes' (listed above), none of Twisted's."""
    assert _reaches() - OWN == set()


def test_the_process_is_never_ended_with_os_exit():
    """No ``os._exit``: an overrunning shutdown is ended by faulthandler, a failed start told to twistd."""
    assert not {expression for _, expression in _reaches() if expression.endswith("._exit")}
