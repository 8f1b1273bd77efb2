"""
End-to-end tests of the file-descriptor protections (issue 7, attack 4): a
crowd of idle chat clients must not take the other services down by using up
the server's open-file limit.

Each runs the installed C{twistd -n netdemos} under the limits a shell or
systemd commonly gives (a soft limit of 1024), as clients and probes would
meet it.
"""

from __future__ import annotations

import re
import socket
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

import pytest
from support import LINE_TIMEOUT
from support.clients import LineReader, allowOpenFiles, connect, httpGet
from support.process import Launcher, Netdemos
from support.prometheus import sample, scrapeMetrics
from support.running import readUntilClosed

CROWD = 1100
# Batches of connections made before any is read from: far fewer than the
# server's listen backlog (1024), so the kernel queues every connect.
BATCH = 100
FULL = "! server full, try again later"


@pytest.fixture
def hardLimit(stack: ExitStack) -> int:
    """
    Raise this process's soft open-file limit to its hard limit, for the
    crowd's sockets, until the test ends; return the hard limit.
    """
    return allowOpenFiles(stack, CROWD + 100)


def firstLine(connection: socket.socket, deadline: float) -> str:
    """
    The first line the server sends, or C{"(closed)"} if it closes first.
    """
    line = LineReader(connection).nextLine(deadline)
    return "(closed)" if line is None else line


def idleChatCrowd(stack: ExitStack, port: int) -> Counter[str]:
    """
    Connect C{CROWD} chat clients that say nothing and read no more than
    their first line; keep them open until the test ends.  Return how many
    were welcomed, told the server is full, or closed without a word.
    """
    outcomes: Counter[str] = Counter()
    for start in range(0, CROWD, BATCH):
        batch = []
        for _ in range(start, min(start + BATCH, CROWD)):
            connection = stack.enter_context(connect(port))
            batch.append(connection)
        deadline = time.monotonic() + LINE_TIMEOUT
        for connection in batch:
            line = firstLine(connection, deadline)
            outcomes["welcome" if line.startswith("* welcome") else line] += 1
    return outcomes


def assertEveryServiceAnswers(server: Netdemos) -> None:
    """
    A new connection to each service is served: an HTTP GET, C{/livez},
    and an echo.
    """
    status, body = httpGet(server.httpPort, "/")
    assert (status, body[:15]) == (200, b"I am request #1"), (status, body)
    assert httpGet(server.metricsPort, "/livez") == (200, b"ok\n")
    with connect(server.echoPort) as echo:
        echo.sendall(b"still here")
        echo.shutdown(socket.SHUT_WR)
        assert readUntilClosed(echo, time.monotonic() + LINE_TIMEOUT) == (
            b"still here",
            "EOF",
        )


def openFileLimits(server: Netdemos) -> tuple[int, int]:
    """
    The server's soft and hard open-file limits, from C{/proc/PID/limits}.
    """
    for line in Path(f"/proc/{server.pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError(f"no open-file limit in /proc/{server.pid}/limits")


def test_softLimitIsRaisedSoAnIdleCrowdLeavesEveryServiceWorking(
    launcher: Launcher, stack: ExitStack, hardLimit: int
) -> None:
    """
    Under C{ulimit -S -n 1024}, as systemd and most shells start a process,
    1,100 idle chat clients all get in and HTTP, C{/livez} and echo still
    answer: the server raised its soft limit to the hard limit.

    Left at 1024, the crowd used every descriptor and each new connection,
    to any service, was closed at once.
    """
    # Room for the crowd in the chat's share even if limits must be lowered.
    assert hardLimit >= 4 * CROWD, f"the hard open-file limit {hardLimit} is too low"
    server = launcher.start(metrics=True, openFiles=(1024, hardLimit))
    assert openFileLimits(server) == (hardLimit, hardLimit)

    assert idleChatCrowd(stack, server.chatPort) == {"welcome": CROWD}
    assertEveryServiceAnswers(server)
    samples = scrapeMetrics(server.metricsPort)
    assert sample(samples, "netdemos_connections_active", service="chat") == CROWD
    server.assertNoErrorsLogged()


def test_tightHardLimitLowersLimitsSoAnIdleCrowdLeavesEveryServiceWorking(
    launcher: Launcher, stack: ExitStack, hardLimit: int
) -> None:
    """
    Under C{ulimit -n 1024}, soft and hard, the server cannot hold 10,000
    connections per service: it lowers each service's limit to a share of
    the 1024 and says so.  1,100 idle chat clients then fill the chat's
    share, the rest are told the server is full, and HTTP, C{/livez} and echo
    still answer, from descriptors the crowd could not take.
    """
    server = launcher.start(metrics=True, openFiles=(1024, 1024))

    outcomes = idleChatCrowd(stack, server.chatPort)
    assertEveryServiceAnswers(server)

    assert set(outcomes) == {"welcome", FULL}, outcomes
    samples = scrapeMetrics(server.metricsPort)
    assert (
        sample(samples, "netdemos_connections_active", service="chat")
        == (outcomes["welcome"])
    )
    rejected = sample(
        samples, "netdemos_connections_rejected_total", service="chat", reason="limit"
    )
    assert rejected == outcomes[FULL]
    lowered = [
        line
        for line in server.output().splitlines()
        if "open-file limit 1024; connection limits lowered to" in line
    ]
    assert lowered and f"chat {outcomes['welcome']}," in lowered[0], lowered
    server.assertNoErrorsLogged()


def test_connectionsWaitingForAProxyHeaderCountTowardTheirServicesLimit(
    launcher: Launcher, stack: ExitStack, hardLimit: int
) -> None:
    """
    Under C{ulimit -n 1024}, 1,100 connections to a C{haproxy:} chat endpoint
    that send half a PROXY header and wait: those past the chat's share of
    descriptors are told at once that the server is full, so HTTP, C{/livez}
    and echo still answer; the others are closed when their header is late.

    Counted only once their header had come, they took every descriptor for
    the header's five seconds, and each new connection to any service was
    reset.
    """
    server = launcher.start(metrics=True, openFiles=(1024, 1024), proxied=["chat"])
    crowd = []
    for _ in range(CROWD):
        connection = stack.enter_context(connect(server.chatPort))
        connection.sendall(b"PROXY TCP4 127.0.0.9 ")
        crowd.append(connection)
    assertEveryServiceAnswers(server)

    deadline = time.monotonic() + LINE_TIMEOUT
    outcomes = Counter(firstLine(connection, deadline) for connection in crowd)
    assert set(outcomes) == {"(closed)", FULL}, outcomes
    lowered = re.search(r"connection limits lowered to .*\bchat (\d+)", server.output())
    assert lowered, server.output()
    share = int(lowered[1])
    assert outcomes["(closed)"] <= share, (outcomes, share)
    samples = scrapeMetrics(server.metricsPort)
    rejected = {
        reason: sample(
            samples,
            "netdemos_connections_rejected_total",
            service="chat",
            reason=reason,
        )
        for reason in ("limit", "proxy")
    }
    assert rejected == {"limit": outcomes[FULL], "proxy": outcomes["(closed)"]}
    server.assertNoErrorsLogged()
