"""The public names of each package."""

from __future__ import annotations

import importlib

import pytest

PACKAGES = [
    "co2", "co2.faults", "co2.testing", "co2.protocol", "satellites", "relay", "relay.shape", "plugin",
]


@pytest.mark.parametrize("module", PACKAGES)
def test_every_public_name_exists(module):
    """Each name in __all__ is defined."""
    mod = importlib.import_module(module)
    for name in mod.__all__:
        assert hasattr(mod, name), f"{module}.{name}"


def test_classic_import_path():
    """from plugin import Co2Plugin gives the SDK's class."""
    import co2
    from plugin import Co2Plugin

    assert Co2Plugin is co2.Co2Plugin


def test_fault_codes_follow_the_interop_convention():
    """Fault codes are the interoperability ones; server errors lie in -32099..-32000."""
    from co2 import faults

    assert (faults.PARSE_ERROR, faults.INVALID_REQUEST, faults.METHOD_NOT_FOUND) == (
        -32700, -32600, -32601)
    assert (faults.INVALID_PARAMS, faults.INTERNAL_ERROR, faults.APPLICATION_ERROR) == (
        -32602, -32603, -32500)
    for code in (faults.HOST_ID_MISMATCH, faults.NODE_UNREACHABLE, faults.CALL_TIMEOUT):
        assert -32099 <= code <= -32000


def test_plugin_is_verified_against_its_interface():
    """Co2Plugin provides ICo2Plugin."""
    from zope.interface.verify import verifyClass

    from co2 import Co2Plugin, ICo2Plugin

    assert verifyClass(ICo2Plugin, Co2Plugin)
