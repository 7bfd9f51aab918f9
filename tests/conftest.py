"""Fixtures shared by the unit and integration tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def plugin_dir(tmp_path: Path) -> Path:
    """An empty plugin directory."""
    path = tmp_path / "plugins"
    path.mkdir()
    return path
