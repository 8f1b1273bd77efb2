"""
The hub of a room served by every instance on one Redis: L{RedisHub}.

Events go through one Redis channel, and every instance hears them in the
order Redis delivers them.  Presence (which instance is alive, and which
names its members hold) is kept in Redis by Lua scripts, each atomic: they
are package data, in C{netdemos/lua/room*.lua}.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from netdemos.chat.hub import Attached, IHub
from netdemos.chat.lines import DEFAULT_MAX_LINE, cleanText
from netdemos.scripts import luaScript

if TYPE_CHECKING:
    # Only its type: txredisapi imports the reactor, and only --redis needs it.
    from netdemos.redis import IRedisLink

log = Logger()


def roomScript(name: str) -> str:
    """
    The room's script in C{netdemos/lua/NAME}, after the preamble they share.
    """
    return luaScript("room.lua", name)


# An instance renews its presence every HEARTBEAT_INTERVAL seconds; one that
# has not for PRESENCE_TTL seconds is taken for dead by the next instance to
# renew, which tells the room its members left.  So a dead instance's members
# are gone within PRESENCE_TTL + HEARTBEAT_INTERVAL = 13 s, and an instance
# may miss two renewals (a GC pause, a slow Redis) before it is.
HEARTBEAT_INTERVAL = 3.0
PRESENCE_TTL = 10.0

# The scripts below keep, under PREFIX:room:, a sorted set "instances" of the
# live instances by the time (Redis's clock, in ms) their presence expires,
# and a hash "names:INSTANCE" of each one's members, casefolded name -> name.
# Each runs atomically, so that two instances cannot both take a name, and
# publishes what it changed on the room's channel, in the same step, so that
# every instance hears it in the same place among the room's events.  Each
# is given the instances key and this instance's names key; it reaches the
# other instances' names keys through the first (fine for one Redis; a
# cluster would need them in one hash slot, which netdemos does not arrange).
# A script that would add to Redis begins with a command that does (ZADD,
# HSET): a full Redis refuses a script's first such write, but lets through
# the ones after a write that frees memory (DEL, HDEL), so the other order
# would look like success to a Redis that refuses everything else.


PUBLISH_SCRIPT = roomScript("room-publish.lua")

REGISTER_SCRIPT = roomScript("room-register.lua")

HEARTBEAT_SCRIPT = roomScript("room-heartbeat.lua")

UNREGISTER_SCRIPT = roomScript("room-unregister.lua")

# A line (its text), or a presence change ({"t": "join", ...}).
Event = str | dict[str, Any]

# After a write the room needs fails while the link stays up (Redis full, a
# key of the wrong type, a script error), try to join again this often.
RETRY_INTERVAL = 1.0

# What a name may be, as read from Redis: a nick (letters, digits, _ and -),
# an address (digits, hex, '.', ':', '[', ']', '%' for a scope) or local-N.
_NAME = re.compile(r"[\w.:%\[\]-]{1,100}", re.ASCII)
_INSTANCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# How a departure is explained ("left", "left (lost with its server)"...).
MAX_WHY = 100
# A line is "<NAME> TEXT": the longest a member may say, and its name.
LINE_OVERHEAD = 100 + 3


class BadMessageError(ValueError):
    """
    A message read from the room's channel that netdemos did not write: the
    message says what is wrong with it.
    """


@dataclass(frozen=True)
class Batch:
    """
    One instance's events of one turn, as read from the room's channel.

    @ivar origin: the instance that published it.
    @ivar sequence: its number among that instance's batches, or 0 for a
        batch a script published (presence, reaping).
    """

    origin: str
    sequence: int
    events: list[Event]


def parseBatch(message: object, maxLine: int = DEFAULT_MAX_LINE) -> Batch:
    """
    Read a message from the room's channel as a L{Batch}, checking every part
    of it: Redis may be shared with other programs, and anyone who can
    publish there could otherwise forge presence or send control characters
    to every member.  Lines are cleaned as lines from a socket are.

    @param maxLine: the longest line a member may say, in bytes.
    @raise BadMessageError: if it is not one netdemos could have written.
    """
    if not isinstance(message, str):
        raise BadMessageError(f"not text but {type(message).__name__}")
    try:
        batch = json.loads(message)
    except ValueError:
        raise BadMessageError("not JSON") from None
    if not isinstance(batch, dict):
        raise BadMessageError("not a JSON object")
    origin, sequence, events = batch.get("i"), batch.get("s"), batch.get("e")
    if not isinstance(origin, str) or not _INSTANCE.fullmatch(origin):
        raise BadMessageError("no valid instance name")
    if type(sequence) is not int or sequence < 0:
        raise BadMessageError("no valid sequence number")
    if not isinstance(events, list) or not events:
        raise BadMessageError("no events")
    longest = maxLine + LINE_OVERHEAD
    return Batch(origin, sequence, [_event(each, longest) for each in events])


def _event(event: object, longest: int) -> Event:
    if isinstance(event, str):
        # A character is 1 to 4 bytes: encode only a line that may be long.
        if len(event) * 4 > longest and len(event.encode("utf-8", "replace")) > longest:
            raise BadMessageError("a line too long")
        return cleanText(event)
    if not isinstance(event, dict):
        raise BadMessageError("an event that is neither a line nor an object")
    kind = event.get("t")
    if kind in ("join", "join-refused"):
        name = _name(event.get("n"))
        return {"t": kind, "n": name, "f": name.casefold()}
    if kind in ("rename", "rename-refused"):
        name, old = _name(event.get("n")), _name(event.get("o"))
        return {
            "t": kind,
            "n": name,
            "f": name.casefold(),
            "o": old,
            "of": old.casefold(),
        }
    if kind == "leave":
        name = _name(event.get("n"))
        return {"t": kind, "n": name, "f": name.casefold(), "w": _why(event)}
    if kind == "sync":
        return {"t": kind, "names": _names(event)}
    if kind == "gone":
        return {"t": kind, "names": _names(event), "w": _why(event)}
    raise BadMessageError(f"an event of no known kind ({str(kind)[:20]!r})")


def _name(name: object) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise BadMessageError("an event without a valid name")
    return name


def _why(event: dict[str, Any]) -> str:
    why = event.get("w")
    if not isinstance(why, str) or not why or len(why) > MAX_WHY:
        raise BadMessageError("a departure without a valid reason")
    return cleanText(why)


def _names(event: dict[str, Any]) -> list[str]:
    # Lua's cjson encodes an empty list as {}.
    names = event.get("names")
    if names == {}:
        return []
    if not isinstance(names, list):
        raise BadMessageError("an event without a list of names")
    return [_name(each) for each in names]


@implementer(IHub)
class RedisHub(Attached):
    """
    The hub of a room that spans every instance on one Redis.

    Each turn of the reactor, the events of this instance go to Redis as one
    message on the room's channel (through L{PUBLISH_SCRIPT} when the batch
    claims or gives up names); every instance, this one included, acts on
    them only when Redis delivers them, so all see one order.

    While the link is down, or Redis refuses the writes the room needs
    (full, a key of the wrong type, a failing script), the instance is a room
    of its own: events are heard at once, as with a L{LocalHub}, and the
    members are told they are cut off.  When writes succeed again, the
    instance registers its members again, resolving any name another
    instance took meanwhile, reads who is on the others, and tells its
    members the room is whole.  What was sent but not heard back when it was
    cut off is heard locally then, and never again: nothing is delivered
    twice.  An instance the others took for dead (paused longer than
    L{PRESENCE_TTL}) finds out from its next heartbeat, or from hearing its
    own departure, and joins again the same way.

    Everything read from the channel is checked (L{parseBatch}); what does
    not parse is dropped and counted, never acted on.

    @ivar whole: connected to the room across instances, and in sync with it.
    """

    def __init__(
        self,
        link: IRedisLink,
        clock: IReactorTime,
        instance: str,
        heartbeat: float = HEARTBEAT_INTERVAL,
        ttl: float = PRESENCE_TTL,
        maxLine: int = DEFAULT_MAX_LINE,
    ) -> None:
        self.link = link
        self.clock = clock
        self.instance = instance
        self.channel = f"{link.prefix}:room"
        self.whole = False
        self._ttl = ttl
        # Who is in the room: casefolded name -> (name, instance).
        self._presence: dict[str, tuple[str, str]] = {}
        self._outbox: list[Event] = []
        self._sendCall: IDelayedCall | None = None
        self._sequence = 0
        # The batches sent and not yet heard back, by sequence number.
        self._unheard: dict[int, list[Event]] = {}
        self._cutOff = False
        self._maxLine = maxLine
        self._retryCall: IDelayedCall | None = None
        self._closed = False
        self._heartbeat = LoopingCall(self._beat)
        self._heartbeat.clock = clock
        self._heartbeatInterval = heartbeat
        link.subscribe(self.channel, self._received)
        link.watch(self._linkUp, self._linkDown)

    # What the room says

    def say(self, line: str) -> None:
        # Lines are nearly all the traffic: a line is its bare text, while
        # the rare presence events are objects.
        self._publish(line)

    def join(self, name: str) -> None:
        folded = name.casefold()
        self._presence[folded] = (name, self.instance)
        self._publish({"t": "join", "n": name, "f": folded})

    def leave(self, name: str, why: str) -> None:
        folded = name.casefold()
        self._forget(folded, self.instance)
        self._publish({"t": "leave", "n": name, "f": folded, "w": why})

    def rename(self, old: str, new: str) -> None:
        self._forget(old.casefold(), self.instance)
        self._presence[new.casefold()] = (new, self.instance)
        self._publish(
            {
                "t": "rename",
                "n": new,
                "f": new.casefold(),
                "o": old,
                "of": old.casefold(),
            }
        )

    def isTaken(self, name: str) -> bool:
        return name.casefold() in self._presence

    def names(self) -> list[str]:
        return sorted(name for name, _ in self._presence.values())

    def count(self) -> int:
        return len(self._presence)

    def close(self) -> None:
        self._closed = True
        if self._heartbeat.running:
            self._heartbeat.stop()
        self._cancelRetry()
        if self.link.up:
            self._evaluate(UNREGISTER_SCRIPT)

    def _publish(self, event: Event) -> None:
        if not self.whole:
            self._hear(event, self.instance)
            return
        self._outbox.append(event)
        if self._sendCall is None:
            self._sendCall = self.clock.callLater(0, self._send)

    def _send(self) -> None:
        self._sendCall = None
        if not self._outbox:
            return
        events, self._outbox = self._outbox, []
        self._sequence += 1
        self._unheard[self._sequence] = events
        payload = json.dumps(
            {"i": self.instance, "s": self._sequence, "e": events},
            ensure_ascii=False,
            separators=(",", ":"),
        )
        sending: Deferred[Any]
        if all(isinstance(event, str) for event in events):
            sending = self.link.publish(self.channel, payload)
        else:
            sending = self._evaluate(PUBLISH_SCRIPT, payload)
        sending.addErrback(self._notSent, self._sequence)

    def _notSent(self, reason: Failure, sequence: int) -> None:
        if sequence not in self._unheard:
            return  # heard already, when the link went down
        # Refused (or unanswered) while the link is up: cut off until a
        # write succeeds; what was sent is heard here, once.
        log.warn("chat: could not publish to Redis: {reason}", reason=reason.value)
        self._fallApart()
        self._retrySoon()

    def _evaluate(self, script: str, *args: Any) -> Deferred[Any]:
        # The keys it names (another instance's names are found through the
        # first), so that a Redis user limited to PREFIX:* may run it.
        keys = [
            f"{self.link.prefix}:room:instances",
            f"{self.link.prefix}:room:names:{self.instance}",
        ]
        return self.link.evaluate(script, keys, [self.instance, *args])

    # What Redis delivers

    def _received(self, message: object) -> None:
        try:
            batch = parseBatch(message, self._maxLine)
        except BadMessageError as e:
            self.link.badMessage(self.channel, str(e))
            return
        if not self.whole:
            # Cut off, or catching up: what was published meanwhile is not
            # for this instance's members, who heard their own events at once.
            return
        if batch.origin == self.instance and batch.sequence:
            if self._unheard.pop(batch.sequence, None) is None:
                return  # heard already, when it could not be sent
        for event in batch.events:
            self._hear(event, batch.origin)
            if not self.whole:
                return  # taken for dead: the rest is for after joining again

    def _hear(self, event: Event, origin: str) -> None:
        """
        Act on one event from C{origin}, in hub order.
        """
        room = self.room
        if isinstance(event, str):
            room.heard(event)
            return
        kind = event["t"]
        if kind == "join":
            self._presence[event["f"]] = (event["n"], origin)
            room.joined(event["n"], self.count(), origin == self.instance)
        elif kind == "leave":
            self._forget(event["f"], origin)
            room.left(event["n"], event["w"], self.count() + 1)
        elif kind == "rename":
            self._forget(event["of"], origin)
            self._presence[event["f"]] = (event["n"], origin)
            room.renamed(event["o"], event["n"], self.count(), origin == self.instance)
        elif kind in ("join-refused", "rename-refused") and origin == self.instance:
            self._forget(event["f"], origin)
            previous = event.get("o")
            if previous is not None:
                self._presence[event["of"]] = (previous, origin)
            room.nameRefused(event["n"], previous)
        elif kind == "sync" and origin != self.instance:
            # An instance joined again (after a cut, or taken for dead): its
            # members who were said to have left are back.
            before = set(self._presence)
            self._forgetInstance(origin)
            for name in event["names"]:
                self._presence[name.casefold()] = (name, origin)
            for name in event["names"]:
                if name.casefold() not in before:
                    room.joined(name, self.count(), False)
        elif kind == "gone" and origin != self.instance:
            self._forgetInstance(origin)
            for name in event["names"]:
                room.left(name, event["w"], self.count() + 1)
        elif kind == "gone" and event["names"]:
            # Another instance took this one for dead and said its members
            # left: they did not, so join again.
            self._rejoin()

    def _forget(self, folded: str, instance: str) -> None:
        if self._presence.get(folded, ("", ""))[1] == instance:
            del self._presence[folded]

    def _forgetInstance(self, instance: str) -> None:
        self._presence = {
            folded: entry
            for folded, entry in self._presence.items()
            if entry[1] != instance
        }

    # The link

    def _linkUp(self) -> None:
        self._register()

    def _register(self) -> None:
        ours = [
            name for name, where in self._presence.values() if where == self.instance
        ]
        pairs = [part for name in ours for part in (name.casefold(), name)]
        registering = self._evaluate(REGISTER_SCRIPT, int(self._ttl * 1000), *pairs)
        registering.addCallbacks(self._registered, self._registerFailed)

    def _registered(self, result: Sequence[Any]) -> None:
        if not self.link.up or self.whole or self._closed:
            return
        self._cancelRetry()
        refused, others = result
        for position in range(0, len(others), 2):
            instance, names = others[position], others[position + 1]
            for name in names:
                self._presence[name.casefold()] = (name, instance)
        for name in refused:
            self._forget(name.casefold(), self.instance)
        wasWhole, self.whole = self.whole, True
        if not self._heartbeat.running:
            self._heartbeat.start(self._heartbeatInterval, now=False)
        for name in refused:
            self.room.nameRefused(name, None)
        if self._cutOff and not wasWhole:
            self._cutOff = False
            self.room.linkChanged(True, self.count())
        log.info(
            "chat: {instance} is in the room on Redis ({count} in the room)",
            instance=self.instance,
            count=self.count(),
        )

    def _registerFailed(self, reason: Failure) -> None:
        # The link drops a Redis that stops answering, and comes up again;
        # one that answers with an error is asked again.
        log.debug(
            "chat: cannot join the room on Redis: {reason}",
            reason=reason.getErrorMessage(),
        )
        self._retrySoon()

    def _retrySoon(self) -> None:
        if self._retryCall is None and self.link.up and not self._closed:
            self._retryCall = self.clock.callLater(RETRY_INTERVAL, self._retry)

    def _retry(self) -> None:
        self._retryCall = None
        if self.link.up and not self.whole:
            self._register()

    def _cancelRetry(self) -> None:
        if self._retryCall is not None and self._retryCall.active():
            self._retryCall.cancel()
        self._retryCall = None

    def _beat(self) -> None:
        beating = self._evaluate(HEARTBEAT_SCRIPT, int(self._ttl * 1000))
        beating.addCallbacks(self._beaten, self._notBeaten)

    def _beaten(self, result: int) -> None:
        if result == -1 and self.link.up:
            self._rejoin()

    def _notBeaten(self, reason: Failure) -> None:
        # Unrenewed, this instance's presence will expire and the others will
        # say its members left: cut off until Redis takes writes again.
        if self.link.up:
            log.warn("chat: could not renew presence: {reason}", reason=reason.value)
            self._fallApart()
            self._retrySoon()

    def _rejoin(self) -> None:
        """
        The others took this instance for dead (a long pause?) and its
        members for gone: stop delivering what they said since, which
        assumed so, and join again, as after a cut.
        """
        if self._closed:
            return  # its own goodbye, as it stops
        log.warn(
            "chat: {instance} was taken for dead; joining again",
            instance=self.instance,
        )
        self._fallApart()
        self._register()

    def _linkDown(self) -> None:
        self._cancelRetry()
        self._fallApart()

    def _fallApart(self) -> None:
        """
        Be a room of this instance's own until it can join again.
        """
        if self._heartbeat.running:
            self._heartbeat.stop()
        if not self.whole:
            return
        self.whole = False
        self._cutOff = True
        if self._sendCall is not None and self._sendCall.active():
            self._sendCall.cancel()
        self._sendCall = None
        # The others are out of reach: the room is this instance's alone.
        self._presence = {
            folded: entry
            for folded, entry in self._presence.items()
            if entry[1] == self.instance
        }
        pending = [
            event
            for sequence in sorted(self._unheard)
            for event in self._unheard[sequence]
        ]
        pending += self._outbox
        self._unheard.clear()
        self._outbox = []
        for event in pending:
            self._hear(event, self.instance)
        self.room.linkChanged(False, self.count())
