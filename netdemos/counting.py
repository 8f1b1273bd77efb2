"""
Where the HTTP counter's numbers come from: one small interface, L{ICounter},
and one implementation per home, as C{twisted.cred.checkers} does for
credentials.

  - L{MemoryCounter}: in memory, starting at 1 at each run;
  - L{FileCounter}: in a file, surviving restarts and crashes;
  - L{RedisCounter}: in Redis, one count for every instance that shares it.

The HTTP resource holds an L{ICounter} and never asks which one it is; only
C{tap.py} chooses.  The first two answer at once, with an C{int}; the Redis
one answers later, with a L{Deferred}, and the resource handles both.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import Attribute, Interface, implementer

from netdemos.scripts import luaScript

if TYPE_CHECKING:
    # Only its type: importing txredisapi imports the reactor, which must wait
    # until twistd has chosen one, and only --redis needs it.
    from netdemos.redis import IRedisLink

log = Logger()


class ICounter(Interface):
    """
    A source of request numbers: 1, 2, 3, ..., each handed out once.
    """

    ready = Attribute(
        "True while next() can hand out a number: /readyz answers 503 otherwise."
    )

    def next() -> Deferred[int] | int:
        """
        Take the next number: an C{int} from a counter that has it at hand,
        else a L{Deferred} that fires with it, or fails with
        L{CounterUnavailableError}.
        """

    def peek() -> int:
        """
        Say which number the next request will get, without taking it.
        """

    def save() -> None:
        """
        Keep the count for the next run, if this counter can.
        """


@implementer(ICounter)
class MemoryCounter:
    """
    Hand out request numbers, 1, 2, 3, ..., from memory: the count starts again
    at each run.
    """

    ready = True

    def __init__(self, start: int = 0) -> None:
        self.last = start

    def next(self) -> int:
        self.last += 1
        return self.last

    def peek(self) -> int:
        return self.last + 1

    def save(self) -> None:
        # This one forgets it.
        pass


class SavedOnStop(Service):
    """
    The service of a counter in the server's tree: it saves the count when
    the server stops, once the clients are gone.
    """

    def __init__(self, counter: ICounter) -> None:
        self.counter = counter

    def stopService(self) -> None:
        super().stopService()
        self.counter.save()


class CounterFileError(Exception):
    """
    The counter file cannot be read or written.
    """


# The largest count the file may hold: the largest signed 64-bit integer, so
# that any program reading the file into an int64 gets it exactly.  At a
# million requests a second it lasts 290,000 years; only a file written by
# hand comes near it.
MAX_COUNT = 2**63 - 1
MAX_DIGITS = len(str(MAX_COUNT))

# Exactly what writeCount writes, except that the newline may be missing.
_COUNT_FILE = re.compile(rb"([0-9]+)\n?")


class FileCounter(MemoryCounter):
    """
    A counter whose count survives restarts, and never repeats a
    number even after a crash.

    Writing the count to disk on every request would cost an fsync each.
    Instead the file holds a high-water mark: before handing out a number above
    it, the counter reserves the next C{reserve} numbers by writing the new mark
    (write a temporary file, fsync, rename over the old one: the file is always
    either the old or the new mark, never half of one).  After a crash the next
    run starts above the mark, so numbers may be skipped but never repeated; a
    clean stop (L{save}) writes the exact count, so nothing is skipped.

    The count stops at L{MAX_COUNT}: reserving never writes a mark above it,
    so the file always holds a count the next run accepts.
    """

    def __init__(self, path: str, reserve: int = 1000) -> None:
        self.path = path
        self.reserve = reserve
        count = readCount(path)
        if count >= MAX_COUNT:
            raise CounterFileError(
                f"{path} holds {count}, the largest count: no number is left"
            )
        super().__init__(count)
        # Fail at startup, not on the first request, if the file is unwritable.
        self._reserved = self.last
        writeCount(path, self.last)

    @staticmethod
    def check(path: str) -> None:
        """
        Refuse, before anything else happens and leaving it as it is, a file
        that cannot be read, does not hold a count, or could not be written.

        @raise CounterFileError: saying why.
        """
        readCount(path)
        directory = os.path.dirname(os.path.abspath(path))
        if not os.access(directory, os.W_OK | os.X_OK):
            raise CounterFileError(f"cannot write in {directory}")

    def next(self) -> int:
        if self.last >= MAX_COUNT:
            # Handing out a number above it would make the file unreadable;
            # handing one out again would repeat it.
            raise CounterFileError(f"the count in {self.path} reached {MAX_COUNT}")
        number = super().next()
        if number > self._reserved:
            # A synchronous write and fsync, on the reactor thread, once per
            # block: a few milliseconds every thousand requests (measured in
            # bench/), which keeps the code simple; a slow disk would stall
            # every connection for that long.
            self._reserved = min(number - 1 + self.reserve, MAX_COUNT)
            writeCount(self.path, self._reserved)
        return number

    def save(self) -> None:
        writeCount(self.path, self.last)
        self._reserved = self.last
        log.info("http: saved count {count} to {path}", count=self.last, path=self.path)


def readCount(path: str) -> int:
    """
    Read the count in C{path}; a missing file counts as 0.

    The file must hold what L{writeCount} writes: ASCII digits, a count of at
    most L{MAX_COUNT}, and a newline, which may be left out (C{printf 41}).
    Anything else is refused, not guessed at: C{int()} would also read
    C{1_000}, C{+5}, C{" 7 "} and other scripts' digits, and a file that is
    not exactly a count was not written by netdemos.  That includes a CRLF
    ending, and an empty file: writes are atomic, so a crash cannot leave one,
    and counting it as 0 would repeat numbers.

    @raise CounterFileError: if the file cannot be read or holds anything else.
    """
    try:
        with open(path, "rb") as f:
            # One byte more than the longest valid file, so that a longer one
            # shows, without reading all of a huge file.
            text = f.read(MAX_DIGITS + 2)
    except FileNotFoundError:
        return 0
    except OSError as e:
        raise CounterFileError(f"cannot read {path}: {e.strerror}") from e
    if not text:
        raise CounterFileError(f"{path} is empty, not a request count")
    match = _COUNT_FILE.fullmatch(text)
    if match is None:
        raise CounterFileError(
            f"{path} does not hold a request count (only ASCII digits and a"
            f" final newline): {text[:20]!r}"
        )
    digits = match.group(1)
    if len(digits) > MAX_DIGITS or int(digits) > MAX_COUNT:
        raise CounterFileError(
            f"{path} holds a count above {MAX_COUNT}, the largest allowed"
        )
    return int(digits)


def writeCount(path: str, count: int) -> None:
    """
    Replace the count in C{path} atomically and durably.
    """
    temporary = f"{path}.tmp"
    try:
        with open(temporary, "wb") as f:
            f.write(b"%d\n" % (count,))
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
        # Make the rename itself durable.
        directory = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except OSError as e:
        raise CounterFileError(f"cannot write {path}: {e.strerror}") from e


class CounterUnavailableError(Exception):
    """
    No number can be had now: the counter's Redis cannot be reached.
    """


# How long a request waits for its number from Redis before it is answered
# 503: a load balancer then retries it elsewhere, well within its own timeout.
ANSWER_TIMEOUT = 0.5

# Hand out numbers, and tell every instance the new count.
TAKE_SCRIPT = luaScript("counter-take.lua")

# Raise the count to at least the highest number heard, even in an empty Redis.
RAISE_SCRIPT = luaScript("counter-raise.lua")

# A Redis found empty on a reconnection lost its count: the instances that
# handed out the latest numbers raise it as they reconnect, within about a
# second (the link's longest reconnection delay).  Wait that long, then raise
# again, before serving; docs/several-instances.md says what window is left.
EMPTY_REDIS_GRACE = 1.0

# After a failed command, try again this often until Redis answers (it may
# be full, or a script may fail, while the connection stays up).
RETRY_INTERVAL = 1.0


@implementer(ICounter)
class RedisCounter:
    """
    Hand out numbers from one counter in Redis, shared by every instance that
    uses the same Redis and prefix: numbers are unique across all of them,
    and a fresh Redis starts at 1.

    A round trip per request would cost more than the rest of the request.
    Instead the requests that arrive in one turn of the reactor wait together
    and share one C{INCRBY k}, whose reply, the last of k numbers, gives them
    the k numbers in the order they arrived.

    While Redis cannot be reached, or answers with errors (full, a key of
    the wrong type), the counter is not L{ready} and every request fails with
    L{CounterUnavailableError} at once, or after L{ANSWER_TIMEOUT} if Redis
    stops answering: never a number from anywhere else, which could repeat
    one.

    A Redis that comes back empty (restarted without persistence) would start
    again at 1.  So every batch also publishes the new count (L{TAKE_SCRIPT})
    and every instance keeps the highest it has heard; after a reconnection,
    or after errors, the counter first raises the count in Redis to that
    (L{RAISE_SCRIPT}), and only then becomes ready again.  That covers the
    numbers any instance handed out, paused or not, as long as this one was
    subscribed when they were: docs/several-instances.md says what window is left.

    @ivar highest: the highest number handed out by any instance, as far as
        this one knows.
    """

    def __init__(
        self,
        link: IRedisLink,
        clock: IReactorTime,
        answerTimeout: float = ANSWER_TIMEOUT,
    ) -> None:
        self.key = f"{link.prefix}:count"
        self.channel = f"{link.prefix}:count"
        # Where netdemos kept the count before its keys had a hash tag.
        self.formerKey = f"{link.untaggedPrefix}:count"
        self.highest = 0
        self.ready = False
        self._link = link
        self._clock = clock
        self._answerTimeout = answerTimeout
        self._waiting: list[Deferred[int]] = []
        self._takeCall: IDelayedCall | None = None
        self._retryCall: IDelayedCall | None = None
        self._countedBefore = False
        link.subscribe(self.channel, self._heard)
        link.watch(self._linkUp, self._linkDown)

    def next(self) -> Deferred[int]:
        if not self.ready:
            return fail(
                CounterUnavailableError(f"no connection to Redis for {self.key}")
            )
        taking: Deferred[int] = Deferred()
        self._waiting.append(taking)
        if self._takeCall is None:
            self._takeCall = self._clock.callLater(0, self._takeNumbers)
        return taking

    def peek(self) -> int:
        # Another instance may have taken it since: the next number is at
        # least this one.
        return self.highest + 1

    def save(self) -> None:
        # Redis keeps the count, as durably as it is configured to (AOF, RDB).
        pass

    def _takeNumbers(self) -> None:
        self._takeCall = None
        waiting, self._waiting = self._waiting, []
        taking = self._link.evaluate(
            TAKE_SCRIPT, [self.key], [len(waiting), self.channel]
        )
        taking.addTimeout(self._answerTimeout, self._clock)
        taking.addCallbacks(
            self._handOut,
            self._noNumbers,
            callbackArgs=(waiting,),
            errbackArgs=(waiting,),
        )

    def _handOut(self, last: int, waiting: list[Deferred[int]]) -> None:
        self.highest = max(self.highest, last)
        for number, request in enumerate(waiting, last - len(waiting) + 1):
            request.callback(number)

    def _noNumbers(self, reason: Failure, waiting: list[Deferred[int]]) -> None:
        log.debug("http: no numbers from Redis: {reason}", reason=reason.value)
        for request in waiting:
            request.errback(CounterUnavailableError(str(reason.value)))
        # Redis may be full or refuse the key; if the link stays up, ask
        # again (raising the count first, in case it was emptied) until
        # numbers can be had.  Not ready meanwhile: /readyz says 503.
        if self.ready:
            log.warn(
                "http: no numbers from Redis ({reason}); answering 503 until"
                " it gives some again",
                reason=reason.getErrorMessage(),
            )
            self.ready = False
            self._retrySoon()

    def _heard(self, message: object) -> None:
        """
        Another instance (or this one) handed out numbers up to C{message}.
        """
        if isinstance(message, str) and message.isdigit() and len(message) <= 19:
            message = int(message)
        if not isinstance(message, int) or not 0 <= message <= MAX_COUNT:
            self._link.badMessage(self.channel, "not a request count")
            return
        self.highest = max(self.highest, message)

    def _linkUp(self) -> None:
        if self.formerKey == self.key:
            self._raise()
            return
        # A count kept by an earlier netdemos, under the key without a hash
        # tag, is one this instance must go on from.
        reading = self._link.get(self.formerKey)
        reading.addTimeout(self._answerTimeout, self._clock)
        reading.addCallbacks(self._formerCount, self._raiseFailed)

    def _formerCount(self, value: object) -> None:
        if isinstance(value, bytes | str):
            try:
                value = int(value)
            except ValueError:
                value = None
        if isinstance(value, int) and 0 < value <= MAX_COUNT:
            self.highest = max(self.highest, value)
        self._raise()

    def _raise(self) -> None:
        raising: Deferred[Any] = self._link.evaluate(
            RAISE_SCRIPT, [self.key], [self.highest]
        )
        raising.addTimeout(self._answerTimeout, self._clock)
        raising.addCallbacks(self._raised, self._raiseFailed)

    def _raised(self, result: Sequence[int]) -> None:
        if not self._link.up or self.ready:
            return
        count, found = result
        if self._countedBefore and not found:
            # Emptied since this instance last counted: give the others that
            # counted further a moment to raise it too.
            log.warn(
                "http: Redis lost the count; raised to {count}, serving again"
                " in {grace} s once every instance has raised it",
                count=count,
                grace=EMPTY_REDIS_GRACE,
            )
            if self._retryCall is None:
                self._retryCall = self._clock.callLater(EMPTY_REDIS_GRACE, self._retry)
            return
        self._countedBefore = True
        self.ready = True
        log.info(
            "http: counting in Redis at {key}, from {count}",
            key=self.key,
            count=count,
        )

    def _raiseFailed(self, reason: Failure) -> None:
        # A Redis that stops answering is dropped by the link, which calls
        # _linkUp again once it is back; one that answers with errors is
        # asked again.  Not ready until then.
        log.debug(
            "http: cannot raise the count in Redis: {reason}",
            reason=reason.getErrorMessage(),
        )
        self._retrySoon()

    def _retrySoon(self) -> None:
        if self._retryCall is None and self._link.up:
            self._retryCall = self._clock.callLater(RETRY_INTERVAL, self._retry)

    def _retry(self) -> None:
        self._retryCall = None
        if self._link.up and not self.ready:
            self._linkUp()

    def _linkDown(self) -> None:
        if self.ready:
            log.warn("http: no Redis; answering 503 until it is back")
        self.ready = False
        if self._retryCall is not None and self._retryCall.active():
            self._retryCall.cancel()
        self._retryCall = None
