"""
The chat room over TCP: one L{ChatClient} per connection, built by a
L{ChatFactory}.

Lines end with LF (a CR before it is dropped), so C{nc}, C{telnet} and CRLF
clients all work; the server always sends CRLF.  Each line is relayed as
C{<NAME> TEXT}, where NAME is the sender's own address until it picks a nick.

What keeps one client from hurting the others (flood control by pausing its
reads, fair reading, dropping a reader that falls too far behind) is
L{netdemos.chat.member.RoomMember}'s, which the WebSocket members share.  Here
Twisted's L{Protocol} does one job: frame a byte stream into lines, and send
the room's lines as they are.
"""

from __future__ import annotations

from collections.abc import Iterator

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IAddress, IHalfCloseableProtocol, IReactorTime
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from netdemos.chat.lines import DEFAULT_MAX_LINE, LineBuffer
from netdemos.chat.member import (
    DEFAULT_BACKLOG,
    DEFAULT_BURST,
    DEFAULT_RATE,
    DROP_GRACE_SECONDS,
    DROP_REASONS,
    LINES_PER_TURN,
    TRANSPORT_BUFFER,
    RoomMember,
)
from netdemos.chat.room import ChatRoom
from netdemos.connections import DEFAULT_MAX_CONNECTIONS, Connections, closeWhenSent
from netdemos.figures import Figure, IReportsFigures

# The limits every member shares are the TCP chat's too.
__all__ = [
    "DEFAULT_BACKLOG",
    "DEFAULT_BURST",
    "DEFAULT_MAX_LINE",
    "DEFAULT_RATE",
    "DROP_GRACE_SECONDS",
    "LINES_PER_TURN",
    "TRANSPORT_BUFFER",
    "ChatClient",
    "ChatFactory",
    "RoomFull",
]


@implementer(IHalfCloseableProtocol)
class ChatClient(RoomMember, Protocol):
    """
    One client in the room, over TCP (or TLS, or a UNIX socket).

    Everything a member does whatever its wire (fair reading, flood control,
    commands, dropping a slow reader) is L{RoomMember}'s; this class frames
    the byte stream into lines (L{LineBuffer}) and sends the room's CR LF
    lines as they are, one write per turn.
    """

    def __init__(self, factory: ChatFactory) -> None:
        RoomMember.__init__(self, factory)
        self._factory = factory
        self._lines = LineBuffer(factory.maxLine)

    # Protocol

    def connectionMade(self) -> None:
        self._factory.connections.add(self)
        self.joinRoom()

    def dataReceived(self, data: bytes) -> None:
        self.linesReceived(self._lines.feed(data))

    def readConnectionLost(self) -> None:
        # The client has said all it will (nc -N, or a script that shuts down
        # its sending side): answer what it said, then close.
        self.inputEnded()

    def writeConnectionLost(self) -> None:
        # Only called after our own loseWriteConnection(), which chat never
        # calls; IHalfCloseableProtocol requires it all the same.
        pass

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._factory.connections.remove(self)
        self.left()

    # The wire

    # A byte stream needs no framing: what the room sends is written as it is
    # (one call less for every member on every turn).
    send = RoomMember.write

    def loseConnection(self) -> None:
        """
        Close once what was sent has been written.
        """
        closeWhenSent(self.transport)


class RoomFull(Protocol):
    """
    Say the room is full, and hang up.
    """

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(b"! server full, try again later\r\n")
        self.transport.loseConnection()


@implementer(IReportsFigures)
class ChatFactory(Factory):
    """
    Build a L{ChatClient} for each connection, all in the same L{ChatRoom}.

    The factory owns what its clients share, as L{netdemos.echo.EchoFactory}
    does: the clock, their limits, and their live connections.

    @ivar maxLine: longest line in bytes; a longer one is discarded.
    @ivar backlog: unsent bytes a client may have waiting before it is dropped.
    @ivar rate: lines a second a client may send on average (0: no limit).
    @ivar burst: lines a client may send at once.
    @ivar idleTimeout: seconds of silence before a client is closed, or
        L{None} to let idle clients stay.
    @ivar instance: the name of this server, which the welcome tells: where
        several serve one room, the one a client is on.
    """

    # Not Twisted's "Starting factory" line: the banner says where it listens.
    noisy = False

    def __init__(
        self,
        room: ChatRoom,
        clock: IReactorTime,
        maxLine: int = DEFAULT_MAX_LINE,
        backlog: int = DEFAULT_BACKLOG,
        rate: float = DEFAULT_RATE,
        burst: int = DEFAULT_BURST,
        maxConnections: int = DEFAULT_MAX_CONNECTIONS,
        idleTimeout: float | None = None,
        instance: str = "netdemos",
    ) -> None:
        self.room = room
        self.instance = instance
        self.clock = clock
        self.maxLine = maxLine
        self.backlog = backlog
        self.rate = rate
        self.burst = burst
        self.idleTimeout = idleTimeout
        self.connections = Connections(maxConnections)

    def buildProtocol(self, addr: IAddress | None) -> Protocol:
        if self.connections.rejectIfFull():
            return RoomFull()
        return ChatClient(self)

    def figures(self) -> Iterator[Figure]:
        room = self.room
        yield Figure(
            "chat_messages", "Chat lines relayed to the room.", room.messagesRelayed
        )
        for reason in DROP_REASONS:
            yield Figure(
                "chat_clients_dropped",
                "Chat clients disconnected by the server.",
                room.clientsDropped[reason],
                (("reason", reason),),
            )

    def close(self) -> Deferred[None]:
        """
        Tell the room the server is going away, and fire once every client
        has been sent that and closed.
        """
        self.room.close()
        return self.connections.closeAll()
