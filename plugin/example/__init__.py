"""A commented walk-through of a co2 plugin: receive, send, an x_ method, __exit__.

A plugin package is a directory with an ``__init__.py``.  The satellite
imports the modules named in ``__all__`` (and only those), so list every
module that holds ``X_`` classes or ``x_`` functions here.
"""

__all__ = ["example"]
