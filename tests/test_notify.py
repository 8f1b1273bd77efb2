"""
Tests for L{netdemos.notify}: each binds its own datagram socket to play systemd.
"""

from __future__ import annotations

import os
import signal
import socket
import tempfile
from types import FrameType

from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from netdemos.notify import Notifier


class NotifierTests(SynchronousTestCase):
    def bindPath(self) -> tuple[socket.socket, str]:
        """
        Play systemd: listen on a socket file, as C{NOTIFY_SOCKET} usually names.
        """
        directory = tempfile.TemporaryDirectory()
        self.addCleanup(directory.cleanup)
        path = os.path.join(directory.name, "notify")
        return self.bind(path), path

    def logged(self) -> EventLoggingObserver:
        """
        Collect the events logged during this test.
        """
        # Twisted annotates this as taking a trial TestCase, but any
        # SynchronousTestCase will do: it only needs addCleanup.
        return EventLoggingObserver.createWithCleanup(
            self,  # type: ignore[arg-type]
            globalLogPublisher,
        )

    def bind(self, address: str) -> socket.socket:
        receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(receiver.close)
        receiver.bind(address)
        receiver.settimeout(5)
        return receiver

    def test_readyStatusStoppingSendExactDatagrams(self) -> None:
        """
        Each call is one datagram of C{KEY=VALUE} lines, which is what systemd
        parses; C{READY=1} is what ends a C{Type=notify} unit's start job.
        """
        receiver, path = self.bindPath()
        notifier = Notifier({"NOTIFY_SOCKET": path})

        notifier.ready()
        notifier.status("serving echo, http and chat")
        notifier.stopping()

        self.assertEqual(receiver.recv(4096), b"READY=1\n")
        self.assertEqual(receiver.recv(4096), b"STATUS=serving echo, http and chat\n")
        self.assertEqual(receiver.recv(4096), b"STOPPING=1\n")

    def test_abstractSocket(self) -> None:
        """
        A C{NOTIFY_SOCKET} starting with C{@} names a Linux abstract socket (no
        file), which systemd uses inside containers and for user managers.
        """
        receiver = self.bind("")  # autobind: the kernel picks an abstract name
        name = receiver.getsockname()
        self.assertEqual(name[:1], b"\0")
        notifier = Notifier({"NOTIFY_SOCKET": "@" + name[1:].decode("ascii")})

        notifier.ready()

        self.assertEqual(receiver.recv(4096), b"READY=1\n")

    def test_severalFieldsInOneDatagram(self) -> None:
        """
        Fields passed together arrive together, so systemd applies them at once.
        """
        receiver, path = self.bindPath()
        Notifier({"NOTIFY_SOCKET": path}).notify(READY=1, STATUS="up")
        self.assertEqual(receiver.recv(4096), b"READY=1\nSTATUS=up\n")

    def test_statusIsFoldedOntoOneLine(self) -> None:
        """
        A newline in a status would end the assignment and start another, so a
        status text could forge C{READY=1}; it is folded onto one line.
        """
        receiver, path = self.bindPath()
        Notifier({"NOTIFY_SOCKET": path}).status("two\nlines\nREADY=1")
        self.assertEqual(receiver.recv(4096), b"STATUS=two lines READY=1\n")

    def test_unsetIsANoOp(self) -> None:
        """
        Outside systemd (C{NOTIFY_SOCKET} unset or empty) nothing is sent and
        nothing is logged: C{twistd -n netdemos} on a laptop is unaffected.
        """
        events = self.logged()
        for environ in ({}, {"NOTIFY_SOCKET": ""}):
            notifier = Notifier(environ)
            self.assertIsNone(notifier.socketName)
            notifier.ready()
            notifier.status("idle")
            notifier.stopping()
        self.assertEqual(len(events), 0)

    def test_defaultsToProcessEnvironment(self) -> None:
        """
        With no mapping given, C{NOTIFY_SOCKET} is read from C{os.environ},
        where systemd puts it.
        """
        receiver, path = self.bindPath()
        self.patch(os, "environ", {"NOTIFY_SOCKET": path})
        Notifier().ready()
        self.assertEqual(receiver.recv(4096), b"READY=1\n")

    def test_goneSocketIsLoggedOnceAndNotRaised(self) -> None:
        """
        If systemd's socket has gone away, notifying must not crash the
        service; the failure is logged once, so repeated status updates cannot
        flood the journal.
        """
        receiver, path = self.bindPath()
        receiver.close()
        os.unlink(path)
        events = self.logged()
        notifier = Notifier({"NOTIFY_SOCKET": path})

        notifier.ready()
        notifier.stopping()

        self.assertEqual(len(events), 1)
        [event] = events
        self.assertEqual(event["log_level"], LogLevel.warn)
        self.assertEqual(event["socketName"], path)
        self.assertEqual(event["fields"], {"READY": 1})
        self.assertIsInstance(event["error"], FileNotFoundError)

    def test_fullSocketDoesNotBlock(self) -> None:
        """
        If systemd is not reading, the socket's queue fills; a blocking send
        would then freeze the reactor, so the send fails (and is logged) instead.
        """

        def timedOut(signum: int, frame: FrameType | None) -> None:
            raise AssertionError("Notifier.notify blocked on a full socket")

        receiver, path = self.bindPath()
        events = self.logged()
        notifier = Notifier({"NOTIFY_SOCKET": path})
        previous = signal.signal(signal.SIGALRM, timedOut)
        self.addCleanup(signal.signal, signal.SIGALRM, previous)
        signal.alarm(10)
        self.addCleanup(signal.alarm, 0)

        for _ in range(10_000):
            notifier.status("busy")
            if events:
                break

        self.assertEqual(len(events), 1)
        self.assertIsInstance(events[0]["error"], BlockingIOError)
