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
from twisted.internet.interfaces import IAddress, IHalfCloseableProtocol
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from netdemos.chat.lines import LineBuffer
from netdemos.chat.member import DROP_REASONS, MemberSettings, RoomMember
from netdemos.connections import DEFAULT_MAX_CONNECTIONS, Connections, closeWhenSent
from netdemos.figures import Figure, IReportsFigures


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
        RoomMember.__init__(self, factory.settings)
        self._factory = factory
        self._lines = LineBuffer(factory.settings.maxLine)

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
    does: the room's L{MemberSettings} (the room, the clock, the limits),
    which the web site's members share too, and the live TCP connections.
    """

    # Not Twisted's "Starting factory" line: the banner says where it listens.
    noisy = False

    def __init__(
        self,
        settings: MemberSettings,
        maxConnections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        self.settings = settings
        self.room = settings.room
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
