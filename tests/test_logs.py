"""
Tests for L{netdemos.logs}, the JSON observer for log shippers.
"""

from __future__ import annotations

import io
import json
import sys

from twisted.logger import Logger, LogPublisher, eventFromJSON
from twisted.trial.unittest import SynchronousTestCase

from netdemos import logs


class JSONObserverTests(SynchronousTestCase):
    def logTo(self) -> tuple[Logger, io.StringIO]:
        stdout = io.StringIO()
        self.patch(sys, "stdout", stdout)
        publisher = LogPublisher(logs.json())
        return Logger(namespace="netdemos.test", observer=publisher), stdout

    def test_eachEventIsOneLineOfJSONWithItsFields(self) -> None:
        """
        Each event is one line holding one JSON object, with no record
        separator before it, that carries the event's fields in Twisted's
        own format.
        """
        log, stdout = self.logTo()
        log.info("chat: {name} joined", name="alice\nand bob")
        log.warn("chat: {name} too slow", name="\x1e\x1b")
        lines = stdout.getvalue().splitlines()
        self.assertEqual(len(lines), 2)
        events = [json.loads(line) for line in lines]
        self.assertEqual(events[0]["name"], "alice\nand bob")
        self.assertEqual(events[0]["log_format"], "chat: {name} joined")
        self.assertEqual(events[0]["log_namespace"], "netdemos.test")
        self.assertEqual(events[1]["log_level"]["name"], "warn")
        self.assertEqual(eventFromJSON(lines[1])["name"], "\x1e\x1b")
        self.assertEqual(events[0]["text"], "chat: alice\nand bob joined")

    def test_aTracebackStaysOnItsLineWithItsMessage(self) -> None:
        """
        A failure, traceback and all, is still one line of JSON, and its
        C{text} holds the exception's message, which Twisted's own format
        does not keep.
        """
        log, stdout = self.logTo()
        try:
            raise ValueError("no such room")
        except ValueError:
            log.failure("request failed")
        (line,) = stdout.getvalue().splitlines()
        event = json.loads(line)
        self.assertEqual(event["log_format"], "request failed")
        self.assertIn("builtins.ValueError: no such room", event["text"])
        self.assertIn("Traceback", event["text"])
