"""
AMP links: one :class:`LinkProtocol` per connection, for links a node
makes to its ``peers`` (kept up by a ``ClientService`` that reconnects
with exponential backoff and jitter, see :mod:`relay._dialling`) and for
links peers make to its ``amp_listen`` endpoint.

A link's life is the state machine of :mod:`relay._link_state`; what it
answers its peer is :class:`~relay._link_commands.LinkCommands`, which
hands each command to the owner's :class:`~relay._router.Router` or
:class:`~relay._directory.Directory`.  The link itself reads boxes, says
Hello, comes up and goes down, and drains its outbox in batches.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionClosed, ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import Factory
from twisted.logger import Logger, LogLevel
from twisted.protocols import amp
from twisted.python.failure import Failure

from co2._admission import Admission
from co2._auth import Authentication
from co2._ratelog import RateLimitedLog
from co2.protocol import (
    PROTOCOL_VERSION,
    Announce,
    BadBatch,
    Call,
    Deliver,
    Hello,
    IncompatibleVersion,
    NodeIdTaken,
    Unauthorized,
    WindowExceeded,
    encode_batch,
)
from relay._directory import Directory
from relay._link_commands import LinkCommands, check_identity
from relay._link_limits import BATCH_BYTES, BEFORE_HELLO, BOX_OVERHEAD, WINDOW, max_box_size, shorten, shown
from relay._link_state import HEARING_HELLO, LinkEvent, LinkMachine, LinkState
from relay._outbox import Outbox
from relay._router import Router

__all__ = [
    "BATCH_BYTES",
    "BEFORE_HELLO",
    "BOX_OVERHEAD",
    "WINDOW",
    "Attempts",
    "LinkOwner",
    "LinkProtocol",
    "LinkServerFactory",
    "LinkStats",
    "max_box_size",
]

_log = Logger(namespace="co2.relay")

_LOST = (ConnectionClosed, ConnectionLost)

# Refusals of Hello that Authentication.refuse has logged already, at its
# bounded rate: the link does not log them again, once per connection.
_LOGGED_BY_AUTHENTICATION = (Unauthorized, NodeIdTaken)

# The commands a peer may send: each one's refusals are a kind of line of
# their own (see co2._ratelog), those of any other name one kind together.
_COMMANDS = frozenset(command.commandName for command in (Hello, Deliver, Announce, Call))


class LinkOwner(Protocol):
    """What a link needs of the relay that owns it."""

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
    peers: dict[str, tuple[str, str]] = field(default_factory=dict)
    """The node id and host_id at the other end of each link, as it last said."""
    changed: dict[str, float] = field(default_factory=dict)
    """When (wall time) each link last came up or went down."""


def _why_lost(reason: Failure) -> str:
    """A connection's end in a few words: "closed cleanly", "connection lost", or what the error says."""
    if reason.check(ConnectionDone):
        return "the peer closed the connection"
    text = reason.getErrorMessage().strip().rstrip(".")
    return text[0].lower() + text[1:] if text else type(reason.value).__name__


def _address(transport: Any) -> list[Any]:
    peer = transport.getPeer() if transport is not None else None
    host, port = getattr(peer, "host", None), getattr(peer, "port", None)
    return [host, port] if isinstance(host, str) and isinstance(port, int) else ["", 0]


class LinkProtocol(amp.AMP):
    """
    One AMP connection between two nodes, owned by ``owner``.  A link
    made with a ``key`` is one this node dialled: it says Hello (with
    ``credentials``, if given); one made without hears it.  Until Hello
    has been answered it accepts nothing else; then it drains its outbox
    in batches, at most :data:`WINDOW` unacknowledged at a time.

    What can repeat once per connection or per batch is logged through
    ``limited``: that of the listener that accepted the link, shared by its
    links; a link given none has one of its own, closed with the connection.
    """

    def __init__(
        self,
        owner: LinkOwner,
        key: str | None = None,
        credentials: tuple[str, str] | None = None,
        limited: RateLimitedLog | None = None,
    ) -> None:
        super().__init__(locator=LinkCommands(owner, self))
        first = LinkState.DIALLED if key is not None else LinkState.AWAITING_HELLO
        self.machine = LinkMachine(first, lambda: self.name)
        """Where the link is in its life (:mod:`relay._link_state`)."""
        self.owner = owner
        self.key = key
        self.credentials = credentials
        self.peer_node = ""
        self.peer_host_id = ""
        self.peer_address: list[Any] = ["", 0]
        self.user: str | None = None
        """The user name the peer proved in its Hello; None when none was needed."""
        self.outbox: Outbox | None = None
        self.on_closed: Callable[[], None] | None = None
        self.refused: Failure | None = None
        """Why the peer refused this node's Hello, if it did (the connection is then closed)."""
        self.dialled_by: Attempts | None = None
        """The failed attempts of the peer service that dialled this link, which says Hello as it connects."""
        self._pump_call: IDelayedCall | None = None
        self._batches_unanswered = 0
        self._hello_timer: IDelayedCall | None = None
        self._before_hello = 0
        self._box_bytes = 0
        self._own_log = limited is None
        self.limited = RateLimitedLog(_log, owner.reactor) if limited is None else limited
        """Where the link logs what can repeat, a few lines at a time (see :mod:`co2._ratelog`)."""

    @property
    def name(self) -> str:
        """How logs name this link."""
        return self.key or f"link from {self.peer_address[0]}:{self.peer_address[1]}"

    @property
    def introduced(self) -> bool:
        """Whether the link is up: its Hello was answered and the connection has not ended."""
        return self.machine.state is LinkState.UP

    # The connection

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
        elif self.machine.state in HEARING_HELLO:
            self._hello_timer = self.owner.reactor.callLater(self.owner.hello_timeout, self._no_hello)

    def _no_hello(self) -> None:
        self._hello_timer = None
        self._drop("no Hello in time", f"no Hello within {self.owner.hello_timeout:g}s (request_timeout)")

    def dataReceived(self, data: bytes) -> None:
        if self.machine.fire(LinkEvent.BYTES_ARRIVED) is LinkState.REFUSING:
            return
        if self.machine.state in HEARING_HELLO:
            if not self._before_hello:
                # Behind the PROXY protocol (haproxy: endpoints) the peer's own
                # address is known only once its header came, with the first data.
                self.peer_address = _address(self.transport)
            self._before_hello += len(data)
            if self._before_hello > BEFORE_HELLO:
                self._drop("too much before Hello", f"more than {BEFORE_HELLO} bytes before Hello")
                return
        super().dataReceived(data)

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:  # noqa: B008
        self._end(LinkEvent.LOST, _why_lost(reason))
        super().connectionLost(reason)
        if self.on_closed is not None:
            on_closed, self.on_closed = self.on_closed, None
            on_closed()
        if self._own_log:
            self.limited.close()

    def _end(self, event: LinkEvent, why: str = "") -> None:
        """Fire ``event``, which ends the link's life as it was: no Hello timer, and an up link goes down."""
        was_up = self.machine.state is LinkState.UP
        self.machine.fire(event)
        self._stop_hello_timer()
        if was_up:
            self._went_down(why or event.name.lower())

    def _stop_hello_timer(self) -> None:
        if self._hello_timer is not None and self._hello_timer.active():
            self._hello_timer.cancel()
        self._hello_timer = None

    def _went_down(self, why: str) -> None:
        """The link is no longer up: it stops sending, and the owner's router and directory forget it."""
        if self._pump_call is not None:
            self._pump_call.cancel()
            self._pump_call = None
        assert self.key is not None
        self.owner.router.detach(self.key, self)
        self.owner.link_stats.changed[self.key] = time.time()
        if self.owner.links.get(self.key) is self:
            del self.owner.links[self.key]
        self.owner.directory.link_down(self)
        _log.info("link {key} down: {why}", key=self.key, why=why)

    def supersede(self) -> None:
        """A newer connection from the same node took this link's key: this one goes down and closes."""
        self._end(LinkEvent.SUPERSEDED, "a newer connection from the same node took its place")
        if self.transport is not None:
            self.transport.loseConnection()

    # Boxes that are not what they should be: refused without a traceback.

    def _drop(self, kind: str, why: str) -> None:
        """Close the connection for a ``kind`` of breach of the protocol, saying why; read no more."""
        self._end(LinkEvent.BREACH, "closed, the peer broke the protocol")
        self.limited.emit(f"connections closed: {kind}", LogLevel.warn, "{name}: {why}; connection closed",
                          name=self.name, why=why)
        if self.transport is not None:
            self.transport.loseConnection()

    def stringReceived(self, string: bytes) -> None:
        # Each key and value of a box passes here; a box ends in
        # ampBoxReceived, which starts the count again.
        if self.machine.state is LinkState.REFUSING:
            return
        self._box_bytes += 2 + len(string)
        if self._box_bytes > self.owner.max_box_size:
            self._drop("box too large",
                       f"a box of more than {self.owner.max_box_size} bytes (max_message_size)")
            return
        super().stringReceived(string)

    def ampBoxReceived(self, box: amp.AmpBox) -> None:
        self._box_bytes = 0
        try:
            super().ampBoxReceived(box)
        except (amp.NoEmptyBoxes, KeyError):
            # An empty box, one with neither _command, _answer nor _error,
            # or an answer or error to a question never asked.
            self._drop("neither command nor answer",
                       f"a box that is neither a command nor an answer: keys {shown(sorted(box))}")

    def dispatchCommand(self, box: amp.AmpBox) -> Deferred[Any]:
        d: Deferred[Any] = super().dispatchCommand(box)
        return d.addErrback(self._after_refusal, box)

    def _after_refusal(self, failure: Failure, box: amp.AmpBox) -> Any:
        error = failure.value
        if not isinstance(error, amp.RemoteAmpError):
            return failure
        if error.fatal:
            if not (isinstance(error.local, Failure) and error.local.check(*_LOGGED_BY_AUTHENTICATION)):
                command = box.get(amp.COMMAND, b"")
                kind = command.decode() if command in _COMMANDS else "other commands"
                self.limited.emit(
                    f"connections closed: refused {kind}", LogLevel.warn,
                    "{name}: refused {command}: {why}; connection closed", name=self.name,
                    command=shorten(command.decode("ascii", "replace")), why=error.description,
                )
            if amp.ASK not in box and self.transport is not None:
                self.transport.loseConnection()
        if amp.ASK not in box:
            # No answer was asked for: a refusal has nowhere to go.
            return None
        return failure

    # Introduction

    def _greet(self, dialled: Attempts) -> None:
        # A peer service's link says Hello as it connects.  A refusal is
        # logged and the connection closed; the service dials again after a
        # delay that grows with the refusals in a row (see peer_service).

        def up(_: object) -> None:
            dialled.greeted()

        def refused(failure: Failure) -> None:
            self.limited.emit("Hello failed", LogLevel.warn, "link {key}: Hello failed: {why}",
                              key=self.key, why=failure.getErrorMessage())
            self.refused = failure
            if self.transport is not None:
                self.transport.loseConnection()

        self.say_hello().addCallbacks(up, refused)

    def say_hello(self) -> Deferred[None]:
        """
        Introduce this node to the peer; fires once the link is up, fails
        with :class:`IncompatibleVersion` when the peer answers with
        another protocol version, or with the peer's refusal.  Raises
        ``RelayError`` unless the link was dialled and has not said Hello.
        """
        self.machine.fire(LinkEvent.SAY_HELLO)
        given = {}
        if self.credentials is not None:
            given = {"username": self.credentials[0], "password": self.credentials[1]}
        d = self.callRemote(
            Hello, node=self.owner.node_id, host_id=self.owner.host_id, version=PROTOCOL_VERSION, **given,
        )
        return d.addCallback(self._answered).addErrback(self._hello_failed)

    def _answered(self, answer: dict[str, Any]) -> None:
        if answer["version"] != PROTOCOL_VERSION:
            raise IncompatibleVersion(
                f"the peer answered with protocol version {answer['version']}; "
                f"this node speaks version {PROTOCOL_VERSION} only"
            )
        check_identity(answer["node"], answer["host_id"])
        assert self.key is not None
        self.introduce(self.key, answer["node"], answer["host_id"])

    def _hello_failed(self, failure: Failure) -> Failure:
        self.machine.fire(LinkEvent.HELLO_FAILED)
        return failure

    def introduce(self, key: str, node: str, host_id: str) -> None:
        """
        Hello was answered: the link comes up as ``key`` (a link that held
        it goes down), between this node and ``node`` of ``host_id``.
        """
        self.machine.fire(LinkEvent.INTRODUCED)
        self._stop_hello_timer()
        self.key, self.peer_node, self.peer_host_id = key, node, host_id
        old = self.owner.links.get(key)
        if old is not None:
            _log.info("link {key}: a new connection replaces the old one", key=key)
            old.supersede()
        self.owner.links[key] = self
        stats = self.owner.link_stats
        stats.ups[key] += 1
        stats.peers[key] = (node, host_id)
        stats.changed[key] = time.time()
        self.outbox = self.owner.router.attach(key, self)
        # Wait a turn: the answer to Hello must reach the peer first.
        self.owner.reactor.callLater(0, self._up)
        _log.info("link {key} up: node {node} ({host_id}) at {ip}:{port}",
                  key=key, node=node, host_id=host_id,
                  ip=self.peer_address[0], port=self.peer_address[1])

    def _up(self) -> None:
        if self.machine.state is LinkState.UP:
            self.owner.directory.link_up(self)

    def batch_arrived(self) -> None:
        """
        The peer sent a Deliver: one more of its batches unanswered.  Raises
        :class:`~co2.protocol.WindowExceeded` (which closes the link) when
        :data:`WINDOW` are unanswered already: a peer keeps to the window,
        so what a congested node holds for it stays bounded.
        """
        if self._batches_unanswered >= WINDOW:
            raise WindowExceeded(
                f"a Deliver while {WINDOW} batches are unanswered: a peer may have at most {WINDOW}"
            )
        self._batches_unanswered += 1

    def batch_answered(self) -> None:
        """One of the peer's batches was answered."""
        self._batches_unanswered -= 1

    def key_once_up(self) -> str:
        """This link's key, for a command from the peer; raises ``NotIntroduced`` unless the link is up."""
        self.machine.fire(LinkEvent.COMMAND_HEARD)
        assert self.key is not None
        return self.key

    # Messages

    def wake(self) -> None:
        """Send what the outbox holds, once this reactor turn is over."""
        if self._pump_call is None and self.machine.state is LinkState.UP:
            self._pump_call = self.owner.reactor.callLater(0, self._pump)

    def send_now(self) -> None:
        """Send what the outbox holds without waiting for the turn to end."""
        if self._pump_call is not None:
            self._pump_call.cancel()
        self._pump()

    def _pump(self) -> None:
        self._pump_call = None
        outbox = self.outbox
        while self.machine.state is LinkState.UP and outbox is not None and outbox.in_flight < WINDOW:
            number, entries = outbox.take(BATCH_BYTES)
            if not entries:
                break
            d = self.callRemote(Deliver, batch=encode_batch([entry.body for entry in entries]))
            self.owner.link_stats.messages_out[self.key or ""] += len(entries)
            d.addCallbacks(self._acked, self._not_acked, callbackArgs=(number,), errbackArgs=(number,))

    def _acked(self, answer: object, number: int) -> None:
        assert self.key is not None
        self.owner.router.acked(self.key, number)
        if self.outbox is not None and self.outbox.waiting:
            self.wake()

    def _not_acked(self, failure: Failure, number: int) -> None:
        if failure.check(BadBatch):
            # Sending it again cannot help: the peer will refuse it again.
            self.limited.emit("batch refused by the peer", LogLevel.error,
                              "link {key}: the peer refused a batch, dropped: {why}",
                              key=self.key, why=failure.getErrorMessage())
            self._acked(None, number)
        elif not failure.check(amp.ProtocolSwitched, *_LOST):
            self.limited.emit("delivery failed", LogLevel.error,
                              "link {key}: delivery failed ({why}); reconnecting to send it again",
                              key=self.key, why=failure.getErrorMessage())
            if self.transport is not None:
                self.transport.loseConnection()

    # The method directory

    def announce(
        self, node: str, host_id: str, version: int, hops: int, ttl: float, methods: list[str],
        neighbours: Iterable[str] | None = None, profile: bytes | None = None,
    ) -> None:
        """Tell the peer which methods ``node`` hosts, which nodes it is linked to, what it says of itself."""
        self.callRemote(
            Announce, node=node, host_id=host_id, version=version, hops=hops, ttl=ttl,
            methods="\n".join(methods).encode(),
            neighbours=None if neighbours is None else "\n".join(sorted(neighbours)).encode(),
            profile=profile,
        )

    def send_call(self, node: str, hops: int, request: bytes) -> Deferred[bytes]:
        """Send a call on toward ``node``; fires with the methodResponse."""
        d = self.callRemote(Call, node=node, hops=hops, request=request)
        return d.addCallback(lambda answer: answer["response"])


class LinkServerFactory(Factory):
    """
    Makes a :class:`LinkProtocol` for each connection to ``amp_listen``,
    while fewer than ``max_connections`` are open; past that, a new
    connection is closed at once.  Its links share one
    :class:`~co2._ratelog.RateLimitedLog`, closed when the listener stops
    (a factory serves one listening port).
    """

    noisy = False

    def __init__(self, owner: LinkOwner, max_connections: int = 1000) -> None:
        self.owner = owner
        self.admission = Admission(max_connections, "the AMP listener", owner.reactor)
        self.limited = RateLimitedLog(_log, owner.reactor)
        """Where the links of this listener log what can repeat, a few lines at a time."""

    def buildProtocol(self, addr: Any) -> LinkProtocol | None:
        if not self.admission.admit():
            return None
        link = LinkProtocol(self.owner, limited=self.limited)
        link.on_closed = self.admission.release
        return link

    def stopFactory(self) -> None:
        """The listener stopped: what its log and its admission counted is logged now, no timer left."""
        self.limited.close()
        self.admission.close()
