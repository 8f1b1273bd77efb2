"""
Helpers for the chat unit tests: clients on L{StringTransport}s in one room.
"""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransportWithDisconnection

from netdemos.chat import ChatClient, ChatFactory, ChatRoom


class Room:
    """
    A chat room with a fake clock, and a way to connect fake clients to it.
    """

    def __init__(self, maxLine: int = 4096, backlog: int = 1024 * 1024) -> None:
        self.clock = Clock()
        self.room = ChatRoom(self.clock, maxLine=maxLine, backlog=backlog)
        self.factory = ChatFactory(self.room)
        self._nextPort = 40000

    def connect(self) -> tuple[ChatClient, StringTransportWithDisconnection]:
        self._nextPort += 1
        peer = IPv4Address("TCP", "127.0.0.1", self._nextPort)
        client = self.factory.buildProtocol(peer)
        assert isinstance(client, ChatClient)
        transport = StringTransportWithDisconnection(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 1025), peerAddress=peer
        )
        transport.protocol = client
        client.makeConnection(transport)
        return client, transport


def received(transport: StringTransportWithDisconnection) -> list[bytes]:
    """
    Take the lines written to C{transport} so far, CRLF removed.
    """
    data: bytes = transport.value()
    transport.clear()
    assert data.endswith(b"\r\n") or not data, data
    return data.split(b"\r\n")[:-1]
