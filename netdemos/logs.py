"""
A log observer for log shippers (Vector, Fluent Bit, Promtail...): one JSON
object a line on stdout, in Twisted's own format (L{eventAsJSON}: the event's
fields, its C{log_format}, C{log_level}, C{log_namespace} and C{log_time}),
plus C{text}, the event as a person reads it::

    twistd --logger=netdemos.logs.json -n netdemos ... | jq -r .text

For systemd's journal, see L{netdemos.journal} instead.
"""

from __future__ import annotations

import sys

from twisted.logger import FileLogObserver, LogEvent, eventAsJSON, eventAsText


def json() -> FileLogObserver:
    """
    Build the observer; C{twistd --logger} names a factory and calls it.
    """
    # Read sys.stdout now: twistd later replaces it with a file that logs.
    return FileLogObserver(sys.stdout, formatAsJSONLine)


def formatAsJSONLine(event: LogEvent) -> str:
    """
    C{event} as one line of JSON: L{eventAsJSON}'s object, with the event's
    text, traceback included, in C{text}.

    Twisted's own C{jsonFileLogObserver} starts each record with an ASCII
    record separator (RFC 7464's C{application/json-seq}), which C{jq} and
    most shippers read as a stray byte: without it every line is one JSON
    object (JSON Lines), L{eventAsJSON} escaping the newlines in a value.
    And it keeps of an exception only its type, which C{text} makes up for.
    (C{text} is no C{log_} key, which are Twisted's.)
    """
    text = eventAsText(event, includeTimestamp=False, includeSystem=False)
    return eventAsJSON({**event, "text": text}) + "\n"
