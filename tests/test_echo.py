"""
Unit tests for L{netdemos.echo}: no sockets, no clock.
"""

from __future__ import annotations

from support.transport import PEER, connectProtocol
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from netdemos.echo import Echo, EchoFactory


def connectEcho() -> tuple[EchoFactory, Echo, StringTransport]:
    factory = EchoFactory(Clock())
    protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5000))
    assert isinstance(protocol, Echo)
    transport = StringTransport()
    protocol.makeConnection(transport)
    return factory, protocol, transport


class EchoTests(SynchronousTestCase):
    def test_echoesEveryByte(self) -> None:
        """
        What the client sends comes back unchanged, and the factory counts it.
        """
        factory, protocol, transport = connectEcho()
        protocol.dataReceived(b"hello\r\n")
        protocol.dataReceived(bytes(range(256)))
        self.assertEqual(transport.value(), b"hello\r\n" + bytes(range(256)))
        self.assertEqual(factory.bytesEchoed, 7 + 256)

    def test_transportIsItsOwnStreamingProducer(self) -> None:
        """
        The transport is registered as its own streaming producer, so when its
        send buffer fills it stops reading: a client that never reads cannot
        make the server buffer without limit.
        """
        _, _, transport = connectEcho()
        self.assertIs(transport.producer, transport)
        self.assertTrue(transport.streaming)

    def test_halfCloseEchoesEverythingThenCloses(self) -> None:
        """
        After the client shuts down its sending side, what it sent is still
        echoed and only then is the connection closed (C{loseConnection}
        flushes first); the connection is not dropped on the spot.
        """
        _, protocol, transport = connectEcho()
        self.assertTrue(IHalfCloseableProtocol.providedBy(protocol))
        protocol.dataReceived(b"last words")
        protocol.readConnectionLost()
        self.assertEqual(transport.value(), b"last words")
        self.assertTrue(transport.disconnecting)
        # A transport does not close while a producer is registered, if that
        # producer is paused; the echo must unregister itself first.
        self.assertIsNone(transport.producer)


class EchoLimitTests(SynchronousTestCase):
    def test_overTheLimitIsClosed(self) -> None:
        """
        Past --max-connections the echo factory builds no protocol, so the
        port closes the connection at once, and the rejection is counted.
        """
        factory = EchoFactory(Clock(), maxConnections=1)
        first = factory.buildProtocol(PEER)
        assert first is not None
        connectProtocol(first)
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
        transport = connectProtocol(protocol)
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
        connectProtocol(protocol)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_closeFlushesAndClosesEveryConnection(self) -> None:
        factory = EchoFactory(Clock())
        transports = []
        for _ in range(3):
            protocol = factory.buildProtocol(PEER)
            assert protocol is not None
            transports.append(connectProtocol(protocol))
        closed = factory.close()
        self.successResultOf(closed)
        self.assertEqual([t.connected for t in transports], [False] * 3)
