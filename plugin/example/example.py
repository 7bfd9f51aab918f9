"""
An example co2 plugin, to read from top to bottom.

Enable it by listing ``"example"`` in ``plugin_list`` of ``config.py``;
settings for it go in ``plugin_config = {"example": {...}}``.
"""

from co2 import Co2Plugin, in_thread


# Only classes whose names start with ``X_`` and that subclass Co2Plugin are
# created by the satellite: one instance each, when the satellite starts.
class X_Example(Co2Plugin):
    """Keeps the last messages it received and echoes numbers it is sent."""

    def __init__(self, var_dict):
        # Always call Co2Plugin.__init__: it connects the plugin to its
        # satellite.  ``var_dict`` holds this package's plugin_config entries
        # and what the satellite provides (host_id, package_dir, ...).
        Co2Plugin.__init__(self, var_dict)
        self.keep = int(self.var_dict.get("keep", 10))
        self.last = []
        self.log(f"example plugin ready, keeping the last {self.keep} messages")

    # ``receive`` is called for each message another plugin sends, anywhere
    # in the network, and for each ``notify`` call.  ``data_dict`` holds
    # ``data``, ``host_id`` (who sent it) and ``client_address`` (the last hop).
    # It must return quickly: the satellite serves everything from one thread.
    def receive(self, data_dict):
        self.last = [*self.last, data_dict["data"]][-self.keep:]
        self.debug(f"received {data_dict['data']!r} from {data_dict['host_id']}")

    # Methods named ``x_...`` are callable over XML-RPC as
    # ``<package>.<module>.<name>``: this one is ``example.example.last``.
    # Their docstrings answer ``system.methodHelp``, and annotations with
    # XML-RPC types give ``system.methodSignature``.
    def x_last(self) -> list:
        """Return the data of the last messages received, oldest first."""
        return self.last

    # ``send(data)`` sends ``{'data': data}`` to every other plugin in the
    # network; the satellite adds its own ``host_id``.
    def x_shout(self, data) -> bool:
        """Send ``data`` to every other plugin; return True."""
        self.send(data)
        return True

    # Work that blocks or takes long (heavy computation, sleeping, a slow
    # library) must not run in the reactor thread.  ``@in_thread`` runs each
    # call in a worker thread; the caller still gets the return value (or
    # the exception as a fault).  A method callable over the network works
    # on what the caller sends, never on a file the caller names: whoever
    # can reach the satellite could read the host's files through it.
    @in_thread
    def x_count_lines(self, text: str) -> int:
        """Return the number of lines of ``text``."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a string, not {type(text).__name__}")
        return len(text.splitlines())

    # ``__exit__`` is called once, with no arguments, when the satellite
    # shuts down: close files, stop threads, say goodbye.
    def __exit__(self):
        self.log("example plugin stopping")


# A function at module level named ``x_...`` is exposed too:
# ``example.example.add``.  Exceptions it raises reach the caller as an
# application fault (-32500) carrying their type and message.
def x_add(a: int, b: int) -> int:
    """Return the sum of two integers."""
    return a + b
