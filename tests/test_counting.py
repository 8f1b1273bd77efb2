"""
Tests for L{netdemos.counting}: the HTTP count across restarts.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from support.redis import FakeRedis, FakeRedisLink
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from netdemos.counting import (
    ANSWER_TIMEOUT,
    EMPTY_REDIS_GRACE,
    MAX_COUNT,
    RETRY_INTERVAL,
    TAKE_SCRIPT,
    CounterFileError,
    CounterUnavailableError,
    FileCounter,
    ICounter,
    MemoryCounter,
    RedisCounter,
    readCount,
)

# Contents that are not a count: int() accepts most of the first ones.
NOT_A_COUNT = [
    b"1_000",
    b"+5",
    b" 7",
    b"7 \n",
    b"-5\n",
    "\u0661\u0662".encode(),  # Arabic-Indic digits: int("١٢") is 12
    b"",
    b"\x00\xff",
    b"twelve\n",
    b"12\n\n",
    b"41\r\n",
    b"9" * 20,
    b"9" * 5000,
    b"%d\n" % (MAX_COUNT + 1,),
]


class PersistentCounterTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.directory)
        self.path = os.path.join(self.directory, "count")

    def test_cleanStopContinuesWhereItLeftOff(self) -> None:
        """
        Three requests, a clean stop, and the next run's first request is #4.
        """
        counter = FileCounter(self.path)
        self.assertEqual([counter.next() for _ in range(3)], [1, 2, 3])
        counter.save()
        self.assertEqual(FileCounter(self.path).next(), 4)

    def test_crashNeverRepeatsANumber(self) -> None:
        """
        After a crash (no save), the next run starts above every number the
        last one could have handed out: numbers may be skipped, never repeated.
        """
        counter = FileCounter(self.path, reserve=10)
        handedOut = [counter.next() for _ in range(25)]
        restarted = FileCounter(self.path, reserve=10)
        self.assertGreater(restarted.next(), max(handedOut))

    def test_diskIsWrittenOncePerBlockNotPerRequest(self) -> None:
        counter = FileCounter(self.path, reserve=100)
        writes = []
        original = os.replace

        def countingReplace(source: str, destination: str) -> None:
            writes.append(destination)
            original(source, destination)

        self.patch(os, "replace", countingReplace)
        for _ in range(250):
            counter.next()
        self.assertEqual(len(writes), 3)
        self.assertEqual(readCount(self.path), 300)

    def test_missingFileStartsAtOneAndIsCreated(self) -> None:
        counter = FileCounter(self.path)
        self.assertTrue(os.path.exists(self.path))
        self.assertEqual(counter.next(), 1)

    def write(self, content: bytes) -> None:
        with open(self.path, "wb") as f:
            f.write(content)

    def test_garbageIsAnErrorNotAReset(self) -> None:
        """
        A file that is not exactly a count is refused with a one-line message
        naming it, and left as it is, down to its modification time.

        Silently starting again from 1 would repeat numbers; reading C{1_000}
        as 1000, or the first 100 of 5000 digits as a count, would make the
        count jump or go backwards; and rewriting the file would destroy what
        the operator needs to look at.
        """
        for content in NOT_A_COUNT:
            self.write(content)
            before = os.stat(self.path)
            error = self.assertRaises(CounterFileError, FileCounter, self.path)
            self.assertIn(self.path, str(error))
            self.assertNotIn("\n", str(error))
            with open(self.path, "rb") as f:
                self.assertEqual(f.read(), content)
            self.assertEqual(os.stat(self.path).st_mtime_ns, before.st_mtime_ns)

    def test_digitsWithOrWithoutANewlineAreACount(self) -> None:
        """
        What netdemos writes (C{41\\n}) is read, and so is a count written
        without its newline (C{printf 41}), up to the largest count.
        """
        for content, count in [
            (b"41\n", 41),
            (b"41", 41),
            (b"0\n", 0),
            (b"007", 7),
            (b"%d\n" % (MAX_COUNT,), MAX_COUNT),
        ]:
            self.write(content)
            self.assertEqual(readCount(self.path), count)

    def test_reservingStopsAtTheLargestCount(self) -> None:
        """
        Near the largest count, a reserved block ends at it, so the file
        never holds a count the next run would refuse; the last number is
        handed out once, and the one after is refused, not repeated.
        """
        self.write(b"%d\n" % (MAX_COUNT - 2,))
        counter = FileCounter(self.path, reserve=1000)
        self.assertEqual([counter.next(), counter.next()], [MAX_COUNT - 1, MAX_COUNT])
        self.assertEqual(readCount(self.path), MAX_COUNT)
        error = self.assertRaises(CounterFileError, counter.next)
        self.assertIn(str(MAX_COUNT), str(error))
        self.assertEqual(readCount(self.path), MAX_COUNT)

    def test_fileAtTheLargestCountIsRefusedAtStartup(self) -> None:
        """
        A server that could only refuse every request does not start.
        """
        self.write(b"%d\n" % (MAX_COUNT,))
        error = self.assertRaises(CounterFileError, FileCounter, self.path)
        self.assertIn("no number is left", str(error))

    def test_unreadableFileIsAnError(self) -> None:
        os.mkdir(self.path)  # reading a directory fails
        error = self.assertRaises(CounterFileError, FileCounter, self.path)
        self.assertIn(f"cannot read {self.path}", str(error))

    def test_unwritableDirectoryIsAnErrorAtStartup(self) -> None:
        missing = os.path.join(self.directory, "no", "such", "count")
        error = self.assertRaises(CounterFileError, FileCounter, missing)
        self.assertIn(f"cannot write {missing}", str(error))


class InterfaceTests(SynchronousTestCase):
    def test_everyCounterIsAnICounter(self) -> None:
        """
        The HTTP resource only knows L{ICounter}: each home for the count
        provides it.
        """
        directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, directory)
        redis = FakeRedis(Clock())
        for counter in (
            MemoryCounter(),
            FileCounter(os.path.join(directory, "n")),
            RedisCounter(redis.link(), redis.clock),
        ):
            verifyObject(ICounter, counter)


class RedisCounterTests(SynchronousTestCase):
    """
    The logic of L{RedisCounter}, against a fake Redis; tests/test_e2e_redis.py
    runs it against a real one.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.redis = FakeRedis(self.clock)
        self.link = self.redis.link(prefix="t")
        self.counter = RedisCounter(self.link, self.clock)

    def take(self, count: int) -> list[int]:
        """
        Ask for C{count} numbers in one turn; return them once that turn ends.
        """
        taking = [self.counter.next() for _ in range(count)]
        self.clock.advance(0)
        return [self.successResultOf(each) for each in taking]

    def secondInstance(self) -> tuple[RedisCounter, FakeRedisLink]:
        """
        Another instance's counter beside this one's, both linked; this one
        has handed out #1 and #2.
        """
        link = self.redis.link(prefix="t")
        counter = RedisCounter(link, self.clock)
        self.link.goUp()
        link.goUp()
        self.assertEqual(self.take(2), [1, 2])
        return counter, link

    def takes(self) -> list[tuple[object, ...]]:
        return [each for each in self.link.commands if each[1] == TAKE_SCRIPT]

    def test_oneRoundTripPerTurnNumbersInArrivalOrder(self) -> None:
        """
        The requests of one turn share one round trip to Redis and get its
        numbers in the order they came; the next turn's continue from there.
        """
        self.link.goUp()
        self.assertEqual(self.take(3), [1, 2, 3])
        self.assertEqual(
            self.takes(), [("eval", TAKE_SCRIPT, ("t:count",), (3, "t:count"))]
        )
        self.assertEqual(self.take(1), [4])
        self.assertEqual(self.redis.store["t:count"], 4)

    def test_notReadyUntilRedisAnswersThenResumesByItself(self) -> None:
        """
        Before Redis is reached, and while it is lost, there is no number:
        a request fails at once, never falls back to a local count; when the
        link is back, numbers resume without anyone's help.
        """
        self.assertFalse(self.counter.ready)
        self.failureResultOf(self.counter.next(), CounterUnavailableError)
        self.link.goUp()
        self.assertTrue(self.counter.ready)
        self.assertEqual(self.take(2), [1, 2])
        self.link.goDown()
        self.assertFalse(self.counter.ready)
        self.failureResultOf(self.counter.next(), CounterUnavailableError)
        self.link.goUp()
        self.assertEqual(self.take(1), [3])

    def test_requestsInFlightWhenRedisGoesFail(self) -> None:
        self.link.goUp()
        self.link.held = True
        taking = self.counter.next()
        self.clock.advance(0)
        self.link.goDown()
        self.failureResultOf(taking, CounterUnavailableError)

    def test_aRedisThatDoesNotAnswerFailsWithinTheTimeout(self) -> None:
        """
        A Redis that accepts the command but never answers does not hold a
        request: it fails after L{ANSWER_TIMEOUT}, which is under a second.
        """
        self.assertLess(ANSWER_TIMEOUT, 1)
        self.link.goUp()
        self.link.held = True
        taking = self.counter.next()
        self.clock.advance(0)
        self.clock.advance(ANSWER_TIMEOUT - 0.01)
        self.assertNoResult(taking)
        self.clock.advance(0.01)
        self.failureResultOf(taking, CounterUnavailableError)

    def test_anEmptyRedisIsRaisedToTheHighestNumberSeen(self) -> None:
        """
        A Redis that restarts empty would hand out 1, 2, ... again: on
        reconnecting, the counter raises it to the highest number this
        instance was given before it answers any request.
        """
        self.link.goUp()
        self.assertEqual(self.take(5), [1, 2, 3, 4, 5])
        self.link.goDown()
        self.redis.flush()
        self.link.held = True
        self.link.goUp()
        self.assertFalse(self.counter.ready)
        self.link.release()
        self.link.held = False
        # Found empty: the others get a moment to raise it further.
        self.assertFalse(self.counter.ready)
        self.clock.advance(EMPTY_REDIS_GRACE)
        self.assertTrue(self.counter.ready)
        self.assertEqual(self.take(1), [6])

    def test_anEmptyRedisIsRaisedToTheHighestNumberAnyInstanceHandedOut(
        self,
    ) -> None:
        """
        Instance B hands out the latest numbers; Redis restarts empty while
        B is paused, and A reconnects first: A raises the count to B's
        highest number, which it heard as B took it, not to its own.
        """
        a = self.counter
        b, bLink = self.secondInstance()
        taking = [b.next() for _ in range(10)]
        self.clock.advance(0)
        self.assertEqual([self.successResultOf(each) for each in taking][-1], 12)
        self.clock.advance(0)  # the news reaches A
        self.link.goDown()
        bLink.goDown()
        self.redis.flush()
        self.link.goUp()
        self.clock.advance(EMPTY_REDIS_GRACE)
        self.assertTrue(a.ready)
        self.assertEqual(self.take(1), [13])

    def test_anEmptyRedisWaitsForTheInstancesThatCountedFurther(self) -> None:
        """
        B's latest numbers never reached A (Redis died between answering B
        and telling A), then Redis comes back empty and A reconnects first:
        A waits L{EMPTY_REDIS_GRACE} before serving, and B, reconnecting
        meanwhile, raises the count to its own highest; A goes on above it.
        """
        a = self.counter
        b, bLink = self.secondInstance()
        self.clock.advance(0)
        hear = self.link._channels["t:count"]
        self.link._channels["t:count"] = lambda message: None
        taking = [b.next() for _ in range(10)]
        self.clock.advance(0)
        self.clock.advance(0)
        self.assertEqual([self.successResultOf(each) for each in taking][-1], 12)
        self.assertEqual(a.highest, 2)
        self.link._channels["t:count"] = hear
        self.link.goDown()
        bLink.goDown()
        self.redis.flush()
        self.link.goUp()
        self.assertFalse(a.ready)
        self.clock.advance(EMPTY_REDIS_GRACE / 2)
        bLink.goUp()
        self.assertTrue(b.ready)
        self.clock.advance(EMPTY_REDIS_GRACE / 2)
        self.assertTrue(a.ready)
        self.assertEqual(self.take(1), [13])

    def test_whatIsHeardOnTheCountChannelIsChecked(self) -> None:
        """
        Another program may publish on the count's channel: what is not a
        count is dropped and counted, and raises nothing.
        """
        self.link.goUp()
        for message in ["x", "-5", -5, b"\xff", "9" * 30, 1.5, "12abc"]:
            self.redis.publish("t:count", message)
        self.clock.advance(0)
        self.assertEqual(self.link.badMessages, 7)
        self.assertEqual(self.counter.highest, 0)
        self.redis.publish("t:count", "40")
        self.clock.advance(0)
        self.assertEqual(self.counter.highest, 40)

    def test_errorRepliesMakeItNotReadyUntilNumbersCanBeHad(self) -> None:
        """
        A Redis that answers with errors (full, with noeviction) while the
        connection stays up gives no numbers: the counter says it is not
        ready, so that /readyz turns the balancer away, and asks again each
        L{RETRY_INTERVAL} until Redis gives numbers again.
        """
        self.link.goUp()
        self.assertEqual(self.take(2), [1, 2])
        self.link.refusing = Exception("OOM command not allowed")
        taking = self.counter.next()
        self.clock.advance(0)
        self.failureResultOf(taking, CounterUnavailableError)
        self.assertFalse(self.counter.ready)
        self.clock.advance(RETRY_INTERVAL)
        self.assertFalse(self.counter.ready)
        self.link.refusing = None
        self.clock.advance(RETRY_INTERVAL)
        self.assertTrue(self.counter.ready)
        self.assertEqual(self.take(1), [3])

    def test_aCountUnderTheFormerKeyIsWhereItGoesOn(self) -> None:
        """
        netdemos used to keep the count under PREFIX:count; its keys now
        have a hash tag, {PREFIX}:count.  A count left under the former key
        by an earlier netdemos is where an upgraded one goes on from.
        """
        link = self.redis.link(prefix="t")
        link.prefix = "{t}"
        counter = RedisCounter(link, self.clock)
        self.redis.store["t:count"] = 500
        link.goUp()
        taking = counter.next()
        self.clock.advance(0)
        self.assertEqual(self.successResultOf(taking), 501)
        self.assertEqual(self.redis.store["{t}:count"], 501)

    def test_aHigherCountInRedisIsKept(self) -> None:
        """
        Raising never lowers: another instance may have counted further.
        """
        self.redis.store["t:count"] = 100
        self.link.goUp()
        self.assertEqual(self.take(1), [101])
        self.assertEqual(self.counter.peek(), 102)

    def test_notReadyIfTheRaiseFails(self) -> None:
        """
        Until the count is raised, numbers could repeat: no number is given.
        """
        self.link.held = True
        self.link.goUp()
        self.clock.advance(ANSWER_TIMEOUT)
        self.assertFalse(self.counter.ready)
