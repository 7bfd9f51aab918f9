"""
Testing co2 plugins and nodes: in-memory doubles (no socket, no global
reactor, every result available synchronously), and co2's commands run as
real processes.

- :class:`PluginHarness` — one plugin package on an in-memory satellite,
  for a plugin's own tests: call its methods, deliver messages, see what
  it sends, move time, shut it down.
- :class:`TestReactor` — a ``Clock`` whose thread pool runs work inline.
- :class:`MemoryXMLRPCClient` — drives an HTTP ``Site`` through an
  in-memory transport and decodes XML-RPC answers.
- :class:`MemoryNetwork` — nodes joined by in-memory AMP links, connected,
  cut and run until nothing moves (:class:`MemoryLink`, :class:`NotSettled`).
- :func:`write_package` — writes a plugin package to a directory.
- :func:`start_command`, :class:`OutputReader`, :func:`timeout_proxy`,
  :func:`end_process` — run ``co2-satellite`` or ``co2-relay``, read what
  it prints, call it, stop it.

``co2.testing`` is the one part of ``co2`` that builds on other co2
packages (the harness is a real satellite), and it uses only their public
API; the project's import-linter contracts (``setup.cfg``) hold it to that.
"""

from co2.testing._harness import HOST_ID, PEER_HOST_ID, PluginFailed, PluginHarness, Sent
from co2.testing._memory import HTTPResponse, InlineThreadPool, MemoryXMLRPCClient, TestReactor
from co2.testing._network import MemoryLink, MemoryNetwork, NotSettled
from co2.testing._packages import write_package
from co2.testing._processes import (
    AMP_LISTENING,
    SERVING,
    OutputReader,
    end_process,
    rss_bytes,
    start_command,
    timeout_proxy,
)

__all__ = [
    "AMP_LISTENING",
    "HOST_ID",
    "PEER_HOST_ID",
    "SERVING",
    "HTTPResponse",
    "InlineThreadPool",
    "MemoryLink",
    "MemoryNetwork",
    "MemoryXMLRPCClient",
    "NotSettled",
    "OutputReader",
    "PluginFailed",
    "PluginHarness",
    "Sent",
    "TestReactor",
    "end_process",
    "rss_bytes",
    "start_command",
    "timeout_proxy",
    "write_package",
]
