"""
End-to-end tests of the web site's HTTP mirror (C{/whoami}, C{/status},
C{/delay}) on the installed C{twistd -n netdemos}: over plain TCP, behind a
C{haproxy:} endpoint, over TLS, and through a graceful stop.
"""

from __future__ import annotations

import json
import signal
import time

from support import EXIT_TIMEOUT, LINE_TIMEOUT
from support.certificates import Certificate
from support.clients import connect, rawHTTP
from support.process import Launcher
from support.running import LOOPBACK, readUntilClosed


def fields(answer: bytes) -> dict[str, str]:
    """
    The fields of a text C{/whoami} answer, headers left out.
    """
    head, body = answer.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200 OK"), head
    lines = [line.split(": ", 1) for line in body.decode("ascii").splitlines()]
    return {key: value for key, value in lines if key != "Header"}


def test_whoamiShowsTheHeadersAsSentAndBothEnds(launcher: Launcher) -> None:
    """
    Over a real connection, C{/whoami} gives the headers in the order sent,
    duplicates and case kept, and the two ends as the client's socket knows
    them; the JSON form parses and says the same.
    """
    server = launcher.start(services=["web"], extra=["--name=mirror-1"])
    request = (
        b"GET /whoami?format=json HTTP/1.1\r\nHost: x\r\nX-Trace: 1\r\n"
        b"accept: */*\r\nx-trace: 2\r\nX-Odd: \x1b\xff\r\nConnection: close\r\n\r\n"
    )
    with connect(server.webPort) as client:
        client.sendall(request)
        answer, ending = readUntilClosed(client, time.monotonic() + LINE_TIMEOUT)
        here = client.getsockname()
    head, body = answer.split(b"\r\n\r\n", 1)
    assert ending == "EOF"
    assert b"\r\nCache-Control: no-store\r\n" in head
    assert b"\r\nX-Served-By: mirror-1\r\n" in head
    mirrored = json.loads(body)
    assert mirrored["headers"] == [
        ["Host", "x"],
        ["X-Trace", "1"],
        ["accept", "*/*"],
        ["x-trace", "2"],
        ["X-Odd", "\\x1b\\xff"],
        ["Connection", "close"],
    ]
    assert mirrored["peer"] == f"{here[0]}:{here[1]}"
    assert mirrored["local"] == f"{LOOPBACK}:{server.webPort}"
    assert mirrored["instance"] == "mirror-1"
    assert "proxy-peer" not in mirrored and "tls-version" not in mirrored
    server.assertNoErrorsLogged()


def test_behindAPROXYHeaderBothAddressesAreShown(launcher: Launcher) -> None:
    """
    On a C{haproxy:} endpoint, C{Proxy-Peer} is the client the PROXY header
    names, and C{Peer} the connection as TCP saw it: the balancer's.
    """
    server = launcher.start(services=["web"], proxied=["web"])
    with connect(server.webPort) as client:
        client.sendall(
            b"PROXY TCP4 203.0.113.7 127.0.0.1 40000 8081\r\n"
            b"GET /whoami HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        answer, _ = readUntilClosed(client, time.monotonic() + LINE_TIMEOUT)
        here = client.getsockname()
    mirrored = fields(answer)
    assert mirrored["Proxy-Peer"] == "203.0.113.7:40000"
    assert mirrored["Peer"] == f"{here[0]}:{here[1]}"


def test_overTLSTheNegotiatedParameters(
    launcher: Launcher, certificate: Certificate
) -> None:
    """
    On an C{ssl:} endpoint, C{/whoami} names the TLS version, cipher and
    server name the client negotiated, as the client itself sees them.
    """
    server = launcher.start(services=["web"], tls=certificate)
    context = certificate.clientContext()
    context.set_alpn_protocols(["http/1.1"])
    with context.wrap_socket(
        connect(server.webPort), server_hostname="localhost"
    ) as client:
        client.sendall(b"GET /whoami HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer, _ = readUntilClosed(client, time.monotonic() + LINE_TIMEOUT)
        version, cipher = client.version(), client.cipher()
        alpn = client.selected_alpn_protocol()
    mirrored = fields(answer)
    assert mirrored["Tls-Version"] == version
    assert cipher is not None and mirrored["Tls-Cipher"] == cipher[0]
    assert mirrored["Tls-Sni"] == "localhost"
    assert mirrored["Tls-Alpn"] == (alpn or "-")


def test_statusAndDelayBounds(launcher: Launcher) -> None:
    """
    C{/status/CODE} answers CODE from 200 to 599 and 400 otherwise;
    C{/delay/SECONDS} answers after that long, and 400 past 30 seconds.
    """
    server = launcher.start(services=["web"])

    def status(path: bytes) -> int:
        answer = rawHTTP(
            server.webPort,
            b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % (path,),
        )
        return int(answer.split(b" ", 2)[1])

    assert [status(b"/status/%d" % (code,)) for code in (200, 503, 599)] == [
        200,
        503,
        599,
    ]
    assert status(b"/status/600") == status(b"/status/199") == 400
    started = time.monotonic()
    assert status(b"/delay/0.5") == 200
    assert time.monotonic() - started >= 0.5
    assert status(b"/delay/31") == 400
    server.assertNoErrorsLogged()


def test_sigtermCutsADelayShort(launcher: Launcher) -> None:
    """
    A request waiting out C{/delay/30} does not hold a graceful stop: on
    SIGTERM it is answered 503 at once, and twistd exits well within
    C{--shutdown-timeout}.
    """
    server = launcher.start(services=["web"], extra=["--shutdown-timeout=20"])
    with connect(server.webPort) as client:
        # A first answer on the connection: the server reads this one.
        client.sendall(b"GET /status/200 HTTP/1.1\r\nHost: x\r\n\r\n")
        # Its head and body may come in two reads (each is a write of
        # twisted.web's, sent at once): read to the end of the body.
        client.settimeout(LINE_TIMEOUT)
        first = b""
        while not first.endswith(b"\r\n\r\n200 OK\n"):
            chunk = client.recv(65536)
            assert chunk, first
            first += chunk
        assert first.startswith(b"HTTP/1.1 200 OK"), first
        client.sendall(b"GET /delay/30 HTTP/1.1\r\nHost: x\r\n\r\n")
        client.settimeout(1.0)
        try:
            early = client.recv(65536)
        except TimeoutError:
            early = b""
        assert early == b""
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        answer, ending = readUntilClosed(client, time.monotonic() + LINE_TIMEOUT)
        answered = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 503 Service Unavailable"), answer
    assert answer.endswith(b"503 Service Unavailable: the server is stopping\n")
    assert ending == "EOF"
    server.process.wait(EXIT_TIMEOUT)
    assert answered < 5
    assert time.monotonic() - started < 10
    server.assertNoErrorsLogged()
