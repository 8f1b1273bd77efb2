"""
Speak HTTP to a twisted.web site over a L{StringTransport}: no socket, no clock.
"""

from __future__ import annotations

from twisted.internet.interfaces import IProtocol
from twisted.internet.testing import StringTransport
from twisted.web.server import Site

from netdemos.httpguard import GuardedChannel
from support.transport import PEER


class HalfCloseableTransport(StringTransport):
    """
    A L{StringTransport} that, like TCP, can shut down its sending side alone.

    @ivar writeClosed: whether L{loseWriteConnection} was called.
    """

    writeClosed = False

    def loseWriteConnection(self) -> None:
        self.writeClosed = True


def connect(site: Site) -> tuple[IProtocol, HalfCloseableTransport]:
    """
    Open a new HTTP connection to C{site}; return its protocol (a channel, or
    the 503 of a full server) and transport.
    """
    channel = site.buildProtocol(PEER)
    assert channel is not None
    transport = HalfCloseableTransport()
    channel.makeConnection(transport)
    return channel, transport


def connectChannel(site: Site) -> tuple[GuardedChannel, HalfCloseableTransport]:
    """
    L{connect} to a site that has room: return its L{GuardedChannel}.
    """
    channel, transport = connect(site)
    assert isinstance(channel, GuardedChannel)
    return channel, transport


def exchange(site: Site, request: bytes) -> bytes:
    """
    Send raw bytes to a new HTTP connection and return what the server wrote.
    """
    channel, transport = connect(site)
    channel.dataReceived(request)
    response: bytes = transport.value()
    return response


def get(site: Site, path: bytes) -> bytes:
    """
    C{GET path} on a new connection; the raw response.
    """
    return exchange(site, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
