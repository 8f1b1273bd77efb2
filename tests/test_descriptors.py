"""
Tests for L{netdemos.descriptors}: fitting the connection limits to the
open-file limit, and what happens when accept(2) runs out of descriptors.
"""

from __future__ import annotations

import errno
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from support.chat import Room
from support.descriptors import FakeOpenFileLimit
from support.events import logged
from support.http import get
from twisted.internet import tcp
from twisted.internet.defer import succeed
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.internet.protocol import Factory
from twisted.internet.selectreactor import SelectReactor
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver, MemoryReactorClock
from twisted.logger import LogEvent, Logger, LogLevel, formatEvent
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from netdemos.connections import DEFAULT_MAX_CONNECTIONS, Connections
from netdemos.descriptors import (
    ADMIN_MAX_CONNECTIONS,
    FD_SETSIZE,
    AcceptFailures,
    WatchedEndpoint,
    fitToOpenFileLimit,
    overhead,
    planDescriptors,
    shareFairly,
    usableOpenFiles,
)
from netdemos.lifecycle import NetdemosService
from netdemos.metrics import makeAdminSite

DEFAULTS = {
    "echo": DEFAULT_MAX_CONNECTIONS,
    "http": DEFAULT_MAX_CONNECTIONS,
    "chat": DEFAULT_MAX_CONNECTIONS,
    "metrics": ADMIN_MAX_CONNECTIONS,
}


def netdemosMessages(events: EventLoggingObserver) -> list[str]:
    return [
        formatEvent(event)
        for event in events
        if event["log_namespace"].startswith("netdemos.")
    ]


class PlanTests(SynchronousTestCase):
    def test_softLimitGoesUpToTheHardLimit(self) -> None:
        """
        The soft limit rises to the hard one (as systemd.exec(5) advises a
        program that does not use select(2)); where that holds every limit,
        none is changed.
        """
        plan = planDescriptors(DEFAULTS, soft=1024, hard=524288, listeners=4)
        self.assertEqual(plan.openFiles, 524288)
        self.assertEqual(plan.limits, DEFAULTS)
        self.assertFalse(plan.lowered(DEFAULTS))

    def test_tightLimitIsSharedSoNoServiceCanStarveAnother(self) -> None:
        """
        Under C{ulimit -n 1024} the defaults (10,000 each) cannot fit: each
        service gets an equal share, the admin site keeps its small limit
        whole, and together they fit, headroom included.  So a crowd on one
        service meets that service's limit before the process's.
        """
        plan = planDescriptors(DEFAULTS, soft=1024, hard=1024, listeners=4)
        self.assertEqual(plan.openFiles, 1024)
        self.assertEqual(
            plan.limits, {"echo": 302, "http": 302, "chat": 302, "metrics": 16}
        )
        self.assertLessEqual(sum(plan.limits.values()) + overhead(4, 4), 1024)

    def test_aServiceWantingLessKeepsItAndOthersSplitTheRest(self) -> None:
        self.assertEqual(
            shareFairly({"echo": 100, "http": 10000, "chat": 10000}, 900),
            {"echo": 100, "http": 400, "chat": 400},
        )

    def test_onlyServicesThatAreOnShare(self) -> None:
        plan = planDescriptors({"chat": 10000}, soft=1024, hard=1024, listeners=1)
        self.assertEqual(plan.limits, {"chat": 1024 - overhead(1, 1)})

    def test_withNoHardLimitTheSoftLimitRisesToWhatIsNeeded(self) -> None:
        plan = planDescriptors(DEFAULTS, soft=256, hard=None, listeners=4)
        self.assertEqual(plan.openFiles, sum(DEFAULTS.values()) + overhead(4, 4))
        self.assertEqual(plan.limits, DEFAULTS)

    def test_noLimitIsLeftAlone(self) -> None:
        plan = planDescriptors(DEFAULTS, soft=None, hard=None, listeners=4)
        self.assertEqual((plan.openFiles, plan.limits), (None, DEFAULTS))

    def test_selectReactorKeepsBelowFdSetsize(self) -> None:
        """
        select(2) cannot watch descriptor 1024 or above: with a ceiling the
        soft limit stays at it, and the connection limits fit under it.
        """
        plan = planDescriptors(
            DEFAULTS, soft=1024, hard=524288, listeners=4, ceiling=1024
        )
        self.assertEqual(plan.openFiles, 1024)
        self.assertLessEqual(sum(plan.limits.values()) + overhead(4, 4), 1024)

    def test_onlySelectReactorsHaveACeiling(self) -> None:
        # An instance, but not initialised: that would open its waker pipe.
        selectReactor = object.__new__(SelectReactor)
        self.assertEqual(usableOpenFiles(selectReactor), FD_SETSIZE)
        self.assertIsNone(usableOpenFiles(MemoryReactorClock()))

    def test_limitWithNoRoomForConnectionsIsRefused(self) -> None:
        error = self.assertRaises(
            ValueError, planDescriptors, DEFAULTS, soft=64, hard=64, listeners=4
        )
        self.assertIn("open-file limit 64", str(error))

    @given(
        wanted=st.dictionaries(
            st.sampled_from(["echo", "http", "chat", "metrics"]),
            st.integers(1, 100_000),
            min_size=1,
        ),
        hard=st.integers(150, 400_000),
        listeners=st.integers(1, 8),
    )
    def test_sharesAlwaysFitAndAreFair(
        self, wanted: dict[str, int], hard: int, listeners: int
    ) -> None:
        """
        Whatever is asked for: the limits fit with their overhead, none
        exceeds what was asked, and all those lowered are lowered to one
        common cap, at least as high as any limit left alone.
        """
        plan = planDescriptors(wanted, soft=1024, hard=hard, listeners=listeners)
        limits = plan.limits
        self.assertLessEqual(
            sum(limits.values()) + overhead(len(wanted), listeners), hard
        )
        self.assertTrue(all(1 <= limits[name] <= wanted[name] for name in wanted))
        lowered = {limits[name] for name in wanted if limits[name] < wanted[name]}
        self.assertLessEqual(len(lowered), 1)
        if lowered:
            self.assertTrue(
                all(limits[name] <= min(lowered) for name in wanted),
            )


class FitTests(SynchronousTestCase):
    def connections(self) -> dict[str, Connections]:
        return {name: Connections(limit) for name, limit in DEFAULTS.items()}

    def test_softLimitIsRaisedAndLimitsKept(self) -> None:
        events = logged(self)
        openFiles = FakeOpenFileLimit(1024, 65536)
        connections = self.connections()
        fitToOpenFileLimit(connections, listeners=4, openFiles=openFiles)
        self.assertEqual(openFiles.calls, [(65536, 65536)])
        self.assertEqual({n: c.limit for n, c in connections.items()}, DEFAULTS)
        self.assertEqual(
            netdemosMessages(events),
            [
                "netdemos: raised the open-file limit from 1024 to 65536",
                "netdemos: open-file limit 65536; connection limits echo 10000,"
                " http 10000, chat 10000, metrics 16",
            ],
        )

    def test_tightHardLimitLowersTheLimitsAndSaysSo(self) -> None:
        """
        An operator who finds clients turned away long before
        C{--max-connections} learns why from the log.
        """
        events = logged(self)
        openFiles = FakeOpenFileLimit(1024, 1024)
        connections = self.connections()
        fitToOpenFileLimit(connections, listeners=4, openFiles=openFiles)
        self.assertEqual(openFiles.calls, [])
        self.assertEqual(connections["chat"].limit, 302)
        self.assertEqual(connections["metrics"].limit, 16)
        self.assertEqual(
            netdemosMessages(events),
            [
                "netdemos: open-file limit 1024; connection limits lowered to"
                " echo 302, http 302, chat 302, metrics 16"
            ],
        )
        self.assertEqual(events[-1]["log_level"], LogLevel.warn)

    def test_limitsLoweredToThousandsAreNoCauseForAWarning(self) -> None:
        """
        Lowered, but to thousands of connections each (as under a limit of
        20,000): said, at the info level, not as a warning that would be the
        first thing a newcomer reads.
        """
        events = logged(self)
        connections = self.connections()
        fitToOpenFileLimit(
            connections, listeners=4, openFiles=FakeOpenFileLimit(20000, 20000)
        )
        self.assertLess(connections["chat"].limit, 10000)
        [event] = [e for e in events if "limits lowered" in formatEvent(e)]
        self.assertEqual(event["log_level"], LogLevel.info)

    def test_whereRaisingIsForbiddenTheLimitsFitTheSoftLimit(self) -> None:
        events = logged(self)
        openFiles = FakeOpenFileLimit(
            1024, 65536, refusal=PermissionError(errno.EPERM, "Operation not permitted")
        )
        connections = self.connections()
        fitToOpenFileLimit(connections, listeners=4, openFiles=openFiles)
        self.assertEqual((openFiles.soft, connections["echo"].limit), (1024, 302))
        self.assertIn(
            "netdemos: cannot change the open-file limit from 1024 to 65536:",
            netdemosMessages(events)[0],
        )


class FakePort:
    """
    The part of a listening port that L{AcceptFailures} uses.
    """

    def __init__(self) -> None:
        self.connected = True
        self.disconnecting = False
        self.reading = True

    def stopReading(self) -> None:
        self.reading = False

    def startReading(self) -> None:
        self.reading = True


CLOSED = "EMFILE recovery: Closed socket from {address}"
COULD_NOT_ACCEPT = "Could not accept new connection ({acceptError})"


class AcceptFailuresTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.port = FakePort()
        self.connections = Connections()
        self.forwarded: list[LogEvent] = []
        watcher = AcceptFailures(
            self.port, "chat", self.connections, self.clock, self.forwarded.append
        )
        self.portLog = Logger(namespace="twisted.internet.tcp.Port", observer=watcher)
        self.events = logged(self)

    def emfileRecovery(self, clients: int) -> None:
        """
        Log what C{tcp.Port} logs as it turns away C{clients} for EMFILE.
        """
        self.portLog.info("EMFILE encountered; releasing reserved file descriptor.")
        for number in range(clients):
            self.portLog.info(CLOSED, address=("127.0.0.1", 40000 + number))
        self.portLog.info("Re-reserving EMFILE recovery file descriptor.")

    def test_turnedAwayClientsAreCountedAndLoggedOnceASecond(self) -> None:
        """
        Twisted logs three lines and more for every client it turns away for
        EMFILE; under a flood that is a flood of lines.  Instead: one line
        at once, then at most one a second saying how many, and nothing once
        it stops.
        """
        self.emfileRecovery(1)
        self.emfileRecovery(99)
        self.assertEqual(
            netdemosMessages(self.events),
            [
                "netdemos: chat cannot accept connections: out of file"
                " descriptors (EMFILE); 1 turned away"
            ],
        )
        self.clock.advance(0.5)
        self.emfileRecovery(100)
        self.clock.advance(0.5)
        self.assertEqual(len(self.events), 2)
        self.assertEqual(self.events[1]["count"], 199)
        self.clock.advance(1)
        self.clock.advance(10)
        self.assertEqual(len(self.events), 2)
        self.assertEqual(self.connections.rejected["fd"], 200)
        self.assertEqual(self.forwarded, [])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertTrue(self.port.reading)

    def test_failureThatWouldSpinPausesAcceptingForASecond(self) -> None:
        """
        When accept(2) fails and Twisted leaves the client waiting (ENFILE,
        or EMFILE with its spare descriptor gone), the port is readable again
        at once: it stops reading for a second instead of spinning.
        """
        self.portLog.info(COULD_NOT_ACCEPT, acceptError="ENFILE")
        self.assertFalse(self.port.reading)
        self.clock.advance(0.99)
        self.assertFalse(self.port.reading)
        self.clock.advance(0.01)
        self.assertTrue(self.port.reading)
        self.assertEqual(self.connections.rejected["fd"], 1)
        self.assertEqual(self.events[0]["error"], "ENFILE")

    def test_portStoppedWhilePausedIsNotRestarted(self) -> None:
        self.portLog.info(COULD_NOT_ACCEPT, acceptError="EMFILE")
        self.port.disconnecting = True
        self.clock.advance(1)
        self.assertFalse(self.port.reading)

    def test_clientAbortsAndOtherEventsPassThrough(self) -> None:
        """
        ECONNABORTED is the client's doing, not a lack of descriptors.
        """
        self.portLog.info(COULD_NOT_ACCEPT, acceptError="ECONNABORTED")
        self.portLog.info("something new")
        self.assertEqual(len(self.forwarded), 2)
        self.assertEqual(self.connections.rejected["fd"], 0)
        self.assertTrue(self.port.reading)


class ListeningSocket:
    """
    Stands in for a port's listening socket: each accept() raises or returns
    the next of C{results}, then EAGAIN.
    """

    def __init__(self, *results: Any) -> None:
        self.results = list(results)

    def accept(self) -> Any:
        result = self.results.pop(0) if self.results else OSError(errno.EAGAIN, "")
        if isinstance(result, Exception):
            raise result
        return result


class AcceptedSocket:
    closed = False

    def close(self) -> None:
        self.closed = True


class SpareDescriptor:
    """
    Twisted's spare descriptor for EMFILE, without the descriptor.
    """

    def available(self) -> bool:
        return True

    def __enter__(self) -> None:
        pass

    def __exit__(self, *exception: object) -> None:
        pass


class InstalledTwistedTests(SynchronousTestCase):
    """
    L{WatchedEndpoint} relies on how C{tcp.Port} logs its accept failures;
    these drive the installed Twisted's own C{Port.doRead} to check it.
    """

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.chat = Room().factory
        self.connections = self.chat.connections
        self.port = tcp.Port(0, Factory(), reactor=self.reactor)
        endpoint = WatchedEndpoint(
            StaticEndpoint(self.port), "chat", self.connections, self.reactor
        )
        self.successResultOf(endpoint.listen(Factory()))
        self.port.connected = True
        self.port.numberAccepts = 100
        self.port.startReading()
        self.events = logged(self)

    def test_enfilePausesThePortAndIsCountedInTheMetrics(self) -> None:
        """
        Without the watch, this port would log a line and be called again at
        once, for as long as the system is out of files.  With it, the
        refusal shows in C{/metrics} as C{reason="fd"}.
        """
        self.port.socket = ListeningSocket(OSError(errno.ENFILE, ""))
        self.port.doRead()
        self.assertNotIn(self.port, self.reactor.getReaders())
        self.reactor.advance(1)
        self.assertIn(self.port, self.reactor.getReaders())
        self.assertEqual(self.connections.rejected["fd"], 1)
        self.assertEqual(len(self.events), 1)

        server = NetdemosService(self.reactor)
        server.factories["chat"] = self.chat
        admin = makeAdminSite(server)
        self.assertIn(
            b'netdemos_connections_rejected_total{reason="fd",service="chat"} 1.0',
            get(admin, b"/metrics"),
        )

    def test_emfileRecoveryIsCountedAndQuiet(self) -> None:
        self.patch(tcp, "_reservedFD", SpareDescriptor())
        client = AcceptedSocket()
        self.port.socket = ListeningSocket(
            OSError(errno.EMFILE, ""), (client, ("127.0.0.1", 40000))
        )
        self.port.doRead()
        self.assertTrue(client.closed)
        self.assertEqual(self.connections.rejected["fd"], 1)
        self.assertEqual(
            [event["log_namespace"] for event in self.events],
            ["netdemos.descriptors"],
        )
        self.assertIn(self.port, self.reactor.getReaders())


@implementer(IStreamServerEndpoint)
class StaticEndpoint:
    """
    A server endpoint whose C{listen} gives the one port it was made with.
    """

    def __init__(self, port: Any) -> None:
        self.port = port

    def listen(self, factory: object) -> Any:
        return succeed(self.port)


class AdminSiteLimitTests(SynchronousTestCase):
    def test_adminSiteAnswers503PastItsOwnSmallLimit(self) -> None:
        """
        The admin site's connections come out of a reserve of their own; a
        crowd of probes beyond it is turned away like an HTTP crowd.
        """
        admin = makeAdminSite(NetdemosService(Clock()))
        self.assertEqual(admin.connections.limit, ADMIN_MAX_CONNECTIONS)
        admin.connections.limit = 0
        self.assertTrue(get(admin, b"/livez").startswith(b"HTTP/1.1 503 "))
        self.assertEqual(admin.connections.rejected["limit"], 1)
