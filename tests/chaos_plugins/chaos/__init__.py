"""Chaos: records every message received, in self.state, so the record survives SIGKILL."""

__all__ = ["a", "b"]
