"""A small demonstration plugin: ham.spam.call_me answers over XML-RPC."""

__all__ = ["spam"]
