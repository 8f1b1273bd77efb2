"""
Tests for L{netdemos.proxy}: services behind a balancer that speaks the PROXY
protocol see each client's own address, and a connection without a valid
header is closed and counted.
"""

from __future__ import annotations

import socket
import struct

from support.chat import Room
from support.proxy import FORGED_V1_HEADERS
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import (
    MemoryReactorClock,
    StringTransportWithDisconnection,
)
from twisted.trial.unittest import SynchronousTestCase

from netdemos import listening, tap
from netdemos.counter import CounterSite
from netdemos.descriptors import WatchedEndpoint
from netdemos.proxy import HEADER_TIMEOUT, HeaderFirstFactory, ProxiedEndpoint

BALANCER = IPv4Address("TCP", "127.0.0.1", 6000)
V1_HEADER = b"PROXY TCP4 127.0.0.5 127.0.0.1 5555 1025\r\n"


def v2Header(source: str, sourcePort: int) -> bytes:
    """
    A PROXY protocol version 2 header for a TCP over IPv4 connection.
    """
    addresses = socket.inet_aton(source) + socket.inet_aton("127.0.0.1")
    body = addresses + struct.pack("!HH", sourcePort, 8080)
    return b"\r\n\r\n\x00\r\nQUIT\n" + b"\x21\x11" + struct.pack("!H", len(body)) + body


def connectThroughBalancer(
    factory: HeaderFirstFactory,
) -> StringTransportWithDisconnection:
    protocol = factory.buildProtocol(BALANCER)
    assert protocol is not None
    transport = StringTransportWithDisconnection(peerAddress=BALANCER)
    transport.protocol = protocol
    protocol.makeConnection(transport)
    return transport


class ProxyTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.chat = Room()
        self.clock = self.chat.clock
        self.factory = HeaderFirstFactory(self.chat.factory, self.clock)

    def test_chatNamesTheClientByItsOwnAddress(self) -> None:
        """
        The room names a newcomer by the address in the header, not the
        balancer's: it is not even welcomed before the header has come.
        """
        transport = connectThroughBalancer(self.factory)
        self.clock.advance(0)
        self.assertEqual(transport.value(), b"")
        self.assertEqual(self.chat.room.names(), [])
        transport.protocol.dataReceived(V1_HEADER + b"hello\n")
        self.clock.advance(0)
        self.assertEqual(transport.value().split(b"\r\n")[1], b"<127.0.0.5:5555> hello")
        self.assertTrue(
            transport.value().startswith(b"* welcome, you are 127.0.0.5:5555 (")
        )

    def test_aConnectionCountsTowardTheLimitFromAccept(self) -> None:
        """
        A connection still waiting for its header holds a descriptor, so it
        counts toward the service's limit: past it, a newcomer is told the
        server is full at once, header or not.  Once served it is counted
        once; refused, it frees its place.
        """
        connections = self.chat.factory.connections
        connections.limit = 2
        waiting = connectThroughBalancer(self.factory)
        served = connectThroughBalancer(self.factory)
        served.protocol.dataReceived(V1_HEADER)
        self.clock.advance(0)
        self.assertEqual((len(connections), connections.total), (2, 1))

        turnedAway = connectThroughBalancer(self.factory)
        self.assertEqual(turnedAway.value(), b"! server full, try again later\r\n")
        self.assertFalse(turnedAway.connected)
        self.assertEqual(connections.rejected["limit"], 1)

        waiting.protocol.dataReceived(b"not a header\r\n")
        self.assertEqual(len(connections), 1)
        welcomed = connectThroughBalancer(self.factory)
        welcomed.protocol.dataReceived(V1_HEADER.replace(b"5555", b"6666"))
        self.clock.advance(0)
        self.assertIn(b"* welcome, you are 127.0.0.5:6666 (", welcomed.value())

    def test_anInvalidHeaderIsClosedAndCounted(self) -> None:
        transport = connectThroughBalancer(self.factory)
        transport.protocol.dataReceived(b"GET / HTTP/1.1\r\n\r\n")
        self.assertFalse(transport.connected)
        self.assertEqual(self.chat.factory.connections.rejected["proxy"], 1)
        self.assertEqual(self.chat.room.names(), [])

    def test_noHeaderInTimeIsClosedAndCounted(self) -> None:
        transport = connectThroughBalancer(self.factory)
        self.clock.advance(HEADER_TIMEOUT)
        self.assertFalse(transport.connected)
        self.assertEqual(self.chat.factory.connections.rejected["proxy"], 1)

    def test_aHalfCloseReachesTheService(self) -> None:
        """
        A client that shuts down its sending side after its lines (C{nc -N})
        is answered before the service closes, as without a balancer.
        """
        transport = connectThroughBalancer(self.factory)
        transport.protocol.dataReceived(V1_HEADER + b"/who\n")
        transport.protocol.readConnectionLost()  # type: ignore[attr-defined]
        self.clock.advance(0)
        self.assertIn(b"* in the room (1): 127.0.0.5:5555\r\n", transport.value())
        self.assertFalse(transport.connected)

    def test_httpSeesTheClientsAddressFromAVersion2Header(self) -> None:
        site = CounterSite(reactor=Clock())
        transport = connectThroughBalancer(HeaderFirstFactory(site, Clock()))
        channel = transport.protocol.wrappedProtocol  # type: ignore[attr-defined]
        transport.protocol.dataReceived(
            v2Header("127.0.0.9", 4321)
            + b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        self.assertTrue(transport.value().endswith(b"I am request #1\n"))
        self.assertEqual(channel.getPeer(), IPv4Address("TCP", "127.0.0.9", 4321))


class StrictHeaderTests(SynchronousTestCase):
    """
    What the PROXY protocol's spec allows in a v1 header, and nothing else.
    """

    def setUp(self) -> None:
        self.chat = Room()
        self.factory = HeaderFirstFactory(self.chat.factory, self.chat.clock)

    def test_forgedAddressesAreRefusedAndCounted(self) -> None:
        for header in FORGED_V1_HEADERS:
            transport = connectThroughBalancer(self.factory)
            transport.protocol.dataReceived(header + b"hi\n")
            self.assertFalse(transport.connected, header)
        rejected = self.chat.factory.connections.rejected["proxy"]
        self.assertEqual(rejected, len(FORGED_V1_HEADERS))
        self.assertEqual(self.chat.room.names(), [])
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_aHeaderLongerThanTheSpecAllowsIsRefusedBeforeItsEnd(self) -> None:
        transport = connectThroughBalancer(self.factory)
        transport.protocol.dataReceived(b"PROXY TCP6 " + b"f" * 100)
        self.assertFalse(transport.connected)

    def test_unknownIsServedWithTheBalancersAddress(self) -> None:
        """
        C{PROXY UNKNOWN}, with nothing after it (HAProxy for a UNIX socket
        or a health check) or with anything, is served as the balancer.
        """
        for header in (b"PROXY UNKNOWN\r\n", b"PROXY UNKNOWN ::1 ::1 1 2\r\n"):
            chat = Room()
            transport = connectThroughBalancer(
                HeaderFirstFactory(chat.factory, chat.clock)
            )
            transport.protocol.dataReceived(header + b"/who\n")
            chat.clock.advance(0)
            self.assertIn(b"* in the room (1): 127.0.0.1:6000\r\n", transport.value())
            self.assertTrue(transport.connected)

    def test_validHeadersOfBothFamilies(self) -> None:
        for header, name in [
            (b"PROXY TCP4 192.0.2.7 127.0.0.1 0 1025\r\n", b"192.0.2.7:0"),
            (b"PROXY TCP6 2001:db8::7 ::1 65535 1025\r\n", b"[2001:db8::7]:65535"),
        ]:
            transport = connectThroughBalancer(self.factory)
            transport.protocol.dataReceived(header)
            self.chat.clock.advance(0)
            self.assertIn(b"* welcome, you are " + name + b" (", transport.value())


class ProxiedListenerTests(SynchronousTestCase):
    def test_haproxyPrefixWrapsEveryServiceWithBacklogAndWatch(self) -> None:
        """
        haproxy:ENDPOINT works for every service: the listener gets the
        PROXY wrapper, the listen-backlog default, and the accept watch.
        """
        reactor = MemoryReactorClock()
        options = tap.Options()
        options.parseOptions(
            [
                "--echo=haproxy:tcp:7",
                "--http=haproxy:tcp:8",
                "--chat=haproxy:tcp:9",
                "--web=haproxy:tcp:10",
            ]
        )
        service = tap.makeService(options, reactor)
        for child in service.listeners:
            self.assertIsInstance(child.endpoint, WatchedEndpoint)
            self.assertIsInstance(child.endpoint._endpoint._endpoint, ProxiedEndpoint)
        service.privilegedStartService()
        service.startService()
        self.addCleanup(service.stopService)
        listened = {
            port: (type(factory.wrappedFactory).__name__, backlog)  # type: ignore[attr-defined]
            for port, factory, backlog, _ in reactor.tcpServers
        }
        self.assertEqual(
            listened,
            {
                7: ("EchoFactory", listening.DEFAULT_LISTEN_BACKLOG),
                8: ("CounterSite", listening.DEFAULT_LISTEN_BACKLOG),
                9: ("ChatFactory", listening.DEFAULT_LISTEN_BACKLOG),
                10: ("WebSite", listening.DEFAULT_LISTEN_BACKLOG),
            },
        )
