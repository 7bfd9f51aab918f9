"""
What an AMP link answers its peer: :class:`LinkCommands`, the
``CommandLocator`` of each :class:`~relay._links.LinkProtocol`.

It holds nothing of the connection.  Each responder checks the
arguments, asks the link's state machine whether the command may come
now (Hello only before the link is up, everything else only once it is),
and hands the command to the owner's router or directory.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from twisted.internet.defer import Deferred, fail
from twisted.logger import Logger, LogLevel
from twisted.protocols import amp
from twisted.python.failure import Failure

from co2 import faults
from co2._auth import Authentication, LoginThrottled, login_failure_reason, login_source
from co2._xmlrpc import dump_fault
from co2._xmlrpc_exact import NOT_XML
from co2.protocol import (
    PROTOCOL_VERSION,
    Announce,
    BadArguments,
    Call,
    Deliver,
    Hello,
    IncompatibleVersion,
    NodeIdTaken,
    SameNode,
    Unauthorized,
    decode_batch,
)
from relay._link_limits import BOX_OVERHEAD, shorten, shown
from relay._link_state import LinkEvent, LinkState
from relay._router import INBOUND

if TYPE_CHECKING:
    from relay._links import LinkOwner, LinkProtocol

__all__ = ["LinkCommands", "check_identity"]

_log = Logger(namespace="co2.relay")

# A node id: printable ASCII without spaces (co2 uses 16 hexadecimal digits).
_NODE_ID = re.compile("[!-~]{1,64}")
_LONGEST_HOST_ID = 255
# Where Authentication.refuse says a refusal happened.
_LISTENER = "the AMP listener"

_T = TypeVar("_T")
_Responder = Callable[[amp.AmpBox], Any]


def check_identity(node: str, host_id: str) -> None:
    """
    Raise :class:`BadArguments` unless ``node`` is 1 to 64 printable ASCII
    characters (no spaces) and ``host_id`` at most 255 printable characters:
    both are logged and shown to clients.
    """
    if _NODE_ID.fullmatch(node) is None:
        raise BadArguments(f"node id {shown(node)} is not 1 to 64 printable ASCII characters")
    if len(host_id) > _LONGEST_HOST_ID or not host_id.isprintable():
        raise BadArguments(f"host_id {shown(host_id)} is not at most 255 printable characters")


def _node_ids(joined: bytes) -> list[str]:
    """The node ids of an Announce's ``neighbours``; raises :class:`BadArguments` for one that is not."""
    ids = joined.decode("ascii", "replace").split("\n") if joined else []
    for node in ids:
        if _NODE_ID.fullmatch(node) is None:
            raise BadArguments(f"neighbour {shown(node)} is not 1 to 64 printable ASCII characters")
    return ids


def _reading_arguments(name: bytes, responder: _Responder) -> _Responder:
    """``responder``, with arguments it cannot read refused as BAD_ARGUMENTS (fatal)."""

    def read(box: amp.AmpBox) -> Any:
        # The responder reads the arguments before anything else, and only
        # that can raise here: what the command does fails its Deferred instead.
        try:
            return responder(box)
        except Exception as e:
            return fail(amp.RemoteAmpError(
                b"BAD_ARGUMENTS",
                f"{name.decode('ascii', 'replace')}: cannot read the arguments: "
                f"{shorten(faults.describe_exception(e))}",
                fatal=True,
            ))

    return read


@dataclass(frozen=True)
class _Claim:
    """A Hello whose credentials are being checked: the node it names, who says it, as which user."""

    node: str
    host_id: str
    who: str
    username: str


class LinkCommands(amp.CommandLocator):
    """
    The responders of ``link``, a connection of ``owner``: Hello
    introduces the peer; Deliver, Announce and Call go to the owner's
    router and directory once the link is up, and are refused with
    ``HELLO_FIRST`` before.
    """

    def __init__(self, owner: LinkOwner, link: LinkProtocol) -> None:
        self.owner = owner
        self.link = link

    def locateResponder(self, name: bytes) -> _Responder | None:
        """The responder of the command ``name``, if there is one; see :func:`_reading_arguments`."""
        if not name.isascii():
            # No command has such a name; AMP would fail to decode it.
            return None
        responder = super().locateResponder(name)
        return None if responder is None else _reading_arguments(name, responder)

    # Introduction

    @Hello.responder
    def hello(
        self, node: str, host_id: str, version: int,
        username: str | None = None, password: str | None = None,
    ) -> dict[str, Any] | Deferred[dict[str, Any]]:
        """The peer introduces itself (with credentials, when this node requires them): the link comes up."""
        if version != PROTOCOL_VERSION:
            raise IncompatibleVersion(
                f"this node speaks protocol version {PROTOCOL_VERSION} only, not {version}"
            )
        self.link.machine.fire(LinkEvent.HELLO_HEARD)
        check_identity(node, host_id)
        if node == self.owner.node_id:
            raise SameNode("a node cannot link to itself")
        authentication = self.owner.authentication
        if authentication is None:
            return self._welcome(node, host_id)
        address = self.link.peer_address
        who = f"{address[0]}:{address[1]} (node {node})"
        if username is None or password is None:
            authentication.refuse(_LISTENER, who, None, "no credentials given")
            raise Unauthorized("this node requires a user name and password in Hello")
        return self._check_credentials(authentication, _Claim(node, host_id, who, username), password)

    def _check_credentials(
        self, authentication: Authentication, claim: _Claim, password: str
    ) -> Deferred[dict[str, Any]]:
        # Until the checker answers, every other command is still refused
        # (HELLO_FIRST), and a second Hello too.
        self.link.machine.fire(LinkEvent.CHECK_CREDENTIALS)
        d = authentication.check(claim.username, password, login_source(self.link.peer_address[0]))
        return d.addBoth(self._check_ended).addCallbacks(
            self._accepted, self._refused,
            callbackArgs=(claim, authentication), errbackArgs=(claim, authentication),
        )

    def _check_ended(self, result: _T) -> _T:
        self.link.machine.fire(LinkEvent.CHECK_ENDED)
        return result

    def _refused(self, failure: Failure, claim: _Claim, authentication: Authentication) -> Failure:
        why = login_failure_reason(failure)
        authentication.refuse(_LISTENER, claim.who, claim.username, why)
        if failure.check(LoginThrottled):
            return Failure(Unauthorized(why))
        return Failure(Unauthorized("wrong user name or password"))

    def _accepted(self, user: str, claim: _Claim, authentication: Authentication) -> dict[str, Any]:
        if self.link.machine.state is not LinkState.AWAITING_HELLO:
            # The check ended on a link that is down, or closing after a breach.
            authentication.refuse(_LISTENER, claim.who, user, "the connection closed during the check")
            raise Unauthorized("the connection closed during the check")
        self._check_holder(claim, user, authentication)
        _log.info("link from {who}: user {user!r} authenticated", who=claim.who, user=user)
        self.link.user = user
        return self._welcome(claim.node, claim.host_id)

    def _check_holder(self, claim: _Claim, user: str, authentication: Authentication) -> None:
        """
        Raise :class:`NodeIdTaken` when a link that proved another user
        than ``user`` holds the node id: only the same identity may replace it.
        """
        holder = self.owner.links.get(f"{INBOUND}{claim.node}")
        if holder is None or holder.user == user:
            return
        address = holder.peer_address
        authentication.refuse(
            _LISTENER, claim.who, user,
            f"node {claim.node} is held by the link from {address[0]}:{address[1]} "
            f"of user {holder.user!r}; that link stays up",
        )
        raise NodeIdTaken(f"node {claim.node} is linked here already, under another user name")

    def _welcome(self, node: str, host_id: str) -> dict[str, Any]:
        self.link.introduce(f"{INBOUND}{node}", node, host_id)
        return {"node": self.owner.node_id, "host_id": self.owner.host_id, "version": PROTOCOL_VERSION}

    # Messages, announcements and calls

    @Deliver.responder
    def deliver(self, batch: bytes) -> Deferred[dict[str, Any]]:
        """A batch of messages for the router; the answer, once they are taken, acknowledges them."""
        key = self.link.key_once_up()
        envelopes = decode_batch(batch)
        self.link.batch_arrived()
        self.owner.link_stats.messages_in[key] += len(envelopes)
        d = self.owner.router.arrived(envelopes, key, self.link.peer_address)
        return d.addCallback(self._answered)

    def _answered(self, _: object) -> dict[str, Any]:
        self.link.batch_answered()
        return {}

    @Announce.responder
    def announced(
        self, node: str, host_id: str, version: int, hops: int, ttl: float, methods: bytes,
        neighbours: bytes | None = None, profile: bytes | None = None,
    ) -> dict[str, Any]:
        """Which methods ``node`` hosts, for the directory."""
        self.link.key_once_up()
        check_identity(node, host_id)
        if hops < 0 or math.isnan(ttl):
            raise BadArguments(f"hops {hops} and ttl {ttl!r}: hops must be >= 0 and ttl a number")
        # Names that XML cannot carry would spoil system.listMethods here.
        names = [
            name for name in methods.decode("utf-8", "replace").split("\n")
            if name and NOT_XML.search(name) is None
        ]
        linked = None if neighbours is None else _node_ids(neighbours)
        self.owner.directory.announced(self.link, node, host_id, version, hops, ttl, names, linked, profile)
        return {}

    @Call.responder
    def call(self, node: str, hops: int, request: bytes) -> Deferred[dict[str, Any]]:
        """A call the directory routes toward ``node``; answered with its methodResponse."""
        self.link.key_once_up()
        directory = self.owner.directory
        d = directory.route(node, hops, request, timeout=directory.call_timeout)
        return d.addCallback(self._answer_call)

    def _answer_call(self, response: bytes) -> dict[str, Any]:
        # An answer the peer would refuse to read would cost the link.
        room = self.owner.max_box_size - BOX_OVERHEAD
        if len(response) > room:
            self.link.limited.emit(
                "routed answer too large", LogLevel.warn,
                "{name}: a routed call's answer of {size} bytes is over {room}; the caller gets fault -32603",
                name=self.link.name, size=len(response), room=room,
            )
            response = dump_fault(faults.INTERNAL_ERROR,
                                  f"the answer ({len(response)} bytes) is too large to route "
                                  f"(max_message_size)")
        return {"response": response}
