"""
Links to classic co2 nodes: messages are posted one at a time, in order,
as XML-RPC ``notify`` calls to the peer's URL.

The struct sent holds ``data``, ``host_id`` (this node's: the classic
protocol names the server that sends the request) and, for peers that are
co2 nodes too, the message's ``id`` and remaining ``hops``, so that a
message coming back through a cycle is recognised.  A peer that answers is
done with the message; one that answers with a fault refused it for good
(it is logged and dropped); one that cannot be reached is tried again
after a growing delay, the message kept.  What can repeat once per
message or per attempt is logged a few lines at a time (see
:mod:`co2._ratelog`).
"""

from __future__ import annotations

import io
import ipaddress
import socket
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit
from xmlrpc.client import Fault

from twisted.application.service import Service
from twisted.internet.defer import inlineCallbacks
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.task import Cooperator
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger, LogLevel
from twisted.web.client import Agent, FileBodyProducer, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers

from co2 import faults
from co2._auth import basic_authorization
from co2._message import HostId, decode_message, parse_host_id
from co2._ratelog import RateLimitedLog
from co2._tls import web_policy
from co2._xmlrpc import dump_call, parse_response
from co2.protocol import BadBatch, decode_envelope
from relay._dialling import retry_policy
from relay._links import LinkStats
from relay._outbox import Outbox
from relay._router import Router

__all__ = ["ClassicLink", "local_address_toward"]

_log = Logger(namespace="co2.relay")


def local_address_toward(host: str) -> str | None:
    """
    The address of this machine that a connection to ``host`` would come
    from (as the peer would see it, barring NAT); None if unknown.  No
    packet is sent.
    """
    try:
        info = socket.getaddrinfo(host, 9, type=socket.SOCK_DGRAM)
        family, _, _, _, address = info[0]
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect(address)
            return str(probe.getsockname()[0])
    except OSError:
        return None


class ClassicLink(Service):
    """
    The link to the classic node at ``url``.  ``host_id`` gives this
    node's ``host_id``; an unspecified host in it (a node listening on
    every interface) is replaced by the address the peer sees.
    """

    def __init__(
        self,
        router: Router,
        reactor: Any,
        url: str,
        host_id: Callable[[], str],
        agent: Any = None,
        retry: Callable[[int], float] | None = None,
        *,
        tls_ca: str | None = None,
        credentials: tuple[str, str] | None = None,
        stats: LinkStats | None = None,
    ) -> None:
        self.router = router
        self.reactor = reactor
        self.url = url
        self.key = url
        self.host_id = host_id
        self.agent = agent
        self.tls_ca = tls_ca
        self.stats = stats if stats is not None else LinkStats()
        self._headers = Headers({b"Content-Type": [b"text/xml"]})
        if credentials is not None:
            self._headers.setRawHeaders(b"Authorization", [basic_authorization(*credentials)])
        self.retry = retry or retry_policy()
        self.outbox: Outbox = router.outbox(url)
        self.refused = 0
        self._busy = False
        self._failures = 0
        self._retry_call: IDelayedCall | None = None
        self._host = urlsplit(url).hostname or ""
        self._seen_from: str | None = None
        self.limited = RateLimitedLog(_log, reactor)
        """Where the link logs what can repeat per message or attempt, a few lines at a time."""
        # Request bodies are written on this node's reactor, not the global one.
        self._cooperator = Cooperator(scheduler=self._step_later)
        self.setName(url)

    def _step_later(self, step: Callable[[], None]) -> IDelayedCall:
        delayed: IDelayedCall = self.reactor.callLater(0, step)
        return delayed

    def startService(self) -> None:
        super().startService()
        if self.agent is None:
            policy = web_policy(self.tls_ca)
            pool = HTTPConnectionPool(self.reactor)
            if policy is None:
                self.agent = Agent(self.reactor, pool=pool)
            else:
                self.agent = Agent(self.reactor, contextFactory=policy, pool=pool)
        self.router.attach(self.key, self)

    def stopService(self) -> None:
        super().stopService()
        self.router.detach(self.key, self)
        if self._retry_call is not None and self._retry_call.active():
            self._retry_call.cancel()
        self._retry_call = None
        # What was counted is logged now; the one post that may be in
        # flight logs too few lines to set a timer again.
        self.limited.flush()

    def wake(self) -> None:
        """Send what the outbox holds, one message at a time."""
        if not self._busy and self.running and self._retry_call is None:
            self._busy = True
            self.reactor.callLater(0, self._send_next)

    def send_now(self) -> None:
        """Start sending what the outbox holds (each post waits for the one before)."""
        self.wake()

    @inlineCallbacks
    def _own_host_id(self) -> Any:
        """This node's ``host_id`` as the peer should see it (a Deferred)."""
        host_id = parse_host_id(self.host_id())
        if _not_seen_by_peers(host_id.host):
            if self._seen_from is None:
                # getaddrinfo may block: it runs in the reactor's thread pool, once.
                found = yield deferToThreadPool(
                    self.reactor, self.reactor.getThreadPool(), local_address_toward, self._host
                )
                self._seen_from = found or host_id.host
            host_id = HostId(host_id.nonce, self._seen_from, host_id.port)
        return str(host_id)

    @inlineCallbacks
    def _send_next(self) -> Any:
        try:
            while self.running:
                number, entries = self.outbox.take(1)
                if not entries:
                    return
                (entry,) = entries
                delivered = yield self._post(entry.body)
                if not delivered:
                    self.outbox.rewind()
                    self._failures += 1
                    delay = self.retry(self._failures)
                    self._retry_call = self.reactor.callLater(delay, self._retried)
                    return
                self._failures = 0
                self.stats.messages_out[self.key] += 1
                self.router.acked(self.key, number)
        finally:
            self._busy = False

    def _retried(self) -> None:
        self._retry_call = None
        self.wake()

    @inlineCallbacks
    def _post(self, body: bytes) -> Any:
        """True when the peer is done with the message, False to try again."""
        try:
            envelope = decode_envelope(body)
        except BadBatch as e:
            self.limited.emit("messages not decoded", LogLevel.error,
                              "link {url}: dropped a message that cannot be decoded: {why}",
                              url=self.url, why=e)
            return True
        message = decode_message(envelope.message)
        own = yield self._own_host_id()
        struct = dict(message, host_id=own, id=envelope.id, hops=envelope.hops)
        struct.pop("client_address", None)
        request = dump_call("notify", (struct,))
        try:
            response = yield self.agent.request(
                b"POST", self.url.encode(), self._headers.copy(),
                FileBodyProducer(io.BytesIO(request), cooperator=self._cooperator),
            )
            answer = yield readBody(response)
        except Exception as e:
            self.limited.emit("unreachable", LogLevel.info, "link {url} unreachable, will retry: {why}",
                              url=self.url, why=e)
            return False
        if response.code != 200:
            self.limited.emit("HTTP errors", LogLevel.warn, "link {url} answered HTTP {code}, will retry",
                              url=self.url, code=response.code)
            return False
        try:
            parse_response(answer)
        except Fault as fault:
            if fault.faultCode in (faults.SHUTTING_DOWN, faults.BUSY):
                self.limited.emit("stopping or busy", LogLevel.info,
                                  "link {url} is stopping or busy, will retry", url=self.url)
                return False
            self.refused += 1
            self.limited.emit("messages refused", LogLevel.warn,
                              "link {url} refused message {id}: {code} {why}",
                              url=self.url, id=envelope.id, code=fault.faultCode, why=fault.faultString)
        except ValueError as e:
            self.limited.emit("answers not XML-RPC", LogLevel.warn,
                              "link {url} answered what is not XML-RPC ({why}); dropped message {id}",
                              url=self.url, why=e, id=envelope.id)
        return True


def _not_seen_by_peers(host: str) -> bool:
    """
    Whether a peer would not see this node's connections come from ``host``:
    an address of every interface, or any loopback address (a node listening
    on 127.0.0.3 connects out from 127.0.0.1).
    """
    try:
        address = ipaddress.ip_address(host)
    except ValueError:  # a name: the peer's check resolves it
        return False
    return address.is_loopback or address.is_unspecified
