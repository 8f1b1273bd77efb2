"""
The chat room over TCP: one L{ChatClient} per connection, built by a
L{ChatFactory}.

Lines end with LF (a CR before it is dropped), so C{nc}, C{telnet} and CRLF
clients all work; the server always sends CRLF.  Each line is relayed as
C{<NAME> TEXT}, where NAME is the sender's own address until it picks a nick.

This module is where Twisted's protocol and producer APIs do the work of
keeping one client from hurting the others:
  - flood control: each client's lines pass a L{TokenBucket}; over it, and
    past a per-turn budget, its reads are paused (C{transport.pauseProducing}),
    so TCP pushes back on it and nobody else waits;
  - slow readers: each client is the producer of its own transport, which
    tells it when its send buffer is full; past a backlog it is dropped, and
    past the room's memory budget the furthest behind go first;
  - a fixed kernel send buffer, and a cap on connections.
"""

from __future__ import annotations

import re
import socket
from collections import deque
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
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure
from zope.interface import implementer

from netdemos.chat.lines import LineBuffer, clean
from netdemos.chat.rate import TokenBucket
from netdemos.chat.room import ChatRoom, IMember
from netdemos.connections import DEFAULT_MAX_CONNECTIONS, Connections, closeWhenSent

DEFAULT_MAX_LINE = 4096
DEFAULT_BACKLOG = 1024 * 1024

# Flood control: each client may send this many lines a second on average, and
# this many at once.  A person typing never reaches 10 lines a second, and a
# pasted log of 50 lines goes through at once; a script sending as fast as TCP
# allows is slowed to the rate by pausing its reads (IRC servers call this
# "fakelag"), so it costs the others nothing.  0 lifts the limit.
DEFAULT_RATE = 10.0
DEFAULT_BURST = 60

# However fast a client may send, the lines of one client handled in one turn
# of the reactor are at most this many; the rest wait for a later turn, with
# its reads paused, so one read never holds the reactor for long.
LINES_PER_TURN = 256

# The kernel's send buffer for a chat socket, in bytes (Linux doubles it).  Left
# alone, Linux grows it to megabytes per socket for a client that is not
# reading; chat lines are small, and this still fills a fast link.
SEND_BUFFER = 16 * 1024

# Twisted's TCP transport pauses its producer once it holds this much unsent
# data (FileDescriptor.bufferSize); used to estimate what a paused client holds.
TRANSPORT_BUFFER = 64 * 1024

# How long a client dropped as too slow gets to read its last line before the
# connection is aborted; it is not reading, so a clean close could wait forever.
DROP_GRACE_SECONDS = 5.0

_NICK = re.compile(r"[A-Za-z0-9_-]{1,32}")

_HELP = (
    "* commands: /nick NAME (1-32 letters, digits, _ or -), /who, /help, /quit;"
    " start a line with // to send one that begins with /"
)


@implementer(IMember, IPushProducer, IHalfCloseableProtocol)
class ChatClient(Protocol, TimeoutMixin):
    """
    One client in the room.

    Reading is fair: the lines of each read wait in a queue, and are handled
    only as fast as the client's L{TokenBucket} allows and at most
    L{LINES_PER_TURN} per turn.  While lines wait, the transport is paused
    (C{transport.pauseProducing()}: no more reads), so the kernel's buffers
    fill and TCP slows the sender down; nothing it sends is lost.

    Writing: it is also the L{IPushProducer} of its own transport.  The
    transport calls L{pauseProducing} when its send buffer is full because the
    client is not reading, and L{resumeProducing} once that buffer has
    drained.  What is sent while paused is counted; past the room's backlog
    limit the client is dropped, so one stalled reader costs bounded memory
    and never slows the others.

    @ivar unsent: roughly how many bytes wait to be sent to this client, while
        it is behind (0 otherwise).
    """

    name = ""
    # TCP, TLS or UNIX: each provides ITransport and IConsumer, which Twisted
    # has no single interface for.
    transport: Any

    def __init__(self, factory: ChatFactory) -> None:
        self._factory = factory
        self.room = factory.room
        # Set once we have decided to close: from then on nothing is read,
        # relayed or sent.
        self.closing = False
        self._lines = LineBuffer(factory.maxLine)
        # Lines read but not yet handled; an empty deque costs 600 bytes, so
        # an idle client (most of a crowd) has none.
        self._waiting: deque[bytes | None] | None = None
        self._bucket = TokenBucket(factory.clock, factory.rate, factory.burst)
        self._nextBatch: IDelayedCall | None = None
        self._readsPaused = False
        self._ended = False
        self._behind = False
        self.unsent = 0
        self._abortCall: IDelayedCall | None = None

    def callLater(self, period: float, func: Callable[[], object]) -> IDelayedCall:
        # For TimeoutMixin.  As twisted.web's HTTPFactory does, time comes from
        # the reactor we were given, so tests can drive it with a task.Clock.
        return self._factory.clock.callLater(period, func)

    # Protocol

    def connectionMade(self) -> None:
        self._factory.connections.add(self)
        self.setTimeout(self._factory.idleTimeout)
        self._fixSendBuffer()
        self.name = self.room.uniqueName(nameForAddress(self.transport.getPeer()))
        self.transport.registerProducer(self, True)
        self.room.join(
            self,
            f"* welcome, you are {self.name} ({len(self.room) + 1} in the room);"
            " /help lists commands",
        )

    def _fixSendBuffer(self) -> None:
        # A fixed size also stops Linux from autotuning it to megabytes.
        sock = socketOf(self.transport)
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
            except OSError:
                pass

    def dataReceived(self, data: bytes) -> None:
        self.resetTimeout()
        lines = self._lines.feed(data)
        if self._waiting is None:
            self._waiting = deque(lines)
        else:
            self._waiting.extend(lines)
        if self._nextBatch is None:
            self._handleWaiting()

    def _handleWaiting(self) -> None:
        """
        Handle the lines waiting, as many as this turn and the rate allow;
        pause reading until the next batch if any are left.
        """
        self._nextBatch = None
        budget = LINES_PER_TURN
        waiting = self._waiting
        while waiting and not self.closing:
            if not budget:
                self._later(0)
                return
            if not self._bucket.take():
                self._later(self._bucket.wait())
                return
            budget -= 1
            line = waiting.popleft()
            if line is None:
                self.tell(
                    f"! line too long: over {self._factory.maxLine} bytes, discarded"
                )
            else:
                self.lineReceived(line)
        self._waiting = None
        if self.closing:
            return
        if self._ended:
            self.close("left")
        elif self._readsPaused:
            self._readsPaused = False
            self.transport.resumeProducing()

    def _later(self, delay: float) -> None:
        if not self._readsPaused:
            self._readsPaused = True
            self.transport.pauseProducing()
        self._nextBatch = self._factory.clock.callLater(delay, self._handleWaiting)

    def readConnectionLost(self) -> None:
        # The client has said all it will (nc -N, or a script that shuts down
        # its sending side): answer what it said, then close.
        self._ended = True
        if self._nextBatch is None:
            self.close("left")

    def writeConnectionLost(self) -> None:
        # Only called after our own loseWriteConnection(), which chat never
        # calls; IHalfCloseableProtocol requires it all the same.
        pass

    def timeoutConnection(self) -> None:
        if self.closing:
            return
        self.room.clientsDropped["idle"] += 1
        self.tell(f"! idle for {self._factory.idleTimeout:g} seconds; disconnecting")
        self.close("left (idle)")

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.setTimeout(None)
        self._factory.connections.remove(self)
        self.room.leave(self)
        self.closing = True
        self._notBehind()
        for call in (self._abortCall, self._nextBatch):
            if call is not None and call.active():
                call.cancel()

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
            self.tell(self.room.who())
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
        Send one line to this client only, after what the room said before it.
        """
        self.room.tell(self, text)

    def deliver(self, data: bytes) -> None:
        """
        Send encoded lines, dropping this client if it is too far behind.
        """
        if self.closing or not data:
            return
        self.transport.write(data)
        if self._behind:
            self.unsent += len(data)
            self.room.stillBehind(len(data))
            if self.unsent - TRANSPORT_BUFFER > self._factory.backlog:
                self._dropAsTooSlow()

    def close(self, why: str) -> None:
        """
        Leave the room at once, then close once what was sent has been written.
        """
        if self.closing:
            return
        self.closing = True
        self.setTimeout(None)
        last = self.room.leave(self, why)
        if last:
            self.transport.write(last)
        self._notBehind()
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
            b" to read\r\n" % (self._factory.backlog,)
        )
        # It is not reading, so a clean close may never finish flushing.
        self._abortCall = self._factory.clock.callLater(
            DROP_GRACE_SECONDS, self.transport.abortConnection
        )
        self.close("was dropped (too slow)")

    def dropForMemory(self) -> None:
        """
        Drop this client at once, to give back the memory its unsent output
        holds: the room is over its budget and this client is furthest behind.
        """
        self.room.clientsDropped["memory"] += 1
        self.close("was dropped (too far behind)")
        self.transport.abortConnection()

    def _notBehind(self) -> None:
        if self._behind:
            self._behind = False
            self.room.caughtUp(self, self.unsent)
            self.unsent = 0

    # IPushProducer, driven by our transport

    def pauseProducing(self) -> None:
        if self.closing or self._behind:
            return
        self._behind = True
        # The transport already holds a full buffer.
        self.unsent = TRANSPORT_BUFFER
        self.room.fellBehind(self, self.unsent)

    def resumeProducing(self) -> None:
        self._notBehind()

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

    The factory owns what its clients share, as L{netdemos.echo.EchoFactory}
    does: the clock, their limits, and their live connections.

    @ivar maxLine: longest line in bytes; a longer one is discarded.
    @ivar backlog: unsent bytes a client may have waiting before it is dropped.
    @ivar rate: lines a second a client may send on average (0: no limit).
    @ivar burst: lines a client may send at once.
    @ivar idleTimeout: seconds of silence before a client is closed, or
        L{None} to let idle clients stay.
    """

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
    ) -> None:
        self.room = room
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

    def close(self) -> Deferred[None]:
        """
        Tell the room the server is going away, and fire once every client
        has been sent that and closed.
        """
        self.room.close()
        return self.connections.closeAll()


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


def socketOf(transport: Any) -> socket.socket | None:
    """
    The socket under C{transport}, looking through wrappers such as TLS (whose
    C{getHandle} is its TLS connection); L{None} if there is none.
    """
    while transport is not None:
        handle = getattr(transport, "getHandle", lambda: None)()
        if isinstance(handle, socket.socket):
            return handle
        transport = getattr(transport, "transport", None)
    return None
