"""
Tests for L{netdemos.redis}: reading C{--redis} URLs, and the link's health
signal.  The connections themselves are tested against a real redis-server in
tests/test_e2e_redis.py.
"""

from __future__ import annotations

from support.redis import FakeRedis
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint, UNIXClientEndpoint
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from netdemos.redis import (
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
        received: list[str] = []
        self.link.subscribe("p:chat", received.append)
        self.link._commands.addConnection(StubConnection())
        self.assertEqual(self.changes, [])
        self.link._subscriber.subscribed = True
        self.link._changed()
        self.assertEqual(self.changes, ["up"])
        self.link._received("p:chat", "hello")
        self.assertEqual(received, ["hello"])
