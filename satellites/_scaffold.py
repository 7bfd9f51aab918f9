"""
``co2-satellite new-plugin NAME``: write a new plugin package, with a test
that runs it on ``co2.testing.PluginHarness``.
"""

from __future__ import annotations

import keyword
from pathlib import Path

from co2._config import RESERVED_PACKAGES
from satellites._errors import SatelliteError

__all__ = ["DEFAULT_DIR", "ScaffoldError", "check_name", "class_name", "files_for", "new_plugin"]

DEFAULT_DIR = "plugin"
"""Where ``new-plugin`` writes without ``--dir``: ``plugin`` in the current directory."""

INIT = '''\
"""The {name} plugin: say here, in one line, what it does (--list-plugins shows it)."""

__all__ = ["{name}"]
'''

MODULE = '''\
"""The {name} module: its X_ class and x_ methods are what a satellite loads."""

from co2 import Co2Plugin


class {cls}(Co2Plugin):
    """Counts the messages it receives; {name}.{name}.hello greets its caller."""

    def __init__(self, var_dict):
        Co2Plugin.__init__(self, var_dict)
        self.greeting = self.var_dict.get("greeting", "hello")

    def receive(self, data_dict):
        """Count a message another plugin sent, or a notify call brought."""
        self.state["received"] = self.state.get("received", 0) + 1
        self.debug(f"got {{data_dict['data']!r}} from {{data_dict['host_id']}}")

    def x_hello(self, name: str) -> str:
        """Return a greeting for name, and tell the other plugins whom it greeted."""
        self.send({{"greeted": name}})
        return f"{{self.greeting}}, {{name}}"
'''

TEST = '''\
"""Tests of the {name} plugin, run in memory by co2.testing.PluginHarness."""

import xmlrpc.client
from pathlib import Path

import pytest

from co2.testing import PluginHarness

PACKAGE = Path(__file__).resolve().parents[1]  # the {name} package directory


@pytest.fixture
def harness():
    with PluginHarness(PACKAGE, var_dict={{"greeting": "hi"}}) as harness:
        yield harness


def test_hello_greets_and_tells_the_others(harness):
    """{name}.{name}.hello greets its argument and sends whom it greeted."""
    assert harness.call("{name}.{name}.hello", "ada") == "hi, ada"
    assert harness.sent_by("{cls}") == [{{"greeted": "ada"}}]


def test_messages_are_counted_in_state(harness):
    """Each message received adds one to state["received"]."""
    harness.deliver("one")
    harness.deliver({{"two": 2}})
    assert harness.state("{cls}") == {{"received": 2}}


def test_hello_needs_a_name(harness):
    """hello without its argument is fault -32602, as on a satellite."""
    with pytest.raises(xmlrpc.client.Fault) as info:
        harness.call("{name}.{name}.hello")
    assert info.value.faultCode == -32602
'''


class ScaffoldError(SatelliteError):
    """``new-plugin`` cannot write the package; ``str()`` is one line saying why."""


def check_name(name: str) -> None:
    """Raise :class:`ScaffoldError` unless ``name`` can be a plugin package's name."""
    if not name.isidentifier() or keyword.iskeyword(name):
        raise ScaffoldError(f"{name!r} is not a valid package name (a Python identifier, not a keyword)")
    if name.startswith("_"):
        raise ScaffoldError(f"{name!r} starts with '_': a satellite does not list such packages")
    if name in RESERVED_PACKAGES:
        raise ScaffoldError(
            f"{name!r} is a reserved name (reserved: {', '.join(sorted(RESERVED_PACKAGES))})"
        )


def class_name(name: str) -> str:
    """The ``X_`` class of package ``name``: ``my_tally`` gives ``X_MyTally``."""
    return "X_" + "".join(part[:1].upper() + part[1:] for part in name.split("_") if part)


def files_for(name: str) -> dict[str, str]:
    """The files of a new package ``name``: path inside the package to text."""
    values = {"name": name, "cls": class_name(name)}
    return {
        "__init__.py": INIT.format(**values),
        f"{name}.py": MODULE.format(**values),
        f"tests/test_{name}.py": TEST.format(**values),
    }


def new_plugin(name: str, directory: str | Path) -> Path:
    """
    Write package ``name`` into ``directory`` (made if missing); return
    the package's path.  Raises :class:`ScaffoldError` for a name that
    cannot be a package's, or a package that already exists.
    """
    check_name(name)
    package = Path(directory) / name
    if package.exists() or package.is_symlink():
        raise ScaffoldError(f"{package} already exists")
    if Path(directory).exists() and not Path(directory).is_dir():
        raise ScaffoldError(f"{directory} is not a directory")
    try:
        for relative, text in files_for(name).items():
            path = package / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    except OSError as e:
        raise ScaffoldError(f"cannot write {package}: {e.strerror or e}") from None
    return package
