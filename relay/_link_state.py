"""
The life of an AMP link as a state machine: :class:`LinkState` is where
a link is, :class:`LinkEvent` what happens to it, and :data:`TRANSITIONS`
where each event leads from each state::

    DIALLED              --SAY_HELLO-->         SAYING_HELLO
    SAYING_HELLO         --INTRODUCED-->        UP
    SAYING_HELLO         --HELLO_FAILED-->      DIALLED
    AWAITING_HELLO       --INTRODUCED-->        UP
    AWAITING_HELLO       --CHECK_CREDENTIALS--> CHECKING_CREDENTIALS
    CHECKING_CREDENTIALS --CHECK_ENDED-->       AWAITING_HELLO
    UP                   --SUPERSEDED-->        SUPERSEDED
    any live state       --BREACH-->            REFUSING
    any state but DOWN   --LOST-->              DOWN

A link this node dialled starts in ``DIALLED``, one a peer made in
``AWAITING_HELLO``.  A Hello or a check that was under way when the
connection broke ends in ``REFUSING`` or ``DOWN`` and changes nothing.
Three events only ask whether the state allows what the peer did:
``BYTES_ARRIVED``, ``HELLO_HEARD`` and ``COMMAND_HEARD``.

:meth:`LinkMachine.fire` refuses an event the table does not allow: what
the peer did out of turn with the error the command's schema declares
(:class:`~co2.protocol.UnexpectedHello`,
:class:`~co2.protocol.NotIntroduced`), anything else, which only a bug of
this node can cause, with a :class:`~relay._errors.RelayError` naming
the link, the event and the state.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from types import MappingProxyType

from co2.protocol import NotIntroduced, UnexpectedHello
from relay._errors import RelayError

__all__ = ["HEARING_HELLO", "TRANSITIONS", "LinkEvent", "LinkMachine", "LinkState"]


class LinkState(enum.Enum):
    """Where a link is in its life."""

    DIALLED = "dialled"
    """This node connected to the peer and has not said Hello (or the peer refused it)."""
    SAYING_HELLO = "saying hello"
    """This node said Hello and waits for the answer."""
    AWAITING_HELLO = "awaiting hello"
    """The peer connected to this node and has not said Hello (or this node refused it)."""
    CHECKING_CREDENTIALS = "checking credentials"
    """The peer's Hello gave a user name and password that the checker has not judged yet."""
    UP = "up"
    """Hello was answered: the link carries messages, announcements and calls."""
    SUPERSEDED = "superseded"
    """A newer connection from the same node took this link's key; this one is closing."""
    REFUSING = "refusing"
    """The peer broke the protocol: the connection is closing and reads nothing more."""
    DOWN = "down"
    """The connection is closed."""


class LinkEvent(enum.Enum):
    """What happens to a link."""

    SAY_HELLO = "saying Hello"
    """This node says Hello to the peer it dialled."""
    HELLO_FAILED = "a failed Hello"
    """The Hello this node said was refused, answered wrongly, or cut short."""
    CHECK_CREDENTIALS = "a credential check"
    """The peer's Hello gave credentials: the checker is asked."""
    CHECK_ENDED = "the end of a credential check"
    """The checker answered, yes or no."""
    INTRODUCED = "an introduction"
    """A Hello was answered: the link takes its key and comes up."""
    SUPERSEDED = "a newer connection"
    """A newer connection from the same node took this link's key."""
    BREACH = "a protocol breach"
    """The peer broke the protocol: this node closes the connection."""
    LOST = "the connection's end"
    """The connection closed."""
    BYTES_ARRIVED = "bytes from the peer"
    """Bytes arrived from the peer."""
    HELLO_HEARD = "a Hello from the peer"
    """The peer said Hello."""
    COMMAND_HEARD = "a command from the peer"
    """The peer sent Deliver, Announce or Call."""


_S, _E = LinkState, LinkEvent

HEARING_HELLO = frozenset({_S.AWAITING_HELLO, _S.CHECKING_CREDENTIALS})
"""The states of a link a peer made, before its Hello is answered: it reads at most
:data:`~relay._link_limits.BEFORE_HELLO` bytes, for at most ``request_timeout``."""

_LIVE = frozenset(LinkState) - {_S.REFUSING, _S.DOWN}
_STAY = frozenset({_S.REFUSING, _S.DOWN})

TRANSITIONS: Mapping[tuple[LinkState, LinkEvent], LinkState] = MappingProxyType({
    (_S.DIALLED, _E.SAY_HELLO): _S.SAYING_HELLO,
    (_S.SAYING_HELLO, _E.INTRODUCED): _S.UP,
    (_S.SAYING_HELLO, _E.HELLO_FAILED): _S.DIALLED,
    (_S.AWAITING_HELLO, _E.INTRODUCED): _S.UP,
    (_S.AWAITING_HELLO, _E.CHECK_CREDENTIALS): _S.CHECKING_CREDENTIALS,
    (_S.CHECKING_CREDENTIALS, _E.CHECK_ENDED): _S.AWAITING_HELLO,
    (_S.UP, _E.SUPERSEDED): _S.SUPERSEDED,
    **{(state, _E.BREACH): _S.REFUSING for state in _LIVE},
    **{(state, _E.LOST): _S.DOWN for state in LinkState if state is not _S.DOWN},
    # What was under way when the connection broke ends and changes nothing.
    **{(state, _E.CHECK_ENDED): state for state in _STAY},
    (_S.DOWN, _E.HELLO_FAILED): _S.DOWN,
    # What the peer may do, and when.  A refusing link drops what arrives unread.
    **{(state, _E.BYTES_ARRIVED): state for state in _LIVE | {_S.REFUSING}},
    (_S.AWAITING_HELLO, _E.HELLO_HEARD): _S.AWAITING_HELLO,
    (_S.UP, _E.COMMAND_HEARD): _S.UP,
})
"""Where each event leads from each state; a pair missing here is refused."""

_REFUSALS: Mapping[LinkEvent, Callable[[], Exception]] = MappingProxyType({
    _E.HELLO_HEARD: lambda: UnexpectedHello("Hello is said once, by the node that connects"),
    _E.COMMAND_HEARD: lambda: NotIntroduced("send Hello first"),
})


class LinkMachine:
    """
    The state of one link, which only :meth:`fire` changes.  ``name``
    gives how logs name the link, for the error an illegal event raises.
    """

    def __init__(self, state: LinkState, name: Callable[[], str]) -> None:
        self._state = state
        self._name = name

    @property
    def state(self) -> LinkState:
        """Where the link is now."""
        return self._state

    def fire(self, event: LinkEvent) -> LinkState:
        """
        Move on by ``event``; returns the new state.  An event the state
        does not allow changes nothing and raises: ``UnexpectedHello`` for
        ``HELLO_HEARD``, ``NotIntroduced`` for ``COMMAND_HEARD`` (both
        answered to the peer), a ``RelayError`` for any other.
        """
        after = TRANSITIONS.get((self._state, event))
        if after is None:
            refusal = _REFUSALS.get(event)
            if refusal is not None:
                raise refusal()
            raise RelayError(f"{self._name()}: {event.value} cannot happen when the link is "
                             f"{self._state.value}; a bug in co2")
        self._state = after
        return after
