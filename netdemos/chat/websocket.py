"""
The chat room over WebSocket: one L{ChatSocket} per connection to C{/chat},
a member of the same room as the TCP clients.

One text message from the peer is one line, or several if it holds line feeds;
each line the room sends arrives as one text message, without CR LF.  The
commands, limits and protections are the TCP chat's: they are
L{netdemos.chat.member.RoomMember}'s, and this class only encodes for the wire.
"""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure
from twisted.web.server import Request
from wsproto.utilities import LocalProtocolError

from netdemos.chat.member import MemberSettings, RoomMember
from netdemos.limits import Connections
from netdemos.websocket import (
    GOING_AWAY,
    NORMAL_CLOSURE,
    UNSUPPORTED_DATA,
    WebSocketConnection,
)


class ChatSocket(WebSocketConnection, RoomMember):
    """
    One member of the room, over a WebSocket.

    A message may be no longer than the longest line (C{maxLine}): a longer
    one closes the connection with 1009, as the protocol asks, where a TCP
    client would only have its line discarded, because Twisted hands over a
    message only once it is whole.
    """

    def __init__(
        self,
        settings: MemberSettings,
        request: Request,
        clock: IReactorTime,
        connections: Connections,
        pingInterval: float,
    ) -> None:
        WebSocketConnection.__init__(
            self, request, clock, connections, settings.maxLine, pingInterval
        )
        RoomMember.__init__(self, settings)

    # WebSocketProtocol

    def negotiationFinished(self) -> None:
        WebSocketConnection.negotiationFinished(self)
        self.joinRoom()

    def textMessageReceived(self, message: str) -> None:
        if self.closing:
            return
        self.heard()
        lines = message.encode("utf-8").split(b"\n")
        if len(lines) > 1 and not lines[-1]:
            # A message ending in a line feed holds no empty last line.
            lines.pop()
        self.linesReceived(line.removesuffix(b"\r") for line in lines)

    def bytesMessageReceived(self, data: bytes | bytearray) -> None:
        # Chat is text; RFC 6455 names a code for data an endpoint cannot take.
        self.closeWith(UNSUPPORTED_DATA)
        self.close("left")

    def messageTooBig(self) -> None:
        WebSocketConnection.messageTooBig(self)
        self.close("left (message too long)")

    def connectionLost(self, reason: Failure) -> None:
        WebSocketConnection.connectionLost(self, reason)
        self.left()

    # The wire

    def send(self, data: bytes) -> None:
        try:
            for line in data.decode("utf-8").split("\r\n")[:-1]:
                self.websocket.sendTextMessage(line)
        except LocalProtocolError:
            # The peer has closed the WebSocket (Twisted answers its close
            # frame without telling us): connectionLost is on its way.
            pass

    def loseConnection(self) -> None:
        self.closeWith(GOING_AWAY if self.room.closed else NORMAL_CLOSURE)


class ChatSocketFactory:
    """
    Build a L{ChatSocket} for each WebSocket handshake on C{/chat}: members
    of the TCP chat's room, with its settings.
    """

    def __init__(
        self,
        settings: MemberSettings,
        connections: Connections,
        pingInterval: float,
    ) -> None:
        self.settings = settings
        self.connections = connections
        self.pingInterval = pingInterval

    def buildProtocol(self, request: Request) -> ChatSocket:
        return ChatSocket(
            self.settings,
            request,
            self.settings.clock,
            self.connections,
            self.pingInterval,
        )
