"""
Who may talk to a node: ``twisted.cred`` checkers, configured the way
``twistd`` does (``--auth memory:alice:secret``, ``file:PATH``, ``unix``)
or by ``auth`` in ``config.py``.
"""

from __future__ import annotations

import base64

__all__ = ["basic_authorization"]


def basic_authorization(username: str, password: str) -> bytes:
    """The value of an HTTP ``Authorization`` header for Basic credentials."""
    token = base64.b64encode(f"{username}:{password}".encode())
    return b"Basic " + token
