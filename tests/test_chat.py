"""
Unit tests for L{netdemos.chat}: clients on string transports, a fake clock.
"""

from __future__ import annotations

from support.chat import Room, received
from support.transport import PEER, connectProtocol
from twisted.internet.address import UNIXAddress
from twisted.internet.task import Clock
from twisted.internet.testing import (
    EventLoggingObserver,
    StringTransportWithDisconnection,
)
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from netdemos.chat import member
from netdemos.chat import room as chatroom
from netdemos.chat.lines import LineBuffer, clean
from netdemos.chat.member import BEHIND_LIMIT
from netdemos.chat.rate import TokenBucket
from netdemos.chat.room import IMember
from netdemos.chat.tcp import ChatClient, RoomFull


class LineBufferTests(SynchronousTestCase):
    def test_splitsOnLFAndDropsOneCR(self) -> None:
        """
        LF ends a line and a CR just before it is dropped, so nc (LF), telnet
        and CRLF clients are all understood.
        """
        lines = LineBuffer(100)
        self.assertEqual(lines.feed(b"a\nb\r\nc\r\r\nd"), [b"a", b"b", b"c\r"])
        self.assertEqual(lines.feed(b"\n"), [b"d"])

    def test_overlongLineIsDiscardedWholeAndNextLinesKept(self) -> None:
        """
        A line over the limit is reported once and skipped up to its LF, and
        the lines after it in the same chunk still come out.  (LineReceiver
        would treat the tail of the long line as a new line.)
        """
        lines = LineBuffer(4)
        self.assertEqual(lines.feed(b"ok\n123456789\nfine\n"), [b"ok", None, b"fine"])

    def test_overlongPartialLineHoldsBoundedMemory(self) -> None:
        """
        A long line arriving in pieces is reported as soon as it passes the
        limit, and its rest is thrown away as it comes: memory stays bounded.
        """
        lines = LineBuffer(4)
        self.assertEqual(lines.feed(b"12345"), [None])
        for _ in range(1000):
            self.assertEqual(lines.feed(b"x" * 1000), [])
        self.assertEqual(len(lines._partial), 0)
        self.assertEqual(lines.feed(b"tail\nnext\n"), [b"next"])

    def test_lineOfExactlyTheLimitWithCRLFIsKept(self) -> None:
        """
        The limit counts the text, not its CR LF, even when the CR arrives in
        one read and the LF in the next.
        """
        lines = LineBuffer(4)
        self.assertEqual(lines.feed(b"1234\r"), [])
        self.assertEqual(lines.feed(b"\n"), [b"1234"])
        self.assertEqual(lines.feed(b"12345\r"), [None])


class CleanTests(SynchronousTestCase):
    def test_controlCharactersRemovedTabKept(self) -> None:
        """
        Escape sequences and other controls cannot reach another terminal.
        """
        self.assertEqual(clean(b"\x1b[2Ja\tb\x07\x7f\xc2\x9bc"), "[2Ja\tbc")

    def test_invalidUTF8BecomesReplacementCharacter(self) -> None:
        self.assertEqual(clean("héllo".encode() + b"\xff"), "héllo\ufffd")


class ChatRoomTests(SynchronousTestCase):
    def test_welcomeAndJoinNotice(self) -> None:
        """
        A newcomer is told its name; the others are told it joined.
        """
        room = Room()
        _, first = room.connect()
        self.assertEqual(
            received(first),
            [
                b"* welcome, you are 127.0.0.1:40001 (1 in the room) on chat-1;"
                b" /help lists commands"
            ],
        )
        _, second = room.connect()
        self.assertEqual(received(first), [b"* 127.0.0.1:40002 joined (2 in the room)"])
        self.assertEqual(len(received(second)), 1)

    def test_lineGoesToEveryoneWithSendersAddress(self) -> None:
        """
        Every client, the sender included, gets the line prefixed with the
        sender's own address, not the server's.
        """
        room = Room()
        alice, aliceT = room.connect()
        _, bobT = room.connect()
        received(aliceT), received(bobT)
        alice.dataReceived(b"hello\n")
        self.assertEqual(received(aliceT), [b"<127.0.0.1:40001> hello"])
        self.assertEqual(received(bobT), [b"<127.0.0.1:40001> hello"])

    def test_eachLinePrefixedSoNobodyCanImpersonate(self) -> None:
        """
        One write holding several lines gets each one prefixed: a client cannot
        forge a line that looks like it came from someone else.
        """
        room = Room()
        mallory, _ = room.connect()
        _, bobT = room.connect()
        received(bobT)
        mallory.dataReceived(b"a\n<admin> b\r\n")
        self.assertEqual(
            received(bobT), [b"<127.0.0.1:40001> a", b"<127.0.0.1:40001> <admin> b"]
        )

    def test_emptyLinesAreNotRelayed(self) -> None:
        room = Room()
        alice, aliceT = room.connect()
        received(aliceT)
        alice.dataReceived(b"\n \r\n\x07\n")
        self.assertEqual(received(aliceT), [])

    def test_joinsAndDeparturesAreNotAnnouncedInACrowd(self) -> None:
        """
        Past ANNOUNCE_LIMIT members, joins and departures are not announced:
        each would be written to everyone, so a crowd arriving would cost
        O(N * N) writes.
        """
        self.patch(chatroom, "ANNOUNCE_LIMIT", 3)
        room = Room()
        _, firstT = room.connect()
        transports = [room.connect()[1] for _ in range(2)]
        self.assertEqual(len(received(firstT)), 3)  # welcome, two joins
        _, fourthT = room.connect()
        self.assertEqual(received(firstT), [])
        self.assertIn(b"(4 in the room)", received(fourthT)[0])
        fourthT.loseConnection()
        self.assertEqual(received(firstT), [])
        transports[0].loseConnection()
        self.assertEqual(received(firstT), [b"* 127.0.0.1:40002 left"])

    def test_nickRenamesAndTellsTheOthers(self) -> None:
        room = Room()
        alice, aliceT = room.connect()
        _, bobT = room.connect()
        received(aliceT), received(bobT)
        alice.dataReceived(b"/nick alice\nhi\n")
        self.assertEqual(received(aliceT), [b"* you are now alice", b"<alice> hi"])
        self.assertEqual(
            received(bobT), [b"* 127.0.0.1:40001 is now alice", b"<alice> hi"]
        )

    def test_takenNickIsRefusedWhateverItsCase(self) -> None:
        """
        A nick in use is refused, also in another case, so "Alice" cannot pose
        as "alice".
        """
        room = Room()
        alice, _ = room.connect()
        bob, bobT = room.connect()
        alice.dataReceived(b"/nick alice\n")
        received(bobT)
        bob.dataReceived(b"/nick Alice\n/nick alice\n")
        self.assertEqual(
            received(bobT), [b"! the nick Alice is taken", b"! the nick alice is taken"]
        )
        self.assertEqual(bob.name, "127.0.0.1:40002")

    def test_badNicksAreRefused(self) -> None:
        room = Room()
        alice, aliceT = room.connect()
        received(aliceT)
        for nick in (b"", b"a b", b"x" * 33, b"caf\xc3\xa9", b"a:b"):
            alice.dataReceived(b"/nick " + nick + b"\n")
        self.assertEqual(
            received(aliceT),
            [b"! usage: /nick NAME, 1-32 letters, digits, _ or -"] * 5,
        )
        alice.dataReceived(b"/nick " + b"x" * 32 + b"\n")
        self.assertEqual(received(aliceT), [b"* you are now " + b"x" * 32])

    def test_changingTheCaseOfYourOwnNick(self) -> None:
        room = Room()
        alice, aliceT = room.connect()
        alice.dataReceived(b"/nick alice\n")
        received(aliceT)
        alice.dataReceived(b"/nick Alice\n/nick Alice\n")
        self.assertEqual(
            received(aliceT), [b"* you are now Alice", b"! you are already Alice"]
        )

    def test_whoListsTheRoom(self) -> None:
        room = Room()
        alice, aliceT = room.connect()
        room.connect()
        alice.dataReceived(b"/nick zed\n")
        received(aliceT)
        alice.dataReceived(b"/who\n")
        self.assertEqual(received(aliceT), [b"* in the room (2): 127.0.0.1:40002, zed"])

    def test_helpAndUnknownCommandGoToTheSenderOnly(self) -> None:
        room = Room()
        alice, aliceT = room.connect()
        _, bobT = room.connect()
        received(aliceT), received(bobT)
        alice.dataReceived(b"/help\n/frobnicate now\n")
        lines = received(aliceT)
        self.assertTrue(lines[0].startswith(b"* commands: /nick NAME"))
        self.assertEqual(
            lines[1], b"! unknown command /frobnicate; /help lists commands"
        )
        self.assertEqual(received(bobT), [])

    def test_doubleSlashSendsALineStartingWithSlash(self) -> None:
        room = Room()
        alice, aliceT = room.connect()
        received(aliceT)
        alice.dataReceived(b"//nick is a command\n")
        self.assertEqual(received(aliceT), [b"<127.0.0.1:40001> /nick is a command"])

    def test_quitClosesAndOthersAreTold(self) -> None:
        """
        /quit says goodbye and closes; lines after it in the same write are not
        relayed, and the others see the leave notice.
        """
        room = Room()
        alice, aliceT = room.connect()
        _, bobT = room.connect()
        received(aliceT), received(bobT)
        alice.dataReceived(b"/quit\nafter quit\n")
        self.assertEqual(received(aliceT), [b"* bye"])
        self.assertFalse(aliceT.connected)
        self.assertEqual(received(bobT), [b"* 127.0.0.1:40001 left"])
        self.assertEqual(len(room.room), 1)

    def test_lateCloseOfALeaverSparesTheNewHolderOfItsNick(self) -> None:
        """
        A client that has sent /quit leaves the room at once, but its
        connection closes only once its last lines are sent; by then another
        client may have taken its nick.  That late close must not take the
        newcomer out of the room, which would leave it connected but missing
        from /who and hearing nothing.
        """
        room = Room()
        quitter, quitterT = room.connect(lingers=True)
        newcomer, newcomerT = room.connect()
        other, otherT = room.connect()
        quitter.dataReceived(b"/nick alice\n/quit\n")
        self.assertTrue(quitterT.disconnecting)
        newcomer.dataReceived(b"/nick alice\n")
        received(newcomerT), received(otherT)

        quitterT.finishClosing()

        self.assertEqual(room.room.names(), ["127.0.0.1:40003", "alice"])
        self.assertEqual(received(otherT), [])
        other.dataReceived(b"still there, alice?\n")
        newcomer.dataReceived(b"yes\n")
        heard = [b"<127.0.0.1:40003> still there, alice?", b"<alice> yes"]
        self.assertEqual(received(newcomerT), heard)
        self.assertEqual(received(otherT), heard)

    def test_overlongLineIsDroppedAndConnectionKept(self) -> None:
        """
        The sender of an over-long line is told, nobody receives any of it, it
        stays connected, and its next line in the same read is relayed.
        """
        room = Room(maxLine=10)
        alice, aliceT = room.connect()
        _, bobT = room.connect()
        received(aliceT), received(bobT)
        alice.dataReceived(b"x" * 50 + b"\nshort\n")
        self.assertEqual(
            received(aliceT),
            [b"! line too long: over 10 bytes, discarded", b"<127.0.0.1:40001> short"],
        )
        self.assertEqual(received(bobT), [b"<127.0.0.1:40001> short"])
        self.assertTrue(aliceT.connected)

    def test_overlongLineInPiecesIsReportedOnceAndLinesAroundItKept(self) -> None:
        """
        An over-long line that arrives over several reads, its end in the same
        read as the next lines, is reported to its sender once and reaches
        nobody; the lines before and after it, in the same reads, are relayed,
        even when another over-long line comes between them.

        TCP splits a stream wherever it likes: how a long line is cut up must
        not change what the room hears, nor how often its sender is told.
        """
        room = Room(maxLine=10)
        alice, aliceT = room.connect()
        _, bobT = room.connect()
        received(aliceT), received(bobT)
        for chunk in (
            b"before\n" + b"x" * 8,
            b"x" * 8,
            b"x" * 50,
            b"x" * 3 + b"\nafter\n" + b"y" * 11 + b"\nlast\n",
        ):
            alice.dataReceived(chunk)
        tooLong = b"! line too long: over 10 bytes, discarded"
        self.assertEqual(
            received(aliceT),
            [
                b"<127.0.0.1:40001> before",
                tooLong,
                b"<127.0.0.1:40001> after",
                tooLong,
                b"<127.0.0.1:40001> last",
            ],
        )
        self.assertEqual(
            received(bobT),
            [
                b"<127.0.0.1:40001> before",
                b"<127.0.0.1:40001> after",
                b"<127.0.0.1:40001> last",
            ],
        )

    def test_joinsAndDeparturesAnnouncedUpToAThousand(self) -> None:
        """
        With the default limit (1000, as docs/limits.md says), a join or departure
        is announced exactly when the room, counting that client, holds at most
        1000: the 1000th arrival is announced, the 1001st is not, nor is its
        departure, and once the room is back to 1000 the next departure is.

        Too low a limit would hide who comes and goes in an ordinary room; too
        high, or none, and a crowd arriving costs O(N * N) writes.
        """
        # Every one, however fast they come: the rate is tested on its own.
        self.patch(chatroom, "ANNOUNCE_BURST", 10_000)
        room = Room()
        _, watcherT = room.connect()
        others = [room.connect() for _ in range(999)]
        self.assertEqual(
            received(watcherT)[-1], b"* 127.0.0.1:41000 joined (1000 in the room)"
        )
        for _, transport in others:
            transport.clear()
        _, crowdT = room.connect()
        self.assertEqual(received(watcherT), [])
        self.assertIn(b"(1001 in the room)", received(crowdT)[0])
        crowdT.loseConnection()
        self.assertEqual(received(watcherT), [])
        others[0][1].loseConnection()
        self.assertEqual(received(watcherT), [b"* 127.0.0.1:40002 left"])
        self.assertEqual(len(room.room), 999)

    def test_joinAndLeaveAreLogged(self) -> None:
        events = EventLoggingObserver.createWithCleanup(
            self,  # type: ignore[arg-type]
            globalLogPublisher,
        )
        room = Room()
        _, transport = room.connect()
        transport.loseConnection()
        self.assertEqual(
            [(e["log_format"], e["name"]) for e in events],
            [
                ("chat: {name} joined ({count} in the room)", "127.0.0.1:40001"),
                ("chat: {name} {why} ({count} in the room)", "127.0.0.1:40001"),
            ],
        )

    def test_whatIsNotAnnouncedIsNotLoggedOneByOne(self) -> None:
        """
        In a crowd, joins, departures and renames are neither announced nor
        logged one by one: a crowd arriving would otherwise cost a log line
        each, most of the reactor's time and the log's disk.
        """
        self.patch(chatroom, "ANNOUNCE_LIMIT", 2)
        room = Room()
        room.connect(), room.connect()
        events = EventLoggingObserver.createWithCleanup(
            self,  # type: ignore[arg-type]
            globalLogPublisher,
        )
        third, transport = room.connect()
        third.dataReceived(b"/nick third\n")
        transport.loseConnection()
        self.assertEqual([e["log_format"] for e in events], [])


class SlowConsumerTests(SynchronousTestCase):
    def test_slowReaderIsDroppedOthersKeepReceiving(self) -> None:
        """
        A client whose transport has asked us to pause (it is not reading) and
        that then has more than the backlog waiting is told why and dropped;
        the others keep getting every line.
        """
        room = Room(backlog=1000)
        slow, slowT = room.connect()
        talker, talkerT = room.connect()
        received(slowT), received(talkerT)
        self.assertIs(slowT.producer, slow)
        slow.pauseProducing()  # What the transport does when its buffer fills.
        for n in range(20):
            talker.dataReceived(b"line %02d " % n + b"x" * 50 + b"\n")
            room.clock.advance(0)  # the reactor's turn ends
        talkerLines = received(talkerT)
        self.assertEqual(talkerLines[-1], b"<127.0.0.1:40002> line 19 " + b"x" * 50)
        self.assertIn(b"* 127.0.0.1:40001 was dropped (too slow)", talkerLines)
        self.assertEqual(len([x for x in talkerLines if x.startswith(b"<")]), 20)
        slowLines = received(slowT)
        self.assertEqual(
            slowLines[-1],
            b"! disconnected: more than 1000 bytes of output were waiting for you"
            b" to read",
        )
        self.assertLess(len(b"\r\n".join(slowLines)), 1000 + 200)
        self.assertFalse(slowT.connected)
        # A transport does not close while a producer is registered, even a
        # paused one: unregistering lets the dropped client read its last line
        # and then get a clean EOF rather than wait for the abort.
        self.assertIsNone(slowT.producer)
        self.assertEqual(room.room.names(), ["127.0.0.1:40002"])
        self.assertEqual(room.room.clientsDropped["slow"], 1)

    def test_droppedClientIsAbortedIfItNeverReads(self) -> None:
        """
        A dropped client that still does not read cannot hold its connection
        (and its buffer) open: it is aborted after a grace period.
        """
        room = Room(backlog=10)
        slow, slowT = room.connect()
        slowT.loseConnection = lambda: None  # type: ignore[method-assign]
        slow.pauseProducing()
        slow.tell("x" * 20)
        room.clock.advance(0)  # the reactor's turn ends
        self.assertEqual(len(room.clock.getDelayedCalls()), 1)
        self.assertFalse(slowT.disconnected)
        room.clock.advance(member.DROP_GRACE_SECONDS)
        self.assertTrue(slowT.disconnected)
        self.assertEqual(room.clock.getDelayedCalls(), [])

    def test_readerThatCatchesUpIsKept(self) -> None:
        """
        Resuming (the buffer drained) resets the count: a client that reads,
        even slowly, is never dropped.
        """
        room = Room(backlog=100)
        reader, readerT = room.connect()
        for _ in range(50):
            reader.pauseProducing()
            reader.tell("x" * 90)
            reader.resumeProducing()
        self.assertTrue(readerT.connected)
        self.assertFalse(readerT.disconnecting)

    def test_onlyOutputWhilePausedCountsAndEachResumeRestartsTheCount(self) -> None:
        """
        What is sent while the transport is not paused never counts towards
        the backlog, and each resume starts the count again; but a reader
        that stalls again is still dropped once more than the backlog has
        waited for it since it last caught up.

        Driven through the producer the transport holds, with lines from
        another client, as in a room: a reader that falls behind now and then
        must not be dropped for the total it was sent.
        """
        room = Room(backlog=100)
        reader, readerT = room.connect()
        talker, talkerT = room.connect()
        received(readerT), received(talkerT)
        transportProducer = readerT.producer
        assert transportProducer is not None

        def say(count: int) -> None:
            # Each line reaches the reader as 80 bytes, in a turn of its own.
            for _ in range(count):
                talker.dataReceived(b"x" * 60 + b"\n")
                room.clock.advance(0)

        transportProducer.pauseProducing()
        say(1)  # 80 bytes waiting: within the backlog
        transportProducer.resumeProducing()
        say(3)  # sent while reading: does not count
        transportProducer.pauseProducing()
        say(1)  # 80 since the resume, not 160 in all
        self.assertIn("127.0.0.1:40001", room.room.names())
        self.assertTrue(readerT.connected)

        say(1)  # 160 since the resume: too slow
        self.assertEqual(room.room.names(), ["127.0.0.1:40002"])
        self.assertFalse(readerT.connected)
        self.assertIn(b"* 127.0.0.1:40001 was dropped (too slow)", received(talkerT))
        self.assertTrue(received(readerT)[-1].startswith(b"! disconnected: more than"))


class BackpressureTests(SynchronousTestCase):
    """
    With flood control lifted, for load tests, the room holds its senders
    back while a reader is behind, rather than outrun the readers until they
    are dropped; and one that stays behind is dropped after a bound.
    """

    def setUp(self) -> None:
        self.room = Room(rate=0, backlog=1000, backpressure=True)
        self.reader, self.readerT = self.room.connect()
        self.talker, self.talkerT = self.room.connect()
        received(self.readerT), received(self.talkerT)

    def say(self, count: int) -> None:
        self.talker.dataReceived(b"".join(b"line %03d\n" % n for n in range(count)))
        self.room.clock.advance(0)

    def test_sendersWaitWhileAReaderIsFarBehind(self) -> None:
        """
        Once a reader has half its backlog waiting, lines sent are not
        relayed, and the sender's reads are paused; once the reader has caught
        up they are, in order, and nobody was dropped, however far past the
        backlog they add up to.
        """
        self.reader.pauseProducing()  # its transport's buffer is full
        self.say(20)  # 600 bytes: past half the backlog
        self.assertEqual(len(received(self.talkerT)), 20)
        self.say(200)
        self.assertEqual(received(self.talkerT), [])
        self.assertEqual(self.talkerT.producerState, "paused")
        self.room.clock.advance(BEHIND_LIMIT / 2)
        self.reader.resumeProducing()  # it has read all that
        self.room.clock.advance(0)
        expected = [b"<127.0.0.1:40002> line %03d" % n for n in range(200)]
        self.assertEqual(received(self.readerT), expected[:20] + expected)
        self.assertEqual(received(self.talkerT), expected)
        self.assertEqual(self.talkerT.producerState, "producing")
        self.assertEqual(self.room.room.clientsDropped, {})

    def test_aReaderBehindTooLongIsDroppedAndTheRoomGoesOn(self) -> None:
        """
        A reader that stays behind for L{BEHIND_LIMIT} (it does not read) is
        told why and dropped; the lines held back for it then go out.
        """
        self.reader.pauseProducing()
        self.say(20)
        self.say(3)
        self.room.clock.advance(BEHIND_LIMIT)
        self.assertEqual(
            received(self.readerT)[-1],
            b"! disconnected: behind for more than 5 seconds while the room"
            b" waited for you",
        )
        self.assertEqual(self.room.room.clientsDropped["slow"], 1)
        self.assertEqual(
            received(self.talkerT)[20:],
            [b"* 127.0.0.1:40001 was dropped (too slow)"]
            + [b"<127.0.0.1:40002> line %03d" % n for n in range(3)],
        )

    def test_aReaderALittleBehindHoldsNobody(self) -> None:
        """
        A reader whose transport is full but that has less than half its
        backlog waiting does not hold the others: a fan-out's readers often
        are, for a moment.
        """
        self.reader.pauseProducing()
        self.say(10)  # 300 bytes
        self.say(1)
        self.assertEqual(len(received(self.talkerT)), 11)
        self.room.clock.advance(BEHIND_LIMIT)
        self.assertEqual(self.room.room.clientsDropped, {})

    def test_withoutBackpressureAReaderBehindDoesNotHoldSenders(self) -> None:
        room = Room(rate=0, backlog=1000)
        reader, _ = room.connect()
        talker, talkerT = room.connect()
        reader.pauseProducing()
        talker.dataReceived(b"hello\n")
        self.assertEqual(received(talkerT)[-1], b"<127.0.0.1:40002> hello")
        room.clock.advance(BEHIND_LIMIT)
        self.assertEqual(room.room.clientsDropped, {})


class BatchingTests(SynchronousTestCase):
    def test_linesSaidInOneTurnAreSentAsOneWrite(self) -> None:
        """
        Lines said during one turn of the reactor, by any number of clients,
        reach each recipient in one write, in order: the writes are most of
        the cost of a busy room.
        """
        room = Room()
        alice, aliceT = room.connect()
        bob, bobT = room.connect()
        _, carolT = room.connect()
        for transport in (aliceT, bobT, carolT):
            received(transport)
        before = carolT.writes
        alice.dataReceived(b"one\ntwo\n")
        bob.dataReceived(b"three\n")
        self.assertEqual(carolT.io.getvalue(), b"")  # not before the turn ends
        self.assertEqual(
            received(carolT),
            [
                b"<127.0.0.1:40001> one",
                b"<127.0.0.1:40001> two",
                b"<127.0.0.1:40002> three",
            ],
        )
        self.assertEqual(carolT.writes, before + 1)

    def test_replyToSenderComesAfterItsEarlierLines(self) -> None:
        """
        A reply meant for one client (an error, /who) does not overtake lines
        said before it in the same turn.
        """
        room = Room()
        alice, aliceT = room.connect()
        received(aliceT)
        alice.dataReceived(b"hi\n/nope\nbye\n")
        self.assertEqual(
            received(aliceT),
            [
                b"<127.0.0.1:40001> hi",
                b"! unknown command /nope; /help lists commands",
                b"<127.0.0.1:40001> bye",
            ],
        )

    def test_newcomerDoesNotGetWhatWasSaidBeforeItJoined(self) -> None:
        room = Room()
        alice, aliceT = room.connect()
        alice.dataReceived(b"before\n")
        _, bobT = room.connect()
        self.assertEqual(len(received(bobT)), 1)  # only the welcome
        self.assertIn(b"<127.0.0.1:40001> before", received(aliceT))


class EdgeCaseTests(SynchronousTestCase):
    def test_peersWithoutAnAddressGetUniqueNames(self) -> None:
        """
        Clients on a UNIX socket have no peer address; each gets its own name
        (a shared one would make each newcomer replace the last in the room).
        """
        room = Room()
        clients = []
        for _ in range(3):
            client = room.factory.buildProtocol(None)
            assert isinstance(client, ChatClient)
            transport = StringTransportWithDisconnection(peerAddress=UNIXAddress(None))
            transport.protocol = client
            client.makeConnection(transport)
            clients.append(client)
        self.assertEqual(room.room.names(), ["local-1", "local-2", "local-3"])
        clients[0].dataReceived(b"/nick local-9\n")
        client = room.factory.buildProtocol(None)
        assert isinstance(client, ChatClient)
        client.makeConnection(StringTransportWithDisconnection())
        self.assertEqual(len(room.room), 4)

    def test_manySlowClientsDroppedInOneFanOut(self) -> None:
        """
        A line that pushes many stalled clients over the limit drops them all,
        with no recursion (each drop notice is queued, not sent inside the
        fan-out), and every reader gets the line before the drop notices.
        """
        # Every notice, however fast they come: the room's announcement rate is
        # tested on its own.
        self.patch(chatroom, "ANNOUNCE_BURST", 10_000)
        room = Room(backlog=50)
        reader, readerT = room.connect()
        stalled = [room.connect() for _ in range(900)]
        received(readerT)
        for client, transport in stalled:
            client.pauseProducing()
            transport.clear()
        reader.dataReceived(b"x" * 60 + b"\n")
        lines = received(readerT)
        self.assertEqual(lines[0], b"<127.0.0.1:40001> " + b"x" * 60)
        self.assertEqual(len(lines), 1 + len(stalled))
        self.assertTrue(all(b"was dropped (too slow)" in line for line in lines[1:]))
        self.assertEqual(room.room.names(), ["127.0.0.1:40001"])

    def test_halfCloseGetsRepliesThenClose(self) -> None:
        """
        A client that sends its lines and shuts down its sending side (nc -N,
        scripts) still gets the answers, then the connection closes.
        """
        room = Room()
        alice, aliceT = room.connect()
        received(aliceT)
        alice.dataReceived(b"hi\n/who\n")
        alice.readConnectionLost()
        self.assertEqual(
            received(aliceT),
            [b"<127.0.0.1:40001> hi", b"* in the room (1): 127.0.0.1:40001"],
        )
        self.assertFalse(aliceT.connected)


class FairReadingTests(SynchronousTestCase):
    """
    One client's flood costs bounded work per turn of the reactor, and is
    slowed by pausing its reads (TCP then pushes back on it); nobody else pays.
    """

    def test_floodBeyondTheBurstIsSlowedToTheRate(self) -> None:
        """
        Past its burst, a client's lines wait, its reads paused, and come
        through at the rate; none is lost, and reading resumes once they are
        all handled.
        """
        room = Room(rate=10, burst=60)
        flooder, flooderT = room.connect()
        _, otherT = room.connect()
        received(flooderT), received(otherT)
        flooder.dataReceived(b"".join(b"line %d\n" % n for n in range(100)))
        self.assertEqual(len(received(otherT)), 60)
        self.assertEqual(flooderT.producerState, "paused")
        room.clock.advance(1)
        self.assertEqual(len(received(otherT)), 10)
        room.clock.advance(3)
        lines = received(otherT)
        self.assertEqual(lines[-1], b"<127.0.0.1:40001> line 99")
        self.assertEqual(len(lines), 30)
        self.assertEqual(flooderT.producerState, "producing")

    def test_commandsCountToo(self) -> None:
        """
        Commands pass the same bucket as lines: a flood of renames or of
        unknown commands is slowed like any other.
        """
        room = Room(rate=10, burst=5)
        flooder, flooderT = room.connect()
        received(flooderT)
        flooder.dataReceived(b"/nick fa\n/nick fb\n" * 50)
        self.assertEqual(len(received(flooderT)), 5)
        self.assertEqual(flooderT.producerState, "paused")

    def test_noLimitStillBoundsTheWorkOfOneTurn(self) -> None:
        """
        With flood control lifted (--chat-rate=0), a client's lines are still
        handled at most LINES_PER_TURN per turn, reads paused in between.
        """
        room = Room(rate=0)
        flooder, flooderT = room.connect()
        _, otherT = room.connect()
        received(flooderT), received(otherT)
        flooder.dataReceived(b"x\n" * (member.LINES_PER_TURN * 2 + 1))
        self.assertEqual(room.room.messagesRelayed, member.LINES_PER_TURN)
        self.assertEqual(flooderT.producerState, "paused")
        room.clock.advance(0)
        self.assertEqual(len(received(otherT)), member.LINES_PER_TURN * 2 + 1)
        self.assertEqual(flooderT.producerState, "producing")

    def test_halfCloseAfterAFloodAnswersEverythingThenCloses(self) -> None:
        """
        A client that sends more than its burst and then shuts down its
        sending side still has every line handled before the close.
        """
        room = Room(rate=10, burst=5)
        sender, senderT = room.connect()
        received(senderT)
        sender.dataReceived(b"".join(b"%d\n" % n for n in range(20)))
        sender.readConnectionLost()
        self.assertTrue(senderT.connected)
        room.clock.pump([0.1] * 20)
        lines = received(senderT)
        self.assertEqual(lines[-1], b"<127.0.0.1:40001> 19")
        self.assertEqual(len(lines), 20)
        self.assertFalse(senderT.connected)

    def test_repliesToOneClientCostTheOthersNothing(self) -> None:
        """
        Replies (errors, /who, /help) go only to the client concerned, in the
        same per-turn batch: a flood of them writes nothing to anyone else,
        and one write to the sender.
        """
        room = Room(rate=0)
        flooder, flooderT = room.connect()
        others = [room.connect()[1] for _ in range(20)]
        received(flooderT)
        for transport in others:
            received(transport)
        writes = [transport.writes for transport in others]
        before = flooderT.writes
        flooder.dataReceived(b"/x\n/who\n/help\n" * 30)
        room.clock.advance(0)
        self.assertEqual([transport.writes for transport in others], writes)
        self.assertEqual(flooderT.writes, before + 1)
        self.assertEqual(len(received(flooderT)), 90)

    def test_renamesAndRepliesInOneTurnAreOneWritePerMember(self) -> None:
        """
        A rename goes through the turn's batch like a line: each member gets
        one write, in order; the renamed client gets its own reply instead of
        the notice.
        """
        room = Room()
        alice, aliceT = room.connect()
        bob, bobT = room.connect()
        received(aliceT), received(bobT)
        before = bobT.writes, aliceT.writes
        bob.dataReceived(b"one\n")
        alice.dataReceived(b"/nick alice\ntwo\n/nick al\n")
        self.assertEqual(
            received(bobT),
            [
                b"<127.0.0.1:40002> one",
                b"* 127.0.0.1:40001 is now alice",
                b"<alice> two",
                b"* alice is now al",
            ],
        )
        self.assertEqual(
            received(aliceT),
            [
                b"<127.0.0.1:40002> one",
                b"* you are now alice",
                b"<alice> two",
                b"* you are now al",
            ],
        )
        self.assertEqual((bobT.writes, aliceT.writes), (before[0] + 1, before[1] + 1))

    def test_renamesAreNotAnnouncedInACrowd(self) -> None:
        """
        Renames follow the rule joins follow: in a crowd nobody is told, so a
        client renaming itself over and over cannot make the room write to
        everyone.
        """
        self.patch(chatroom, "ANNOUNCE_LIMIT", 2)
        room = Room()
        alice, aliceT = room.connect()
        _, bobT = room.connect()
        _, carolT = room.connect()
        received(aliceT), received(bobT), received(carolT)
        alice.dataReceived(b"/nick alice\n")
        self.assertEqual(received(bobT), [])
        self.assertEqual(received(aliceT), [b"* you are now alice"])
        self.assertIn("alice", room.room.names())

    def test_announcementsAreRateLimitedRoomWide(self) -> None:
        """
        Clients coming and going faster than anyone can read are not each
        announced to everyone: past the room's announcement burst, joins and
        departures go unannounced until the rate allows again.
        """
        self.patch(chatroom, "ANNOUNCE_BURST", 3)
        self.patch(chatroom, "ANNOUNCE_RATE", 1.0)
        room = Room()
        _, watcherT = room.connect()  # the first join takes a token
        received(watcherT)
        churn = [room.connect()[1] for _ in range(5)]
        self.assertEqual(len(received(watcherT)), 2)
        for transport in churn:
            transport.loseConnection()
        self.assertEqual(received(watcherT), [])
        room.clock.advance(1)
        room.connect()
        self.assertEqual(len(received(watcherT)), 1)


class MemoryBudgetTests(SynchronousTestCase):
    def test_overTheRoomBudgetTheFurthestBehindGoFirst(self) -> None:
        """
        When the unsent output of all the clients that are behind passes the
        room's budget, the clients furthest behind are dropped, and aborted at
        once to give the memory back, until the room is under budget; clients
        less far behind, and readers, stay.
        """
        budget = 3 * member.TRANSPORT_BUFFER + 1000
        room = Room(rate=0, memory=budget, backlog=10**9)
        talker, talkerT = room.connect()
        far, farT = room.connect()
        further, furtherT = room.connect()
        near, nearT = room.connect()
        for client in (far, further, near):
            client.pauseProducing()
        further.deliver(b"x" * 800)
        far.deliver(b"x" * 400)
        self.assertEqual(room.room.unsent, 3 * member.TRANSPORT_BUFFER + 1200)
        talker.dataReceived(b"hello\n")
        room.clock.advance(0)
        self.assertTrue(furtherT.disconnected)
        self.assertFalse(farT.disconnected)
        self.assertFalse(nearT.disconnected)
        self.assertLessEqual(room.room.unsent, budget)
        self.assertEqual(room.room.clientsDropped["memory"], 1)
        self.assertEqual(len(room.room), 3)
        self.assertIn(b"<127.0.0.1:40001> hello", received(talkerT))

    def test_resumingGivesTheBudgetBack(self) -> None:
        """
        A client whose buffer drains is no longer counted against the room.
        """
        room = Room()
        reader, _ = room.connect()
        reader.pauseProducing()
        reader.deliver(b"x" * 100)
        self.assertEqual(room.room.unsent, member.TRANSPORT_BUFFER + 100)
        reader.resumeProducing()
        self.assertEqual(room.room.unsent, 0)
        reader.pauseProducing()
        reader.transport.loseConnection()
        self.assertEqual(room.room.unsent, 0)


class TokenBucketTests(SynchronousTestCase):
    def test_burstThenRate(self) -> None:
        clock = Clock()
        bucket = TokenBucket(clock, rate=2, burst=3)
        self.assertEqual([bucket.take() for _ in range(4)], [True] * 3 + [False])
        self.assertAlmostEqual(bucket.wait(), 0.5)
        clock.advance(0.5)
        self.assertEqual([bucket.take(), bucket.take()], [True, False])
        clock.advance(100)
        self.assertEqual(sum(bucket.take() for _ in range(10)), 3)

    def test_zeroRateMeansNoLimit(self) -> None:
        bucket = TokenBucket(Clock(), rate=0, burst=1)
        self.assertTrue(all(bucket.take() for _ in range(1000)))


class MemberInterfaceTests(SynchronousTestCase):
    def test_tcpClientIsAMember(self) -> None:
        """
        The room sees its members only through L{IMember}; the TCP client
        provides it.
        """
        client, _ = Room().connect()
        verifyObject(IMember, client)


class ChatLimitTests(SynchronousTestCase):
    def test_fullRoomSaysSoAndHangsUp(self) -> None:
        room = Room()
        room.factory.connections.limit = 1
        room.connect()
        protocol = room.factory.buildProtocol(PEER)
        self.assertIsInstance(protocol, RoomFull)
        transport = connectProtocol(protocol)
        self.assertEqual(transport.value(), b"! server full, try again later\r\n")
        self.assertFalse(transport.connected)
        self.assertEqual(room.factory.connections.rejected["limit"], 1)
        self.assertEqual(len(room.room), 1)

    def test_idleClientIsToldThenClosed(self) -> None:
        room = Room()
        room.settings.idleTimeout = 30
        idler, idlerT = room.connect()
        other, otherT = room.connect()
        room.clock.advance(20)
        other.dataReceived(b"still here\n")
        received(idlerT), received(otherT)
        room.clock.advance(10)
        self.assertEqual(received(idlerT), [b"! idle for 30 seconds; disconnecting"])
        self.assertFalse(idlerT.connected)
        self.assertEqual(received(otherT), [b"* 127.0.0.1:40001 left (idle)"])
        self.assertEqual(room.room.clientsDropped["idle"], 1)

    def test_shutdownTellsEveryoneAndCloses(self) -> None:
        room = Room()
        transports = [room.connect()[1] for _ in range(3)]
        for transport in transports:
            received(transport)
        self.successResultOf(room.factory.close())
        for transport in transports:
            self.assertEqual(received(transport), [b"* server shutting down"])
            self.assertFalse(transport.connected)


class QuietTurnTests(SynchronousTestCase):
    def test_aTurnOfRepliesOnlyTouchesThoseItIsFor(self) -> None:
        """
        A turn holding only replies and welcomes (a crowd arriving in a room
        past the announcement limit, a client asking /who) writes to the
        clients concerned and looks at nobody else: otherwise each arrival
        would cost a pass over the whole room.
        """
        room = Room()
        members = [room.connect() for _ in range(50)]
        for _, transport in members:
            received(transport)
        asking, askingT = members[0]
        looked: list[object] = []
        hasOwn = chatroom.Turn.hasOwn

        def spy(turn: chatroom.Turn, member: object) -> bool:
            looked.append(member)
            return hasOwn(turn, member)  # type: ignore[arg-type]

        self.patch(chatroom.Turn, "hasOwn", spy)
        asking.dataReceived(b"/who\n")
        self.assertEqual(len(received(askingT)), 1)
        self.assertEqual(looked, [])
