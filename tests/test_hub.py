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

from netdemos.chat.hub import (
    HEARTBEAT_INTERVAL,
    PRESENCE_TTL,
    IHub,
    IHubListener,
    LocalHub,
    RedisHub,
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


class HubTests(SynchronousTestCase):
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
