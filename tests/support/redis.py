"""
A fake Redis for unit tests of the code that uses one: a dict, pub/sub in
publish order, and links that a test takes up and down.

It fakes what netdemos asks of L{netdemos.redis.IRedisLink}, not Redis: the
Lua scripts netdemos sends are run by their Python equivalents, registered in
L{FakeRedis.scripts}.  The real thing, scripts included, is tested end to end
with a real redis-server (tests/test_e2e_redis.py).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from zope.interface import implementer

from netdemos.chat.redishub import (
    HEARTBEAT_SCRIPT,
    PUBLISH_SCRIPT,
    REGISTER_SCRIPT,
    UNREGISTER_SCRIPT,
)
from netdemos.counting import RAISE_SCRIPT, TAKE_SCRIPT
from netdemos.redis import IRedisLink, RedisUnavailableError

Script = Callable[["FakeRedis", Sequence[str], Sequence[Any]], Any]


def takeNumbers(redis: FakeRedis, keys: Sequence[str], args: Sequence[Any]) -> int:
    last = int(redis.store.get(keys[0], 0)) + int(args[0])
    redis.store[keys[0]] = last
    # A real Redis hands the number over as text, and txredisapi reads it as
    # an int (it converts what looks like a number).
    redis.publish(args[1], last)
    return last


def raiseCount(redis: FakeRedis, keys: Sequence[str], args: Sequence[Any]) -> list[int]:
    found = keys[0] in redis.store
    count = max(int(redis.store.get(keys[0], 0)), int(args[0]))
    redis.store[keys[0]] = count
    return [count, int(found)]


class RoomKeys:
    """
    The room's keys in a L{FakeRedis}, as the hub's scripts keep them.
    """

    def __init__(self, redis: FakeRedis, keys: Sequence[str], args: Sequence[Any]):
        self.redis = redis
        self.prefix = keys[0].removesuffix(":room:instances")
        self.me = args[0]
        assert keys[1] == f"{self.prefix}:room:names:{self.me}", keys
        self.channel = f"{self.prefix}:room"
        self.instances: dict[str, float] = redis.store.setdefault(
            f"{self.prefix}:room:instances", {}
        )
        self.now = redis.clock.seconds() * 1000

    def namesOf(self, instance: str) -> dict[str, str]:
        names: dict[str, str] = self.redis.store.setdefault(
            f"{self.prefix}:room:names:{instance}", {}
        )
        return names

    def takenElsewhere(self, folded: str) -> bool:
        return any(
            folded in self.namesOf(other)
            for other in self.instances
            if other != self.me
        )

    def publish(self, instance: str, events: list[dict[str, Any]]) -> None:
        self.redis.publish(
            self.channel, json.dumps({"i": instance, "s": 0, "e": events})
        )


def publishEvents(redis: FakeRedis, keys: Sequence[str], args: Sequence[Any]) -> int:
    room = RoomKeys(redis, keys, args)
    batch = json.loads(args[1])
    mine = room.namesOf(room.me)
    for event in batch["e"]:
        if isinstance(event, str):
            continue
        if event["t"] in ("join", "rename"):
            if room.takenElsewhere(event["f"]):
                event["t"] += "-refused"
            else:
                if event["t"] == "rename":
                    mine.pop(event["of"], None)
                mine[event["f"]] = event["n"]
        elif event["t"] == "leave":
            mine.pop(event["f"], None)
    redis.publish(room.channel, json.dumps(batch))
    return 1


def register(redis: FakeRedis, keys: Sequence[str], args: Sequence[Any]) -> list[Any]:
    room = RoomKeys(redis, keys, args)
    mine = room.namesOf(room.me)
    mine.clear()
    room.instances[room.me] = room.now + int(args[1])
    kept, refused = [], []
    for position in range(2, len(args), 2):
        folded, name = args[position], args[position + 1]
        if room.takenElsewhere(folded):
            refused.append(name)
        else:
            mine[folded] = name
            kept.append(name)
    others: list[Any] = []
    for other, expires in room.instances.items():
        if other != room.me and expires >= room.now:
            others += [other, list(room.namesOf(other).values())]
    if kept:
        room.publish(room.me, [{"t": "sync", "names": kept}])
    return [refused, others]


def heartbeat(redis: FakeRedis, keys: Sequence[str], args: Sequence[Any]) -> int:
    room = RoomKeys(redis, keys, args)
    if room.me not in room.instances:
        return -1
    room.instances[room.me] = room.now + int(args[1])
    dead = [other for other, expires in room.instances.items() if expires < room.now]
    for other in dead:
        gone = list(room.namesOf(other).values())
        del redis.store[f"{room.prefix}:room:names:{other}"]
        del room.instances[other]
        if gone:
            room.publish(
                other,
                [{"t": "gone", "names": gone, "w": "left (lost with its server)"}],
            )
    return len(dead)


def unregister(redis: FakeRedis, keys: Sequence[str], args: Sequence[Any]) -> int:
    room = RoomKeys(redis, keys, args)
    gone = list(room.namesOf(room.me).values())
    redis.store.pop(f"{room.prefix}:room:names:{room.me}", None)
    room.instances.pop(room.me, None)
    if gone:
        room.publish(
            room.me, [{"t": "gone", "names": gone, "w": "left (server shutting down)"}]
        )
    return 1


class FakeRedis:
    """
    One Redis server, shared by the links of several instances.

    Messages are delivered to every subscribed link that is up, in the order
    they were published, at the end of the clock's current turn, as a real
    Redis delivers them a little later than they were sent.
    """

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.store: dict[str, Any] = {}
        self.links: list[FakeRedisLink] = []
        self.published: list[tuple[str, object]] = []
        self.scripts: dict[str, Script] = {
            RAISE_SCRIPT: raiseCount,
            TAKE_SCRIPT: takeNumbers,
            PUBLISH_SCRIPT: publishEvents,
            REGISTER_SCRIPT: register,
            HEARTBEAT_SCRIPT: heartbeat,
            UNREGISTER_SCRIPT: unregister,
        }

    def link(self, prefix: str = "test") -> FakeRedisLink:
        link = FakeRedisLink(self, prefix)
        self.links.append(link)
        return link

    def flush(self) -> None:
        """
        Forget every key, as a Redis restarted without persistence does.
        """
        self.store.clear()

    def publish(self, channel: str, message: object) -> int:
        self.published.append((channel, message))
        receivers = [
            link._channels[channel]
            for link in self.links
            if link.up and channel in link._channels
        ]
        for receiver in receivers:
            self.clock.callLater(0, receiver, message)
        return len(receivers)


@implementer(IRedisLink)
class FakeRedisLink:
    """
    One instance's link to a L{FakeRedis}.

    @ivar held: while true, commands get no reply until L{release}.
    @ivar refusing: while set, every command is answered with this error, as
        a full Redis answers writes.
    @ivar commands: every command sent, by name and arguments.
    """

    def __init__(self, redis: FakeRedis, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix
        self.untaggedPrefix = prefix
        self.up = False
        self.failing = False
        self.errors: Counter[str] = Counter()
        self.badMessages = 0
        self.refusing: Exception | None = None
        self.held = False
        self.commands: list[tuple[Any, ...]] = []
        self._pending: list[tuple[Deferred[Any], Callable[[], Any]]] = []
        self._watchers: list[tuple[Callable[[], object], Callable[[], object]]] = []
        self._channels: dict[str, Callable[[object], object]] = {}

    def goUp(self) -> None:
        self.up = True
        for onUp, _ in list(self._watchers):
            onUp()

    def goDown(self) -> None:
        self.up = False
        pending, self._pending = self._pending, []
        for waiting, _ in pending:
            waiting.errback(RedisUnavailableError("connection lost"))
        for _, onDown in list(self._watchers):
            onDown()

    def release(self) -> None:
        """
        Answer the commands held so far.
        """
        pending, self._pending = self._pending, []
        for waiting, run in pending:
            waiting.callback(run())

    def watch(self, onUp: Callable[[], object], onDown: Callable[[], object]) -> None:
        self._watchers.append((onUp, onDown))

    def subscribe(self, channel: str, received: Callable[[object], object]) -> None:
        self._channels[channel] = received

    def badMessage(self, channel: str, why: str) -> None:
        self.badMessages += 1

    def publish(self, channel: str, message: str) -> Deferred[int]:
        return self._command(
            ("publish", channel, message), lambda: self.redis.publish(channel, message)
        )

    def get(self, key: str) -> Deferred[object]:
        return self._command(("get", key), lambda: self.redis.store.get(key))

    def incrby(self, key: str, amount: int) -> Deferred[int]:
        def run() -> int:
            self.redis.store[key] = int(self.redis.store.get(key, 0)) + amount
            return int(self.redis.store[key])

        return self._command(("incrby", key, amount), run)

    def evaluate(
        self, script: str, keys: Sequence[str], args: Sequence[Any]
    ) -> Deferred[Any]:
        run = self.redis.scripts[script]
        return self._command(
            ("eval", script, tuple(keys), tuple(args)),
            lambda: run(self.redis, keys, args),
        )

    def _command(
        self, command: tuple[Any, ...], run: Callable[[], Any]
    ) -> Deferred[Any]:
        self.commands.append(command)
        if not self.up:
            return fail(RedisUnavailableError("no connection"))
        if self.refusing is not None:
            self.errors[command[0]] += 1
            self.failing = True
            return fail(self.refusing)
        self.failing = False
        if self.held:
            waiting: Deferred[Any] = Deferred()
            self._pending.append((waiting, run))
            return waiting
        return succeed(run())
