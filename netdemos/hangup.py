"""
SIGHUP, as operators expect of a daemon: reopen the log file and keep serving.

C{logrotate} renames a daemon's log file, then sends it SIGHUP so that it opens
a new one at the old path; systemd's C{ExecReload=} does the same.  Without a
handler, SIGHUP ends the process at once: no drain, and the count not saved.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from types import FrameType
from typing import Any

from twisted.application.service import Service
from twisted.internet.interfaces import IReactorThreads
from twisted.logger import ILogObserver, Logger, LogPublisher, globalLogPublisher
from twisted.python.logfile import BaseLogFile

log = Logger()

SignalHandler = Callable[[int, FrameType | None], Any]


def twistdLogFile(publisher: LogPublisher = globalLogPublisher) -> BaseLogFile | None:
    """
    Find the log file twistd writes to, if it writes to one.

    twistd opens a L{twisted.python.logfile.LogFile} for C{--logfile=PATH}
    (and for C{twistd.log} when it daemonizes without one) and hands it only to
    the observer it gives the global log publisher; neither offers it publicly,
    and twistd's own SIGUSR1 rotation reaches it through a closure.  So look
    there, through two private attributes.  The alternatives are worse: the
    plugin's options know C{--logfile} (as C{options.parent["logfile"]}) but
    not the open file, nor the daemon's default; and opening a second
    C{LogFile} on the same path would leave twistd writing to the renamed
    file.  If Twisted changes this, SIGHUP only logs, and the end-to-end test
    of log reopening fails.

    @return: the log file, or L{None} when twistd logs to stdout, to syslog or
        through C{--logger} (such as L{netdemos.journal.observer}).
    """
    observers: list[ILogObserver] = getattr(publisher, "_observers", [])
    for observer in observers:
        outFile = getattr(observer, "_outFile", None)
        if isinstance(outFile, BaseLogFile):
            return outFile
    return None


class HangupService(Service):
    """
    Handle SIGHUP: reopen twistd's log file, and keep serving.

    The handler stays installed once the service stops, on purpose: a SIGHUP
    that arrives while the server drains must not kill it before the count is
    saved.

    @ivar reactor: where the work is done; the signal handler only queues it.
    """

    def __init__(
        self,
        reactor: IReactorThreads,
        findLogFile: Callable[[], BaseLogFile | None] = twistdLogFile,
        installHandler: Callable[[int, SignalHandler], object] = signal.signal,
    ) -> None:
        """
        @param installHandler: L{signal.signal}; tests pass a fake, since a
            signal handler belongs to the whole process.
        """
        self.reactor = reactor
        self._findLogFile = findLogFile
        self._installHandler = installHandler

    def startService(self) -> None:
        super().startService()
        self._installHandler(signal.SIGHUP, self._received)

    def _received(self, signalNumber: int, frame: FrameType | None) -> None:
        # A Python signal handler runs between two bytecodes of whatever the
        # reactor was doing, perhaps halfway through writing a log line: do
        # the work in the reactor's own time, as twistd's SIGUSR1 handler does.
        self.reactor.callFromThread(self.reopenLog)

    def reopenLog(self) -> None:
        """
        Reopen the log file at its path, if there is one; log what was done.
        """
        logFile = self._findLogFile()
        if logFile is None:
            log.info("netdemos: SIGHUP received; no log file to reopen, still serving")
            return
        if not canReopen(logFile):
            # Reopening closes the file first: one that cannot be opened
            # again would leave nothing to log to.
            log.warn(
                "netdemos: SIGHUP received; cannot open {path} for writing,"
                " still logging to the old file",
                path=logFile.path,
            )
            return
        logFile.reopen()
        log.info(
            "netdemos: SIGHUP received; reopened the log file {path}, still serving",
            path=logFile.path,
        )


def canReopen(logFile: BaseLogFile) -> bool:
    """
    Whether C{logFile} could open its path again: the file there, or if none,
    a new one in its directory (the checks twistd's own rotation makes).
    """
    if os.path.exists(logFile.path):
        # LogFile opens an existing file for reading and writing.
        return os.access(logFile.path, os.R_OK | os.W_OK)
    return os.access(logFile.directory, os.W_OK | os.X_OK)
