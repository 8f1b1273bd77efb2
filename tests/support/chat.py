"""
Helpers for the chat unit tests: clients on string transports in one room.
"""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransportWithDisconnection

from netdemos.chat.hub import IHub
from netdemos.chat.member import DEFAULT_BURST, DEFAULT_RATE, MemberSettings
from netdemos.chat.room import DEFAULT_MEMORY, ChatRoom
from netdemos.chat.tcp import ChatClient, ChatFactory


class RoomTransport(StringTransportWithDisconnection):
    """
    A string transport that counts writes, and whose L{value} first ends the
    current turn of the (fake) reactor, as a real client would only read after
    it: the room sends what was said during a turn at the end of that turn.
    Its close may be made to linger, as a real one does while data is unsent.
    """

    def __init__(self, clock: Clock, peer: IPv4Address, lingers: bool = False) -> None:
        super().__init__(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 1025), peerAddress=peer
        )
        self.clock = clock
        self.writes = 0
        self.lingers = lingers

    def write(self, data: bytes) -> None:
        self.writes += 1
        super().write(data)

    def value(self) -> bytes:
        self.clock.advance(0)
        data: bytes = super().value()
        return data

    def loseConnection(self) -> None:
        if self.lingers:
            # Closing but not closed, as a real transport is while it still
            # has data to send: connectionLost comes with finishClosing().
            self.disconnecting = True
        else:
            super().loseConnection()

    def finishClosing(self) -> None:
        """
        Complete a lingering close: the protocol's C{connectionLost} runs now.
        """
        self.lingers = False
        self.loseConnection()


class Room:
    """
    A chat room with a fake clock, and a way to connect fake clients to it.
    """

    def __init__(
        self,
        maxLine: int = 4096,
        backlog: int = 1024 * 1024,
        rate: float = DEFAULT_RATE,
        burst: int = DEFAULT_BURST,
        memory: int = DEFAULT_MEMORY,
        clock: Clock | None = None,
        hub: IHub | None = None,
        instance: str = "chat-1",
        firstPort: int = 40001,
        backpressure: bool = False,
    ) -> None:
        self.clock = Clock() if clock is None else clock
        self.room = ChatRoom(
            self.clock, memory=memory, hub=hub, backpressure=backpressure
        )
        self.settings = MemberSettings(
            self.room,
            self.clock,
            maxLine=maxLine,
            backlog=backlog,
            rate=rate,
            burst=burst,
            instance=instance,
        )
        self.factory = ChatFactory(self.settings)
        self._nextPort = firstPort - 1

    def connect(self, lingers: bool = False) -> tuple[ChatClient, RoomTransport]:
        """
        Connect a new client.

        @param lingers: if true, a close the server asks for does not complete
            (and C{connectionLost} does not run) until the test calls the
            transport's C{finishClosing}.
        """
        self._nextPort += 1
        peer = IPv4Address("TCP", "127.0.0.1", self._nextPort)
        client = self.factory.buildProtocol(peer)
        assert isinstance(client, ChatClient)
        transport = RoomTransport(self.clock, peer, lingers)
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
