"""
End-to-end tests of strict input and signals: SIGHUP keeps the server serving
and reopens its log file, and a counter file that is not exactly a count stops
startup without being touched.

Each runs the installed C{twistd -n netdemos} on free loopback ports and treats
it as an operator does: signals, files and clients.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from support import EXIT_TIMEOUT
from support.clients import Clients, nextNumber
from support.process import KILLED_BY_SIGTERM, Launcher, runNetdemos
from support.running import LOOPBACK

SIGHUP_LOGGED = "netdemos: SIGHUP received"


# SIGHUP


def test_sighupKeepsServingAndSigtermStillDrains(
    launcher: Launcher, clients: Clients, tmp_path: Path
) -> None:
    """
    GETs #1 and #2, SIGHUP, and the next GET is #3; two chat clients stay
    connected and still hear each other; the process is still there.  Then
    SIGTERM still stops it gracefully: chat clients are told, the count is
    saved, and twistd exits by SIGTERM.

    logrotate and C{systemctl reload} send SIGHUP to a running daemon; by
    default it ends the process at once, dropping every client and losing
    the count's last block.
    """
    countFile = tmp_path / "count"
    server = launcher.start(["http", "chat"], extra=[f"--counter-file={countFile}"])
    first = clients.chatUser(server.chatPort)
    second = clients.chatUser(server.chatPort)
    first.inbox.waitForLine(f"* {second.name} joined (2 in the room)")
    assert [nextNumber(server.httpPort) for _ in range(2)] == [1, 2]

    server.process.send_signal(signal.SIGHUP)
    server.waitUntilLogged(SIGHUP_LOGGED)

    assert nextNumber(server.httpPort) == 3
    second.send(b"still here\n")
    first.inbox.waitForLine(f"<{second.name}> still here")
    assert server.process.poll() is None

    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=EXIT_TIMEOUT) == KILLED_BY_SIGTERM
    first.inbox.waitForLine("* server shutting down")
    assert countFile.read_text() == "3\n"
    server.assertNoErrorsLogged()


def test_sighupReopensTheLogFileAtItsPath(launcher: Launcher, tmp_path: Path) -> None:
    """
    Under C{twistd --logfile=PATH}, rename the log file and send SIGHUP: what
    is logged next (the SIGHUP itself, an access log line, the stop) goes to
    a new file at PATH, and the renamed file keeps what came before.

    That is logrotate's usual recipe (rename, then signal); a daemon that
    kept writing to the renamed file would fill the disk behind the
    rotation's back.
    """
    logFile = tmp_path / "netdemos.log"
    rotated = tmp_path / "netdemos.log.1"
    server = launcher.start(
        services=["http"],
        extra=["--access-log=-"],
        twistdOptions=[f"--logfile={logFile}"],
    )
    server.waitUntilLogged("netdemos: ready", logFile)
    logFile.rename(rotated)

    server.process.send_signal(signal.SIGHUP)
    server.waitUntilLogged(f"reopened the log file {logFile}", logFile)
    assert nextNumber(server.httpPort) == 1
    server.waitUntilLogged('"GET / HTTP/1.1" 200', logFile)

    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=EXIT_TIMEOUT) == KILLED_BY_SIGTERM
    before, after = rotated.read_text(), logFile.read_text()
    print(f"rotated file:\n{before}\nnew file:\n{after}")
    assert "netdemos: ready" in before and SIGHUP_LOGGED not in before
    assert "netdemos: ready" not in after and "netdemos: stopped" in after
    for text in (before, after):
        assert "Traceback" not in text and "Unhandled Error" not in text


# The counter file

NOT_A_COUNT = {
    "underscore": b"1_000",
    "sign": b"+5",
    "space": b" 7",
    "20 digits": b"9" * 20,
    "5000 digits": b"1" * 5000,
    "arabic-indic digits": "\u0661\u0662".encode(),
    "empty": b"",
    "binary": b"\x00\xff\x7fELF\x01",
    "two newlines": b"12\n\n",
    "crlf": b"41\r\n",
}


@pytest.mark.parametrize("content", NOT_A_COUNT.values(), ids=NOT_A_COUNT.keys())
def test_counterFileThatIsNotACountIsRefusedAndLeftAlone(
    tmp_path: Path, content: bytes
) -> None:
    """
    A --counter-file holding anything but ASCII digits (at most 19) and one
    newline stops startup with exit status 1 and one line naming the file,
    no traceback, no usage text; the file keeps its bytes and its
    modification time.

    C{int()} would read most of these (C{1_000}, C{+5}, other scripts'
    digits), and the old reader truncated 5000 digits to 100 and wrote them
    back: the count jumped or went backwards, and the evidence was gone.
    """
    countFile = tmp_path / "count"
    countFile.write_bytes(content)
    before = os.stat(countFile)
    result = runNetdemos(
        tmp_path,
        {"http": [f"tcp:0:interface={LOOPBACK}"]},
        [f"--counter-file={countFile}"],
    )
    lines = result.stdout.splitlines()
    assert result.returncode == 1, result.stdout
    assert len(lines) == 1, result.stdout
    assert lines[0].startswith(f"netdemos: --counter-file: {countFile} "), lines
    assert countFile.read_bytes() == content
    assert os.stat(countFile).st_mtime_ns == before.st_mtime_ns


@pytest.mark.parametrize("content", [b"41\n", b"41"], ids=["newline", "no newline"])
def test_counterFileWithACountIsAccepted(
    launcher: Launcher, tmp_path: Path, content: bytes
) -> None:
    """
    What netdemos writes, and the same count without its newline (as
    C{printf 41 >count} writes it), are read: the next request is #42, and a
    clean stop writes C{42} and a newline.
    """
    countFile = tmp_path / "count"
    countFile.write_bytes(content)
    server = launcher.start(services=["http"], extra=[f"--counter-file={countFile}"])
    assert nextNumber(server.httpPort) == 42
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=EXIT_TIMEOUT) == KILLED_BY_SIGTERM
    assert countFile.read_bytes() == b"42\n"
