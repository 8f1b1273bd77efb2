"""
Tests for L{netdemos.journal}, the observer twistd logs through under systemd.
"""

from __future__ import annotations

import io
import sys

from twisted.logger import Logger, LogPublisher
from twisted.trial.unittest import SynchronousTestCase

from netdemos import journal


class JournalObserverTests(SynchronousTestCase):
    def logTo(self) -> tuple[Logger, io.StringIO]:
        """
        A logger whose events reach L{journal.observer}, which writes to a
        stand-in for stdout.
        """
        stdout = io.StringIO()
        self.patch(sys, "stdout", stdout)
        publisher = LogPublisher(journal.observer())
        return Logger(namespace="netdemos.test", observer=publisher), stdout

    def test_noTimestampAndPriorityPrefix(self) -> None:
        """
        A line is the priority, the system and the text: journald stamps the
        time itself and turns C{<N>} into the entry's priority.
        """
        log, stdout = self.logTo()
        log.info("chat: {name} joined", name="alice")
        log.warn("chat: {name} too slow", name="bob")
        self.assertEqual(
            stdout.getvalue(),
            "<6>[netdemos.test#info] chat: alice joined\n"
            "<4>[netdemos.test#warn] chat: bob too slow\n",
        )

    def test_everyTracebackLineKeepsThePriority(self) -> None:
        """
        journald stores each line as its own entry, so every line of a
        traceback carries the error priority, not only the first.
        """
        log, stdout = self.logTo()
        try:
            raise ValueError("no such room")
        except ValueError:
            log.failure("request failed")
        lines = stdout.getvalue().splitlines()
        self.assertEqual(lines[0], "<2>[netdemos.test#critical] request failed")
        self.assertIn("<2>builtins.ValueError: no such room", lines)
        self.assertGreater(len(lines), 3)
        for line in lines:
            self.assertTrue(line.startswith("<2>"), line)

    def test_eventWithoutTextWritesNothing(self) -> None:
        """
        An event with nothing to say (no format) adds no empty journal entry.
        """
        log, stdout = self.logTo()
        log.info()
        self.assertEqual(stdout.getvalue(), "")
