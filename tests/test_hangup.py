"""
Tests for L{netdemos.hangup}: SIGHUP reopens the log file and keeps serving.

No signal is sent and no handler installed: the service is given a fake
C{signal.signal} and a fake reactor, and the test plays the kernel.
"""

from __future__ import annotations

import io
import os
import signal
import tempfile
from collections.abc import Callable
from typing import Any

from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogPublisher, globalLogPublisher, textFileLogObserver
from twisted.python.logfile import LogFile
from twisted.trial.unittest import SynchronousTestCase

from netdemos import hangup
from netdemos.hangup import HangupService, SignalHandler, twistdLogFile


class ThreadCallsReactor:
    """
    The part of a reactor that L{HangupService} uses: C{callFromThread} keeps
    the calls, and L{runCalls} runs them as the reactor's next turn would.
    """

    def __init__(self) -> None:
        self.calls: list[Callable[[], object]] = []

    def callFromThread(self, f: Callable[..., object], *args: Any, **kw: Any) -> None:
        self.calls.append(lambda: f(*args, **kw))

    def runCalls(self) -> None:
        calls, self.calls = self.calls, []
        for call in calls:
            call()


class HangupServiceTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = ThreadCallsReactor()
        self.handlers: dict[int, SignalHandler] = {}
        directory = tempfile.TemporaryDirectory()
        self.addCleanup(directory.cleanup)
        self.directory = directory.name
        # Twisted annotates this as taking a trial TestCase, but any
        # SynchronousTestCase will do: it only needs addCleanup.
        self.logged = EventLoggingObserver.createWithCleanup(
            self,  # type: ignore[arg-type]
            globalLogPublisher,
        )

    def startService(self, logFile: LogFile | None) -> HangupService:
        def installHandler(number: int, handler: SignalHandler) -> None:
            self.handlers[number] = handler

        service = HangupService(
            self.reactor,  # type: ignore[arg-type]
            findLogFile=lambda: logFile,
            installHandler=installHandler,
        )
        service.startService()
        return service

    def logFile(self) -> LogFile:
        logFile = LogFile("netdemos.log", self.directory)
        self.addCleanup(lambda: logFile.closed or logFile.close())
        return logFile

    def hangUp(self) -> None:
        """
        Deliver SIGHUP as the kernel would, then let the reactor run.
        """
        self.handlers[signal.SIGHUP](signal.SIGHUP, None)
        self.reactor.runCalls()

    def messages(self) -> list[str]:
        return [event["log_format"] for event in self.logged]

    def test_startingInstallsAHandlerForSighupOnly(self) -> None:
        """
        The service handles SIGHUP, whose default action ends the process at
        once, with no drain and the count unsaved; it leaves every other
        signal to twistd and the reactor.
        """
        self.startService(None)
        self.assertEqual(list(self.handlers), [signal.SIGHUP])

    def test_handlerOnlyQueuesTheWorkOnTheReactor(self) -> None:
        """
        The handler runs between two bytecodes of whatever the reactor was
        doing, perhaps writing to the log file: it touches nothing itself.
        """
        logFile = self.logFile()
        self.startService(logFile)
        os.rename(logFile.path, logFile.path + ".1")
        self.handlers[signal.SIGHUP](signal.SIGHUP, None)
        self.assertEqual(len(self.reactor.calls), 1)
        self.assertFalse(os.path.exists(logFile.path))
        self.assertEqual(self.messages(), [])

    def test_renamedLogFileIsReopenedAtItsPath(self) -> None:
        """
        After logrotate renames the log file and sends SIGHUP, what is logged
        next goes to a new file at the old path, and the renamed file keeps
        what was written before; a structured event names the path.
        """
        logFile = self.logFile()
        self.startService(logFile)
        logFile.write("before\n")
        os.rename(logFile.path, logFile.path + ".1")
        self.hangUp()
        logFile.write("after\n")
        logFile.flush()

        with open(logFile.path + ".1") as f:
            self.assertEqual(f.read(), "before\n")
        with open(logFile.path) as f:
            self.assertEqual(f.read(), "after\n")
        [event] = self.logged
        self.assertEqual(event["path"], logFile.path)
        self.assertIn("reopened the log file {path}", event["log_format"])

    def test_withoutALogFileSighupIsLoggedAndIgnored(self) -> None:
        """
        Logging to stdout or the journal there is nothing to reopen: SIGHUP
        is logged, so that a C{systemctl reload} shows in the journal.
        """
        self.startService(None)
        self.hangUp()
        self.assertEqual(
            self.messages(),
            ["netdemos: SIGHUP received; no log file to reopen, still serving"],
        )

    def test_pathThatCannotBeOpenedKeepsTheOldFile(self) -> None:
        """
        If the log file could not be opened again at its path, it is not
        closed: logging on to the renamed file beats logging nowhere.
        """
        logFile = self.logFile()
        self.startService(logFile)
        os.rename(logFile.path, logFile.path + ".1")
        # The tests may run as root, whom permissions do not stop.
        self.patch(hangup.os, "access", lambda path, mode: False)
        self.hangUp()
        logFile.write("still here\n")
        logFile.flush()

        self.assertFalse(os.path.exists(logFile.path))
        with open(logFile.path + ".1") as f:
            self.assertEqual(f.read(), "still here\n")
        [event] = self.logged
        self.assertIn("cannot open {path} for writing", event["log_format"])


class TwistdLogFileTests(SynchronousTestCase):
    def test_findsTheLogFileOfTwistdsObserver(self) -> None:
        """
        twistd's C{--logfile} observer is a text file observer writing to a
        L{LogFile}; that is the file found.  This checks the private
        attributes L{twistdLogFile} relies on.
        """
        directory = tempfile.TemporaryDirectory()
        self.addCleanup(directory.cleanup)
        logFile = LogFile("twistd.log", directory.name)
        self.addCleanup(logFile.close)
        # As twistd does; a LogFile is file-like, though not an IO.
        publisher = LogPublisher(textFileLogObserver(logFile))  # type: ignore[arg-type]
        self.assertIs(twistdLogFile(publisher), logFile)

    def test_noLogFileWhenLoggingToAStream(self) -> None:
        """
        Logging to stdout (C{twistd -n}) or through C{--logger} there is none.
        """
        publisher = LogPublisher(textFileLogObserver(io.StringIO()))
        self.assertIsNone(twistdLogFile(publisher))
        self.assertIsNone(twistdLogFile(LogPublisher()))
