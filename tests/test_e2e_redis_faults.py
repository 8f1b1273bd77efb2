"""
End-to-end tests of several instances on one Redis while Redis misbehaves,
as on an operator's bad day: restarted empty while an instance is paused,
sent garbage by another program, full, holding a key of the wrong type; and
an instance paused longer than its presence lasts.  Each test injects the
fault into a real C{redis-server} (L{RedisServer}) or a real C{twistd -n
netdemos}, and checks what the clients saw.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager

from support.backbone import RedisServer
from support.clients import ChatUser, Clients, getNumbers, httpGet, waitForReadiness
from support.process import Launcher, Netdemos, redisInstance
from support.prometheus import sample, scrapeMetrics

from netdemos.chat.redishub import HEARTBEAT_INTERVAL, PRESENCE_TTL

# Every key and channel starts with --redis-prefix in braces: a hash tag.
PREFIX = "{netdemos}"
# How long an instance may take to notice that Redis takes writes again and
# join again: a retry a second, a heartbeat every 3 s; with margin.
HEALED_SECONDS = 10.0


@contextmanager
def paused(server: Netdemos) -> Iterator[None]:
    """
    SIGSTOP C{server} for the block, as a long GC pause or a partition would.
    """
    server.process.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        server.process.send_signal(signal.SIGCONT)


def waitForNotice(user: ChatUser, start: str, timeout: float = HEALED_SECONDS) -> None:
    user.inbox.waitFor(
        lambda line: line.startswith(start), repr(start), timeout=timeout
    )


def test_noNumberTwiceWhenRedisRestartsEmptyWhileAnInstanceIsPaused(
    launcher: Launcher, redis: RedisServer
) -> None:
    """
    Instance b hands out the latest numbers, then is paused; Redis restarts
    empty, and a reconnects first: a goes on above b's numbers, which it
    heard of as b took them, not above its own.  When b wakes, it goes on
    above everything too.
    """
    a, b = (redisInstance(launcher, redis, name, ["http"]) for name in ("a", "b"))
    answers = getNumbers(a.httpPort, 20) + getNumbers(b.httpPort, 300)
    with paused(b):
        redis.restartEmpty()
        waitForReadiness(a.metricsPort, 200, timeout=HEALED_SECONDS)
        answers += getNumbers(a.httpPort, 50)
    waitForReadiness(b.metricsPort, 200, timeout=HEALED_SECONDS)
    answers += getNumbers(b.httpPort, 50) + getNumbers(a.httpPort, 50)
    numbers = [number for number, _ in answers]
    assert len(set(numbers)) == len(numbers), "a number was given twice"
    assert numbers[320] > 320, numbers[315:325]


def test_redisPausedAsTheInstanceReconnects(
    launcher: Launcher, redis: RedisServer
) -> None:
    """
    Redis paused (SIGSTOP) long enough for the link to time out (a chat
    heartbeat unanswered) and for the instance's reconnection to find it
    still paused, its first command unanswered: once Redis resumes, the
    instance is ready again within seconds, with no restart.  (txredisapi
    alone would stop reconnecting for good.)
    """
    a = redisInstance(launcher, redis, "a")
    redis.pause()
    try:
        assert httpGet(a.httpPort)[0] == 503
        waitForReadiness(a.metricsPort, 503)
        a.waitUntilLogged("Redis error: could not set dbid", timeout=HEALED_SECONDS)
    finally:
        redis.resume()
    waitForReadiness(a.metricsPort, 200, timeout=HEALED_SECONDS)
    assert [name for _, name in getNumbers(a.httpPort, 3)] == ["a"] * 3
    a.assertNoErrorsLogged()


def test_garbageOnTheRoomChannelLosesNothing(
    launcher: Launcher, redis: RedisServer, clients: Clients
) -> None:
    """
    Another program publishes what is not a netdemos message on the room's
    channel, and a well-formed line with terminal escapes: each bad message
    is dropped and counted, the forged line arrives cleaned, and the lines
    and the departure that come next reach everyone.
    """
    a, b = (redisInstance(launcher, redis, name, ["chat"]) for name in ("a", "b"))
    alice, bob = clients.chatUser(a.chatPort), clients.chatUser(b.chatPort)
    carol = clients.chatUser(b.chatPort)
    carol.send(b"/nick carol\n")
    alice.inbox.waitForLine(f"* {carol.name} is now carol")
    garbage: list[str | bytes] = [
        "not JSON",
        "12345",
        b"\xff\xfe",
        '{"e":[5]}',
        '{"i":"x","s":0,"e":[{"t":"leave","n":"carol"}]}',
        '{"i":"x","s":0,"e":[{"t":"gone","names":["carol"]}]}',
    ]
    for message in garbage:
        assert redis.publish(f"{PREFIX}:room", message) == 2
    redis.publish(f"{PREFIX}:room", '{"i":"x","s":1,"e":["<admin> \\u001b[2Jhi"]}')
    alice.send(b"next\n")
    carol.close()
    for user in (alice, bob):
        user.inbox.waitForLine("<admin> [2Jhi")
        user.inbox.waitForLine(f"<{alice.name}> next")
        user.inbox.waitForLine("* carol left")
    assert alice.who() == bob.who() == sorted([alice.name, bob.name])
    for server in (a, b):
        samples = scrapeMetrics(server.metricsPort)
        assert sample(samples, "netdemos_redis_bad_messages_total") == len(garbage)
        assert sample(samples, "netdemos_redis_up") == 1


def test_aFullRedisMakesInstancesNotReadyAndCutsTheRoomOff(
    launcher: Launcher, redis: RedisServer, clients: Clients
) -> None:
    """
    Redis full (maxmemory, noeviction) answers every write with an error
    while the connections stay up: the instances say they are not ready,
    their members are told they are cut off (at the next heartbeat, which
    is refused) and talk locally, a newcomer joins locally; once Redis takes
    writes again, both instances are ready, the room is whole, and both
    agree on who is in it.
    """
    a, b = (redisInstance(launcher, redis, name) for name in ("a", "b"))
    alice, bob = clients.chatUser(a.chatPort), clients.chatUser(b.chatPort)
    alice.inbox.waitForLine(f"* {bob.name} joined (2 in the room)")
    redis.fill()
    assert httpGet(a.httpPort)[0] == 503
    waitForReadiness(a.metricsPort, 503)
    for user in (alice, bob):
        waitForNotice(user, "! cut off from the other servers")
    alice.send(b"anyone?\n")
    alice.inbox.waitForLine(f"<{alice.name}> anyone?")
    dave = clients.chatUser(a.chatPort)
    samples = scrapeMetrics(a.metricsPort)
    assert sample(samples, "netdemos_redis_up") == 0
    assert sample(samples, "netdemos_redis_errors_total", command="eval") >= 1

    redis.drain()
    for user in (alice, dave):
        waitForNotice(user, "* back in touch with the other servers")
    for server in (a, b):
        waitForReadiness(server.metricsPort, 200, timeout=HEALED_SECONDS)
    deadline = time.monotonic() + HEALED_SECONDS
    while bob.who() != sorted([alice.name, bob.name, dave.name]):
        assert time.monotonic() < deadline, "b never learnt who joined on a"
    assert alice.who() == bob.who()
    bob.send(b"across again\n")
    dave.inbox.waitForLine(f"<{bob.name}> across again")
    assert f"<{alice.name}> anyone?" not in bob.inbox.snapshot()
    assert b.output().count("answered EVAL with an error") <= 1


def test_aKeyOfTheWrongTypeNeverGivesANickTwice(
    launcher: Launcher, redis: RedisServer, clients: Clients
) -> None:
    """
    Another program overwrites the room's presence key with a string: every
    presence script fails (WRONGTYPE), so both instances are cut off, each a
    room of its own, where grace can be taken on each.  When the key is
    gone, both join again: one grace keeps the name, the other is told and
    renamed, and both instances agree on who is in the room.
    """
    a, b = (redisInstance(launcher, redis, name, ["chat"]) for name in ("a", "b"))
    alice, bob = clients.chatUser(a.chatPort), clients.chatUser(b.chatPort)
    alice.inbox.waitForLine(f"* {bob.name} joined (2 in the room)")
    redis.expect(b"+OK", "SET", f"{PREFIX}:room:instances", "not a set")
    for user in (alice, bob):
        user.send(b"hello\n")
        waitForNotice(user, "! cut off from the other servers")
    alice.send(b"/nick grace\n")
    alice.inbox.waitForLine("* you are now grace")
    bob.send(b"/nick grace\n")
    bob.inbox.waitForLine("* you are now grace")

    redis.expect(b":1", "DEL", f"{PREFIX}:room:instances")
    for user in (alice, bob):
        waitForNotice(user, "* back in touch with the other servers")
    deadline = time.monotonic() + HEALED_SECONDS
    while len(names := alice.who()) != 2 or names != bob.who():
        assert time.monotonic() < deadline, f"never agreed: {names}, {bob.who()}"
    assert "grace" in names
    assert len({name.casefold() for name in names}) == 2
    renamed = [
        line
        for user in (alice, bob)
        for line in user.inbox.snapshot()
        if line.endswith(": grace is in the room on another server")
    ]
    assert len(renamed) == 1, renamed


def test_anInstancePausedPastItsPresenceJoinsAgainWithoutTwins(
    launcher: Launcher, redis: RedisServer, clients: Clients
) -> None:
    """
    Instance b is paused (SIGSTOP) longer than its presence lasts: a takes
    its members out, and one of a's takes the nick of one of b's.  When b
    wakes, it finds out, joins again from its own state, and its member who
    lost the nick is told and renamed: never two members speaking as alice,
    and both instances list the same four.

    (A member is told "you are now alice" at once; Redis decides later.
    Only when another member hears the rename has Redis given amy the
    name, and only then is b woken: woken earlier, b could take alice back
    first, and amy would be the one told.)
    """
    a, b = (redisInstance(launcher, redis, name, ["chat"]) for name in ("a", "b"))
    amy, ann = clients.chatUser(a.chatPort), clients.chatUser(a.chatPort)
    bob, alice = clients.chatUser(b.chatPort), clients.chatUser(b.chatPort)
    alice.send(b"/nick alice\n")
    amy.inbox.waitForLine(f"* {alice.name} is now alice")
    with paused(b):
        amy.inbox.waitForLine(
            "* alice left (lost with its server)",
            timeout=PRESENCE_TTL + 2 * HEARTBEAT_INTERVAL,
        )
        amy.send(b"/nick alice\n")
        ann.inbox.waitForLine(f"* {amy.name} is now alice")
    waitForNotice(
        alice, "* you are now local-1: alice is in the room on another server"
    )
    waitForNotice(bob, "* back in touch with the other servers")
    deadline = time.monotonic() + HEALED_SECONDS
    while len(names := ann.who()) != 4 or names != bob.who():
        assert time.monotonic() < deadline, f"never agreed: {names}, {bob.who()}"
    alice.send(b"who am I\n")
    ann.inbox.waitForLine("<local-1> who am I")
    amy.send(b"and I\n")
    bob.inbox.waitForLine("<alice> and I")


# The Redis user docs/several-instances.md suggests: its own keys and channels
# (under the default prefix), and only the commands it sends.
ACL_RULES = (
    "on >s3cret resetkeys ~{netdemos}:* %R~netdemos:count resetchannels"
    " &{netdemos}:* -@all"
    " +auth +hello +ping +select +eval +evalsha +publish +subscribe +time"
    " +get +set +incrby +del +pexpire +zadd +zscore +zrange +zrangebyscore +zrem"
    " +hset +hdel +hexists +hvals"
)


def test_aRedisUserLimitedToNetdemosIsEnough(
    launcher: Launcher, redis: RedisServer, clients: Clients
) -> None:
    """
    With the README's Redis user (a password; netdemos's keys, channels and
    commands only) everything works: numbers, the room across instances.
    """
    redis.expect(b"+OK", "ACL", "SETUSER", "netdemos", *ACL_RULES.split())
    redis.expect(b"+OK", "ACL", "SETUSER", "default", "off")
    port = redis.port

    class Restricted:
        url = f"redis://netdemos:s3cret@127.0.0.1:{port}/0"

    a, b = (redisInstance(launcher, Restricted, name) for name in ("a", "b"))
    assert [n for n, _ in getNumbers(a.httpPort, 2) + getNumbers(b.httpPort, 2)] == [
        1,
        2,
        3,
        4,
    ]
    alice, bob = clients.chatUser(a.chatPort), clients.chatUser(b.chatPort)
    alice.inbox.waitForLine(f"* {bob.name} joined (2 in the room)")
    alice.send(b"/nick alice\nhi\n")
    bob.inbox.waitForLine("<alice> hi")
    assert bob.who() == sorted(["alice", bob.name])
    for server in (a, b):
        server.assertNoErrorsLogged()
        assert "NOPERM" not in server.output()


def test_everyKeyInOneHashSlotAndAnEarlierCountGoesOn(
    launcher: Launcher, redis: RedisServer, clients: Clients
) -> None:
    """
    Every key netdemos writes starts with the hash tag C{{netdemos}}, so a
    Redis Cluster would put them in one slot, as its scripts need.  An
    earlier netdemos kept the count under C{netdemos:count}, without the
    tag: an upgraded instance goes on from it, never back to #1.
    """
    redis.expect(b"+OK", "SET", "netdemos:count", "4000")
    a, b = (redisInstance(launcher, redis, name) for name in ("a", "b"))
    assert [number for number, _ in getNumbers(a.httpPort, 2)] == [4001, 4002]
    clients.chatUser(b.chatPort).send(b"/nick bob\n")
    reply = redis.command("KEYS", "*")
    assert reply is not None
    keys = set(reply.split(b"\r\n")[2::2]) - {b"", b"netdemos:count"}
    assert keys >= {b"{netdemos}:count", b"{netdemos}:room:instances"}, keys
    assert all(key.startswith(b"{netdemos}:") for key in keys), keys
