"""
Tests for L{netdemos.chat.hub}: one room over several instances, through a
fake Redis (tests/support/redis.py); tests/test_e2e_redis.py runs the same
with real processes and a real Redis.
"""

from __future__ import annotations

from support.chat import Room, received
from support.redis import FakeRedis, FakeRedisLink
from support.web import WebSocketClient, webSite
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from netdemos.chat.hub import IHub, IHubListener, LocalHub
from netdemos.chat.redishub import (
    HEARTBEAT_INTERVAL,
    PRESENCE_TTL,
    REGISTER_SCRIPT,
    RETRY_INTERVAL,
    BadMessageError,
    RedisHub,
    parseBatch,
)
from netdemos.chat.room import ChatRoom


class Instance:
    """
    One netdemos instance's chat: a room on a L{RedisHub}, and its link.
    """

    def __init__(self, redis: FakeRedis, name: str, firstPort: int) -> None:
        self.link: FakeRedisLink = redis.link()
        self.hub = RedisHub(self.link, redis.clock, name)
        self.chat = Room(
            clock=redis.clock, hub=self.hub, instance=name, firstPort=firstPort
        )
        self.link.goUp()


class TwoInstances(SynchronousTestCase):
    """
    Instances a and b of one room on a fake Redis.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.redis = FakeRedis(self.clock)
        self.a = Instance(self.redis, "a", 41001)
        self.b = Instance(self.redis, "b", 42001)

    def settle(self) -> None:
        """
        Let every turn that is due run: publishing, delivery, fan-out.
        """
        for _ in range(10):
            self.clock.advance(0)


class HubTests(TwoInstances):
    def test_everyHubProvidesTheInterface(self) -> None:
        verifyObject(IHub, LocalHub())
        verifyObject(IHub, self.a.hub)
        verifyObject(IHubListener, ChatRoom(Clock()))

    def test_aLineReachesEveryInstanceSenderIncluded(self) -> None:
        """
        A line said on one instance reaches the members of both; the sender
        hears it when Redis delivers it, like everyone else, not before.
        """
        alice, aliceT = self.a.chat.connect()
        bob, bobT = self.b.chat.connect()
        self.settle()
        received(aliceT), received(bobT)
        self.a.link.held = True
        alice.dataReceived(b"hello\n")
        self.settle()
        self.assertEqual(aliceT.value(), b"")  # not yet through Redis
        self.a.link.release()
        self.settle()
        self.assertEqual(received(aliceT), [b"<127.0.0.1:41001> hello"])
        self.assertEqual(received(bobT), [b"<127.0.0.1:41001> hello"])

    def test_everyInstanceSeesOneOrder(self) -> None:
        """
        Lines said at once on both instances arrive everywhere in the order
        Redis delivered them.
        """
        members = [self.a.chat.connect(), self.b.chat.connect(), self.a.chat.connect()]
        self.settle()
        for _, transport in members:
            received(transport)
        for round in range(5):
            for number, (client, _) in enumerate(members):
                client.dataReceived(b"line %d from %d\n" % (round, number))
            self.clock.advance(0)
        self.settle()
        seen = [received(transport) for _, transport in members]
        self.assertEqual(len(seen[0]), 15)
        self.assertEqual(seen[0], seen[1])
        self.assertEqual(seen[0], seen[2])

    def test_tcpAndWebSocketMembersShareTheRoomAcrossInstances(self) -> None:
        """
        A WebSocket member joins through the same hub as a TCP one: its
        welcome names its instance, and lines and its join cross Redis both
        ways, so a browser on one instance and nc on another are in one room.
        """
        alice, aliceT = self.a.chat.connect()
        self.settle()
        received(aliceT)
        browser = WebSocketClient(webSite(self.b.chat), self.b.chat, port=42500)
        self.settle()
        [welcome] = browser.takeTexts()
        self.assertTrue(
            welcome.startswith(
                f"* welcome, you are {browser.name} (2 in the room) on b;"
            ),
            welcome,
        )
        self.assertEqual(
            received(aliceT), [f"* {browser.name} joined (2 in the room)".encode()]
        )
        browser.sendText("from a browser")
        alice.dataReceived(b"from nc\n")
        self.settle()
        self.assertEqual(
            browser.takeTexts(),
            [f"<{browser.name}> from a browser", "<127.0.0.1:41001> from nc"],
        )
        self.assertEqual(
            received(aliceT),
            [f"<{browser.name}> from a browser".encode(), b"<127.0.0.1:41001> from nc"],
        )

    def test_whoAndNamesSpanInstances(self) -> None:
        """
        /who lists everyone on every instance; a nick in use on one is
        refused on the other, whatever its case; renames are announced on both.
        """
        alice, aliceT = self.a.chat.connect()
        bob, bobT = self.b.chat.connect()
        alice.dataReceived(b"/nick Alice\n")
        self.settle()
        received(aliceT), received(bobT)
        bob.dataReceived(b"/nick ALICE\n/who\n")
        self.settle()
        self.assertEqual(
            received(bobT),
            [
                b"! the nick ALICE is taken",
                b"* in the room (2): 127.0.0.1:42001, Alice",
            ],
        )

    def test_joinsAndRenamesAreAnnouncedAcross(self) -> None:
        alice, aliceT = self.a.chat.connect()
        self.settle()
        received(aliceT)
        bob, bobT = self.b.chat.connect()
        self.settle()
        self.assertEqual(
            received(aliceT), [b"* 127.0.0.1:42001 joined (2 in the room)"]
        )
        bob.dataReceived(b"/nick bob\n")
        self.settle()
        self.assertEqual(received(aliceT), [b"* 127.0.0.1:42001 is now bob"])
        bob.dataReceived(b"/quit\n")
        self.settle()
        self.assertEqual(received(aliceT), [b"* bob left"])
        self.assertEqual(self.a.chat.room.names(), ["127.0.0.1:41001"])

    def test_aNewcomerRenamedBeforeItsJoinIsHeardIsNotToldItJoined(self) -> None:
        """
        Its welcome told it; its join, heard after its rename, is for others.
        """
        bob, bobT = self.b.chat.connect()
        self.settle()
        received(bobT)
        alice, aliceT = self.a.chat.connect()
        alice.dataReceived(b"/nick alice\n")
        self.settle()
        self.assertEqual(
            received(aliceT),
            [
                b"* welcome, you are 127.0.0.1:41001 (2 in the room) on a;"
                b" /help lists commands",
                b"* you are now alice",
            ],
        )
        self.assertEqual(
            received(bobT),
            [
                b"* 127.0.0.1:41001 joined (2 in the room)",
                b"* 127.0.0.1:41001 is now alice",
            ],
        )

    def test_aNameTakenAtOnceOnTwoInstancesGoesToOne(self) -> None:
        """
        Two instances cannot both see a name free and both give it: Redis
        decides who took it first, and the other is told and keeps its name.
        """
        alice, aliceT = self.a.chat.connect()
        bob, bobT = self.b.chat.connect()
        self.settle()
        received(aliceT), received(bobT)
        alice.dataReceived(b"/nick carol\n")
        bob.dataReceived(b"/nick Carol\n")
        self.settle()
        self.assertEqual(received(aliceT)[0], b"* you are now carol")
        self.assertEqual(
            received(bobT),
            [
                b"* you are now Carol",
                b"* 127.0.0.1:41001 is now carol",
                b"! Carol was taken on another server first; you are 127.0.0.1:42001",
            ],
        )
        self.assertEqual(bob.name, "127.0.0.1:42001")
        self.assertEqual(self.b.chat.room.names(), ["127.0.0.1:42001", "carol"])

    def test_aDeadInstancesMembersLeaveWithinFifteenSeconds(self) -> None:
        """
        An instance that stops without a word (SIGKILL, power loss) stops
        renewing its presence: its members leave the others' room, and their
        names are free again, within 15 s.
        """
        self.assertLessEqual(PRESENCE_TTL + HEARTBEAT_INTERVAL, 15)
        alice, aliceT = self.a.chat.connect()
        bob, bobT = self.b.chat.connect()
        bob.dataReceived(b"/nick bob\n")
        self.settle()
        received(aliceT)
        self.b.hub._heartbeat.stop()
        self.redis.links.remove(self.b.link)  # dead: it hears nothing either
        self.clock.advance(PRESENCE_TTL + HEARTBEAT_INTERVAL)
        self.settle()
        self.assertEqual(received(aliceT), [b"* bob left (lost with its server)"])
        self.assertFalse(self.a.chat.room.isTaken("bob"))

    def test_cutOffTheRoomGoesOnLocallyAndComesBackWhole(self) -> None:
        """
        Without Redis an instance's members still talk among themselves, are
        told they are cut off, and are told when the room is whole again; a
        line is never delivered twice.
        """
        alice, aliceT = self.a.chat.connect()
        ann, annT = self.a.chat.connect()
        bob, bobT = self.b.chat.connect()
        self.settle()
        for transport in (aliceT, annT, bobT):
            received(transport)
        self.a.link.goDown()
        alice.dataReceived(b"anyone?\n")
        self.settle()
        lines = received(annT)
        self.assertTrue(lines[0].startswith(b"! cut off from the other servers"))
        self.assertEqual(lines[1:], [b"<127.0.0.1:41001> anyone?"])
        self.assertEqual(
            self.a.chat.room.names(), ["127.0.0.1:41001", "127.0.0.1:41002"]
        )
        self.assertEqual(received(bobT), [])
        self.a.link.goUp()
        self.settle()
        self.assertEqual(
            received(annT), [b"* back in touch with the other servers (3 in the room)"]
        )
        bob.dataReceived(b"hi again\n")
        self.settle()
        self.assertEqual(received(annT), [b"<127.0.0.1:42001> hi again"])
        self.assertEqual(received(aliceT)[-1], b"<127.0.0.1:42001> hi again")

    def test_aLineInFlightWhenTheLinkGoesIsDeliveredOnce(self) -> None:
        alice, aliceT = self.a.chat.connect()
        self.settle()
        received(aliceT)
        self.a.link.held = True
        alice.dataReceived(b"in flight\n")
        self.clock.advance(0)
        self.a.link.goDown()
        self.settle()
        lines = received(aliceT)
        self.assertEqual(lines.count(b"<127.0.0.1:41001> in flight"), 1)

    def test_aStoppingInstancesMembersLeaveAtOnce(self) -> None:
        alice, aliceT = self.a.chat.connect()
        self.b.chat.connect()
        self.settle()
        received(aliceT)
        self.b.chat.room.close()
        self.settle()
        self.assertEqual(
            received(aliceT), [b"* 127.0.0.1:42001 left (server shutting down)"]
        )


# What another program might publish on the room's channel.
GARBAGE = [
    "not JSON",
    12345,  # txredisapi hands over what looks like a number as one
    b"\xff\xfe",  # and what is not UTF-8 as bytes
    '{"e": [5]}',
    '{"i": "x", "s": 0, "e": [{"t": "join"}]}',
    '{"i": "x", "s": 0, "e": [{"t": "join", "n": "a\\nb"}]}',
    '{"i": "x", "s": 0, "e": [{"t": "gone", "names": "carol", "w": "left"}]}',
    '{"i": "x", "s": -1, "e": ["hi"]}',
    '{"i": "x\\u001b", "s": 0, "e": ["hi"]}',
    '{"i": "x", "s": 0, "e": [{"t": "nuke"}]}',
    '{"i": "x", "s": 0, "e": []}',
    "[]",
]


class ChannelInputTests(SynchronousTestCase):
    """
    What is read from the room's channel is input from whoever can publish
    there: checked, cleaned, and what does not parse dropped and counted.
    """

    def test_garbageIsRefusedWithAReason(self) -> None:
        for message in GARBAGE:
            with self.assertRaises(BadMessageError, msg=repr(message)):
                parseBatch(message)

    def test_aLineIsCleanedAsALineFromASocketIs(self) -> None:
        batch = parseBatch(
            '{"i": "x", "s": 1, "e": ["<admin> \\u001b[2Jowned\\u0007\\u009b"]}'
        )
        self.assertEqual(batch.events, ["<admin> [2Jowned"])

    def test_aLineLongerThanAnyMemberMaySayIsRefused(self) -> None:
        line = "<bob> " + "x" * 1000
        self.assertEqual(
            parseBatch(f'{{"i":"x","s":1,"e":["{line}"]}}', 1000).events, [line]
        )
        with self.assertRaises(BadMessageError):
            parseBatch(f'{{"i":"x","s":1,"e":["{line}{"y" * 200}"]}}', 1000)

    def test_presenceEventsAreReadBackWithTheirOwnFoldedNames(self) -> None:
        """
        The casefolded name is computed, not taken on trust: a forged one
        could not free or take another member's name.
        """
        batch = parseBatch(
            '{"i": "x", "s": 0, "e": [{"t": "join", "n": "Carol", "f": "dave"}]}'
        )
        self.assertEqual(batch.events, [{"t": "join", "n": "Carol", "f": "carol"}])

    def test_garbageOnTheChannelIsCountedAndLosesNothing(self) -> None:
        """
        Between two real lines, every kind of garbage: each is counted and
        dropped; both lines, and a departure, still reach everyone.
        """
        clock = Clock()
        redis = FakeRedis(clock)
        a, b = Instance(redis, "a", 41001), Instance(redis, "b", 42001)
        alice, aliceT = a.chat.connect()
        bob, bobT = b.chat.connect()
        carol, _ = b.chat.connect()
        carol.dataReceived(b"/nick carol\n")
        for _ in range(10):
            clock.advance(0)
        received(aliceT), received(bobT)
        alice.dataReceived(b"before\n")
        clock.advance(0)
        for message in GARBAGE:
            redis.publish(a.hub.channel, message)
        carol.transport.loseConnection()
        alice.dataReceived(b"after\n")
        for _ in range(10):
            clock.advance(0)
        self.assertEqual(a.link.badMessages, len(GARBAGE))
        self.assertEqual(b.link.badMessages, len(GARBAGE))
        for transport in (aliceT, bobT):
            self.assertEqual(
                received(transport),
                [
                    b"<127.0.0.1:41001> before",
                    b"* carol left",
                    b"<127.0.0.1:41001> after",
                ],
            )
        self.assertEqual(a.chat.room.names(), b.chat.room.names())
        self.assertFalse(a.chat.room.isTaken("carol"))


class FaultTests(TwoInstances):
    """
    Redis refusing writes, and an instance the others took for dead.
    """

    def test_refusedWritesCutTheRoomOffUntilTheyAreTakenAgain(self) -> None:
        """
        A Redis that answers writes with errors (full, with noeviction) while
        the connection stays up: the members are told they are cut off, talk
        locally meanwhile, and once writes are taken again the instance joins
        again, with a newcomer who came meanwhile, and says the room is
        whole; both instances then agree on who is in it.
        """
        alice, aliceT = self.a.chat.connect()
        bob, bobT = self.b.chat.connect()
        self.settle()
        received(aliceT), received(bobT)
        self.a.link.refusing = Exception("OOM command not allowed")
        alice.dataReceived(b"anyone?\n")
        self.settle()
        # The line was said before the refusal was known: heard here, once.
        lines = received(aliceT)
        self.assertEqual(lines[0], b"<127.0.0.1:41001> anyone?")
        self.assertTrue(lines[1].startswith(b"! cut off from the other servers"))
        self.assertEqual(received(bobT), [])
        dave, daveT = self.a.chat.connect()
        self.settle()
        self.assertFalse(self.a.hub.whole)
        self.clock.advance(RETRY_INTERVAL)
        self.settle()
        self.assertFalse(self.a.hub.whole)
        self.a.link.refusing = None
        self.clock.advance(RETRY_INTERVAL)
        self.settle()
        self.assertTrue(self.a.hub.whole)
        self.assertEqual(
            received(aliceT)[-1],
            b"* back in touch with the other servers (3 in the room)",
        )
        self.assertEqual(self.a.chat.room.names(), self.b.chat.room.names())
        self.assertEqual(len(self.b.chat.room.names()), 3)
        bob.dataReceived(b"hi\n")
        self.settle()
        self.assertEqual(received(aliceT), [b"<127.0.0.1:42001> hi"])
        self.assertEqual(received(daveT)[-1], b"<127.0.0.1:42001> hi")

    def test_aFailedHeartbeatCutsTheRoomOff(self) -> None:
        """
        A heartbeat Redis refuses is not ignored: unrenewed, this instance
        will be taken for dead, so its members are told now.
        """
        alice, aliceT = self.a.chat.connect()
        self.settle()
        received(aliceT)
        self.a.link.refusing = Exception("OOM command not allowed")
        self.clock.advance(HEARTBEAT_INTERVAL)
        self.settle()
        [notice] = received(aliceT)
        self.assertTrue(notice.startswith(b"! cut off from the other servers"))

    def test_anInstanceTakenForDeadJoinsAgainAndResolvesNames(self) -> None:
        """
        Instance b is paused (SIGSTOP) longer than the presence TTL: a takes
        its members out, and one of a's members takes the nick of one of
        b's.  When b wakes and reads what Redis sent meanwhile, it finds it
        was taken for dead, joins again from its own state, and its member
        who lost the nick is told and renamed: never two holders of a name,
        and both instances agree on who is in the room.
        """
        alice, aliceT = self.a.chat.connect()
        bob, bobT = self.b.chat.connect()
        bob.dataReceived(b"/nick bob\n")
        self.settle()
        received(aliceT), received(bobT)
        # b pauses: no timer of its runs, and what Redis sends it waits.
        channel = self.b.hub.channel
        backlog: list[object] = []
        hear = self.b.link._channels[channel]
        self.b.link._channels[channel] = backlog.append
        self.b.hub._heartbeat.stop()
        self.clock.advance(PRESENCE_TTL + HEARTBEAT_INTERVAL)
        self.settle()
        self.assertEqual(received(aliceT), [b"* bob left (lost with its server)"])
        alice.dataReceived(b"/nick bob\n")
        self.settle()
        # b wakes, and reads first what waited for it.
        self.b.link._channels[channel] = hear
        for message in backlog:
            hear(message)
        self.settle()
        told = received(bobT)
        self.assertTrue(told[0].startswith(b"! cut off from the other servers"), told)
        self.assertIn(
            b"* you are now local-1: bob is in the room on another server", told
        )
        self.assertNotEqual(bob.name, "bob")
        names = self.a.chat.room.names()
        self.assertEqual(names, self.b.chat.room.names())
        self.assertEqual(len({name.casefold() for name in names}), 2)
        self.assertEqual(self.a.chat.room.names(), ["bob", bob.name])

    def test_aStoppingInstanceDoesNotTakeItsOwnGoodbyeForBeingReaped(self) -> None:
        self.b.chat.connect()
        self.settle()
        self.b.chat.room.close()
        self.settle()
        self.assertFalse(
            [each for each in self.b.link.commands if each[1] == REGISTER_SCRIPT][1:]
        )
