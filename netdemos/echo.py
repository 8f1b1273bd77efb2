"""
The echo service (RFC 862): every byte a client sends comes back to it.

Unlike the textbook C{dataReceived -> transport.write} echo, this one applies
backpressure, so a client that sends without reading cannot grow server memory,
and it honours half-close, so nothing sent before the client's EOF is lost.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IAddress,
    IHalfCloseableProtocol,
    IReactorTime,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from netdemos.connections import (
    DEFAULT_MAX_CONNECTIONS,
    ClockedTimeoutMixin,
    Connections,
    closeWhenSent,
)
from netdemos.figures import Figure, IReportsFigures

log = Logger()


@implementer(IHalfCloseableProtocol)
class Echo(Protocol, ClockedTimeoutMixin):
    """
    Echo one connection.

    Backpressure: the transport is registered as its own streaming producer, as
    C{twisted.protocols.portforward} does with the peer's transport.  When the
    outgoing buffer fills because the client is not reading, the transport
    pauses its producer, which is itself: it stops reading from the socket.  TCP
    flow control then pushes back on the client, and server memory stays flat.

    Half-close: after the client shuts down its sending side, everything it sent
    is already queued for writing; C{loseConnection} flushes that queue and only
    then closes.
    """

    # TCP, TLS or UNIX: each provides ITransport and IConsumer, which Twisted
    # has no single interface for.
    transport: Any

    def __init__(self, factory: EchoFactory) -> None:
        self._factory = factory
        self.clock = factory.clock

    def connectionMade(self) -> None:
        self._factory.connections.add(self)
        self.transport.registerProducer(self.transport, True)
        self.setTimeout(self._factory.idleTimeout)

    def dataReceived(self, data: bytes) -> None:
        self.resetTimeout()
        self._factory.bytesEchoed += len(data)
        self.transport.write(data)

    def readConnectionLost(self) -> None:
        self.loseConnection()

    def writeConnectionLost(self) -> None:
        # Only called after our own loseWriteConnection(), which echo never
        # calls; IHalfCloseableProtocol requires it all the same.
        pass

    def timeoutConnection(self) -> None:
        log.info("echo: closing {peer}, idle", peer=self.transport.getPeer())
        self.loseConnection()

    def loseConnection(self) -> None:
        """
        Close once everything received has been echoed.
        """
        closeWhenSent(self.transport)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.setTimeout(None)
        self._factory.connections.remove(self)


@implementer(IReportsFigures)
class EchoFactory(Factory):
    """
    Build L{Echo} protocols; keep the service's connections and byte count.

    @ivar idleTimeout: seconds without data before a client is closed, or
        L{None} to let idle clients stay.
    """

    # Not Twisted's "Starting factory" line: the banner says where it listens.
    noisy = False

    def __init__(
        self,
        clock: IReactorTime,
        maxConnections: int = DEFAULT_MAX_CONNECTIONS,
        idleTimeout: float | None = None,
    ) -> None:
        self.clock = clock
        self.connections = Connections(maxConnections)
        self.idleTimeout = idleTimeout
        self.bytesEchoed = 0

    def buildProtocol(self, addr: IAddress | None) -> Echo | None:
        # Returning None makes the listening port close the new connection.
        if self.connections.rejectIfFull():
            return None
        return Echo(self)

    def figures(self) -> Iterator[Figure]:
        yield Figure("echo_bytes", "Bytes echoed.", self.bytesEchoed)

    def close(self) -> Deferred[None]:
        """
        Close every connection once what it was sent has been echoed.
        """
        return self.connections.closeAll()
