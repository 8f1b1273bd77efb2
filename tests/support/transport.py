"""
Connect a protocol to a fake transport that knows when it is closed.
"""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.protocol import Protocol
from twisted.internet.testing import StringTransportWithDisconnection

PEER = IPv4Address("TCP", "127.0.0.1", 5000)


def connectProtocol(protocol: Protocol) -> StringTransportWithDisconnection:
    transport = StringTransportWithDisconnection(peerAddress=PEER)
    transport.protocol = protocol
    protocol.makeConnection(transport)
    return transport
