"""
Where the HTTP counter's numbers come from: one small interface, L{ICounter},
and one implementation per home, as C{twisted.cred.checkers} does for
credentials.

  - L{MemoryCounter}: in memory, starting at 1 at each run;
  - L{FileCounter}: in a file, surviving restarts and crashes.

The HTTP resource holds an L{ICounter} and never asks which one it is; only
C{tap.py} chooses.
"""

from __future__ import annotations

import os
import re

from twisted.logger import Logger
from zope.interface import Interface, implementer

log = Logger()


class ICounter(Interface):
    """
    A source of request numbers: 1, 2, 3, ..., each handed out once.
    """

    def next() -> int:
        """
        Take the next number.
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
