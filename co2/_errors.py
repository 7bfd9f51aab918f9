"""
The exceptions co2 raises, in one tree::

    Co2Error                        anything co2 itself reports
     +-- ConfigError                a config file that cannot be used (exit 2)
     +-- PluginError                a plugin package that cannot be loaded
     +-- NotAttachedError           a plugin used outside a satellite
     +-- SendQueueFull              a plugin sends faster than the network takes, past send_queue_bytes
     +-- ListenError                a listener's endpoint cannot be bound (XML-RPC, AMP, manhole)
     +-- ProtocolError              what crossed the wire was refused or unreadable
     |    +-- XMLRPCParseError      a body that is not XML-RPC (also a ValueError)
     |    +-- BadBatch              a Deliver batch not well formed (also a ValueError)
     |    +-- BadArguments          AMP arguments missing or malformed (also a ValueError)
     |    +-- IncompatibleVersion   Hello: the peer speaks another protocol version
     |    +-- SameNode              Hello: a node linked to itself
     |    +-- NotIntroduced         a command other than Hello before Hello
     |    +-- UnexpectedHello       a second Hello, or one sent by the listener
     |    +-- Unauthorized          Hello: credentials missing or wrong
     |    +-- NodeIdTaken           Hello: another user's link holds that node id
     |    +-- LoginThrottled        too many failed logins (also an UnauthorizedLogin)
     |    +-- WindowExceeded        Deliver: more batches unanswered than the window allows
     +-- CommandError               the co2 command line client
     |    +-- ClientError           a call that failed (exit 1)
     |    +-- UsageError            a command line that cannot be carried out (exit 2)
     +-- PluginFailed               co2.testing: a plugin failed in the harness (also an AssertionError)
     +-- NotSettled                 co2.testing: a MemoryNetwork never settled (also an AssertionError)
     +-- RelayError                 relay: the routing engine
     |    +-- SpoolError            a spool file that cannot be used
     |    +-- RelayPluginError      a relay plugin that cannot be loaded
     |    +-- NotAsyncio            a nats:// backbone, but not Twisted's asyncio reactor
     +-- SatelliteError             satellites: the plugin host
          +-- StrictLoadError       --strict and a plugin package failed
          +-- ReloadRefused         a package that co2.reload may not reload
          +-- DuplicateMethod       two methods claim one public name (also a ValueError)
          +-- ScaffoldError         new-plugin cannot write the package
          +-- Refused               an HTTP request refused while framed (4xx, then closed)
          +-- NeedsCredentials      an anonymous call to a method only users may call
          +-- CannotStart           co2-satellite or co2-relay cannot make the node

Each package has its own branch: co2's classes sit under the branches of
this module (``co2.protocol``, ``co2._xmlrpc``, ``co2._auth``,
``co2._client``, ``co2._services``, ``co2.testing``), relay's under
:class:`relay._errors.RelayError` and satellites' under
:class:`satellites._errors.SatelliteError`.  Every class stays importable
from the module that raises it, and one that also derives from a built-in
(``ValueError``, ``AssertionError``) or a Twisted exception still caught
where that one is.

The AMP refusals are mapped to their wire codes by class in the command
schemas of :mod:`co2.protocol`; their common base changes nothing on the
wire.  Private control-flow exceptions, caught where they are raised and
never seen by a user (``co2._xmlrpc._Unhandled``,
``satellites._http_framing._Ignored``), stay outside the tree.

Faults sent to XML-RPC clients are ``xmlrpc.client.Fault`` instances whose
codes are listed in :mod:`co2.faults`.
"""

from __future__ import annotations


class Co2Error(Exception):
    """The base of every error co2 raises on purpose."""


class ConfigError(Co2Error):
    """
    A config file that cannot be used.

    ``str()`` is one line naming the file, the key and what is wrong.
    """

    def __init__(self, path: str, key: str | None, problem: str) -> None:
        self.path = path
        self.key = key
        self.problem = problem
        where = f"{path}: {key}" if key else path
        super().__init__(f"{where}: {problem}")


class PluginError(Co2Error):
    """
    A plugin package that cannot be loaded.

    ``package`` names it; ``details`` holds the traceback or explanation.
    """

    def __init__(self, package: str, problem: str, details: str = "") -> None:
        self.package = package
        self.problem = problem
        self.details = details
        super().__init__(f"plugin {package!r}: {problem}")


class NotAttachedError(Co2Error):
    """A plugin's ``send`` was called on an instance no satellite loaded."""


class SendQueueFull(Co2Error):
    """
    A plugin's ``send`` found the node's send queue full (``send_queue_bytes``):
    the network takes its messages more slowly than it sends them.
    """


class ProtocolError(Co2Error):
    """
    What crossed the wire was refused or could not be read: an XML-RPC
    body, an AMP command or a login.  The subclasses name which.
    """


class CommandError(Co2Error):
    """A failure of the ``co2`` command line client; its subclasses choose the exit status."""
