"""
Tests for L{netdemos.lifecycle}: readiness, systemd notifications and the
graceful stop, on a fake reactor.
"""

from __future__ import annotations

from collections.abc import Callable

from support.descriptors import plenty
from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase

from netdemos import tap
from netdemos.connections import Connections
from netdemos.lifecycle import NetdemosService
from netdemos.notify import Notifier


class RecordingNotifier(Notifier):
    def __init__(self) -> None:
        super().__init__({})
        self.sent: list[dict[str, str | int]] = []

    def notify(self, **fields: str | int) -> None:
        self.sent.append(fields)


class ReadyWitness(RecordingNotifier):
    """
    A notifier that, when it is told to send C{READY=1}, takes note of what
    C{look} returns then.
    """

    def __init__(self, look: Callable[[], object]) -> None:
        super().__init__()
        self.look = look
        self.seenAtReady: list[object] = []

    def notify(self, **fields: str | int) -> None:
        if "READY" in fields:
            self.seenAtReady.append(self.look())
        super().notify(**fields)


class FakeService:
    """
    A service factory whose connections close when the test says so.
    """

    def __init__(self) -> None:
        self.connections = Connections()
        self.closing: Deferred[None] | None = None

    def close(self) -> Deferred[None]:
        self.closing = Deferred()
        return self.closing


class RecordingListener(Service):
    def __init__(self, log: list[str], name: str) -> None:
        self.log = log
        self.setName(name)
        self.label = name

    def startService(self) -> None:
        super().startService()
        self.log.append(f"{self.label} started")

    def stopService(self) -> None:
        super().stopService()
        self.log.append(f"{self.label} stopped")


class HangingClient(Protocol):
    """
    A connection whose graceful close never finishes (its client never reads).
    """

    def loseConnection(self) -> None:
        pass


def makeServer() -> tuple[NetdemosService, RecordingNotifier, MemoryReactorClock]:
    reactor = MemoryReactorClock()
    notifier = RecordingNotifier()
    server = NetdemosService(reactor, notifier, shutdownTimeout=5, instance="web-1")
    return server, notifier, reactor


class LifecycleTests(SynchronousTestCase):
    def test_readyOnlyAfterEveryListenerStarted(self) -> None:
        """
        READY=1 is sent after the listeners start, never before.
        """
        server, notifier, _ = makeServer()
        log: list[str] = []
        for name in ("echo", "http"):
            RecordingListener(log, name).setServiceParent(server.listeners)

        original = notifier.notify

        def recordOrder(**fields: str | int) -> None:
            log.append(f"notify {sorted(fields)}")
            original(**fields)

        notifier.notify = recordOrder  # type: ignore[method-assign]
        self.assertFalse(server.ready)
        server.startService()
        self.assertTrue(server.ready)
        self.assertEqual(log[:3], ["echo started", "http started", "notify ['READY']"])
        self.assertEqual(notifier.sent[0], {"READY": 1})
        self.assertIn("STATUS", notifier.sent[1])

    def test_statusIsRefreshed(self) -> None:
        server, notifier, reactor = makeServer()
        server.factories["chat"] = FakeService()
        server.startService()
        count = len(notifier.sent)
        reactor.advance(10)
        self.assertEqual(len(notifier.sent), count + 1)
        self.assertEqual(
            notifier.sent[-1], {"STATUS": "web-1: 0 listeners; clients: chat 0"}
        )

    def test_stopDrainsThenSavesThenStopsAdmin(self) -> None:
        """
        On stop: not ready and STOPPING=1 at once; listeners stop; the
        services close; state is saved after they have; the health listener
        stops last, so it can report the drain.
        """
        server, notifier, _ = makeServer()
        log: list[str] = []
        RecordingListener(log, "echo").setServiceParent(server.listeners)
        RecordingListener(log, "metrics").setServiceParent(server.admin)
        service = FakeService()
        server.factories["echo"] = service
        RecordingListener(log, "backend").setServiceParent(server.backends)
        server.startService()
        del log[:]

        stopped = server.stopService()
        self.assertFalse(server.ready)
        self.assertIn({"STOPPING": 1}, notifier.sent)
        self.assertEqual(log, ["echo stopped"])
        self.assertNoResult(stopped)
        assert service.closing is not None
        service.closing.callback(None)
        self.assertEqual(log, ["echo stopped", "backend stopped", "metrics stopped"])
        self.successResultOf(stopped)

    def test_stopWaitsForTheBackends(self) -> None:
        """
        A backend may take a moment to stop (closing the link to Redis after
        the room said goodbye): the admin listener, and the stop, wait for
        it.
        """
        server, _, _ = makeServer()
        log: list[str] = []
        RecordingListener(log, "metrics").setServiceParent(server.admin)
        closing: Deferred[None] = Deferred()

        class Closing(Service):
            def stopService(self) -> Deferred[None]:
                return closing

        Closing().setServiceParent(server.backends)
        server.startService()
        stopped = server.stopService()
        self.assertNotIn("metrics stopped", log)
        self.assertNoResult(stopped)
        closing.callback(None)
        self.assertIn("metrics stopped", log)
        self.successResultOf(stopped)

    def test_stopAbortsWhatHangsAfterTheTimeout(self) -> None:
        """
        Clients that never go away cannot hold up the stop past the timeout:
        they are aborted, and the stop completes.
        """
        server, _, reactor = makeServer()
        service = FakeService()

        client = HangingClient()
        transport = StringTransport()
        client.makeConnection(transport)
        service.connections.add(client)
        server.factories["chat"] = service
        server.startService()
        stopped = server.stopService()
        reactor.advance(4.9)
        self.assertNoResult(stopped)
        self.assertFalse(transport.disconnected)
        reactor.advance(0.1)
        self.assertTrue(transport.disconnected)
        self.successResultOf(stopped)

    def test_readyOnceEveryListenerOfTheWholeTreeIsUp(self) -> None:
        """
        The tree L{tap.makeService} builds, started as twistd starts it
        (C{privilegedStartService}, then C{startService}), sends READY=1 once,
        in C{startService}, when every port, the metrics port included, is
        bound and every listening service has started.

        systemd starts the units that wait for netdemos as soon as READY=1
        arrives; their first connections must find every port listening.
        """
        options = tap.Options()
        options.parseOptions(
            ["--echo=7", "--http=8000", "--chat=7000", "--chat=7001"]
            + ["--web=8081", "--metrics=9100"]
        )
        reactor = MemoryReactorClock()
        service = tap.makeService(options, reactor, openFiles=plenty())

        def look() -> tuple[list[int], list[bool]]:
            ports = sorted(port for port, *_ in reactor.tcpServers)
            groups = (service.listeners, service.admin)
            return ports, [bool(child.running) for group in groups for child in group]

        witness = ReadyWitness(look)
        service.notifier = witness
        service.privilegedStartService()
        self.assertEqual(witness.seenAtReady, [])
        service.startService()
        self.assertEqual(
            witness.seenAtReady, [([7, 7000, 7001, 8000, 8081, 9100], [True] * 6)]
        )
