"""
Tests for L{netdemos.counter.PersistentCounter}: the HTTP count across restarts.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from twisted.trial.unittest import SynchronousTestCase

from netdemos.counter import CounterFileError, PersistentCounter, readCount


class PersistentCounterTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.directory)
        self.path = os.path.join(self.directory, "count")

    def test_cleanStopContinuesWhereItLeftOff(self) -> None:
        """
        Three requests, a clean stop, and the next run's first request is #4.
        """
        counter = PersistentCounter(self.path)
        self.assertEqual([counter.next() for _ in range(3)], [1, 2, 3])
        counter.save()
        self.assertEqual(PersistentCounter(self.path).next(), 4)

    def test_crashNeverRepeatsANumber(self) -> None:
        """
        After a crash (no save), the next run starts above every number the
        last one could have handed out: numbers may be skipped, never repeated.
        """
        counter = PersistentCounter(self.path, reserve=10)
        handedOut = [counter.next() for _ in range(25)]
        restarted = PersistentCounter(self.path, reserve=10)
        self.assertGreater(restarted.next(), max(handedOut))

    def test_diskIsWrittenOncePerBlockNotPerRequest(self) -> None:
        counter = PersistentCounter(self.path, reserve=100)
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
        counter = PersistentCounter(self.path)
        self.assertTrue(os.path.exists(self.path))
        self.assertEqual(counter.next(), 1)

    def test_garbageIsAnErrorNotAReset(self) -> None:
        """
        A file that does not hold a count is refused: silently starting again
        from 1 would repeat numbers.
        """
        for content in (b"twelve\n", b"-5\n", b"", b"\x00\xff"):
            with open(self.path, "wb") as f:
                f.write(content)
            error = self.assertRaises(CounterFileError, PersistentCounter, self.path)
            self.assertIn(self.path, str(error))

    def test_unreadableFileIsAnError(self) -> None:
        os.mkdir(self.path)  # reading a directory fails
        error = self.assertRaises(CounterFileError, PersistentCounter, self.path)
        self.assertIn(f"cannot read {self.path}", str(error))

    def test_unwritableDirectoryIsAnErrorAtStartup(self) -> None:
        missing = os.path.join(self.directory, "no", "such", "count")
        error = self.assertRaises(CounterFileError, PersistentCounter, missing)
        self.assertIn(f"cannot write {missing}", str(error))
