"""
A log observer for twistd under systemd, whose journal stamps every line itself.

twistd's own observer starts each line with a timestamp, which the journal would
show beside its own.  This one writes C{[system] text} lines to stdout, each
prefixed with its syslog priority (C{<6>} info, C{<3>} error) so journald records
the level and C{journalctl -p warning} finds warnings::

    twistd --logger=netdemos.journal.observer -n netdemos ...
"""

from __future__ import annotations

import sys

from twisted.logger import FileLogObserver, LogEvent, LogLevel, eventAsText

# syslog(3) priorities, as sd-daemon(3) prefixes expect them.
PRIORITIES = {
    LogLevel.debug: 7,
    LogLevel.info: 6,
    LogLevel.warn: 4,
    LogLevel.error: 3,
    LogLevel.critical: 2,
}


def observer() -> FileLogObserver:
    """
    Build the observer; C{twistd --logger} names a factory and calls it.
    """
    # Read sys.stdout now: twistd later replaces it with a file that logs.
    return FileLogObserver(sys.stdout, formatForJournal)


def formatForJournal(event: LogEvent) -> str | None:
    """
    Format C{event} without a timestamp, every line carrying its priority.

    Each line needs the prefix because journald reads a traceback's lines as
    separate entries.
    """
    text = eventAsText(event, includeTimestamp=False)
    if not text:
        return None
    priority = PRIORITIES.get(event.get("log_level", LogLevel.info), 6)
    return "".join(f"<{priority}>{line}\n" for line in text.splitlines())
