"""The service tree's building blocks: children started in order and stopped in reverse, listeners."""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import Factory
from twisted.internet.testing import MemoryReactorClock

from co2._services import InOrder, Listener, ListenError, Part


class Step(Part):
    """A part that notes its start and stop in ``log`` and is ready when ``ready_at`` fires."""

    def __init__(self, name: str, log: list[str], ready_at: Deferred[None] | None = None) -> None:
        self.setName(name)
        self.log = log
        self.ready_at = ready_at
        self.stopping: Deferred[None] | None = None

    def start(self) -> Any:
        self.log.append(f"start {self.name}")
        return self.ready_at

    def stopService(self) -> Any:
        super().stopService()
        self.log.append(f"stop {self.name}")
        return self.stopping


class Broken(Step):
    """A part whose start fails."""

    def start(self) -> Any:
        raise RuntimeError("no room")


def tree(*children: Service) -> InOrder:
    parent = InOrder()
    for child in children:
        child.setServiceParent(parent)
    return parent


def test_children_start_one_after_another_each_once_the_one_before_is_ready():
    """The second child starts only when the first one's ready fires; started fires after the last."""
    log: list[str] = []
    first_ready: Deferred[None] = Deferred()
    parent = tree(Step("a", log, first_ready), Step("b", log))
    parent.startService()
    assert log == ["start a"] and not parent.started.called
    first_ready.callback(None)
    assert log == ["start a", "start b"]
    assert parent.started.called


def test_a_failed_start_fails_started_and_starts_no_later_child():
    """A child whose start fails stops the start there: the ones after it never start."""
    log: list[str] = []
    parent = tree(Step("a", log), Broken("b", log), Step("c", log))
    parent.startService()
    failures: list[Any] = []
    parent.started.addErrback(failures.append)
    assert failures[0].check(RuntimeError) and "no room" in failures[0].getErrorMessage()
    assert log == ["start a"]


def test_children_stop_in_reverse_each_once_the_one_after_has_stopped():
    """The last child stops first; the one before waits until that stop is over."""
    log: list[str] = []
    a, b = Step("a", log), Step("b", log)
    parent = tree(a, b)
    parent.startService()
    b.stopping = Deferred()
    done = parent.stopService()
    assert log[-1] == "stop b"
    b.stopping.callback(None)
    assert log[-2:] == ["stop b", "stop a"]
    assert done.called


def test_a_failed_stop_is_logged_and_the_others_still_stop(logged):
    """One child's stop failing does not keep the others running."""
    log: list[str] = []
    a, b = Step("a", log), Step("b", log)
    parent = tree(a, b)
    parent.startService()
    b.stopping = Deferred()
    parent.stopService()
    b.stopping.errback(RuntimeError("stuck"))
    assert log[-1] == "stop a" and not a.running
    assert any(event.get("child") == "b" and "log_failure" in event for event in logged)


def test_a_child_that_was_never_started_is_not_stopped():
    """After a failed start, stopping the tree stops only what had started."""
    log: list[str] = []
    parent = tree(Step("a", log), Broken("b", log), Step("c", log))
    parent.startService()
    parent.started.addErrback(lambda _: None)
    parent.stopService()
    assert "stop c" not in log and "stop a" in log


def test_a_tree_inside_a_tree_is_waited_for():
    """An InOrder child is ready when its own children are."""
    log: list[str] = []
    inner_ready: Deferred[None] = Deferred()
    outer = tree(tree(Step("a", log, inner_ready)), Step("b", log))
    outer.startService()
    assert log == ["start a"]
    inner_ready.callback(None)
    assert log == ["start a", "start b"]


def test_a_listener_binds_once_and_tells_every_asker():
    """bind() is idempotent: one port, and each caller gets it."""
    reactor = MemoryReactorClock()
    listener = Listener(reactor, "tcp:2004:interface=127.0.0.1", Factory, "the test listener")
    ports: list[Any] = []
    listener.privilegedStartService()
    listener.bind().addCallback(ports.append)
    listener.startService()
    listener.ready.addCallback(ports.append)
    assert len(reactor.tcpServers) == 1 and ports[0] is ports[1] is listener.port


def test_a_listener_that_cannot_bind_fails_with_listen_error_naming_it():
    """The endpoint, what the listener is and why are all in the one message."""

    class Refusing(MemoryReactorClock):
        def listenTCP(self, port: int, factory: Any, backlog: int = 50, interface: str = "") -> Any:
            raise CannotListenError(interface, port, OSError("in use"))

    listener = Listener(Refusing(), "tcp:2004:interface=127.0.0.1", Factory, "the AMP listener")
    listener.startService()
    failures: list[Any] = []
    listener.ready.addErrback(failures.append)
    assert failures[0].check(ListenError)
    message = failures[0].getErrorMessage()
    assert message.startswith("cannot listen on 'tcp:2004:interface=127.0.0.1' (the AMP listener): ")
    assert "in use" in message


def test_a_factory_that_cannot_be_made_fails_the_bind():
    """What fails while making the factory (a key file, say) is a ListenError too, nothing bound."""
    reactor = MemoryReactorClock()

    def broken() -> Factory:
        raise OSError("no host key")

    listener = Listener(reactor, "tcp:2222:interface=127.0.0.1", broken, "the manhole")
    failures: list[Any] = []
    listener.bind().addErrback(failures.append)
    assert "no host key" in failures[0].getErrorMessage() and reactor.tcpServers == []


def test_stopping_a_listener_stops_listening():
    """The port stops listening when the listener stops."""
    reactor = MemoryReactorClock()
    listener = Listener(reactor, "tcp:2004:interface=127.0.0.1", Factory, "the test listener")
    listener.startService()
    port = listener.port
    assert port is not None
    stopped: list[bool] = []
    port.stopListening = lambda: stopped.append(True)  # type: ignore[method-assign]
    listener.stopService()
    assert listener.port is None and stopped == [True]
