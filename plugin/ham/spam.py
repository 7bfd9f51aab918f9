"""The ``spam`` module of the ``ham`` plugin package."""

from co2 import Co2Plugin


class X_Spam(Co2Plugin):
    """Answers ``ham.spam.call_me`` and counts the messages it receives."""

    def __init__(self, var_dict):
        Co2Plugin.__init__(self, var_dict)
        self.received = 0

    def receive(self, data_dict):
        self.received += 1

    def x_call_me(self, name: str = "world") -> str:
        """Return a greeting for ``name``."""
        return f"hello, {name}, from {self}"

    def x_received(self) -> int:
        """Return how many messages this plugin has received."""
        return self.received
