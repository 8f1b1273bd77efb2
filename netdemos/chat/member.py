"""
A member of the room, whatever wire it is on: what it may say (commands, nick
rules), how fast (fair reading and flood control), and what happens when it
reads too slowly.

L{RoomMember} holds all of that; a wire subclasses it and says how to send a
batch of lines and how to close.  L{netdemos.chat.tcp} is the TCP wire and
L{netdemos.chat.websocket} the WebSocket one; both pause the byte stream
underneath them (C{transport.pauseProducing()}) to slow a sender down, and
both are the push producer of that stream, so that it tells them when their
reader falls behind.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IPushProducer,
    IReactorTime,
)
from zope.interface import implementer

from netdemos.chat.lines import DEFAULT_MAX_LINE, clean
from netdemos.chat.rate import TokenBucket
from netdemos.chat.room import ChatRoom, IMember
from netdemos.connections import ClockedTimeoutMixin

DEFAULT_BACKLOG = 1024 * 1024

# Flood control: each member may send this many lines a second on average, and
# this many at once.  A person typing never reaches 10 lines a second, and a
# pasted log of 50 lines goes through at once; a script sending as fast as TCP
# allows is slowed to the rate by pausing its reads (IRC servers call this
# "fakelag"), so it costs the others nothing.  0 lifts the limit.
DEFAULT_RATE = 10.0
DEFAULT_BURST = 60

# However fast a member may send, its lines handled in one turn of the reactor
# are at most this many; the rest wait for a later turn, with its reads paused,
# so one read never holds the reactor for long.
LINES_PER_TURN = 256

# The kernel's send buffer for a chat socket, in bytes (Linux doubles it).  Left
# alone, Linux grows it to megabytes per socket for a client that is not
# reading; chat lines are small, and this still fills a fast link.
SEND_BUFFER = 16 * 1024

# In a load test (the room's backpressure on), the room goes at the pace of a
# reader that falls behind, so that reader gets more: over loopback, whose
# packets are 64 KiB, a buffer of one packet leaves the reader's delayed ACK
# (40 ms) between each (7,000 lines of 500 bytes a second, against 160,000
# with this).  Only a reader that falls behind: for the others, the small
# buffer gathers several turns' lines into one send when they read late,
# which costs fewer system calls a line (a quarter of the server's time in
# the fan-out load).
LOAD_TEST_SEND_BUFFER = 64 * 1024

# Twisted's TCP transport pauses its producer once it holds this much unsent
# data (FileDescriptor.bufferSize); used to estimate what a paused member holds.
TRANSPORT_BUFFER = 64 * 1024

# With the room's backpressure (flood control lifted, for load tests), the
# senders wait while a member is behind; one that stays behind this long is
# dropped as too slow, so a client that does not read holds the room back for
# no longer.  A reader that keeps up on average drains its buffer in far less.
BEHIND_LIMIT = 5.0

# Why a member is dropped, for /metrics: "slow", past its backlog or behind
# for too long (_dropAsTooSlow); "memory", furthest behind when the room is
# over its budget (dropForMemory); "idle", silent too long (timeoutConnection).
DROP_REASONS = ("slow", "memory", "idle")

# How long a member dropped as too slow gets to read its last line before the
# connection is aborted; it is not reading, so a clean close could wait forever.
DROP_GRACE_SECONDS = 5.0

_NICK = re.compile(r"[A-Za-z0-9_-]{1,32}")

_HELP = (
    "* commands: /nick NAME (1-32 letters, digits, _ or -), /who, /help, /quit;"
    " start a line with // to send one that begins with /"
)


@dataclass
class MemberSettings:
    """
    What every member of one room shares, whatever its wire: the room, the
    clock, and the limits.  C{tap.py} builds one, and hands it to the TCP
    chat's factory and to the web site, whose members are in the same room.

    @ivar maxLine: longest line in bytes.
    @ivar backlog: unsent bytes a member may have waiting before it is dropped.
    @ivar rate: lines a second a member may send on average (0: no limit).
    @ivar burst: lines a member may send at once.
    @ivar idleTimeout: seconds of silence before a member is closed, or
        L{None} to let idle members stay.
    @ivar instance: the name of this server, which the welcome tells: where
        several serve one room, the one a member is on.
    """

    room: ChatRoom
    clock: IReactorTime
    maxLine: int = DEFAULT_MAX_LINE
    backlog: int = DEFAULT_BACKLOG
    rate: float = DEFAULT_RATE
    burst: int = DEFAULT_BURST
    idleTimeout: float | None = None
    instance: str = "netdemos"


@implementer(IMember, IPushProducer)
class RoomMember(ClockedTimeoutMixin):
    """
    One member of the room, on some wire.

    Reading is fair: the lines it sends wait in a queue, and are handled only
    as fast as its L{TokenBucket} allows and at most L{LINES_PER_TURN} per
    turn.  While lines wait, its transport is paused (no more reads), so the
    kernel's buffers fill and TCP slows the sender down; nothing it sends is
    lost.

    Writing: it is the L{IPushProducer} of its own transport, which calls
    L{pauseProducing} when its send buffer is full because the member is not
    reading, and L{resumeProducing} once that buffer has drained.  What is
    sent while paused is counted; past the backlog limit the member is
    dropped, so one stalled reader costs bounded memory and never slows the
    others.

    A wire provides L{send}, to encode a batch of lines for it and L{write}
    them, and L{loseConnection}; writes everything else it sends through
    L{write} too; and calls L{joinRoom}, L{linesReceived} and L{left} as its
    connection comes, speaks and goes.

    @ivar transport: the byte stream under the member (TCP, TLS or UNIX: each
        provides ITransport and IConsumer, which Twisted has no single
        interface for); it is what is paused and what is aborted.
    @ivar unsent: roughly how many bytes wait to be sent to this member, while
        it is behind (0 otherwise).
    """

    name = ""
    transport: Any

    def __init__(self, settings: MemberSettings) -> None:
        self._settings = settings
        self.clock = settings.clock
        self.room = settings.room
        # Set once we have decided to close: from then on nothing is read,
        # relayed or sent.
        self.closing = False
        # Lines read but not yet handled; an empty deque costs 600 bytes, so
        # an idle member (most of a crowd) has none.
        self._waiting: deque[bytes | None] | None = None
        self._bucket = TokenBucket(settings.clock, settings.rate, settings.burst)
        self._nextBatch: IDelayedCall | None = None
        # Its lines wait until the room is clear (see ChatRoom.backpressure).
        self._held = False
        self._behindCall: IDelayedCall | None = None
        self._readsPaused = False
        self._ended = False
        self._behind = False
        self.unsent = 0
        self._abortCall: IDelayedCall | None = None

    # What a wire must provide

    def send(self, data: bytes) -> None:
        """
        Send C{data}, CR LF ended lines as the room encodes them, in whatever
        form this wire wants, with L{write}.
        """
        raise NotImplementedError()

    def loseConnection(self) -> None:
        """
        Close once what was sent has been written.
        """
        raise NotImplementedError()

    # The connection's life, as the wire reports it

    def joinRoom(self) -> None:
        """
        The connection is up: register as the producer of its transport, and
        enter the room named by the peer's address.
        """
        self.setTimeout(self._settings.idleTimeout)
        self._fixSendBuffer()
        self.name = self.room.uniqueName(nameForAddress(self.transport.getPeer()))
        self.transport.registerProducer(self, True)
        self.room.join(
            self,
            f"* welcome, you are {self.name} ({len(self.room) + 1} in the room)"
            f" on {self._settings.instance}; /help lists commands",
        )

    def _fixSendBuffer(self, size: int = SEND_BUFFER) -> None:
        # A fixed size also stops Linux from autotuning it to megabytes.
        sock = socketOf(self.transport)
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
            except OSError:
                pass

    def linesReceived(self, lines: Iterable[bytes | None]) -> None:
        """
        Queue lines the peer sent, L{None} standing for one that was too long,
        and handle what the rate allows now.
        """
        self.resetTimeout()
        if self._waiting is None:
            self._waiting = deque(lines)
        else:
            self._waiting.extend(lines)
        if not self._batchPending:
            self._handleWaiting()

    @property
    def _batchPending(self) -> bool:
        return self._nextBatch is not None or self._held

    def inputEnded(self) -> None:
        """
        The peer has said all it will: answer what it said, then close.
        """
        self._ended = True
        if not self._batchPending:
            self.close("left")

    def left(self) -> None:
        """
        The connection is gone: leave the room.
        """
        self.setTimeout(None)
        self.room.leave(self)
        self.closing = True
        self._notBehind()
        for call in (self._abortCall, self._nextBatch, self._behindCall):
            if call is not None and call.active():
                call.cancel()

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
            if self.room.congested:
                self._pauseReads()
                self._held = True
                self.room.holdUntilClear(self)
                return
            if not self._bucket.take():
                self._later(self._bucket.wait())
                return
            budget -= 1
            line = waiting.popleft()
            if line is None:
                self.tell(
                    f"! line too long: over {self._settings.maxLine} bytes, discarded"
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
        self._pauseReads()
        self._nextBatch = self._settings.clock.callLater(delay, self._handleWaiting)

    def _pauseReads(self) -> None:
        if not self._readsPaused:
            self._readsPaused = True
            self.transport.pauseProducing()

    def roomClear(self) -> None:
        self._held = False
        self._handleWaiting()

    def timeoutConnection(self) -> None:
        if self.closing:
            return
        self.room.clientsDropped["idle"] += 1
        self.tell(f"! idle for {self._settings.idleTimeout:g} seconds; disconnecting")
        self.close("left (idle)")

    # What a member can say

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
        Send one line to this member only, after what the room said before it.
        """
        self.room.tell(self, text)

    def deliver(self, data: bytes) -> None:
        """
        Send encoded lines; L{write} drops this member if it is too far behind.
        """
        if self.closing or not data:
            return
        self.send(data)

    def write(self, data: bytes) -> None:
        """
        Write C{data}, as the wire frames it, to the transport, dropping this
        member if it is too far behind.

        Whatever the bytes are, the room's lines or what the wire sends of its
        own accord (a WebSocket's answers to pings), while the member is
        behind they wait in the transport, and count toward its backlog.
        """
        self.transport.write(data)
        if self._behind:
            self.unsent += len(data)
            self.room.stillBehind(len(data))
            if (
                self._behindCall is None
                and self.room.backpressure
                and self.unsent - TRANSPORT_BUFFER >= self._settings.backlog // 2
            ):
                self._holdTheRoom()
            if (
                self.unsent - TRANSPORT_BUFFER > self._settings.backlog
                and self._abortCall is None
                and not self.closing
            ):
                self._dropAsTooSlow(
                    b"more than %d bytes of output were waiting for you to read"
                    % (self._settings.backlog,)
                )

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
            self.send(last)
        self._notBehind()
        self.loseConnection()

    def _dropAsTooSlow(self, why: bytes) -> None:
        self.room.clientsDropped["slow"] += 1
        # It is not reading, so a clean close may never finish flushing.  Set
        # first: it also says the drop is under way to the writes that follow.
        self._abortCall = self._settings.clock.callLater(
            DROP_GRACE_SECONDS, self.transport.abortConnection
        )
        self.send(b"! disconnected: %s\r\n" % (why,))
        self.close("was dropped (too slow)")

    def dropForMemory(self) -> None:
        """
        Drop this member at once, to give back the memory its unsent output
        holds: the room is over its budget and this member is furthest behind.
        """
        self.room.clientsDropped["memory"] += 1
        self.close("was dropped (too far behind)")
        self.transport.abortConnection()

    def _notBehind(self) -> None:
        if self._behindCall is not None:
            if self._behindCall.active():
                self._behindCall.cancel()
            self._behindCall = None
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

    def _holdTheRoom(self) -> None:
        """
        Far behind in a load test: have the room hold its senders until this
        member has caught up, which it must do within L{BEHIND_LIMIT}; and
        give it a larger send buffer meanwhile.
        """
        self.room.congest(self)
        self._fixSendBuffer(LOAD_TEST_SEND_BUFFER)
        self._behindCall = self._settings.clock.callLater(
            BEHIND_LIMIT,
            self._dropAsTooSlow,
            b"behind for more than %g seconds while the room waited for you"
            % (BEHIND_LIMIT,),
        )

    def resumeProducing(self) -> None:
        self._notBehind()

    def stopProducing(self) -> None:
        pass


def nameForAddress(address: IAddress) -> str | None:
    """
    Name a member by its own address, C{HOST:PORT} (C{[HOST]:PORT} for IPv6);
    L{None} for an address that names nobody, such as a UNIX socket's peer.
    An IPv4 client of an IPv6 socket (C{::ffff:127.0.0.1}) is named by its
    IPv4 address, as it would be on an IPv4 socket.
    """
    if isinstance(address, IPv4Address):
        return f"{address.host}:{address.port}"
    if isinstance(address, IPv6Address):
        mapped = _ipv4Mapped(address.host)
        if mapped is not None:
            return f"{mapped}:{address.port}"
        return f"[{address.host}]:{address.port}"
    return None


def _ipv4Mapped(host: str) -> str | None:
    try:
        mapped = ipaddress.IPv6Address(host).ipv4_mapped
    except ValueError:  # a scoped address, say
        return None
    return None if mapped is None else str(mapped)


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
