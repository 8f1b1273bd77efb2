"""
The echo service (RFC 862): every byte a client sends comes back to it.

Unlike the textbook C{dataReceived -> transport.write} echo, this one applies
backpressure, so a client that sends without reading cannot grow server memory,
and it honours half-close, so nothing sent before the client's EOF is lost.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IAddress, IHalfCloseableProtocol
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from zope.interface import implementer

log = Logger()


@implementer(IHalfCloseableProtocol)
class Echo(Protocol):
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

    def connectionMade(self) -> None:
        self.transport.registerProducer(self.transport, True)

    def dataReceived(self, data: bytes) -> None:
        self._factory.bytesEchoed += len(data)
        self.transport.write(data)

    def readConnectionLost(self) -> None:
        self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        # The client will read nothing more; there is no point echoing.
        self.transport.loseConnection()


class EchoFactory(Factory):
    """
    Build L{Echo} protocols and keep the service-wide byte count.
    """

    def __init__(self) -> None:
        self.bytesEchoed = 0

    def buildProtocol(self, addr: IAddress | None) -> Echo:
        return Echo(self)
