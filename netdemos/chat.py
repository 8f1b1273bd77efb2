"""
The pub chat room: every line one client sends, every client receives.

Lines end with LF (a CR before it is dropped), so C{nc}, C{telnet} and CRLF
clients all work; the server always sends CRLF.  Each line is relayed as
C{<NAME> TEXT}, where NAME is the sender's own address until it picks a nick.

What one client does costs bounded CPU and memory, and never delays or drops
a client that behaves:
  - an over-long line is discarded with bounded memory (L{LineBuffer});
  - text is cleaned of control characters before anyone sees it (L{clean});
  - each client's lines pass a token bucket (L{TokenBucket}); over it, and past
    a per-turn budget, its reads are paused, so TCP pushes back on it and
    nobody else waits (L{ChatClient});
  - what the room says during one turn of the reactor, notices and replies
    included, is sent at the end of that turn as one write per member
    (L{Turn}), so a flood of commands cannot cost lines times members writes;
  - a client that does not read is dropped once its unsent output passes a
    limit, and when the whole room's unsent output passes a budget the
    clients furthest behind go first (L{ChatRoom.overBudget});
  - the room holds at most so many clients (L{netdemos.limits.Connections}).
"""

from __future__ import annotations

import re
import socket
from collections import Counter, deque
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

# Unsent output the whole room may hold before the clients furthest behind are
# dropped: without it, a crowd that connects and never reads could make each
# client's backlog add up to gigabytes.
DEFAULT_MEMORY = 64 * 1024 * 1024

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

# Joins, departures and renames are announced only in a room of at most this
# many: each announcement goes to everyone, so in a crowd they cost O(N) writes
# apiece and O(N * N) as the crowd arrives, and nobody could read them anyway.
# (Twitch's chat does the same above 1000 users.)
ANNOUNCE_LIMIT = 1000

# And at most this many a second (with this burst), room-wide: beyond that, a
# churn of clients coming and going would have the room write to everyone
# hundreds of times a second, for notices nobody can read at that speed.
ANNOUNCE_RATE = 20.0
ANNOUNCE_BURST = 100

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


class TokenBucket:
    """
    A rate with a burst: L{take} succeeds C{burst} times at once, then C{rate}
    times a second on average.  A rate of 0 means no limit.
    """

    def __init__(self, clock: IReactorTime, rate: float, burst: int) -> None:
        self._clock = clock
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._stamp = clock.seconds()

    def take(self) -> bool:
        """
        Take one token if there is one; say whether there was.
        """
        if not self.rate:
            return True
        now = self._clock.seconds()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        # (A hair under 1 counts: float rounding must not leave a client one
        # ulp short of a token forever.)
        if self._tokens < 1 - 1e-9:
            return False
        self._tokens -= 1
        return True

    def wait(self) -> float:
        """
        Seconds until the next token, after a L{take} that failed.
        """
        # At least a millisecond: a clock at 1.7e9 s cannot add much less.
        return max((1 - self._tokens) / self.rate, 0.001)


class Turn:
    """
    What the room has to send at the end of this turn of the reactor.

    Most of it goes to everyone: the chunks, in order.  A member may also have
    its own ops, each at a position among the chunks: a line for it alone (a
    reply, the welcome) or a chunk it is to skip (its own rename notice); and a
    member that joined during the turn starts at a later chunk.  So each member
    gets its own lines and everyone's in the order they happened, yet the room
    still writes once per member per turn, and builds only the data of the few
    members with ops of their own.
    """

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self._ops: dict[ChatClient, list[tuple[int, bytes | None]]] = {}
        self._starts: dict[ChatClient, int] = {}

    def __bool__(self) -> bool:
        return bool(self.chunks or self._ops)

    def toAll(self, data: bytes) -> None:
        self.chunks.append(data)

    def toOne(self, member: ChatClient, data: bytes) -> None:
        self._ops.setdefault(member, []).append((len(self.chunks), data))

    def skipNext(self, member: ChatClient) -> None:
        """
        The next chunk is not for C{member}.
        """
        self._ops.setdefault(member, []).append((len(self.chunks), None))

    def startHere(self, member: ChatClient) -> None:
        """
        C{member} gets only the chunks from here on: it was not there before.
        """
        self._starts[member] = len(self.chunks)

    def hasOwn(self, member: ChatClient) -> bool:
        return member in self._ops or member in self._starts

    def dataFor(self, member: ChatClient) -> bytes:
        """
        Everything this turn holds for C{member}, in order.
        """
        chunks = self.chunks
        at = self._starts.get(member, 0)
        if member not in self._ops:
            return b"".join(chunks[at:])
        parts: list[bytes] = []
        for position, data in self._ops[member]:
            if position > at:
                parts += chunks[at:position]
                at = position
            if data is None:
                at = max(at, position + 1)
            else:
                parts.append(data)
        parts += chunks[at:]
        return b"".join(parts)

    def forget(self, member: ChatClient) -> None:
        self._ops.pop(member, None)
        self._starts.pop(member, None)


class ChatRoom:
    """
    The shared state of the chat service: who is in the room, under what name,
    and what the room has to send them.

    One room may be served on several endpoints; the L{ChatFactory} of each
    hands the same room to every L{ChatClient} it builds.

    @ivar unsent: bytes the members that are behind have waiting, in all.
    """

    def __init__(
        self,
        clock: IReactorTime,
        maxLine: int = DEFAULT_MAX_LINE,
        backlog: int = DEFAULT_BACKLOG,
        maxConnections: int = DEFAULT_MAX_CONNECTIONS,
        idleTimeout: float | None = None,
        rate: float = DEFAULT_RATE,
        burst: int = DEFAULT_BURST,
        memory: int = DEFAULT_MEMORY,
    ) -> None:
        self.clock = clock
        self.maxLine = maxLine
        self.backlog = backlog
        self.idleTimeout = idleTimeout
        self.rate = rate
        self.burst = burst
        self.memory = memory
        self.connections = Connections(maxConnections)
        # Keyed by the casefolded name, so "Admin" cannot pose as "admin".
        self._members: dict[str, ChatClient] = {}
        self._who: str | None = None
        self._turn = Turn()
        self._flushCall: IDelayedCall | None = None
        self._announcements = TokenBucket(clock, ANNOUNCE_RATE, ANNOUNCE_BURST)
        self.unsent = 0
        self.behind: set[ChatClient] = set()
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

    def who(self) -> str:
        """
        The answer to C{/who}; kept until someone comes, goes or is renamed,
        so a client asking again and again costs a crowd nothing.
        """
        if self._who is None:
            names = self.names()
            self._who = f"* in the room ({len(names)}): {', '.join(names)}"
        return self._who

    def isTaken(self, name: str) -> bool:
        return name.casefold() in self._members

    def _announce(
        self, notice: str, crowd: int, exclude: ChatClient | None = None
    ) -> None:
        """
        Tell everyone (but C{exclude}) of a join, departure or rename, unless
        the room (C{crowd}, counting the client concerned) is a crowd, or such
        notices are coming too fast to read.
        """
        if crowd > ANNOUNCE_LIMIT or not self._announcements.take():
            return
        if exclude is not None:
            self._turn.skipNext(exclude)
        self._queue(f"{notice}\r\n".encode())

    def join(self, client: ChatClient, welcome: str) -> None:
        """
        Let C{client} in: it is told C{welcome}, the others that it joined.
        What was said before it joined is not for it.
        """
        self._members[client.name.casefold()] = client
        self._who = None
        self._announce(f"* {client.name} joined ({len(self)} in the room)", len(self))
        self._turn.startHere(client)
        self.tell(client, welcome)
        log.info(
            "chat: {name} joined ({count} in the room)",
            name=client.name,
            count=len(self),
        )

    def leave(self, client: ChatClient, why: str = "left") -> bytes:
        """
        Take C{client} out of the room, and tell the others it left.

        @return: what this turn still holds for C{client} (its last reply,
            say), for it to send before it closes.
        """
        # Compare clients, not names: a client that has gone may have had its
        # name taken since by another, who must stay.
        if self._members.get(client.name.casefold()) is not client:
            return b""
        del self._members[client.name.casefold()]
        self._who = None
        last = self._turn.dataFor(client)
        self._turn.forget(client)
        self._announce(f"* {client.name} {why}", len(self) + 1)
        log.info(
            "chat: {name} {why} ({count} in the room)",
            name=client.name,
            why=why,
            count=len(self),
        )
        return last

    def rename(self, client: ChatClient, newName: str) -> None:
        oldName = client.name
        del self._members[oldName.casefold()]
        client.name = newName
        self._members[newName.casefold()] = client
        self._who = None
        self._announce(f"* {oldName} is now {newName}", len(self), exclude=client)
        log.info("chat: {old} is now {new}", old=oldName, new=newName)

    def close(self) -> Deferred[None]:
        """
        Tell everyone the server is going away, and close every connection once
        that line is sent.
        """
        self._queue(b"* server shutting down\r\n")
        self.flush()
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
        the textbook example.  And it is not sent at once: see L{flush}.
        """
        self.messagesRelayed += 1
        self._queue(f"<{sender.name}> {text}\r\n".encode())

    def tell(self, client: ChatClient, text: str) -> None:
        """
        Send one line to C{client} only, in its place among the room's lines.
        """
        self._turn.toOne(client, text.encode("utf-8") + b"\r\n")
        self._flushSoon()

    def _queue(self, line: bytes) -> None:
        self._turn.toAll(line)
        self._flushSoon()

    def _flushSoon(self) -> None:
        if self._flushCall is None:
            self._flushCall = self.clock.callLater(0, self.flush)

    def flush(self) -> None:
        """
        Send what the room said this turn, as one write per member.

        Several clients' reads are handled in one turn of the reactor, and a
        write costs about the same for one line as for ten; in a busy room the
        writes are nearly all the work.  A member too far behind may be
        dropped during the loop; what that says goes into the next turn.
        """
        if self._flushCall is not None:
            if self._flushCall.active():
                self._flushCall.cancel()
            self._flushCall = None
        turn, self._turn = self._turn, Turn()
        if not turn:
            return
        everyone = b"".join(turn.chunks)
        # A copy, because a recipient that is too slow leaves during the loop.
        for client in list(self._members.values()):
            data = turn.dataFor(client) if turn.hasOwn(client) else everyone
            if data:
                client.deliver(data)
        if self.unsent > self.memory:
            self.overBudget()

    def overBudget(self) -> None:
        """
        The room holds more unsent output than its budget: drop the clients
        furthest behind until it does not.  They are the ones not reading; a
        client that reads, even slowly, is rarely far behind.
        """
        for client in sorted(self.behind, key=lambda c: c.unsent, reverse=True):
            if self.unsent <= self.memory:
                break
            client.dropForMemory()


@implementer(IPushProducer, IHalfCloseableProtocol)
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

    def __init__(self, room: ChatRoom) -> None:
        self.room = room
        # Set once we have decided to close: from then on nothing is read,
        # relayed or sent.
        self.closing = False
        self._lines = LineBuffer(room.maxLine)
        self._waiting: deque[bytes | None] = deque()
        self._bucket = TokenBucket(room.clock, room.rate, room.burst)
        self._nextBatch: IDelayedCall | None = None
        self._readsPaused = False
        self._ended = False
        self._behind = False
        self.unsent = 0
        self._abortCall: IDelayedCall | None = None

    def callLater(self, period: float, func: Callable[[], object]) -> IDelayedCall:
        # For TimeoutMixin.  As twisted.web's HTTPFactory does, time comes from
        # the reactor we were given, so tests can drive it with a task.Clock.
        return self.room.clock.callLater(period, func)

    # Protocol

    def connectionMade(self) -> None:
        self.room.connections.add(self)
        self.setTimeout(self.room.idleTimeout)
        self._fixSendBuffer()
        self.name = self.room.nameFor(self.transport.getPeer())
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
        self._waiting.extend(self._lines.feed(data))
        if self._nextBatch is None:
            self._handleWaiting()

    def _handleWaiting(self) -> None:
        """
        Handle the lines waiting, as many as this turn and the rate allow;
        pause reading until the next batch if any are left.
        """
        self._nextBatch = None
        budget = LINES_PER_TURN
        while self._waiting and not self.closing:
            if not budget:
                self._later(0)
                return
            if not self._bucket.take():
                self._later(self._bucket.wait())
                return
            budget -= 1
            line = self._waiting.popleft()
            if line is None:
                self.tell(f"! line too long: over {self.room.maxLine} bytes, discarded")
            else:
                self.lineReceived(line)
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
        self._nextBatch = self.room.clock.callLater(delay, self._handleWaiting)

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
        self.tell(f"! idle for {self.room.idleTimeout:g} seconds; disconnecting")
        self.close("left (idle)")

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.setTimeout(None)
        self.room.connections.remove(self)
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
            self.room.unsent += len(data)
            if self.unsent - TRANSPORT_BUFFER > self.room.backlog:
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
            b" to read\r\n" % (self.room.backlog,)
        )
        # It is not reading, so a clean close may never finish flushing.
        self._abortCall = self.room.clock.callLater(
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
            self.room.behind.discard(self)
            self.room.unsent -= self.unsent
            self.unsent = 0

    # IPushProducer, driven by our transport

    def pauseProducing(self) -> None:
        if self.closing or self._behind:
            return
        self._behind = True
        self.room.behind.add(self)
        # The transport already holds a full buffer.
        self.unsent = TRANSPORT_BUFFER
        self.room.unsent += TRANSPORT_BUFFER

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
