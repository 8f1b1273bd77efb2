"""
End-to-end tests of the write-through transport (L{netdemos.writethrough}):
each runs the installed C{twistd -n netdemos} twice, once writing through (the
default) and once with C{NETDEMOS_WRITE_THROUGH=0}, on Twisted's transport
unchanged, and expects the same of both.

Write-through sends a write at once when nothing is queued, and leaves the
rest to Twisted's queue; these are the cases where the two meet: more than the
kernel takes (backpressure, half-close), TLS on top, a peer that resets while
echo is owed, a chat member that falls behind, pipelined HTTP answers.
"""

from __future__ import annotations

import random
import select
import socket
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from support import LINE_TIMEOUT
from support.certificates import Certificate
from support.clients import (
    Clients,
    Echoed,
    connect,
    echoRoundTrip,
    echoThroughHalfClose,
    pushWithoutReading,
    rawHTTP,
    requestNumber,
    resetConnection,
)
from support.process import Launcher, Netdemos
from support.prometheus import sample, scrapeMetrics
from support.rooms import SlowClientRoom
from support.running import SERVICES, netdemosCommand, readUntilClosed, serviceArguments

MB = 1024 * 1024

SWITCH = "NETDEMOS_WRITE_THROUGH"

# What netdemos logs, once, when it serves with Twisted's transport unchanged.
UNCHANGED = "netdemos: using Twisted's transport unchanged"

# What netdemos logs once every listener is up.
READY = "netdemos: ready"


@dataclass(frozen=True)
class Transport:
    """
    Which transport netdemos gives its connections, and the environment that
    chooses it.
    """

    name: str
    environ: dict[str, str] = field(default_factory=dict)

    @property
    def writesThrough(self) -> bool:
        return self.environ.get(SWITCH) != "0"

    def start(
        self,
        launcher: Launcher,
        services: Sequence[str],
        tls: Certificate | None = None,
        metrics: bool = False,
    ) -> Netdemos:
        """
        Start netdemos with C{services} on this transport, and check that it
        is the one netdemos chose.
        """
        server = launcher.start(
            services, tls=tls, metrics=metrics, environ=self.environ
        )
        self.checkChosen(server)
        return server

    def checkChosen(self, server: Netdemos) -> None:
        """
        Check that C{server} says it serves with Twisted's transport
        unchanged, once, if and only if this is not write-through: a server
        that fell back to Twisted's (as it does if the installed Twisted is
        not as write-through expects) would pass every other test here
        without writing through at all.
        """
        logged = server.waitUntilLogged(READY)
        assert logged.count(UNCHANGED) == (0 if self.writesThrough else 1), logged


WRITE_THROUGH = Transport("write-through")
TWISTED = Transport("twisted", {SWITCH: "0"})


@pytest.fixture(params=[WRITE_THROUGH, TWISTED], ids=lambda each: each.name)
def transport(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Transport:
    # Write-through is the default: the server must not inherit the switch.
    monkeypatch.delenv(SWITCH, raising=False)
    chosen: Transport = request.param
    return chosen


# The switch


def test_switchLogsOnceThatTwistedsTransportIsUsed(
    launcher: Launcher, transport: Transport
) -> None:
    """
    With every service and metrics on, each on its own port, a server started
    with C{NETDEMOS_WRITE_THROUGH=0} says once, naming the switch, that it
    uses Twisted's transport unchanged; by default it says nothing of the
    kind.

    The line is how an operator (and the bench) knows which transport a
    server runs; one line per port would be noise, none would leave them
    guessing.
    """
    server = launcher.start(SERVICES, metrics=True, environ=transport.environ)
    logged = server.waitUntilLogged(READY)
    lines = [line for line in logged.splitlines() if UNCHANGED in line]
    if transport.writesThrough:
        assert lines == [], logged
    else:
        assert len(lines) == 1, logged
        assert lines[0].endswith(f"{UNCHANGED} ({SWITCH}=0)"), lines
    server.assertNoErrorsLogged()


# Echo


def test_echoReturnsEveryByteAfterHalfCloseThenEOF(
    launcher: Launcher, transport: Transport
) -> None:
    """
    A client that sends 20 MB while reading, then shuts down its sending side,
    gets exactly those bytes back, then EOF.

    The small receive window keeps the server's send buffer full, so writes
    are sent in part and the rest queued: what write-through sends at once
    must never overtake what Twisted's queue still holds, and the close that
    follows the half-close must wait for the queue.
    """
    server = transport.start(launcher, ["echo"])
    payload = random.Random(862).randbytes(20_000_000)
    with connect(server.echoPort, receiveBuffer=8192) as connection:
        echoed = echoThroughHalfClose(connection, payload)
    assert echoed == Echoed(len(payload), None)
    server.assertNoErrorsLogged()


def test_unixEchoReturnsEveryByteAfterHalfCloseThenEOF(
    launcher: Launcher, transport: Transport, tmp_path: Path
) -> None:
    """
    The same over a UNIX socket, whose server transport writes through too.
    """
    path = tmp_path / "echo.sock"
    command = netdemosCommand(serviceArguments({"echo": [f"unix:{path}"]}))
    server = launcher.spawn(command, {}, transport.environ)
    transport.checkChosen(server)
    payload = random.Random(1234).randbytes(20_000_000)
    with socket.socket(socket.AF_UNIX) as connection:
        connection.settimeout(LINE_TIMEOUT)
        connection.connect(str(path))
        echoed = echoThroughHalfClose(connection, payload)
    assert echoed == Echoed(len(payload), None)
    server.assertNoErrorsLogged()


def test_echoPushesBackOnClientThatNeverReadsAndServesOthers(
    launcher: Launcher, clients: Clients, transport: Transport
) -> None:
    """
    A client that sends without ever reading is pushed back (it gets to send
    only what the buffers hold), the server's memory stays flat, and another
    client is echoed meanwhile.

    Write-through queues what the kernel does not take, and must then pause
    reading as Twisted does, or one client that does not read grows the
    server without limit.
    """
    server = transport.start(launcher, ["echo"])
    rssBefore = server.rssBytes()
    stalled = clients.connect(server.echoPort)
    start = time.monotonic()
    pushed = pushWithoutReading(stalled, 300 * MB)
    elapsed = time.monotonic() - start
    rssGrowth = server.rssBytes() - rssBefore
    report = (
        f"pushed {pushed / MB:.1f} MB in {elapsed:.1f}s; server RSS grew"
        f" {rssGrowth / MB:.1f} MB"
    )
    print(report)
    assert pushed < 64 * MB, f"the client was not pushed back: {report}"
    assert rssGrowth < 64 * MB, f"server memory grew: {report}"

    echoRoundTrip(clients.connect(server.echoPort), b"still served\n" * 1000)
    server.assertNoErrorsLogged()


def echoOverTLS(tls: ssl.SSLSocket, payload: bytes, timeout: float = 60.0) -> bytes:
    """
    Send C{payload} on C{tls} while reading what comes back, until as many
    bytes have come back as were sent; return them.

    One thread, not blocking: an C{ssl.SSLSocket} must not be read in one
    thread while written in another.
    """
    tls.setblocking(False)
    view = memoryview(payload)
    sent = 0
    received = bytearray()
    deadline = time.monotonic() + timeout
    while len(received) < len(payload):
        assert time.monotonic() < deadline, f"{len(received)} bytes echoed"
        sending = sent < len(payload)
        select.select([tls], [tls] if sending else [], [], 0.1)
        if sending:
            try:
                sent += tls.send(view[sent : sent + 65536])
            except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
                pass
        while True:
            try:
                data = tls.recv(65536)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                break
            assert data, f"EOF after {len(received)} bytes echoed"
            received += data
    tls.setblocking(True)
    return bytes(received)


def test_tlsEchoReturnsEveryByteThenAnswersCloseNotify(
    launcher: Launcher,
    clients: Clients,
    transport: Transport,
    certificate: Certificate,
) -> None:
    """
    Over TLS, a client that sends 1 MB while reading gets exactly those bytes
    back; its close_notify (TLS's half-close) is then answered by the
    server's, and TCP EOF.

    TLS writes whole records to the TCP transport underneath, which writes
    them through: a record sent in part must be finished before the next
    starts, or the client fails to decrypt.  (The close_notify waits for the
    echo because Twisted's TLS loses echo still owed when it arrives: see
    test_tlsEchoReturnsDataSentJustBeforeCloseNotify.)
    """
    server = transport.start(launcher, ["echo"], tls=certificate)
    tls = clients.tls(certificate, server.echoPort)
    payload = random.Random(443).randbytes(MB)
    received = echoOverTLS(tls, payload)
    assert len(received) == len(payload)
    assert received == payload
    tls.settimeout(LINE_TIMEOUT)
    plain = tls.unwrap()  # sends close_notify and waits for the server's
    assert readUntilClosed(plain, time.monotonic() + LINE_TIMEOUT) == (b"", "EOF")
    server.assertNoErrorsLogged()


def waitForActiveConnections(server: Netdemos, service: str, count: int) -> None:
    """
    Poll C{/metrics} until C{service} has C{count} connections open.
    """
    deadline = time.monotonic() + LINE_TIMEOUT
    while True:
        samples = scrapeMetrics(server.metricsPort)
        active = sample(samples, "netdemos_connections_active", service=service)
        if active == count:
            return
        assert time.monotonic() < deadline, f"{active} {service} connections open"
        time.sleep(0.05)  # a polling interval


def test_echoOutlivesPeersThatResetMidWrite(
    launcher: Launcher, clients: Clients, transport: Transport
) -> None:
    """
    A client that sends a burst and resets at once, and one that resets once
    it has been pushed back, leave the server up: it serves another client,
    counts both connections closed, and logs no error.

    Write-through meets the reset in its own C{send}, which must never
    raise into the protocol (the error would be logged, and the connection
    left half-handled); the connection must still end through
    C{connectionLost}, as with Twisted's transport.
    """
    server = transport.start(launcher, ["echo"], metrics=True)

    burst = clients.connect(server.echoPort, receiveBuffer=4096)
    burst.setblocking(False)
    taken = burst.send(random.Random(7).randbytes(4 * MB))
    resetConnection(burst)

    stalled = clients.connect(server.echoPort, receiveBuffer=4096)
    pushed = pushWithoutReading(stalled, 64 * MB, stalled=0.5)
    resetConnection(stalled)
    print(f"reset after {taken / MB:.1f} MB, then after {pushed / MB:.1f} MB")

    with connect(server.echoPort) as other:
        echoRoundTrip(other, b"still served\n" * 1000)
    waitForActiveConnections(server, "echo", 0)
    total = sample(
        scrapeMetrics(server.metricsPort), "netdemos_connections_total", service="echo"
    )
    assert total == 3
    server.assertNoErrorsLogged()


# Chat


def test_slowChatClientIsDroppedAndOthersGetEveryLine(
    launcher: Launcher, clients: Clients, transport: Transport
) -> None:
    """
    A chat client that never reads is dropped once its backlog passes the
    limit, while a client that reads gets every line, in order.

    The room learns a member is behind from its transport pausing it; with
    write-through that happens only once a send is partial, so a member
    that never reads must still be paused, and dropped, in time.
    """
    room = SlowClientRoom(launcher, clients, environ=transport.environ)
    transport.checkChosen(room.server)
    room.checkSlowClientIsDroppedAndOthersGetEveryLine()


def test_chatMemberWithSmallWindowGetsAWholeTurnOfLines(
    launcher: Launcher, clients: Clients, transport: Transport
) -> None:
    """
    Fifty lines of 1,000 bytes, sent in one write, reach a member with a
    small receive window whole and in order, though nothing is said after
    them.

    The room writes a turn's lines to a member as one write, here 50 KB, and
    a member's send buffer is 16 KiB: the kernel takes only part of it, and
    with nothing written after it only the reactor's C{doWrite} sends the
    rest.  Write-through must ask for it, as Twisted's C{write} does, or the
    member waits for ever.
    """
    server = transport.start(launcher, ["chat"])
    reader = clients.chatUser(server.chatPort, receiveBuffer=4096)
    sender = clients.chatUser(server.chatPort)
    reader.inbox.waitForLine(f"* {sender.name} joined (2 in the room)")
    lines = [f"{n:02d} {'w' * 1000}" for n in range(50)]
    sender.send("".join(f"{line}\n" for line in lines).encode())
    said = f"<{sender.name}> "
    last = said + lines[-1]
    reader.inbox.waitFor(lambda line: line == last, "the last of the 50 lines")
    heard = [
        line[len(said) :] for line in reader.inbox.snapshot() if line.startswith(said)
    ]
    assert heard == lines
    server.assertNoErrorsLogged()


# HTTP


def splitResponses(answer: bytes) -> list[tuple[bytes, bytes]]:
    """
    Split C{answer}, HTTP/1.1 responses back to back, each with a
    C{Content-Length}, into each one's status line and body.
    """
    responses = []
    while answer:
        head, separator, rest = answer.partition(b"\r\n\r\n")
        assert separator, f"an incomplete response: {answer!r}"
        statusLine, *headers = head.split(b"\r\n")
        lengths = [
            int(value)
            for name, _, value in (each.partition(b":") for each in headers)
            if name.strip().lower() == b"content-length"
        ]
        assert len(lengths) == 1, head
        responses.append((statusLine, rest[: lengths[0]]))
        answer = rest[lengths[0] :]
    return responses


def test_pipelinedRequestsAreAnsweredInOrder(
    launcher: Launcher, transport: Transport
) -> None:
    """
    Fifty GETs sent in one write are answered by fifty responses, in order,
    numbered #1 to #50; the last asks to close, and the server then does.

    A pipelined answer is written while the next request waits in Twisted's
    buffer: one sent at once must not overtake one still queued.
    """
    server = transport.start(launcher, ["http"])
    request = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"
    last = b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    responses = splitResponses(rawHTTP(server.httpPort, request * 49 + last))
    assert [status for status, _ in responses] == [b"HTTP/1.1 200 OK"] * 50
    assert [requestNumber(body) for _, body in responses] == list(range(1, 51))
    server.assertNoErrorsLogged()
