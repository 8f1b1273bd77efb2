"""
Lint a running server's responses with REDbot (the C{redbot} package, in the
C{test} extra), as an operator's C{redbot URL} would.

REDbot fetches the URL, then probes it with requests of its own (conditional
ones among them), and writes what it notes of each as HAR, with a level per
note: GOOD, INFO, WARN or BAD.  It runs in a child process, because its event
loop (thor) is a process-wide one that runs until REDbot is done.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from support.running import childEnvironment

# REDbot waits for its own probes too; loopback answers in milliseconds, but a
# loaded 2-core machine may take seconds to start a Python.
REDBOT_TIMEOUT = 60.0

# The levels of a note that the tests do not let pass.
FAILING_LEVELS = ("WARN", "BAD")


@dataclass(frozen=True)
class Note:
    """
    One of REDbot's observations of a response.

    @ivar level: C{GOOD}, C{INFO}, C{WARN} or C{BAD}.
    @ivar noteId: its name in REDbot, such as C{FRESHNESS_NO_CACHE}.
    """

    url: str
    level: str
    noteId: str
    summary: str

    def __str__(self) -> str:
        return f"{self.url}: {self.level} {self.noteId}: {self.summary}"


@dataclass(frozen=True)
class Report:
    """
    What REDbot saw of one URL: the status of its response, and its notes.
    """

    url: str
    status: int
    notes: tuple[Note, ...]

    def failing(self) -> list[Note]:
        return [note for note in self.notes if note.level in FAILING_LEVELS]

    def noteIds(self) -> set[str]:
        return {note.noteId for note in self.notes}


def _notes(url: str, found: Iterable[dict[str, Any]]) -> Iterable[Note]:
    for note in found:
        yield Note(url, note["level"], note["note_id"], note["summary"])
        yield from _notes(url, note.get("subnotes", ()))


def _report(url: str, har: str) -> Report:
    log = json.loads(har)["log"]
    assert "_red_error" not in log, f"REDbot could not check {url}: {log}"
    entries = [e for e in log["entries"] if e["request"]["url"] == url]
    assert len(entries) == 1, f"REDbot checked no {url}: {log['entries']}"
    (entry,) = entries
    return Report(
        url, entry["response"]["status"], tuple(_notes(url, entry["_red_messages"]))
    )


def lint(urls: Sequence[str]) -> list[Report]:
    """
    Have REDbot check each of C{urls}, all at once; return its reports, in
    the same order.
    """
    command = [sys.executable, "-m", "redbot.cli", "--output-format=har"]
    children = [
        subprocess.Popen(
            [*command, url],
            env=childEnvironment(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for url in urls
    ]
    reports = []
    try:
        for url, child in zip(urls, children, strict=True):
            out, err = child.communicate(timeout=REDBOT_TIMEOUT)
            assert child.returncode == 0, f"redbot {url}: {child.returncode}\n{err}"
            reports.append(_report(url, out))
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    return reports
