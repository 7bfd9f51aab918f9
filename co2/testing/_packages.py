"""Writing plugin packages to a directory, for tests that load them."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from pathlib import Path

__all__ = ["write_package"]


def write_package(
    root: Path, name: str, modules: Mapping[str, str], init: str | None = None
) -> Path:
    """
    Write a plugin package ``name`` under ``root``: one file per entry of
    ``modules`` (module name to source, dedented) and an ``__init__.py``
    (``init``, or a docstring and an ``__all__`` listing the modules).
    """
    package = Path(root) / name
    package.mkdir(parents=True)
    if init is None:
        init = f'"""The {name} package."""\n__all__ = {list(modules)!r}\n'
    (package / "__init__.py").write_text(textwrap.dedent(init))
    for module, source in modules.items():
        (package / f"{module}.py").write_text(textwrap.dedent(source))
    return package
