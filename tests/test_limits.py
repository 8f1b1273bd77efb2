"""
Tests for L{netdemos.limits} and the limits and timeouts of each service.
"""

from __future__ import annotations

from support.chat import Room, received
from support.http import PEER
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransportWithDisconnection
from twisted.trial.unittest import SynchronousTestCase

from netdemos.chat.tcp import RoomFull
from netdemos.counter import CounterSite
from netdemos.echo import Echo, EchoFactory
from netdemos.limits import Connections


def connect(protocol: Protocol) -> StringTransportWithDisconnection:
    transport = StringTransportWithDisconnection(peerAddress=PEER)
    transport.protocol = protocol
    protocol.makeConnection(transport)
    return transport


class Closeable(Protocol):
    def loseConnection(self) -> None:
        assert self.transport is not None
        self.transport.loseConnection()


class ConnectionsTests(SynchronousTestCase):
    def test_fullOnlyAtTheLimitAndRejectionsCounted(self) -> None:
        connections = Connections(limit=2)
        first, second = Closeable(), Closeable()
        self.assertFalse(connections.rejectIfFull())
        connections.add(first)
        connections.add(second)
        self.assertTrue(connections.rejectIfFull())
        self.assertTrue(connections.rejectIfFull())
        self.assertEqual(connections.rejected["limit"], 2)
        connections.remove(first)
        self.assertFalse(connections.rejectIfFull())
        self.assertEqual((len(connections), connections.total), (1, 2))

    def test_whenEmptyFiresWhenTheLastOneGoes(self) -> None:
        connections = Connections()
        self.assertIsNone(self.successResultOf(connections.whenEmpty()))
        protocol = Closeable()
        connections.add(protocol)
        d = connections.whenEmpty()
        self.assertNoResult(d)
        connections.remove(protocol)
        self.successResultOf(d)


class EchoLimitTests(SynchronousTestCase):
    def test_overTheLimitIsClosed(self) -> None:
        """
        Past --max-connections the echo factory builds no protocol, so the
        port closes the connection at once, and the rejection is counted.
        """
        factory = EchoFactory(Clock(), maxConnections=1)
        first = factory.buildProtocol(PEER)
        assert first is not None
        connect(first)
        self.assertIsNone(factory.buildProtocol(PEER))
        self.assertEqual(factory.connections.rejected["limit"], 1)
        first.transport.loseConnection()
        self.assertIsInstance(factory.buildProtocol(PEER), Echo)

    def test_idleClientIsClosed(self) -> None:
        """
        With --idle-timeout, a client silent that long is closed; data resets
        the timer.
        """
        clock = Clock()
        factory = EchoFactory(clock, idleTimeout=10)
        protocol = factory.buildProtocol(PEER)
        assert protocol is not None
        transport = connect(protocol)
        clock.advance(9)
        protocol.dataReceived(b"x")
        clock.advance(9)
        self.assertTrue(transport.connected)
        clock.advance(1)
        self.assertFalse(transport.connected)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_noIdleTimeoutByDefault(self) -> None:
        clock = Clock()
        protocol = EchoFactory(clock).buildProtocol(PEER)
        assert protocol is not None
        connect(protocol)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_closeFlushesAndClosesEveryConnection(self) -> None:
        factory = EchoFactory(Clock())
        transports = []
        for _ in range(3):
            protocol = factory.buildProtocol(PEER)
            assert protocol is not None
            transports.append(connect(protocol))
        closed = factory.close()
        self.successResultOf(closed)
        self.assertEqual([t.connected for t in transports], [False] * 3)


class ChatLimitTests(SynchronousTestCase):
    def test_fullRoomSaysSoAndHangsUp(self) -> None:
        room = Room()
        room.factory.connections.limit = 1
        room.connect()
        protocol = room.factory.buildProtocol(PEER)
        self.assertIsInstance(protocol, RoomFull)
        transport = connect(protocol)
        self.assertEqual(transport.value(), b"! server full, try again later\r\n")
        self.assertFalse(transport.connected)
        self.assertEqual(room.factory.connections.rejected["limit"], 1)
        self.assertEqual(len(room.room), 1)

    def test_idleClientIsToldThenClosed(self) -> None:
        room = Room()
        room.factory.idleTimeout = 30
        idler, idlerT = room.connect()
        other, otherT = room.connect()
        room.clock.advance(20)
        other.dataReceived(b"still here\n")
        received(idlerT), received(otherT)
        room.clock.advance(10)
        self.assertEqual(received(idlerT), [b"! idle for 30 seconds; disconnecting"])
        self.assertFalse(idlerT.connected)
        self.assertEqual(received(otherT), [b"* 127.0.0.1:40001 left (idle)"])
        self.assertEqual(room.room.clientsDropped["idle"], 1)

    def test_shutdownTellsEveryoneAndCloses(self) -> None:
        room = Room()
        transports = [room.connect()[1] for _ in range(3)]
        for transport in transports:
            received(transport)
        self.successResultOf(room.factory.close())
        for transport in transports:
            self.assertEqual(received(transport), [b"* server shutting down"])
            self.assertFalse(transport.connected)


class HTTPLimitTests(SynchronousTestCase):
    def test_overTheLimitGets503(self) -> None:
        site = CounterSite(reactor=Clock(), maxConnections=1)
        first = site.buildProtocol(PEER)
        assert first is not None
        connect(first)
        extra = site.buildProtocol(PEER)
        assert extra is not None
        transport = connect(extra)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 503 "))
        self.assertIn(b"\r\nConnection: close\r\n", transport.value())
        self.assertFalse(transport.connected)
        self.assertEqual(site.connections.rejected["limit"], 1)
        self.assertEqual(len(site.connections), 1)

    def test_idleConnectionClosedAfterAMinute(self) -> None:
        """
        An HTTP connection that sends nothing is closed after 60 s, not
        twisted.web's default 12 hours: that blunts slowloris.
        """
        clock = Clock()
        site = CounterSite(reactor=clock)
        channel = site.buildProtocol(PEER)
        assert channel is not None
        transport = connect(channel)
        transport.abortConnection = transport.loseConnection  # type: ignore[method-assign]
        clock.advance(59)
        self.assertTrue(transport.connected)
        clock.advance(1)
        self.assertFalse(transport.connected)
