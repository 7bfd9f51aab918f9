"""
AMP links: one :class:`LinkProtocol` per connection, for links a node
makes to its ``peers`` (kept up by a ``ClientService`` that reconnects
with exponential backoff and jitter) and for links peers make to its
``amp_listen`` endpoint.

The protocol only translates: each command it answers is handed to the
node's :class:`~relay._router.Router` or :class:`~relay._directory.Directory`.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from twisted.internet.defer import Deferred, fail
from twisted.internet.error import ConnectionClosed, ConnectionLost
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols import amp
from twisted.python.failure import Failure

from co2 import faults, protocol
from co2._admission import Admission
from co2._auth import Authentication, LoginThrottled, login_failure_reason, login_source
from co2._xmlrpc import dump_fault
from co2._xmlrpc_exact import NOT_XML
from co2.protocol import (
    Announce,
    BadArguments,
    BadBatch,
    Call,
    Deliver,
    Hello,
    IncompatibleVersion,
    NodeIdTaken,
    NotIntroduced,
    SameNode,
    Unauthorized,
    UnexpectedHello,
    decode_batch,
    encode_batch,
)
from relay._directory import Directory
from relay._outbox import Outbox
from relay._router import INBOUND, Router

__all__ = [
    "BATCH_BYTES",
    "BEFORE_HELLO",
    "BOX_OVERHEAD",
    "WINDOW",
    "Attempts",
    "LinkProtocol",
    "LinkServerFactory",
    "LinkStats",
    "Node",
    "max_box_size",
]

BATCH_BYTES = 256 * 1024
"""A Deliver batch holds messages up to this many bytes (at least one)."""

WINDOW = 8
"""Batches a link may have sent and not yet had acknowledged."""

_log = Logger(namespace="co2.relay")

BEFORE_HELLO = 256 * 1024
"""Bytes a connection to ``amp_listen`` may send before its Hello is answered."""

_LOST = (ConnectionClosed, ConnectionLost)

# A node id: printable ASCII without spaces (co2 uses 16 hexadecimal digits).
_NODE_ID = re.compile("[!-~]{1,64}")
_LONGEST_HOST_ID = 255
# How much of a refused value a description or a log line shows.
_SHOWN = 100
# Refusals of Hello that Authentication.refuse has logged already, at its
# bounded rate: the link does not log them again, once per connection.
_LOGGED_BY_AUTHENTICATION = (Unauthorized, NodeIdTaken)


BOX_OVERHEAD = 64 * 1024
"""Room in a box for what is not a message: keys, lengths, envelopes, the rest of a batch."""


def max_box_size(config: Any) -> int:
    """
    The most bytes one box from a peer may hold: a whole batch, or one
    message of ``max_message_size`` or one call of ``max_request_size``
    (whichever is larger), with room for the rest.
    """
    return max(BATCH_BYTES, config.max_message_size, config.max_request_size) + BOX_OVERHEAD


def _cut(text: str) -> str:
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "..."


def _shown(value: object) -> str:
    return _cut(repr(value))


def _check_identity(node: str, host_id: str) -> None:
    """
    Raise :class:`BadArguments` unless ``node`` is 1 to 64 printable ASCII
    characters (no spaces) and ``host_id`` at most 255 printable characters:
    both are logged and shown to clients.
    """
    if _NODE_ID.fullmatch(node) is None:
        raise BadArguments(f"node id {_shown(node)} is not 1 to 64 printable ASCII characters")
    if len(host_id) > _LONGEST_HOST_ID or not host_id.isprintable():
        raise BadArguments(f"host_id {_shown(host_id)} is not at most 255 printable characters")


class Node(Protocol):
    """What a link needs of the node it belongs to."""

    node_id: str
    host_id: str
    reactor: Any
    router: Router
    directory: Directory
    links: dict[str, LinkProtocol]
    authentication: Authentication | None
    max_box_size: int
    hello_timeout: float
    link_stats: LinkStats


class Attempts:
    """The attempts of a peer service that failed in a row, until a link's Hello succeeds."""

    def __init__(self) -> None:
        self.failures = 0

    def failed(self) -> int:
        """One more failed attempt; how many in a row now."""
        self.failures += 1
        return self.failures

    def greeted(self) -> None:
        """A link's Hello succeeded: the count starts again."""
        self.failures = 0


@dataclass
class LinkStats:
    """Counts per link key, for ``/metrics``: messages in and out, and times it came up."""

    messages_in: Counter[str] = field(default_factory=Counter)
    messages_out: Counter[str] = field(default_factory=Counter)
    ups: Counter[str] = field(default_factory=Counter)


def _address(transport: Any) -> list[Any]:
    peer = transport.getPeer() if transport is not None else None
    host, port = getattr(peer, "host", None), getattr(peer, "port", None)
    return [host, port] if isinstance(host, str) and isinstance(port, int) else ["", 0]


class LinkProtocol(amp.AMP):
    """
    One AMP connection between two nodes.  Until :class:`Hello` has been
    answered it accepts nothing else; then it drains its outbox in
    batches, at most :data:`WINDOW` unacknowledged at a time.
    """

    def __init__(
        self, node: Node, key: str | None = None, credentials: tuple[str, str] | None = None
    ) -> None:
        super().__init__()
        self.node = node
        self.key = key
        self.credentials = credentials
        self.introduced = False
        self.peer_node = ""
        self.peer_host_id = ""
        self.peer_address: list[Any] = ["", 0]
        self.user: str | None = None
        """The user name the peer proved in its Hello; None when none was needed."""
        self.outbox: Outbox | None = None
        self._pump_call: IDelayedCall | None = None
        self.on_closed: Callable[[], None] | None = None
        # A link this node dialled (its key is known from the start) says
        # Hello; one made to this node hears it, and reads little before.
        self._dialer = key is not None
        self._before_hello = 0
        self._checking = False
        self._lost = False
        self._box_bytes = 0
        self._refusing = False
        self._hello_timer: IDelayedCall | None = None
        self.refused: Failure | None = None
        """Why the peer refused this node's Hello, if it did (the connection is then closed)."""
        self.dialled_by: Attempts | None = None
        """The peer service's factory, for a link it dialled: the link says Hello as it connects."""

    @property
    def name(self) -> str:
        """How logs name this link."""
        return self.key or f"link from {self.peer_address[0]}:{self.peer_address[1]}"

    def connectionMade(self) -> None:
        super().connectionMade()
        self.peer_address = _address(self.transport)
        # A batch is written whole, once per turn: waiting for the peer's
        # ACK of the previous one (Nagle) would only add latency.
        no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if no_delay is not None:
            no_delay(True)
        if self.dialled_by is not None:
            self._greet(self.dialled_by)
        elif not self._dialer:
            self._hello_timer = self.node.reactor.callLater(self.node.hello_timeout, self._no_hello)

    def _greet(self, dialled: Attempts) -> None:
        # A peer service's link says Hello as it connects.  A refusal is
        # logged and the connection closed; the service dials again after a
        # delay that grows with the refusals in a row (see peer_service).

        def up(_: object) -> None:
            dialled.greeted()

        def refused(failure: Failure) -> None:
            _log.warn("link {key}: Hello failed: {why}", key=self.key, why=failure.getErrorMessage())
            self.refused = failure
            if self.transport is not None:
                self.transport.loseConnection()

        self.say_hello().addCallbacks(up, refused)

    def _no_hello(self) -> None:
        self._hello_timer = None
        if not self.introduced:
            self._drop(f"no Hello within {self.node.hello_timeout:g}s (request_timeout)")

    def _stop_hello_timer(self) -> None:
        if self._hello_timer is not None and self._hello_timer.active():
            self._hello_timer.cancel()
        self._hello_timer = None

    def dataReceived(self, data: bytes) -> None:
        if self._refusing:
            return
        if not (self.introduced or self._dialer):
            self._before_hello += len(data)
            if self._before_hello > BEFORE_HELLO:
                self._drop(f"more than {BEFORE_HELLO} bytes before Hello")
                return
        super().dataReceived(data)

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:  # noqa: B008
        self._lost = True
        self._stop_hello_timer()
        super().connectionLost(reason)
        self._down()
        if self.on_closed is not None:
            on_closed, self.on_closed = self.on_closed, None
            on_closed()

    def _down(self) -> None:
        if self._pump_call is not None:
            self._pump_call.cancel()
            self._pump_call = None
        if self.introduced:
            self.introduced = False
            assert self.key is not None
            self.node.router.detach(self.key, self)
            if self.node.links.get(self.key) is self:
                del self.node.links[self.key]
            self.node.directory.link_down(self)
            _log.info("link {key} down", key=self.key)

    # Boxes that are not what they should be: refused without a traceback.

    def _drop(self, why: str) -> None:
        """Close the connection for a box that breaks the protocol, saying why; read no more."""
        self._refusing = True
        _log.warn("{name}: {why}; connection closed", name=self.name, why=why)
        if self.transport is not None:
            self.transport.loseConnection()

    def stringReceived(self, string: bytes) -> None:
        # Each key and value of a box passes here; a box ends in
        # ampBoxReceived, which starts the count again.
        if self._refusing:
            return
        self._box_bytes += 2 + len(string)
        if self._box_bytes > self.node.max_box_size:
            self._drop(f"a box of more than {self.node.max_box_size} bytes (max_message_size)")
            return
        super().stringReceived(string)

    def ampBoxReceived(self, box: amp.AmpBox) -> None:
        self._box_bytes = 0
        try:
            super().ampBoxReceived(box)
        except (amp.NoEmptyBoxes, KeyError):
            # An empty box, one with neither _command, _answer nor _error,
            # or an answer or error to a question never asked.
            self._drop(f"a box that is neither a command nor an answer: keys {_shown(sorted(box))}")

    def locateResponder(self, name: bytes) -> Any:
        if not name.isascii():
            # No command has such a name; AMP would fail to decode it.
            return None
        responder = super().locateResponder(name)
        if responder is None:
            return None

        def read(box: amp.AmpBox) -> Any:
            # The responder reads the arguments before anything else, and
            # only that can raise here: what the command does fails its
            # Deferred instead.
            try:
                return responder(box)
            except Exception as e:
                return fail(amp.RemoteAmpError(
                    b"BAD_ARGUMENTS",
                    f"{name.decode('ascii', 'replace')}: cannot read the arguments: "
                    f"{_cut(faults.describe_exception(e))}",
                    fatal=True,
                ))

        return read

    def dispatchCommand(self, box: amp.AmpBox) -> Deferred[Any]:
        d: Deferred[Any] = super().dispatchCommand(box)
        return d.addErrback(self._refused, box)

    def _refused(self, failure: Failure, box: amp.AmpBox) -> Any:
        error = failure.value
        if not isinstance(error, amp.RemoteAmpError):
            return failure
        if error.fatal:
            if not (isinstance(error.local, Failure) and error.local.check(*_LOGGED_BY_AUTHENTICATION)):
                _log.warn("{name}: refused {command}: {why}; connection closed", name=self.name,
                          command=box.get(amp.COMMAND, b"").decode("ascii", "replace")[:_SHOWN],
                          why=error.description)
            if amp.ASK not in box and self.transport is not None:
                self.transport.loseConnection()
        if amp.ASK not in box:
            # No answer was asked for: a refusal has nowhere to go.
            return None
        return failure

    # Introduction

    def say_hello(self) -> Deferred[None]:
        """
        Introduce this node to the peer; fires once the link is up, fails
        with :class:`IncompatibleVersion` when the peer answers with
        another protocol version.
        """
        given = {}
        if self.credentials is not None:
            given = {"username": self.credentials[0], "password": self.credentials[1]}
        d = self.callRemote(
            Hello, node=self.node.node_id, host_id=self.node.host_id,
            version=protocol.PROTOCOL_VERSION, **given,
        )
        return d.addCallback(self._answered)

    def _answered(self, answer: dict[str, Any]) -> None:
        if answer["version"] != protocol.PROTOCOL_VERSION:
            raise IncompatibleVersion(
                f"the peer answered with protocol version {answer['version']}; "
                f"this node speaks version {protocol.PROTOCOL_VERSION} only"
            )
        _check_identity(answer["node"], answer["host_id"])
        self._introduce(self.key or "", answer["node"], answer["host_id"])

    @Hello.responder
    def hello(
        self, node: str, host_id: str, version: int,
        username: str | None = None, password: str | None = None,
    ) -> dict[str, Any] | Deferred[dict[str, Any]]:
        if version != protocol.PROTOCOL_VERSION:
            raise IncompatibleVersion(
                f"this node speaks protocol version {protocol.PROTOCOL_VERSION} only, not {version}"
            )
        if self._dialer or self.introduced or self._checking:
            raise UnexpectedHello("Hello is said once, by the node that connects")
        _check_identity(node, host_id)
        if node == self.node.node_id:
            raise SameNode("a node cannot link to itself")
        authentication = self.node.authentication
        if authentication is None:
            return self._welcome(node, host_id)
        who = f"{self.peer_address[0]}:{self.peer_address[1]} (node {node})"
        if username is None or password is None:
            authentication.refuse("the AMP listener", who, None, "no credentials given")
            raise Unauthorized("this node requires a user name and password in Hello")
        # Until the checker answers, every other command is still refused
        # (HELLO_FIRST), and a second Hello too.
        self._checking = True

        def refused(failure: Failure) -> Failure:
            self._checking = False
            why = login_failure_reason(failure)
            authentication.refuse("the AMP listener", who, username, why)
            if failure.check(LoginThrottled):
                return Failure(Unauthorized(why))
            return Failure(Unauthorized("wrong user name or password"))

        def accepted(user: str) -> dict[str, Any]:
            self._checking = False
            if self._lost:
                authentication.refuse("the AMP listener", who, user, "the connection closed during the check")
                raise Unauthorized("the connection closed during the check")
            self._claim(node, user, who, authentication)
            _log.info("link from {who}: user {user!r} authenticated", who=who, user=user)
            self.user = user
            return self._welcome(node, host_id)

        source = login_source(self.peer_address[0])
        return authentication.check(username, password, source).addCallbacks(accepted, refused)

    def _claim(self, node: str, user: str, who: str, authentication: Authentication) -> None:
        """
        Raise :class:`NodeIdTaken` when a link that proved another user
        than ``user`` holds ``node``: only the same identity may replace it.
        """
        holder = self.node.links.get(f"{INBOUND}{node}")
        if holder is None or holder is self or holder.user == user:
            return
        authentication.refuse(
            "the AMP listener", who, user,
            f"node {node} is held by the link from {holder.peer_address[0]}:{holder.peer_address[1]} "
            f"of user {holder.user!r}; that link stays up",
        )
        raise NodeIdTaken(f"node {node} is linked here already, under another user name")

    def _welcome(self, node: str, host_id: str) -> dict[str, Any]:
        self._introduce(f"{INBOUND}{node}", node, host_id)
        return {"node": self.node.node_id, "host_id": self.node.host_id,
                "version": protocol.PROTOCOL_VERSION}

    def _introduce(self, key: str, node: str, host_id: str) -> None:
        self.key, self.peer_node, self.peer_host_id = key, node, host_id
        old = self.node.links.get(key)
        if old is not None and old is not self:
            _log.info("link {key}: a new connection replaces the old one", key=key)
            old._down()
            if old.transport is not None:
                old.transport.loseConnection()
        self.node.links[key] = self
        self.node.link_stats.ups[key] += 1
        self.introduced = True
        self._stop_hello_timer()
        self.outbox = self.node.router.attach(key, self)
        # Wait a turn: the answer to Hello must reach the peer first.
        self.node.reactor.callLater(0, self._up)
        _log.info("link {key} up: node {node} ({host_id}) at {ip}:{port}",
                  key=key, node=node, host_id=host_id,
                  ip=self.peer_address[0], port=self.peer_address[1])

    def _up(self) -> None:
        if self.introduced:
            self.node.directory.link_up(self)

    def _check(self) -> str:
        if not self.introduced or self.key is None:
            raise NotIntroduced("send Hello first")
        return self.key

    # Messages

    @Deliver.responder
    def deliver(self, batch: bytes) -> Deferred[dict[str, Any]]:
        key = self._check()
        envelopes = decode_batch(batch)
        self.node.link_stats.messages_in[key] += len(envelopes)
        d = self.node.router.arrived(envelopes, key, self.peer_address)
        return d.addCallback(lambda _: {})

    def wake(self) -> None:
        """Send what the outbox holds, once this reactor turn is over."""
        if self._pump_call is None and self.introduced:
            self._pump_call = self.node.reactor.callLater(0, self._pump)

    def send_now(self) -> None:
        """Send what the outbox holds without waiting for the turn to end."""
        if self._pump_call is not None:
            self._pump_call.cancel()
        self._pump()

    def _pump(self) -> None:
        self._pump_call = None
        outbox = self.outbox
        while self.introduced and outbox is not None and outbox.in_flight < WINDOW:
            number, entries = outbox.take(BATCH_BYTES)
            if not entries:
                break
            d = self.callRemote(Deliver, batch=encode_batch([entry.body for entry in entries]))
            self.node.link_stats.messages_out[self.key or ""] += len(entries)
            d.addCallbacks(self._acked, self._not_acked, callbackArgs=(number,), errbackArgs=(number,))

    def _acked(self, answer: object, number: int) -> None:
        assert self.key is not None
        self.node.router.acked(self.key, number)
        if self.outbox is not None and self.outbox.waiting:
            self.wake()

    def _not_acked(self, failure: Failure, number: int) -> None:
        if failure.check(BadBatch):
            # Sending it again cannot help: the peer will refuse it again.
            _log.error("link {key}: the peer refused a batch, dropped: {why}",
                       key=self.key, why=failure.getErrorMessage())
            self._acked(None, number)
        elif not failure.check(amp.ProtocolSwitched, *_LOST):
            _log.error("link {key}: delivery failed ({why}); reconnecting to send it again",
                       key=self.key, why=failure.getErrorMessage())
            if self.transport is not None:
                self.transport.loseConnection()

    # The method directory

    def announce(
        self, node: str, host_id: str, version: int, hops: int, ttl: float, methods: list[str]
    ) -> None:
        """Tell the peer which methods ``node`` hosts."""
        self.callRemote(
            Announce, node=node, host_id=host_id, version=version, hops=hops, ttl=ttl,
            methods="\n".join(methods).encode(),
        )

    @Announce.responder
    def announced(
        self, node: str, host_id: str, version: int, hops: int, ttl: float, methods: bytes
    ) -> dict[str, Any]:
        self._check()
        _check_identity(node, host_id)
        if hops < 0 or math.isnan(ttl):
            raise BadArguments(f"hops {hops} and ttl {ttl!r}: hops must be >= 0 and ttl a number")
        # Names that XML cannot carry would spoil system.listMethods here.
        names = [
            name for name in methods.decode("utf-8", "replace").split("\n")
            if name and NOT_XML.search(name) is None
        ]
        self.node.directory.announced(self, node, host_id, version, hops, ttl, names)
        return {}

    def send_call(self, node: str, hops: int, request: bytes) -> Deferred[bytes]:
        """Send a call on toward ``node``; fires with the methodResponse."""
        d = self.callRemote(Call, node=node, hops=hops, request=request)
        return d.addCallback(lambda answer: answer["response"])

    @Call.responder
    def call(self, node: str, hops: int, request: bytes) -> Deferred[dict[str, Any]]:
        self._check()
        directory = self.node.directory
        d = directory.route(node, hops, request, timeout=directory.call_timeout)
        return d.addCallback(self._answer_call)

    def _answer_call(self, response: bytes) -> dict[str, Any]:
        # An answer the peer would refuse to read would cost the link.
        room = self.node.max_box_size - BOX_OVERHEAD
        if len(response) > room:
            _log.warn("{name}: a routed call's answer of {size} bytes is over {room}; "
                      "the caller gets fault -32603", name=self.name, size=len(response), room=room)
            response = dump_fault(faults.INTERNAL_ERROR,
                                  f"the answer ({len(response)} bytes) is too large to route "
                                  f"(max_message_size)")
        return {"response": response}


class LinkServerFactory(Factory):
    """
    Makes a :class:`LinkProtocol` for each connection to ``amp_listen``,
    while fewer than ``max_connections`` are open; past that, a new
    connection is closed at once.
    """

    noisy = False

    def __init__(self, node: Node, max_connections: int = 1000) -> None:
        self.node = node
        self.admission = Admission(max_connections, "the AMP listener", node.reactor)

    def buildProtocol(self, addr: Any) -> LinkProtocol | None:
        if not self.admission.admit():
            return None
        link = LinkProtocol(self.node)
        link.on_closed = self.admission.release
        return link
