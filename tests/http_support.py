"""
Speak HTTP to a twisted.web site over a L{StringTransport}: no socket, no clock.
"""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from netdemos.counter import GuardedChannel, GuardedSite

PEER = IPv4Address("TCP", "127.0.0.1", 5000)


class HalfCloseableTransport(StringTransport):
    """
    A L{StringTransport} that, like TCP, can shut down its sending side alone.

    @ivar writeClosed: whether L{loseWriteConnection} was called.
    """

    writeClosed = False

    def loseWriteConnection(self) -> None:
        self.writeClosed = True


def connect(site: GuardedSite) -> tuple[GuardedChannel, HalfCloseableTransport]:
    """
    Open a new HTTP connection to C{site}; return its channel and transport.
    """
    channel = site.buildProtocol(PEER)
    assert isinstance(channel, GuardedChannel)
    transport = HalfCloseableTransport()
    channel.makeConnection(transport)
    return channel, transport


def exchange(site: GuardedSite, request: bytes) -> bytes:
    """
    Send raw bytes to a new HTTP connection and return what the server wrote.
    """
    channel, transport = connect(site)
    channel.dataReceived(request)
    response: bytes = transport.value()
    return response


def get(site: GuardedSite, path: bytes) -> bytes:
    """
    C{GET path} on a new connection; the raw response.
    """
    return exchange(site, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
