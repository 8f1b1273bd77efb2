"""
The chat room: membership, names, announcements, and fan-out.

Everything the room says during one turn of the reactor (lines, notices,
replies to one member) is collected in a L{Turn} and sent at the end of that
turn as one write per member: in a busy room the writes are nearly all the
work, and a write costs about the same for one line as for ten.  So a flood of
commands costs bounded work per turn, however big the room.

The room never sees a socket: a member is anything that provides L{IMember}.
Nor does it know how far it reaches: what happens in it goes through its
L{IHub}, and the room acts on it when the hub calls it back, in the hub's
order, whether the hub is this process alone or every instance on one Redis.
"""

from __future__ import annotations

from collections import Counter

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from zope.interface import Attribute, Interface, implementer

from netdemos.chat.hub import IHub, IHubListener, LocalHub
from netdemos.chat.rate import TokenBucket

log = Logger()

# Unsent output the whole room may hold before the members furthest behind are
# dropped: without it, a crowd that connects and never reads could make each
# member's backlog add up to gigabytes.
DEFAULT_MEMORY = 64 * 1024 * 1024

# Joins, departures and renames are announced only in a room of at most this
# many: each announcement goes to everyone, so in a crowd they cost O(N) writes
# apiece and O(N * N) as the crowd arrives, and nobody could read them anyway.
# (Twitch's chat does the same above 1000 users.)
ANNOUNCE_LIMIT = 1000

# And at most this many a second (with this burst), room-wide: beyond that, a
# churn of members coming and going would have the room write to everyone
# hundreds of times a second, for notices nobody can read at that speed.
ANNOUNCE_RATE = 20.0
ANNOUNCE_BURST = 100


class IMember(Interface):
    """
    A member of the room, as the room sees it.
    """

    name = Attribute("The member's name in the room; the room renames it.")
    unsent = Attribute("Bytes waiting to be sent to it, while it is behind.")

    def deliver(data: bytes) -> None:
        """
        Send C{data}, lines the room encoded once for everyone (CR LF ended).
        """

    def close(why: str) -> None:
        """
        Leave the room (the others are told it C{why}, e.g. "left") and close.
        """

    def dropForMemory() -> None:
        """
        Go at once: the room is over its memory budget and this member is the
        furthest behind.
        """

    def roomClear() -> None:
        """
        The room, which held this member's lines back while others were
        behind (L{ChatRoom.holdUntilClear}), is clear: go on with them.
        """


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
        self._ops: dict[IMember, list[tuple[int, bytes | None]]] = {}
        self._starts: dict[IMember, int] = {}

    def __bool__(self) -> bool:
        return bool(self.chunks or self._ops)

    def toAll(self, data: bytes) -> None:
        self.chunks.append(data)

    def toOne(self, member: IMember, data: bytes) -> None:
        self._ops.setdefault(member, []).append((len(self.chunks), data))

    def skipNext(self, member: IMember) -> None:
        """
        The next chunk is not for C{member}.
        """
        self._ops.setdefault(member, []).append((len(self.chunks), None))

    def startHere(self, member: IMember) -> None:
        """
        C{member} gets only the chunks from here on: it was not there before.
        """
        self._starts[member] = len(self.chunks)

    def hasOwn(self, member: IMember) -> bool:
        return member in self._ops or member in self._starts

    def withOwn(self) -> list[IMember]:
        """
        The members with ops of their own or a later start, in no set order.
        """
        return list(self._ops.keys() | self._starts.keys())

    def dataFor(self, member: IMember) -> bytes:
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

    def forget(self, member: IMember) -> None:
        self._ops.pop(member, None)
        self._starts.pop(member, None)


@implementer(IHubListener)
class ChatRoom:
    """
    The room: who is in it, under what name, and what it has to send them.

    It knows nothing of sockets: its members are L{IMember}s (TCP and
    WebSocket clients), each of which encodes what the room gives it for its
    own wire.
    One room may be served on several endpoints, all of whose factories hand
    it to the members they build.

    Its members are this instance's; the L{hub} knows everyone, on every
    instance, and calls the room back with each event (a line, a join...) in
    the order every instance sees them.

    @ivar unsent: bytes the members that are behind have waiting, in all.
    @ivar closed: the server is going away, and has closed the room.
    @ivar behind: the members whose transports have asked them to pause.
    @ivar backpressure: whether the room holds its senders back while any
        member is far behind (see L{congested}), as a load test with flood control
        lifted wants: the senders then go at the pace of the slowest reader,
        as TCP would make them, instead of outrunning the readers until they
        are dropped.  A member must then not stay behind for longer than
        L{netdemos.chat.member.BEHIND_LIMIT}, so one that does not read holds
        the room back for no longer than that.
    """

    def __init__(
        self,
        clock: IReactorTime,
        memory: int = DEFAULT_MEMORY,
        hub: IHub | None = None,
        backpressure: bool = False,
    ) -> None:
        self.clock = clock
        self.memory = memory
        self.backpressure = backpressure
        # Members whose lines wait until the room is clear, in order; and
        # the members far behind, for whom they wait.
        self._held: dict[IMember, None] = {}
        self._congesting: set[IMember] = set()
        self._releaseCall: IDelayedCall | None = None
        self.hub = hub if hub is not None else LocalHub()
        self.hub.attach(self)
        # This instance's members, keyed by the casefolded name, so "Admin"
        # cannot pose as "admin".
        self._members: dict[str, IMember] = {}
        # The members whose join or rename the hub has not announced yet, by
        # the casefolded name they took: they are told themselves, and are
        # spared the announcement, even if they are renamed again meanwhile.
        self._announcing: dict[str, IMember] = {}
        self._who: str | None = None
        self._turn = Turn()
        self._flushCall: IDelayedCall | None = None
        self._announcements = TokenBucket(clock, ANNOUNCE_RATE, ANNOUNCE_BURST)
        self.unsent = 0
        self.behind: set[IMember] = set()
        self.messagesRelayed = 0
        self.clientsDropped: Counter[str] = Counter()
        self._anonymous = 0
        self.closed = False

    def uniqueName(self, preferred: str | None) -> str:
        """
        A name for a newcomer: C{preferred} (its address, say), or
        C{local-N}, unique in this room, for one without an address (a UNIX
        socket's peer) or whose address is already a member's name (with
        several instances, the kernel may give two clients of two servers
        the same local port).
        """
        name = preferred
        while name is None or self.isTaken(name):
            self._anonymous += 1
            name = f"local-{self._anonymous}"
        return name

    def __len__(self) -> int:
        return self.hub.count()

    def names(self) -> list[str]:
        return self.hub.names()

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
        return name.casefold() in self._members or self.hub.isTaken(name)

    def _announce(
        self, notice: str, crowd: int, exclude: IMember | None = None
    ) -> bool:
        """
        Tell everyone (but C{exclude}) of a join, departure or rename, unless
        the room (C{crowd}, counting the client concerned) is a crowd, or such
        notices are coming too fast to read.

        @return: whether it was announced.  What is not announced is not
            logged one by one either, for the same reason: a crowd arriving,
            or a client churning, would cost a log line each, most of the
            reactor's time and the log's disk.
        """
        if crowd > ANNOUNCE_LIMIT or not self._announcements.take():
            return False
        if exclude is not None:
            self._turn.skipNext(exclude)
        self._queue(f"{notice}\r\n".encode())
        return True

    def join(self, client: IMember, welcome: str) -> None:
        """
        Let C{client} in: it is told C{welcome}, the others that it joined.
        What was said before it joined is not for it.
        """
        self._members[client.name.casefold()] = client
        self._turn.startHere(client)
        self.tell(client, welcome)
        self._who = None
        self._announcing[client.name.casefold()] = client
        self.hub.join(client.name)

    def joined(self, name: str, crowd: int, here: bool) -> None:
        self._who = None
        # Its welcome said it all.
        if self._announce(
            f"* {name} joined ({crowd} in the room)",
            crowd,
            exclude=self._announcing.pop(name.casefold(), None) if here else None,
        ):
            log.info(
                "chat: {name} joined ({count} in the room)", name=name, count=crowd
            )

    def leave(self, client: IMember, why: str = "left") -> bytes:
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
        self._held.pop(client, None)
        last = self._turn.dataFor(client)
        self._turn.forget(client)
        self._who = None
        self.hub.leave(client.name, why)
        return last

    def left(self, name: str, why: str, crowd: int) -> None:
        self._who = None
        if self._announce(f"* {name} {why}", crowd):
            log.info(
                "chat: {name} {why} ({count} in the room)",
                name=name,
                why=why,
                count=crowd - 1,
            )

    def rename(self, client: IMember, newName: str) -> None:
        oldName = client.name
        del self._members[oldName.casefold()]
        client.name = newName
        self._members[newName.casefold()] = client
        self._who = None
        self._announcing[newName.casefold()] = client
        self.hub.rename(oldName, newName)

    def renamed(self, old: str, new: str, crowd: int, here: bool) -> None:
        self._who = None
        # It was told already.
        if self._announce(
            f"* {old} is now {new}",
            crowd,
            exclude=self._announcing.pop(new.casefold(), None) if here else None,
        ):
            log.info("chat: {old} is now {new}", old=old, new=new)

    def nameRefused(self, name: str, previous: str | None) -> None:
        self._announcing.pop(name.casefold(), None)
        member = self._members.get(name.casefold())
        if member is None or member.name != name:
            return  # gone, or renamed again, meanwhile
        del self._members[name.casefold()]
        if previous is not None:
            member.name = previous
            self._members[previous.casefold()] = member
            self.tell(
                member,
                f"! {name} was taken on another server first; you are {previous}",
            )
            return
        member.name = self.uniqueName(None)
        self._members[member.name.casefold()] = member
        self.hub.join(member.name)
        self.tell(
            member,
            f"* you are now {member.name}: {name} is in the room on another server",
        )

    def linkChanged(self, whole: bool, crowd: int) -> None:
        self._who = None
        if whole:
            notice = f"* back in touch with the other servers ({crowd} in the room)"
            self._queue(f"{notice}\r\n".encode())
        else:
            self._queue(
                b"! cut off from the other servers: until they are back, this room"
                b" is only this server's\r\n"
            )

    def close(self) -> None:
        """
        Tell everyone the server is going away, and have each member close
        once that line is sent.  Once is enough: each service its members
        come through (TCP, WebSocket) asks, as the server stops.
        """
        if self.closed:
            return
        self.closed = True
        self._queue(b"* server shutting down\r\n")
        self.flush()
        # Empty the room first: otherwise each departure would be announced to
        # everyone still there, N * N lines for nobody to read.  The hub tells
        # the other instances, if any, that they all left.
        members, self._members = list(self._members.values()), {}
        self._held.clear()
        self._congesting.clear()
        self.hub.close()
        for client in members:
            client.close("left (server shutting down)")
        log.info("chat: closed the room ({count} clients)", count=len(members))

    def say(self, sender: IMember, text: str) -> None:
        """
        Relay one line of text from C{sender} to everybody, the sender included.

        The line is formatted and encoded once, not once per recipient as in
        the textbook example.  And it is not sent at once: see L{flush}.
        """
        self.messagesRelayed += 1
        self.hub.say(f"<{sender.name}> {text}")

    def heard(self, line: str) -> None:
        self._queue(f"{line}\r\n".encode())

    def tell(self, client: IMember, text: str) -> None:
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
        if turn.chunks:
            everyone = b"".join(turn.chunks)
            # A copy, because a recipient that is too slow leaves during the loop.
            for client in list(self._members.values()):
                data = turn.dataFor(client) if turn.hasOwn(client) else everyone
                if data:
                    client.deliver(data)
        else:
            # Only replies and welcomes: a crowd arriving, or one client
            # asking /who, costs nothing for the members who get nothing.
            for client in turn.withOwn():
                if self._members.get(client.name.casefold()) is client:
                    client.deliver(turn.dataFor(client))
        if self.unsent > self.memory:
            self.overBudget()

    def fellBehind(self, member: IMember, unsent: int) -> None:
        """
        C{member}'s transport has asked it to pause: it holds C{unsent} bytes.
        """
        self.behind.add(member)
        self.unsent += unsent

    def stillBehind(self, unsent: int) -> None:
        """
        A member that is behind was given C{unsent} more bytes.
        """
        self.unsent += unsent

    def caughtUp(self, member: IMember, unsent: int) -> None:
        """
        C{member}, which held C{unsent} bytes, is no longer behind (its buffer
        drained, or it is gone).
        """
        self.behind.discard(member)
        self.unsent -= unsent
        self.clear(member)

    def congest(self, member: IMember) -> None:
        """
        C{member} is far behind (with L{backpressure}): hold the senders.
        """
        self._congesting.add(member)

    def clear(self, member: IMember) -> None:
        """
        C{member} is no longer far behind (it caught up, or it is gone): once
        nobody is, let the senders go on.
        """
        self._congesting.discard(member)
        if self._held and not self._congesting and self._releaseCall is None:
            # Not from here: a transport is telling us its buffer drained.
            self._releaseCall = self.clock.callLater(0, self._release)

    @property
    def congested(self) -> bool:
        """
        Whether senders must wait: while any member is far behind.
        """
        return bool(self._congesting)

    def holdUntilClear(self, member: IMember) -> None:
        """
        Call C{member}'s L{IMember.roomClear} once the room is no longer
        L{congested}.
        """
        self._held[member] = None

    def _release(self) -> None:
        self._releaseCall = None
        while self._held and not self.congested:
            member = next(iter(self._held))
            del self._held[member]
            member.roomClear()

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
