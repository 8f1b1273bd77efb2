"""
The pub chat room: every line one client sends, every client receives.

Lines end with LF (a CR before it is dropped), so C{nc}, C{telnet} and CRLF
clients all work; the server always sends CRLF.  Each line is relayed as
C{<NAME> TEXT}, where NAME is the sender's own address until it picks a nick.

Four things keep one client from hurting the others:
  - an over-long line is discarded with bounded memory (L{LineBuffer});
  - text is cleaned of control characters before anyone sees it (L{clean});
  - a client that does not read is dropped once its unsent output passes a
    limit (L{ChatClient.deliver}), so it cannot grow server memory;
  - the room holds at most so many clients (L{netdemos.limits.Connections}).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IHalfCloseableProtocol,
    IPushProducer,
    IReactorTime,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure
from zope.interface import implementer

from netdemos.limits import DEFAULT_MAX_CONNECTIONS, Connections, closeWhenSent

log = Logger()

DEFAULT_MAX_LINE = 4096
DEFAULT_BACKLOG = 1024 * 1024

# How long a client dropped as too slow gets to read its last line before the
# connection is aborted; it is not reading, so a clean close could wait forever.
DROP_GRACE_SECONDS = 5.0

# Joins and departures are announced only in a room of at most this many: each
# announcement goes to everyone, so in a crowd they cost O(N) writes apiece and
# O(N * N) as the crowd arrives, and nobody could read them anyway.  (Twitch's
# chat does the same above 1000 users.)
ANNOUNCE_LIMIT = 1000

_NICK = re.compile(r"[A-Za-z0-9_-]{1,32}")

# C0 controls other than TAB, DEL, and the C1 controls: removed so that nobody
# can move another user's cursor, clear their screen or retitle their terminal.
# (U+0080-U+009F matter too: a UTF-8 terminal may act on U+009B as CSI.)
_CONTROLS = dict.fromkeys([*range(0x00, 0x09), *range(0x0A, 0x20), *range(0x7F, 0xA0)])

_HELP = (
    "* commands: /nick NAME (1-32 letters, digits, _ or -), /who, /help, /quit;"
    " start a line with // to send one that begins with /"
)


def clean(raw: bytes) -> str:
    """
    Turn the bytes of one line into text that is safe to show to others.

    Invalid UTF-8 becomes U+FFFD; control characters are removed.
    """
    return raw.decode("utf-8", "replace").translate(_CONTROLS)


def nameForAddress(address: IAddress) -> str | None:
    """
    Name a client by its own address, C{HOST:PORT} (C{[HOST]:PORT} for IPv6);
    L{None} for an address that names nobody, such as a UNIX socket's peer.
    """
    if isinstance(address, IPv4Address):
        return f"{address.host}:{address.port}"
    if isinstance(address, IPv6Address):
        return f"[{address.host}]:{address.port}"
    return None


class LineBuffer:
    """
    Split a byte stream into lines, with a bound on how long a line may be.

    A line ends with LF; one CR before the LF is dropped.  A line longer than
    C{maxLength} (not counting its CR LF) is discarded whole, up to and
    including its LF, while holding at most C{maxLength + 1} bytes of it.  The
    lines after it, even in the same chunk, are kept.

    Twisted's L{LineReceiver} would instead clear its buffer and treat the rest
    of an over-long line as a new line, and L{LineOnlyReceiver} drops the lines
    after it; hence this small class.
    """

    def __init__(self, maxLength: int) -> None:
        self.maxLength = maxLength
        self._partial = b""
        self._discarding = False

    def feed(self, data: bytes) -> list[bytes | None]:
        """
        Add C{data} and return the lines it completes, in order, with L{None}
        in place of each line that was too long.
        """
        if self._discarding:
            end = data.find(b"\n")
            if end == -1:
                return []
            data = data[end + 1 :]
            self._discarding = False
        *complete, self._partial = (self._partial + data).split(b"\n")
        lines: list[bytes | None] = []
        for line in complete:
            if line.endswith(b"\r"):
                line = line[:-1]
            lines.append(line if len(line) <= self.maxLength else None)
        pending = len(self._partial) - self._partial.endswith(b"\r")
        if pending > self.maxLength:
            # Report the line as soon as it is known to be too long, and skip
            # the rest of it as it arrives instead of buffering it.
            self._partial = b""
            self._discarding = True
            lines.append(None)
        return lines


class ChatRoom:
    """
    The shared state of the chat service: who is in the room, under what name.

    One room may be served on several endpoints; the L{ChatFactory} of each
    hands the same room to every L{ChatClient} it builds.
    """

    def __init__(
        self,
        clock: IReactorTime,
        maxLine: int = DEFAULT_MAX_LINE,
        backlog: int = DEFAULT_BACKLOG,
        maxConnections: int = DEFAULT_MAX_CONNECTIONS,
        idleTimeout: float | None = None,
    ) -> None:
        self.clock = clock
        self.maxLine = maxLine
        self.backlog = backlog
        self.idleTimeout = idleTimeout
        self.connections = Connections(maxConnections)
        # Keyed by the casefolded name, so "Admin" cannot pose as "admin".
        self._members: dict[str, ChatClient] = {}
        # Lines said during this turn of the reactor, not yet sent; see say().
        self._said: list[bytes] = []
        self._flushCall: IDelayedCall | None = None
        self.messagesRelayed = 0
        self.clientsDropped: Counter[str] = Counter()
        self._anonymous = 0

    def nameFor(self, address: IAddress) -> str:
        """
        A name for a newcomer: its address, or for a peer without one (a UNIX
        socket's) C{local-N}, unique in this room.
        """
        name = nameForAddress(address)
        while name is None or self.isTaken(name):
            self._anonymous += 1
            name = f"local-{self._anonymous}"
        return name

    def __len__(self) -> int:
        return len(self._members)

    def names(self) -> list[str]:
        return sorted(client.name for client in self._members.values())

    def isTaken(self, name: str) -> bool:
        return name.casefold() in self._members

    def join(self, client: ChatClient) -> None:
        # What was said before it joined is not for the newcomer.
        self.flush()
        self._members[client.name.casefold()] = client
        if len(self) <= ANNOUNCE_LIMIT:
            self.broadcast(
                f"* {client.name} joined ({len(self)} in the room)", exclude=client
            )
        log.info(
            "chat: {name} joined ({count} in the room)",
            name=client.name,
            count=len(self),
        )

    def leave(self, client: ChatClient, why: str = "left") -> None:
        if self._members.get(client.name.casefold()) is not client:
            return
        del self._members[client.name.casefold()]
        if len(self) < ANNOUNCE_LIMIT:
            # Queued with what is being said, not sent at once: a client may
            # leave (dropped as too slow) in the middle of a fan-out, and its
            # notice must neither overtake that line nor start a fan-out of
            # its own inside it.
            self._queue(f"* {client.name} {why}\r\n".encode())
        log.info(
            "chat: {name} {why} ({count} in the room)",
            name=client.name,
            why=why,
            count=len(self),
        )

    def rename(self, client: ChatClient, newName: str) -> None:
        oldName = client.name
        del self._members[oldName.casefold()]
        client.name = newName
        self._members[newName.casefold()] = client
        self.broadcast(f"* {oldName} is now {newName}", exclude=client)
        log.info("chat: {old} is now {new}", old=oldName, new=newName)

    def close(self) -> Deferred[None]:
        """
        Tell everyone the server is going away, and close every connection once
        that line is sent.
        """
        self.broadcast("* server shutting down")
        # Empty the room first: otherwise each departure would be announced to
        # everyone still there, N * N lines for nobody to read.
        members, self._members = list(self._members.values()), {}
        for client in members:
            client.close("left (server shutting down)")
        log.info("chat: closed the room ({count} clients)", count=len(members))
        return self.connections.closeAll()

    def say(self, sender: ChatClient, text: str) -> None:
        """
        Relay one line of text from C{sender} to everybody, the sender included.

        The line is formatted and encoded once, not once per recipient as in
        the textbook example.  And it is not sent at once: the lines said
        during one turn of the reactor (several clients' reads are handled in
        one turn) are sent together at its end, as one write per recipient.
        A write costs about the same for one line as for ten, and in a busy
        room the writes are nearly all the work.
        """
        self.messagesRelayed += 1
        self._queue(f"<{sender.name}> {text}\r\n".encode())

    def _queue(self, line: bytes) -> None:
        self._said.append(line)
        if self._flushCall is None:
            self._flushCall = self.clock.callLater(0, self.flush)

    def flush(self) -> None:
        """
        Send what was said this turn now.  Anything else sent to a client
        flushes first, so everyone sees every line in the order it happened.
        """
        if self._flushCall is not None:
            if self._flushCall.active():
                self._flushCall.cancel()
            self._flushCall = None
        if self._said:
            said, self._said = b"".join(self._said), []
            self._send(said)

    def broadcast(self, text: str, exclude: ChatClient | None = None) -> None:
        """
        Send a notice to everybody but C{exclude}.
        """
        self.flush()
        self._send(text.encode("utf-8") + b"\r\n", exclude)

    def _send(self, data: bytes, exclude: ChatClient | None = None) -> None:
        # A copy, because a recipient that is too slow leaves during the loop.
        for client in list(self._members.values()):
            if client is not exclude:
                client.deliver(data)


@implementer(IPushProducer, IHalfCloseableProtocol)
class ChatClient(Protocol, TimeoutMixin):
    """
    One client in the room.

    It is also the L{IPushProducer} of its own transport.  The transport calls
    L{pauseProducing} when its send buffer is full because the client is not
    reading, and L{resumeProducing} once that buffer has drained.  What is sent
    while paused is counted; past the room's backlog limit the client is
    dropped, so one stalled reader costs bounded memory and never slows the
    others.
    """

    name = ""
    # TCP, TLS or UNIX: each provides ITransport and IConsumer, which Twisted
    # has no single interface for.
    transport: Any

    def __init__(self, room: ChatRoom) -> None:
        self.room = room
        # Set once we have decided to close: from then on nothing is read,
        # relayed or sent.
        self.closing = False
        self._lines = LineBuffer(room.maxLine)
        self._paused = False
        self._sentWhilePaused = 0
        self._abortCall: IDelayedCall | None = None

    def callLater(self, period: float, func: Callable[[], object]) -> IDelayedCall:
        # For TimeoutMixin.  As twisted.web's HTTPFactory does, time comes from
        # the reactor we were given, so tests can drive it with a task.Clock.
        return self.room.clock.callLater(period, func)

    # Protocol

    def connectionMade(self) -> None:
        self.room.connections.add(self)
        self.setTimeout(self.room.idleTimeout)
        self.name = self.room.nameFor(self.transport.getPeer())
        self.transport.registerProducer(self, True)
        self.tell(
            f"* welcome, you are {self.name} ({len(self.room) + 1} in the room);"
            " /help lists commands"
        )
        self.room.join(self)

    def dataReceived(self, data: bytes) -> None:
        self.resetTimeout()
        for line in self._lines.feed(data):
            if self.closing:
                return
            if line is None:
                self.tell(f"! line too long: over {self.room.maxLine} bytes, discarded")
            else:
                self.lineReceived(line)

    def readConnectionLost(self) -> None:
        # The client has said all it will (nc -N, or a script that shuts down
        # its sending side): answer what it said, then close.
        self.room.flush()
        self.close("left")

    def writeConnectionLost(self) -> None:
        # Only called after our own loseWriteConnection(), which chat never
        # calls; IHalfCloseableProtocol requires it all the same.
        pass

    def timeoutConnection(self) -> None:
        if self.closing:
            return
        self.room.clientsDropped["idle"] += 1
        self.tell(f"! idle for {self.room.idleTimeout:g} seconds; disconnecting")
        self.close("left (idle)")

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.setTimeout(None)
        self.room.connections.remove(self)
        self.room.leave(self)
        if self._abortCall is not None and self._abortCall.active():
            self._abortCall.cancel()

    # What a client can say

    def lineReceived(self, line: bytes) -> None:
        text = clean(line)
        if text.startswith("//"):
            text = text[1:]
        elif text.startswith("/"):
            self.command(*text[1:].split(None, 1))
            return
        if text.strip():
            self.room.say(self, text)

    def command(self, name: str = "", argument: str = "") -> None:
        if name == "nick":
            self.changeNick(argument.strip())
        elif name == "who":
            names = self.room.names()
            self.tell(f"* in the room ({len(names)}): {', '.join(names)}")
        elif name == "help":
            self.tell(_HELP)
        elif name == "quit":
            self.tell("* bye")
            self.close("left")
        else:
            self.tell(f"! unknown command /{name}; /help lists commands")

    def changeNick(self, nick: str) -> None:
        if not _NICK.fullmatch(nick):
            self.tell("! usage: /nick NAME, 1-32 letters, digits, _ or -")
        elif nick == self.name:
            self.tell(f"! you are already {nick}")
        elif self.room.isTaken(nick) and nick.casefold() != self.name.casefold():
            self.tell(f"! the nick {nick} is taken")
        else:
            self.room.rename(self, nick)
            self.tell(f"* you are now {nick}")

    # Sending

    def tell(self, text: str) -> None:
        """
        Send one line to this client only.
        """
        self.room.flush()
        self.deliver(text.encode("utf-8") + b"\r\n")

    def deliver(self, data: bytes) -> None:
        """
        Send encoded lines, dropping this client if it is too far behind.
        """
        if self.closing:
            return
        self.transport.write(data)
        if self._paused:
            self._sentWhilePaused += len(data)
            if self._sentWhilePaused > self.room.backlog:
                self._dropAsTooSlow()

    def close(self, why: str) -> None:
        """
        Leave the room at once, then close once what was sent has been written.
        """
        if self.closing:
            return
        self.closing = True
        self.setTimeout(None)
        self.room.leave(self, why)
        self.loseConnection()

    def loseConnection(self) -> None:
        """
        Close once what was sent has been written.
        """
        closeWhenSent(self.transport)

    def _dropAsTooSlow(self) -> None:
        self.room.clientsDropped["slow"] += 1
        self.transport.write(
            b"! disconnected: more than %d bytes of output were waiting for you"
            b" to read\r\n" % (self.room.backlog,)
        )
        # It is not reading, so a clean close may never finish flushing.
        self._abortCall = self.room.clock.callLater(
            DROP_GRACE_SECONDS, self.transport.abortConnection
        )
        self.close("was dropped (too slow)")

    # IPushProducer, driven by our transport

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        self._sentWhilePaused = 0

    def stopProducing(self) -> None:
        pass


class RoomFull(Protocol):
    """
    Say the room is full, and hang up.
    """

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(b"! server full, try again later\r\n")
        self.transport.loseConnection()


class ChatFactory(Factory):
    """
    Build a L{ChatClient} for each connection, all in the same L{ChatRoom}.
    """

    def __init__(self, room: ChatRoom) -> None:
        self.room = room
        self.connections = room.connections

    def buildProtocol(self, addr: IAddress | None) -> Protocol:
        if self.room.connections.rejectIfFull():
            return RoomFull()
        return ChatClient(self.room)

    def close(self) -> Deferred[None]:
        return self.room.close()
