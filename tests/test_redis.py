"""
Tests for L{netdemos.redis}: reading C{--redis} URLs, and the link's health
signal.  The connections themselves are tested against a real redis-server in
tests/test_e2e_redis.py.
"""

from __future__ import annotations

import txredisapi
from support.redis import FakeRedis
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint, UNIXClientEndpoint
from twisted.internet.task import Clock
from twisted.internet.testing import (
    EventLoggingObserver,
    MemoryReactorClock,
    StringTransport,
)
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from netdemos.redis import (
    BAD_MESSAGE_LOG_INTERVAL,
    IRedisLink,
    RedisAddress,
    RedisLink,
    RedisUnavailableError,
    RedisURLError,
    parseRedisURL,
    redacted,
)


class URLTests(SynchronousTestCase):
    def test_redisURLs(self) -> None:
        self.assertEqual(parseRedisURL("redis://localhost"), RedisAddress("localhost"))
        self.assertEqual(
            parseRedisURL("redis://:p%40ss@10.0.0.1:6380/3"),
            RedisAddress("10.0.0.1", 6380, db=3, password="p@ss"),
        )
        self.assertEqual(
            parseRedisURL("redis://app:pw@[::1]:7000"),
            RedisAddress("::1", 7000, username="app", password="pw"),
        )

    def test_unixURLs(self) -> None:
        self.assertEqual(
            parseRedisURL("unix:///run/redis/redis.sock"),
            RedisAddress(path="/run/redis/redis.sock"),
        )
        self.assertEqual(
            parseRedisURL("unix:///tmp/r.sock?db=5"),
            RedisAddress(path="/tmp/r.sock", db=5),
        )

    def test_badURLsSayWhy(self) -> None:
        for url in ("localhost:6379", "redis://h:0x10", "redis://h/1/2", "unix://h/p"):
            self.assertRaises(RedisURLError, parseRedisURL, url)

    def test_theLogNeverShowsThePassword(self) -> None:
        address = parseRedisURL("redis://:s3cret@h:1/2")
        self.assertNotIn("s3cret", str(address))
        self.assertNotIn("s3cret", repr(address))
        self.assertEqual(str(address), "redis://h:1/2")
        self.assertEqual(redacted("redis://u:s3cret@h"), "redis://u:***@h")

    def test_endpoints(self) -> None:
        reactor = MemoryReactorClock()
        self.assertIsInstance(RedisAddress("h").endpoint(reactor), HostnameEndpoint)
        self.assertIsInstance(
            RedisAddress(path="/s").endpoint(reactor), UNIXClientEndpoint
        )


class StubConnection:
    """
    What txredisapi's factory asks of a connection it adds to its pool.
    """

    connected = 1

    def __init__(self) -> None:
        self.lost: Deferred[StubConnection] = Deferred()

    def whenDisconnected(self) -> Deferred[StubConnection]:
        return self.lost


class LinkTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.link = RedisLink(RedisAddress("h"), MemoryReactorClock(), "p")
        self.changes: list[str] = []
        self.link.watch(
            lambda: self.changes.append("up"), lambda: self.changes.append("down")
        )

    def test_linksProvideTheInterface(self) -> None:
        verifyObject(IRedisLink, self.link)
        verifyObject(IRedisLink, FakeRedis(Clock()).link())

    def test_commandsFailAtOnceWhileDown(self) -> None:
        """
        A command is not queued until Redis comes back: its caller must answer
        its own client now.
        """
        self.failureResultOf(self.link.incrby("k", 1), RedisUnavailableError)

    def test_upAndDownOncePerChange(self) -> None:
        connection = StubConnection()
        self.link._commands.addConnection(connection)
        self.assertTrue(self.link.up)
        connection.lost.callback(connection)
        self.assertFalse(self.link.up)
        self.assertEqual(self.changes, ["up", "down"])

    def test_withChannelsUpOnlyOnceSubscribed(self) -> None:
        """
        A message published after the link says it is up must not be missed:
        with channels, it is up once Redis has confirmed the subscription.
        """
        received: list[object] = []
        self.link.subscribe("p:chat", received.append)
        self.link._commands.addConnection(StubConnection())
        self.assertEqual(self.changes, [])
        self.link._subscriber.subscribed = True
        self.link._changed()
        self.assertEqual(self.changes, ["up"])
        self.link._received("p:chat", "hello")
        self.assertEqual(received, ["hello"])


class AnsweringConnection(StubConnection):
    """
    A connection whose C{incrby} gets the answer a test sets.
    """

    def __init__(self) -> None:
        super().__init__()
        self.answer: Deferred[int] = Deferred()

    def incrby(self, key: str, amount: int) -> Deferred[int]:
        answer, self.answer = self.answer, Deferred()
        return answer


class FaultAccountingTests(SynchronousTestCase):
    """
    Error replies and unusable messages: counted for /metrics, logged once
    per run or once a second, never raised into txredisapi.
    """

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.link = RedisLink(RedisAddress("h"), self.reactor, "p")
        self.connection = AnsweringConnection()
        self.link._commands.addConnection(self.connection)
        self.events = EventLoggingObserver.createWithCleanup(
            self,  # type: ignore[arg-type]
            globalLogPublisher,
        )

    def warnings(self) -> list[str]:
        return [
            formatEvent(event)
            for event in self.events
            if event["log_level"] == LogLevel.warn
        ]

    def test_aRunOfErrorRepliesIsCountedAndLoggedOnce(self) -> None:
        for _ in range(3):
            answer = self.connection.answer
            taking = self.link.incrby("k", 1)
            answer.errback(txredisapi.ResponseError("OOM command not allowed"))
            self.failureResultOf(taking, txredisapi.ResponseError)
        self.assertTrue(self.link.failing)
        self.assertEqual(self.link.errors, {"incrby": 3})
        [warning] = self.warnings()
        self.assertIn("INCRBY with an error: OOM command not allowed", warning)
        answer = self.connection.answer
        taking = self.link.incrby("k", 1)
        answer.callback(7)
        self.assertEqual(self.successResultOf(taking), 7)
        self.assertFalse(self.link.failing)

    def test_noAnswerIsNotAnErrorReply(self) -> None:
        answer = self.connection.answer
        taking = self.link.incrby("k", 1)
        answer.errback(TimeoutError())
        self.failureResultOf(taking, TimeoutError)
        self.assertFalse(self.link.failing)
        self.assertEqual(self.link.errors, {})

    def test_badMessagesAreCountedAndLoggedAtMostOnceASecond(self) -> None:
        for _ in range(50):
            self.link.badMessage("p:room", "not JSON")
        self.assertEqual(self.link.badMessages, 50)
        self.assertEqual(len(self.warnings()), 1)
        self.reactor.advance(BAD_MESSAGE_LOG_INTERVAL)
        self.assertEqual(len(self.warnings()), 2)
        self.assertIn("dropped 49 message(s) on p:room", self.warnings()[1])
        self.reactor.advance(BAD_MESSAGE_LOG_INTERVAL)
        self.assertEqual(len(self.warnings()), 2)

    def test_aReceiverThatRaisesDoesNotReachTxredisapi(self) -> None:
        """
        An exception raised into txredisapi's reply parser would garble the
        replies after it: the link catches, logs and counts it.
        """
        received: list[object] = []

        def receive(message: object) -> None:
            received.append(message)
            raise ValueError("a bug")

        self.link.subscribe("p:room", receive)
        self.link._received("p:room", "one")
        self.link._received("p:room", "two")
        self.assertEqual(received, ["one", "two"])
        self.assertEqual(self.link.badMessages, 2)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 2)


class ReconnectingTests(SynchronousTestCase):
    """
    txredisapi stops reconnecting for good when a new connection's SELECT
    (or AUTH) fails; netdemos keeps trying while its link runs.  These drive
    the installed txredisapi's own C{connectionMade}.
    """

    def selectFails(self, running: bool) -> bool:
        """
        Connect a command connection whose SELECT Redis refuses; return
        whether its factory stopped reconnecting.
        """
        link = RedisLink(RedisAddress("h", db=3), MemoryReactorClock(), "p")
        link.running = running
        factory = link._commands
        protocol = factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        self.assertIn(b"SELECT", transport.value())
        protocol.dataReceived(b"-ERR Not received Redis response in 1.0 seconds\r\n")
        return bool(factory.stopped)

    def test_aFailedSelectDoesNotStopReconnecting(self) -> None:
        self.assertFalse(self.selectFails(running=True))

    def test_aStoppedLinkStopsReconnecting(self) -> None:
        self.assertTrue(self.selectFails(running=False))
