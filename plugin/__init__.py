"""
The default plugin directory.

Each package in this directory is a plugin package; list its name in
``plugin_list`` of ``config.py`` to load it.  ``from plugin import Co2Plugin``
is kept for plugins written against the classic co2 layout.
"""

from co2 import Co2Plugin, in_thread

__all__ = ["Co2Plugin", "in_thread"]
