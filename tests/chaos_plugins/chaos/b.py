"""The second chaos plugin of a satellite."""

from .recorder import Recorder


class X_Chaos(Recorder):
    """Records what it receives (see recorder.py)."""
