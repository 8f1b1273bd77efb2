"""
The chat room over WebSocket: one L{ChatSocket} per connection to C{/chat},
a member of the same room as the TCP clients.

One text message from the peer is one line, or several if it holds line feeds;
each line the room sends arrives as one text message, without CR LF.  The
commands, limits and protections are the TCP chat's: they are
L{netdemos.chat.member.RoomMember}'s, and this class only encodes for the wire.

The room formats each line once, and so is each frame made once: the room
hands the same batch to every member, and L{RoomFrames} frames it once for
all the WebSocket members it goes to.
"""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure
from twisted.web.server import Request

from netdemos.chat.member import MemberSettings, RoomMember
from netdemos.connections import Connections
from netdemos.websocket import (
    GOING_AWAY,
    NORMAL_CLOSURE,
    UNSUPPORTED_DATA,
    WebSocketConnection,
    textFrames,
)


class RoomFrames:
    """
    The WebSocket frames of the room's latest batch, made once for every
    member that batch goes to.

    The room gives each member either the batch everyone gets, one object,
    or one of its own (with a reply in it, say), which is framed for that
    member alone.
    """

    def __init__(self) -> None:
        self._batch: bytes | None = None
        self._frames = b""

    def framesFor(self, batch: bytes) -> bytes:
        """
        C{batch}, CR LF ended lines, as one text frame per line.
        """
        # Identity, not equality: the same object is handed to every member,
        # and comparing bytes would cost as much as framing them.
        if batch is not self._batch:
            self._batch = batch
            self._frames = textFrames(batch.split(b"\r\n")[:-1])
        return self._frames


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
        frames: RoomFrames,
    ) -> None:
        WebSocketConnection.__init__(
            self, request, clock, connections, settings.maxLine, pingInterval
        )
        RoomMember.__init__(self, settings)
        self._frames = frames

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
        # Written as they are, not through Twisted's sendTextMessage, which
        # would frame every line again for every member.  That is safe while
        # the WebSocket is open: no close frame sent or answered.
        if not self._closeSent:
            self.write(self._frames.framesFor(data))

    def write(self, data: bytes) -> None:
        # Everything this WebSocket sends, Twisted's pongs included, waits in
        # the same transport, so all of it counts toward the backlog.
        RoomMember.write(self, data)

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
        self.frames = RoomFrames()

    def buildProtocol(self, request: Request) -> ChatSocket:
        return ChatSocket(
            self.settings,
            request,
            self.settings.clock,
            self.connections,
            self.pingInterval,
            self.frames,
        )
