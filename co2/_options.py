"""
Command lines whose options may stand anywhere among the arguments.

``twisted.python.usage`` reads options with ``getopt``, which stops at the
first argument: ``co2 call URL METHOD --raw`` would take ``--raw`` for an
argument.  :class:`OptionsAnywhere` moves the options before the
arguments first.  ``--`` ends the options, and a negative number
(``-1``, ``-.5``) is an argument.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from twisted.python import usage

__all__ = ["OptionsAnywhere", "silence_stdout", "versions"]


def silence_stdout() -> None:
    """What reads this process's output went away (``--help | head``): write the rest nowhere, quietly."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def versions() -> str:
    """What ``--version`` prints: co2's version, then Twisted's."""
    import twisted
    from co2 import __version__

    return f"co2 {__version__}\nTwisted {twisted.__version__}\n"


class OptionsAnywhere(usage.Options):
    """A ``usage.Options`` that finds its options wherever they stand on the command line."""

    def opt_version(self) -> NoReturn:
        """Print co2's version, then Twisted's, and exit"""
        sys.stdout.write(versions())
        sys.exit(0)

    def parseOptions(self, options: Sequence[str] | None = None) -> None:
        flags: list[str] = []
        arguments: list[str] = []
        rest = iter(sys.argv[1:] if options is None else options)
        for arg in rest:
            if arg == "--":
                arguments.extend(rest)
            elif not arg.startswith("-") or arg == "-" or arg[1] in "0123456789.":
                arguments.append(arg)
            elif "=" not in arg and self._takes_value(arg):
                value = next(rest, None)
                if value is None:
                    raise usage.UsageError(f"option {arg} requires an argument")
                flags += [arg, value]
            else:
                flags.append(arg)
        super().parseOptions([*flags, "--", *arguments])

    def _takes_value(self, option: str) -> bool:
        """Whether ``option`` (as given) is one that takes a value in the next argument."""
        if option[:2] != "--":
            return len(option) == 2 and f"{option[1]}:" in self.shortOpt
        name = option[2:]  # or, as getopt reads it, a unique prefix of the name
        found = [o for o in self.longOpt if o.startswith(name)]
        return f"{name}=" in found or (len(found) == 1 and found[0].endswith("="))
