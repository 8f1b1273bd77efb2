"""
End-to-end tests of the HTTP counter against hostile clients (issue 7): a
request body meant to fill the disk, a client trickling its headers, a request
without C{Host}.

Each runs the installed C{twistd -n netdemos} on free loopback ports and plays
the attacker with plain sockets, then checks that the server answered, cut the
client off, and goes on serving everyone else.
"""

from __future__ import annotations

import os
import select
import socket
import time
from pathlib import Path

from support import LINE_TIMEOUT
from support.clients import Clients, httpGet
from support.process import Launcher
from support.prometheus import sample, scrapeMetrics
from support.running import readUntilClosed

MiB = 1024 * 1024

# What a client may have sent before it is cut off: what the server drains
# after refusing (1 MiB), plus what the kernel buffers on both sides.
MOST_SENT_BEFORE_CUT = 16 * MiB


def refusedSamples(port: int) -> dict[str, float]:
    samples = scrapeMetrics(port)
    return {
        reason: sample(
            samples,
            "netdemos_http_requests_refused_total",
            service="http",
            reason=reason,
        )
        for reason in ("body", "headers", "host", "malformed", "timeout")
    }


def streamUntilCut(
    connection: socket.socket, most: int, deadline: float
) -> tuple[int, bytes]:
    """
    Send as fast as the connection takes it, as an attacker would, reading
    whatever comes back, until the server cuts the connection off (sending
    fails), C{most} bytes are sent, or C{deadline}; return how many bytes were
    sent and what arrived.

    A FIN from the server does not stop the sending: it only closes the
    server's side.
    """
    connection.setblocking(False)
    chunk = b"x" * 65536
    sent = 0
    received = bytearray()
    reading = sending = True
    while (reading or sending) and sent < most and time.monotonic() < deadline:
        readable, writable, _ = select.select(
            [connection] if reading else [],
            [connection] if sending else [],
            [],
            max(0.0, deadline - time.monotonic()),
        )
        if readable:
            try:
                data = connection.recv(65536)
            except ConnectionResetError:
                break
            received += data
            reading = bool(data)
        if writable:
            try:
                sent += connection.send(chunk)
            except (BrokenPipeError, ConnectionResetError):
                sending = False
    return sent, bytes(received)


def filesOpenUnder(pid: int, directory: Path) -> dict[str, int]:
    """
    The files process C{pid} has open in C{directory}, deleted or not, and
    their sizes: a temporary file is unlinked as soon as it is made, so it
    shows only here.
    """
    files = {}
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
            size = os.stat(fd).st_size
        except FileNotFoundError:
            continue
        if target.startswith(f"{directory}/"):
            files[target] = size
    return files


def test_hugeBodyIsCutOffAnsweredAndNeverStored(
    launcher: Launcher, clients: Clients, tmp_path: Path
) -> None:
    """
    A POST declaring C{Content-Length: 1000000000000}, whose client then
    sends as fast as it can, gets its 405 and is cut off within a few MB;
    the server opens no file in its temporary directory; the next GET is #1.

    Before, twisted.web spooled such a body to a temporary file: four clients
    wrote 4.3 GB in 13 s.
    """
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    server = launcher.start(
        services=["http"], metrics=True, environ={"TMPDIR": str(temporary)}
    )
    connection = clients.connect(server.httpPort)
    connection.sendall(
        b"POST / HTTP/1.1\r\nHost: netdemos\r\nContent-Length: 1000000000000\r\n\r\n"
    )
    sent, answer = streamUntilCut(
        connection, 4 * MOST_SENT_BEFORE_CUT, time.monotonic() + LINE_TIMEOUT
    )
    # While this client is still connected, as the stream ends.
    stored = filesOpenUnder(server.pid, temporary)
    print(f"the client sent {sent / MiB:.1f} MiB before it was cut off")

    assert answer.startswith(b"HTTP/1.1 405 Method Not Allowed\r\n"), answer[:200]
    assert b"\r\nAllow: GET, HEAD\r\n" in answer
    assert sent <= MOST_SENT_BEFORE_CUT
    assert stored == {}
    assert list(temporary.iterdir()) == []
    assert httpGet(server.httpPort) == (200, b"I am request #1\n")
    assert refusedSamples(server.metricsPort)["body"] == 1
    server.assertNoErrorsLogged()


def test_tricklingClientGets408AtTheHeaderDeadline(
    launcher: Launcher, clients: Clients
) -> None:
    """
    With --http-header-timeout=1, a client sending its request a byte every
    0.1 s gets 408 and is closed about a second after its first byte, though
    each byte would restart the 60 s idle timer; meanwhile a normal GET is
    served.

    A client trickling a byte every 20 s used to hold its connection forever;
    enough of them hold every connection the server allows (slowloris).
    """
    server = launcher.start(
        services=["http"], metrics=True, extra=["--http-header-timeout=1"]
    )
    connection = clients.connect(server.httpPort)
    request = b"GET / HTTP/1.1\r\nHost: netdemos\r\nX-Slow: " + b"z" * 1000
    start = time.monotonic()
    for byte in request:
        connection.sendall(bytes([byte]))
        # The interval between bytes, cut short if the server answers.
        answered, _, _ = select.select([connection], [], [], 0.1)
        if answered:
            break
        assert time.monotonic() - start < LINE_TIMEOUT, "no answer"
    assert httpGet(server.httpPort) == (200, b"I am request #1\n")
    answer, ending = readUntilClosed(connection, start + LINE_TIMEOUT)
    closedAfter = time.monotonic() - start
    print(f"408 and closed {closedAfter:.2f}s after the first byte")

    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), answer
    assert ending == "EOF"
    assert 0.9 <= closedAfter < 1 + 3
    assert refusedSamples(server.metricsPort)["timeout"] == 1
    server.assertNoErrorsLogged()


def test_http11WithoutHostGets400AndOthersAreCounted(
    launcher: Launcher, clients: Clients
) -> None:
    """
    An HTTP/1.1 GET without C{Host} gets 400 and a clean close, and takes no
    number; an HTTP/1.0 GET without one is served #1, and a normal GET #2.

    RFC 9112 requires the 400: a request without its host is either broken or
    probing how the server resolves virtual hosts.
    """
    server = launcher.start(services=["http"], metrics=True)
    answers = []
    for request in (b"GET / HTTP/1.1\r\n\r\n", b"GET / HTTP/1.0\r\n\r\n"):
        connection = clients.connect(server.httpPort)
        connection.sendall(request)
        answers.append(readUntilClosed(connection, time.monotonic() + LINE_TIMEOUT))
    (withoutHost, ending), (oldStyle, _) = answers

    assert withoutHost.startswith(b"HTTP/1.1 400 Bad Request\r\n"), withoutHost
    assert ending == "EOF"
    assert oldStyle.startswith(b"HTTP/1.0 200 OK\r\n"), oldStyle
    assert oldStyle.endswith(b"\r\n\r\nI am request #1\n"), oldStyle
    assert httpGet(server.httpPort) == (200, b"I am request #2\n")
    assert refusedSamples(server.metricsPort)["host"] == 1
    server.assertNoErrorsLogged()
