"""
A NATS JetStream backbone between sites.

A ``peers`` entry ``nats://HOST:PORT/NAME`` links the relay to a NATS
server.  Every relay linked to the same ``NAME`` is in one broadcast
domain:

- **Messages.**  The relay's outbox for the backbone is published to the
  JetStream stream ``NAME`` (subject ``co2.NAME.messages``), one stream
  message per batch, with ``Nats-Msg-Id`` made of the batch's first co2
  message id and its count, so that the server drops a batch sent twice;
  co2's own seen ids drop the rest.  The outbox counts a batch delivered
  once the server has stored it.  Each relay reads the stream with its own
  durable consumer, named after its node id: a relay that was down (with
  a spool, so that it keeps its node id) reads on from where it stopped,
  and acknowledges each batch only once it has taken it, as a link
  does.  The stream keeps messages ``backbone_max_age`` seconds and at
  most ``backbone_max_bytes``; a consumer idle for ``forget_after`` is
  dropped by the server.
- **The directory.**  Relays greet each other on ``co2.NAME.hello`` every
  few seconds; each relay heard is, for the method directory, a link of
  its own (:class:`_Remote`), over which announcements travel to
  ``co2.NAME.announce.<node>`` and routed calls to ``co2.NAME.call.<node>``
  (NATS requests).  A relay not heard for three greetings is a link down.

The NATS client is nats-py, on asyncio: the node runs on Twisted's
asyncio reactor, which ``co2-satellite`` and ``co2-relay`` install when a
backbone is configured.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Coroutine, Iterable
from typing import Any

import msgpack
from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, inlineCallbacks, succeed
from twisted.internet.task import LoopingCall, deferLater
from twisted.logger import Logger, LogLevel

from co2._config import Backbone as BackbonePeer
from co2._config import parse_backbone
from co2._message import parse_host_id
from co2._ratelog import RateLimitedLog
from co2.protocol import BadBatch, decode_batch, decode_envelope, encode_batch
from relay._errors import RelayError
from relay._link_commands import check_identity
from relay._link_limits import BATCH_BYTES, WINDOW
from relay._relay import Relay

__all__ = ["BackboneLink", "NotAsyncio", "read_announcement"]

_log = Logger(namespace="co2.relay")

HELLO_INTERVAL = 2.0
"""Seconds between a relay's greetings on the backbone."""

FETCH = 64
"""Stream messages (batches) a relay asks for at once."""

ACK_WAIT = 10.0
"""Seconds the server waits for a batch read to be acknowledged before it sends it again."""

STOP_WAIT = 5.0
"""Seconds a stopping relay waits for the server to store what it published."""

RETRY = 1.0
"""Seconds between attempts to reach the NATS server (and between reconnections, by the client)."""


class NotAsyncio(RelayError):
    """A backbone is configured but the reactor is not Twisted's asyncio reactor."""


def _later(coroutine: Coroutine[Any, Any, Any]) -> Deferred[Any]:
    """A Deferred of what ``coroutine`` returns, run on the reactor's asyncio loop."""
    return Deferred.fromFuture(asyncio.ensure_future(coroutine))


def read_announcement(
    payload: bytes,
) -> tuple[tuple[str, str], str, str, int, int, float, list[str], list[str] | None, bytes | None]:
    """
    An announcement from the backbone: ``((sender, its host_id), node,
    host_id, version, hops, ttl, methods, neighbours, profile)``.  Raises
    ``ValueError`` saying what is wrong, as an Announce over a link would
    be refused.
    """
    try:
        fields = msgpack.unpackb(payload, raw=False, strict_map_key=True)
    except Exception as e:
        raise ValueError(f"not msgpack: {e}") from None
    if not isinstance(fields, list) or len(fields) not in (9, 10):
        raise ValueError("an announcement is an array of 9 or 10 fields")
    sender, sender_host_id, node, host_id, version, hops, ttl, methods, neighbours = fields[:9]
    profile = fields[9] if len(fields) == 10 else None
    if profile is not None and not isinstance(profile, bytes):
        raise ValueError("a profile is bin")
    if not all(isinstance(value, str) for value in (sender, sender_host_id, node, host_id)):
        raise ValueError("the senders' and the node's ids and host_ids must be strings")
    check_identity(sender, sender_host_id)
    check_identity(node, host_id)
    if type(version) is not int or type(hops) is not int or hops < 0:
        raise ValueError(f"version {version!r} and hops {hops!r} must be ints, hops >= 0")
    if not isinstance(ttl, (int, float)) or math.isnan(ttl):
        raise ValueError(f"ttl {ttl!r} must be a number")
    if not isinstance(methods, list) or not all(isinstance(name, str) for name in methods):
        raise ValueError("methods must be a list of strings")
    if neighbours is not None:
        if not isinstance(neighbours, list) or not all(isinstance(other, str) for other in neighbours):
            raise ValueError("neighbours must be a list of node ids")
        for other in neighbours:
            check_identity(other, "")
    return (sender, sender_host_id), node, host_id, version, hops, float(ttl), methods, neighbours, profile


class BackboneLink(Service):
    """
    The link of ``relay`` to the backbone ``peer`` (``nats://HOST:PORT/NAME``),
    proving itself with ``credentials`` (user name, password) if given; for
    ``tls://``, TLS is checked against the CA file ``tls_ca`` (or the
    system's).
    """

    def __init__(
        self,
        relay: Relay,
        peer: str,
        credentials: tuple[str, str] | None = None,
        tls_ca: str | None = None,
    ) -> None:
        self.relay = relay
        self.key = peer
        self.peer: BackbonePeer = parse_backbone(peer)
        self.credentials = credentials
        self.tls_ca = tls_ca
        self.setName(peer)
        name = self.peer.name
        self.subject = f"co2.{name}.messages"
        self._hello_subject = f"co2.{name}.hello"
        self.durable = f"co2-{relay.node_id}"
        self.limited = RateLimitedLog(_log, relay.reactor)
        self.peer_node = ""  # the backbone is off the map: every message goes to it
        self._client: Any = None
        self._stream: Any = None
        self._jetstream: Any = None
        self._attached = False
        self._publishing: dict[int, Deferred[Any]] = {}
        self._remotes: dict[str, _Remote] = {}
        self._greeting: LoopingCall | None = None
        self._reading: Deferred[None] | None = None
        self._pump_call: Any = None
        self.outbox: Any = None

    # Starting and stopping

    def startService(self) -> None:
        super().startService()
        _asyncio_reactor(self.relay.reactor)
        self._started = self._connect()

    @inlineCallbacks
    def _connect(self) -> Any:
        import nats

        while self.running:
            try:
                options: dict[str, Any] = {
                    "servers": [self.peer.url], "name": f"co2 {self.relay.node_id}",
                    "allow_reconnect": True, "max_reconnect_attempts": -1,
                    "reconnect_time_wait": RETRY, "connect_timeout": 5,
                    "disconnected_cb": self._disconnected, "reconnected_cb": self._reconnected,
                    "error_cb": self._error, "closed_cb": self._closed,
                }
                if self.credentials is not None:
                    options["user"], options["password"] = self.credentials
                if self.peer.tls:
                    import ssl

                    options["tls"] = ssl.create_default_context(cafile=self.tls_ca)
                self._client = yield _later(nats.connect(**options))
                yield _later(self._set_up())
                break
            except Exception as e:
                self.limited.emit(
                    "backbone unreachable", LogLevel.warn,
                    "backbone {peer}: cannot link ({why}); trying again", peer=self.key, why=e,
                )
                if self._client is not None:
                    client, self._client = self._client, None
                    yield _later(client.close())
                yield deferLater(self.relay.reactor, RETRY, lambda: None)
        if not self.running:
            return
        _log.info("backbone {peer} up: stream {name} at {url}",
                  peer=self.key, name=self.peer.name, url=self.peer.url)
        self._attach()
        self._greeting = LoopingCall(self._greet)
        self._greeting.clock = self.relay.reactor
        self._greeting.start(HELLO_INTERVAL, now=True)
        self._reading = self._read()

    async def _set_up(self) -> None:
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StreamConfig
        from nats.js.errors import NotFoundError

        client, settings = self._client, self.relay.config.relay
        js = self._jetstream = client.jetstream()
        config = StreamConfig(
            name=self.peer.name, subjects=[self.subject],
            max_age=settings.backbone_max_age, max_bytes=settings.backbone_max_bytes,
            duplicate_window=min(120.0, settings.backbone_max_age),
        )
        try:
            await js.stream_info(self.peer.name)
            await js.update_stream(config)
        except NotFoundError:
            await js.add_stream(config)
        self._stream = await js.pull_subscribe(
            self.subject, durable=self.durable, stream=self.peer.name,
            config=ConsumerConfig(
                ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.NEW, ack_wait=ACK_WAIT,
                max_ack_pending=FETCH * WINDOW, inactive_threshold=settings.forget_after,
            ),
        )
        name, me = self.peer.name, self.relay.node_id
        await client.subscribe(self._hello_subject, cb=self._heard)
        await client.subscribe(f"co2.{name}.announce.{me}", cb=self._announced)
        await client.subscribe(f"co2.{name}.call.{me}", cb=self._called)

    @inlineCallbacks
    def stopService(self) -> Any:
        super().stopService()
        if self._greeting is not None and self._greeting.running:
            self._greeting.stop()
        for remote in list(self._remotes.values()):
            remote.gone()
        # What waits is published, and the server's answers awaited (within
        # a bound); what is not stored by then stays owed, in the spool if any.
        self.send_now()
        if self._publishing:
            waiting = DeferredList(list(self._publishing.values()), consumeErrors=True)
            waiting.addTimeout(STOP_WAIT, self.relay.reactor)
            try:
                yield waiting
            except Exception:
                _log.warn("backbone {peer}: {count} batch(es) not stored as it stopped; they stay owed",
                          peer=self.key, count=len(self._publishing))
        self._detach()
        self.limited.close()
        client, self._client = self._client, None
        if client is not None and not client.is_closed:
            try:
                yield _later(client.close())
            except Exception as e:
                _log.warn("backbone {peer}: closing: {why}", peer=self.key, why=e)

    # The connection comes and goes

    async def _disconnected(self) -> None:
        if self.running:
            _log.warn("backbone {peer}: the NATS server is gone; reconnecting", peer=self.key)
        self._detach()

    async def _reconnected(self) -> None:
        _log.info("backbone {peer}: reconnected", peer=self.key)
        self._attach()

    async def _error(self, error: Exception) -> None:
        self.limited.emit("backbone error", LogLevel.warn, "backbone {peer}: the NATS link failed: {why}",
                          peer=self.key, why=error)

    async def _closed(self) -> None:
        self._detach()

    def _attach(self) -> None:
        if not self._attached and self.running:
            self._attached = True
            self.outbox = self.relay.router.attach(self.key, self)

    def _detach(self) -> None:
        if self._attached:
            self._attached = False
            self._publishing.clear()
            self.relay.router.detach(self.key, self)

    # Sending: the outbox, published batch by batch

    def wake(self) -> None:
        if self._pump_call is None and self._attached:
            self._pump_call = self.relay.reactor.callLater(0, self._pump)

    def send_now(self) -> None:
        if self._pump_call is not None and self._pump_call.active():
            self._pump_call.cancel()
        self._pump()

    def _pump(self) -> None:
        self._pump_call = None
        while self._attached and len(self._publishing) < WINDOW:
            number, entries = self.outbox.take(BATCH_BYTES)
            if not entries:
                return
            bodies = [entry.body for entry in entries]
            first = decode_envelope(bodies[0]).id
            headers = {
                "Nats-Msg-Id": f"{first}+{len(entries)}",
                "Co2-Node": self.relay.node_id,
                "Co2-Host-Id": self.relay.host_id,
            }
            d = _later(self._jetstream.publish(self.subject, encode_batch(bodies), headers=headers))
            self._publishing[number] = d
            self.relay.link_stats.messages_out[self.key] += len(entries)
            d.addCallbacks(self._stored, self._not_stored, callbackArgs=(number,), errbackArgs=(number,))

    def _stored(self, ack: Any, number: int) -> None:
        if self._publishing.pop(number, None) is None:
            return  # the link went down meanwhile: the outbox sends it again
        self.relay.router.acked(self.key, number)
        if self.outbox.waiting:
            self.wake()

    def _not_stored(self, failure: Any, number: int) -> None:
        if self._publishing.pop(number, None) is None:
            return
        self.limited.emit("backbone publish failed", LogLevel.warn,
                          "backbone {peer}: a batch was not stored ({why}); sending it again",
                          peer=self.key, why=failure.getErrorMessage())
        # What is unacknowledged waits again, in order, and goes once the server takes it.
        self._detach()
        self.relay.reactor.callLater(RETRY, self._attach_if_connected)

    def _attach_if_connected(self) -> None:
        if self._client is not None and self._client.is_connected:
            self._attach()
            self.wake()

    # Reading: the relay's durable consumer

    @inlineCallbacks
    def _read(self) -> Any:
        from nats.errors import TimeoutError as NatsTimeout

        while self.running:
            try:
                batches = yield _later(self._stream.fetch(FETCH, timeout=1.0))
            except (TimeoutError, NatsTimeout):
                continue
            except Exception as e:
                if not self.running:
                    return
                self.limited.emit("backbone read failed", LogLevel.warn,
                                  "backbone {peer}: reading failed ({why})", peer=self.key, why=e)
                yield deferLater(self.relay.reactor, RETRY, lambda: None)
                continue
            # Each batch is acknowledged on its own once taken: one sent
            # again (its first reader died) may come after later ones.
            yield DeferredList([self._take(batch).addCallback(self._ack, batch) for batch in batches])

    def _ack(self, _: object, batch: Any) -> Deferred[None] | None:
        if not self.running:
            return None
        return _later(batch.ack()).addErrback(
            lambda failure: self.limited.emit(
                "backbone ack failed", LogLevel.warn,
                "backbone {peer}: acknowledging failed ({why}); the server sends it again",
                peer=self.key, why=failure.getErrorMessage(),
            )
        )

    def _take(self, batch: Any) -> Deferred[None]:
        """Route the messages of ``batch``; fires once the relay is responsible for them."""
        headers = batch.headers or {}
        if headers.get("Co2-Node") == self.relay.node_id:
            return succeed(None)  # this relay's own
        try:
            envelopes = decode_batch(batch.data)
        except BadBatch as e:
            self.limited.emit("backbone bad batch", LogLevel.error,
                              "backbone {peer}: a batch is not co2's ({why}); dropped", peer=self.key, why=e)
            return succeed(None)
        self.relay.link_stats.messages_in[self.key] += len(envelopes)
        return self.relay.router.arrived(envelopes, self.key, _address_of(headers.get("Co2-Host-Id", "")))

    # The directory: greetings, announcements and calls between relays

    def _greet(self) -> None:
        if self._client is None or not self._client.is_connected:
            return
        payload = msgpack.packb([self.relay.node_id, self.relay.host_id])
        _later(self._client.publish(self._hello_subject, payload)).addErrback(lambda failure: None)
        for remote in [r for r in self._remotes.values() if r.silent_for() > 3 * HELLO_INTERVAL]:
            remote.gone()

    async def _heard(self, message: Any) -> None:
        try:
            node, host_id = msgpack.unpackb(message.data, raw=False)
            check_identity(node, host_id)
        except Exception as e:
            self.limited.emit("backbone bad hello", LogLevel.warn,
                              "backbone {peer}: a greeting that is not co2's ({why})", peer=self.key, why=e)
            return
        if node != self.relay.node_id:
            self._remote(node, host_id).heard()

    def forget(self, node: str) -> bool:
        """Forget the relay ``node`` on the backbone; whether it was known."""
        return self._remotes.pop(node, None) is not None

    def _remote(self, node: str, host_id: str) -> _Remote:
        """The relay ``node`` on the backbone: one heard of for the first time is a link up."""
        remote = self._remotes.get(node)
        if remote is None:
            remote = self._remotes[node] = _Remote(self, node, host_id)
            remote.up()
        return remote

    async def _announced(self, message: Any) -> None:
        try:
            sender, node, host_id, version, hops, ttl, methods, neighbours, profile = read_announcement(
                message.data
            )
        except ValueError as e:
            self.limited.emit("backbone bad announcement", LogLevel.warn,
                              "backbone {peer}: an announcement that is not co2's ({why})",
                              peer=self.key, why=e)
            return
        # An announcement may come before the sender's greeting: it is one too.
        remote = self._remote(*sender)
        remote.heard()
        directory = self.relay.directory
        directory.announced(remote, node, host_id, version, hops, ttl, methods, neighbours, profile)

    async def _called(self, message: Any) -> None:
        try:
            node, hops, request = msgpack.unpackb(message.data, raw=False)
            check_identity(node, "")
            if type(hops) is not int or not isinstance(request, bytes):
                raise ValueError("a call is [node, hops, request]")
        except Exception as e:
            self.limited.emit("backbone bad call", LogLevel.warn,
                              "backbone {peer}: a call that is not co2's ({why})", peer=self.key, why=e)
            return
        directory = self.relay.directory
        answer = await directory.route(node, hops, request, timeout=directory.call_timeout).asFuture(
            asyncio.get_running_loop()
        )
        if message.reply:
            await message.respond(answer)

    def publish(self, subject: str, payload: bytes) -> None:
        """Send ``payload`` on core NATS (greetings, announcements): nothing if not connected."""
        if self._client is not None and self._client.is_connected:
            _later(self._client.publish(subject, payload)).addErrback(lambda failure: None)

    def request(self, subject: str, payload: bytes, timeout: float) -> Deferred[bytes]:
        """A NATS request; fires with the answer's data."""
        if self._client is None or not self._client.is_connected:
            return Deferred.fromFuture(_failed(ConnectionError("the backbone is not connected")))
        return _later(self._client.request(subject, payload, timeout=timeout)).addCallback(
            lambda reply: reply.data
        )


class _Remote:
    """Another relay on the backbone, as a link of the method directory."""

    def __init__(self, backbone: BackboneLink, node: str, host_id: str) -> None:
        self.backbone = backbone
        self.peer_node = node
        self.host_id = host_id
        self.key: str | None = f"{backbone.key}#{node}"
        self._heard_at = backbone.relay.reactor.seconds()

    def heard(self) -> None:
        self._heard_at = self.backbone.relay.reactor.seconds()

    def silent_for(self) -> float:
        return self.backbone.relay.reactor.seconds() - self._heard_at

    def up(self) -> None:
        _log.info("backbone {peer}: relay {node} ({host_id}) is on it",
                  peer=self.backbone.key, node=self.peer_node, host_id=self.host_id)
        self.backbone.relay.directory.link_up(self)

    def gone(self) -> None:
        if self.backbone.forget(self.peer_node):
            _log.info("backbone {peer}: relay {node} is gone", peer=self.backbone.key, node=self.peer_node)
            self.backbone.relay.directory.link_down(self)

    def announce(
        self, node: str, host_id: str, version: int, hops: int, ttl: float, methods: list[str],
        neighbours: Iterable[str] | None = None, profile: bytes | None = None,
    ) -> None:
        relay = self.backbone.relay
        payload = msgpack.packb([
            relay.node_id, relay.host_id, node, host_id, version, hops, ttl, list(methods),
            None if neighbours is None else sorted(neighbours), profile,
        ])
        self.backbone.publish(f"co2.{self.backbone.peer.name}.announce.{self.peer_node}", payload)

    def send_call(self, node: str, hops: int, request: bytes) -> Deferred[bytes]:
        subject = f"co2.{self.backbone.peer.name}.call.{self.peer_node}"
        timeout = self.backbone.relay.directory.call_timeout
        return self.backbone.request(subject, msgpack.packb([node, hops, request]), timeout)


def _failed(error: Exception) -> asyncio.Future[Any]:
    future: asyncio.Future[Any] = asyncio.get_event_loop().create_future()
    future.set_exception(error)
    return future


def _address_of(host_id: str) -> list[Any]:
    """The ``client_address`` of a message from the backbone: the publishing relay's host and port."""
    try:
        parsed = parse_host_id(host_id)
    except ValueError:
        return ["", 0]
    return [parsed.host, parsed.port]


def _asyncio_reactor(reactor: Any) -> None:
    from twisted.internet.asyncioreactor import AsyncioSelectorReactor

    if not isinstance(reactor, AsyncioSelectorReactor):
        raise NotAsyncio(
            "a nats:// peer needs Twisted's asyncio reactor: co2-satellite and co2-relay "
            "install it when one is configured; under twistd, give --reactor=asyncio"
        )
