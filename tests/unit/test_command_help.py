"""Each node command's help: its own usage line and only its own options; its version."""

from __future__ import annotations

import pytest

import co2
import twisted
from satellites._cli import CommandOptions, RelayOptions


def help_of(options_class: type) -> str:
    return str(options_class())


def test_the_relays_help_has_its_usage_and_no_plugin_options():
    text = help_of(RelayOptions)
    assert text.startswith("Usage: co2-relay [--config PATH]")
    assert "--list-plugins" not in text and "--strict" not in text
    assert "--version" in text


def test_the_satellites_help_has_its_usage_and_its_plugin_options():
    text = help_of(CommandOptions)
    assert text.startswith("Usage: co2-satellite [--config PATH]")
    assert "--list-plugins" in text and "--strict" in text and "new-plugin" in text


@pytest.mark.parametrize("options_class", [CommandOptions, RelayOptions])
def test_version_names_co2_then_twisted(options_class, capsys):
    with pytest.raises(SystemExit) as exit_:
        options_class().parseOptions(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"co2 {co2.__version__}\nTwisted {twisted.__version__}\n"


def test_a_relay_refuses_the_plugin_options():
    from twisted.python import usage

    with pytest.raises(usage.UsageError, match="list-plugins"):
        RelayOptions().parseOptions(["--list-plugins"])
