"""
End-to-end tests of what an operator relies on: readiness and stop
notifications for systemd, TLS, metrics and health checks, the graceful stop,
a request count that survives restarts, connection limits and idle timeouts.

Each runs the installed C{twistd -n netdemos} on free loopback ports and speaks
to it as clients, probes, Prometheus and systemd do.
"""

from __future__ import annotations

import http.client
import json
import os
import select
import signal
import socket
import ssl
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import pytest
from support import EXIT_TIMEOUT, LINE_TIMEOUT
from support.certificates import Certificate
from support.clients import Clients, LineReader, echoRoundTrip, httpGet, nextNumber
from support.process import KILLED_BY_SIGTERM, Launcher, Netdemos, runNetdemos
from support.prometheus import sample, scrapeMetrics
from support.running import LOOPBACK, readUntilClosed
from support.systemd import NotifySocket


def terminate(server: Netdemos) -> tuple[int, float]:
    """
    Send SIGTERM and wait for twistd to exit; return its status and how many
    seconds it took.
    """
    start = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    returncode = server.process.wait(timeout=EXIT_TIMEOUT)
    return returncode, time.monotonic() - start


# systemd


def test_readyIsSentOnlyOnceEveryListenerAccepts(
    launcher: Launcher, clients: Clients, stack: ExitStack
) -> None:
    """
    With C{NOTIFY_SOCKET} set, netdemos sends C{READY=1} and a C{STATUS=} line,
    and at the moment READY=1 arrives the echo, HTTP, chat and metrics ports
    all accept at the first attempt, and C{/readyz} answers 200.  SIGTERM
    brings C{STOPPING=1}, then twistd exits by SIGTERM.

    systemd starts the units ordered after a C{Type=notify} service as soon as
    READY=1 arrives; if it came before every port listened, their first
    connections would be refused.  STOPPING=1 tells systemd the stop is under
    way, so it does not count the drain as a hang.
    """
    notify = NotifySocket(stack)

    def freezeWhenReady(server: Netdemos) -> None:
        notify.waitFor(b"READY=1", server)
        # Stop the server at once, so that what listens now is what listened
        # when it said it was ready.  The kernel still completes connections
        # to the listening sockets of a stopped process.
        os.kill(server.pid, signal.SIGSTOP)

    server = launcher.start(
        metrics=True,
        extra=["--name=op-1"],
        environ={"NOTIFY_SOCKET": str(notify.path)},
        waitUntilStarted=freezeWhenReady,
    )
    try:
        # No retry: a refused connection fails the test.
        for name in ("echo", "http", "chat", "web", "metrics"):
            clients.connect(server.port(name))
    finally:
        os.kill(server.pid, signal.SIGCONT)
    assert httpGet(server.metricsPort, "/readyz") == (200, b"ok\n")

    notify.waitFor(
        b"STATUS=op-1: 4 listeners; clients: echo 0, http 0, chat 0, web 0", server
    )
    assert not any(b"STOPPING=1" in message for message in notify.messages)

    start = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    notify.waitFor(b"STOPPING=1", server)
    stoppingAfter = time.monotonic() - start
    returncode = server.process.wait(timeout=EXIT_TIMEOUT)
    print(
        f"messages: {notify.messages!r}; STOPPING=1 {stoppingAfter:.3f}s after"
        f" SIGTERM, exit {time.monotonic() - start:.3f}s after"
    )
    assert returncode == KILLED_BY_SIGTERM, server.output()
    server.assertNoErrorsLogged()


# TLS


def test_tlsOnEchoHttpAndChat(
    launcher: Launcher, clients: Clients, stack: ExitStack, certificate: Certificate
) -> None:
    """
    With C{ssl:} endpoints and a certificate, echo returns what is sent and
    answers a TLS close with its own, HTTPS answers C{I am request #1}, and a
    chat line is relayed between two TLS clients.

    The README promises any endpoint may be TLS; an endpoint that listened but
    spoke plain TCP, or a service that misbehaved over the TLS transport,
    would only show up here.
    """
    server = launcher.start(tls=certificate)

    echo = clients.tls(certificate, server.echoPort)
    echoRoundTrip(echo, b"hello over TLS\n" * 1000)
    plain = echo.unwrap()  # sends close_notify and waits for the server's
    assert readUntilClosed(plain, time.monotonic() + LINE_TIMEOUT) == (b"", "EOF")

    # The certificate is checked against the IP address here.
    https = http.client.HTTPSConnection(
        LOOPBACK,
        server.httpPort,
        timeout=LINE_TIMEOUT,
        context=certificate.clientContext(),
    )
    stack.callback(https.close)
    https.request("GET", "/")
    response = https.getresponse()
    assert (response.status, response.read()) == (200, b"I am request #1\n")

    alice = clients.tls(certificate, server.chatPort)
    aliceLines = LineReader(alice)
    aliceName = f"{LOOPBACK}:{alice.getsockname()[1]}"
    assert aliceLines.readLine().startswith(f"* welcome, you are {aliceName} (1 in")
    bob = clients.tls(certificate, server.chatPort)
    bobLines = LineReader(bob)
    assert bobLines.readLine().startswith("* welcome")
    aliceLines.waitForLine(
        f"* {LOOPBACK}:{bob.getsockname()[1]} joined (2 in the room)"
    )
    alice.sendall(b"hello over TLS\n")
    bobLines.waitForLine(f"<{aliceName}> hello over TLS")
    aliceLines.waitForLine(f"<{aliceName}> hello over TLS")
    server.assertNoErrorsLogged()


@pytest.mark.xfail(
    strict=True,
    reason="Twisted's BufferingTLSTransport drops writes it is still aggregating"
    " when the peer's close_notify arrives in the same read",
)
def test_tlsEchoReturnsDataSentJustBeforeCloseNotify(
    launcher: Launcher, certificate: Certificate
) -> None:
    """
    A TLS echo client that sends data and its close_notify in one write gets
    the data back before the server's close_notify.

    close_notify is TLS's half-close: the client will send no more, and the
    echo of what it sent before is still owed, as it is over plain TCP.
    (Twisted's non-buffering TLSMemoryBIOProtocol passes this test.)
    """
    server = launcher.start(services=["echo"], tls=certificate)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = certificate.clientContext().wrap_bio(
        incoming, outgoing, server_hostname="localhost"
    )
    with socket.create_connection((LOOPBACK, server.echoPort)) as connection:
        connection.settimeout(LINE_TIMEOUT)
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                connection.sendall(outgoing.read())
                incoming.write(connection.recv(65536))
        connection.sendall(outgoing.read())

        payload = b"echo me, then close\n"
        tls.write(payload)
        with pytest.raises(ssl.SSLWantReadError):
            tls.unwrap()  # writes close_notify, then wants the server's
        connection.sendall(outgoing.read())

        received = b""
        deadline = time.monotonic() + LINE_TIMEOUT
        while True:
            assert time.monotonic() < deadline, received
            try:
                received += tls.read(65536)
            except ssl.SSLWantReadError:
                data = connection.recv(65536)
                if data:
                    incoming.write(data)
                else:
                    incoming.write_eof()
            except ssl.SSLZeroReturnError:
                break  # the server's close_notify
    assert received == payload


def test_tlsKeyFileMissingExitsWithOneLineMessage(
    tmp_path: Path, certificate: Certificate
) -> None:
    """
    An C{ssl:} endpoint whose key file does not exist ends twistd with a
    non-zero status and one line naming the option and the file, not a
    traceback.

    A typo in a key path is a common deployment mistake; the operator should
    see which file, not a stack dump from OpenSSL's loader.
    """
    missing = tmp_path / "no-such-key.pem"
    endpoint = (
        f"ssl:0:privateKey={missing}:certKey={certificate.certificatePath}"
        f":interface={LOOPBACK}"
    )
    result = runNetdemos(tmp_path, {"echo": [endpoint]})
    assert result.returncode != 0, result.stdout
    named = [
        line
        for line in result.stdout.splitlines()
        if f"--echo={endpoint}" in line and str(missing) in line
    ]
    assert named, result.stdout
    assert "Traceback" not in result.stdout, result.stdout


# Metrics and health


def test_metricsCountTheTrafficAndScrapingCountsNoRequest(
    launcher: Launcher, clients: Clients, stack: ExitStack
) -> None:
    """
    After 5 echoed bytes, 3 GETs on 2 connections and 2 chat lines from 2
    clients, /metrics says exactly that, and the live connections; scraping
    twice leaves the HTTP figures alone and the next GET is C{#4} (in the
    figures within a second); /livez and /readyz answer 200.

    Dashboards and alerts are built on these figures, and a scrape that moved
    the counter would make every monitored server lie about its traffic.
    """
    server = launcher.start(metrics=True)
    port = server.metricsPort

    echo = clients.connect(server.echoPort)
    echoRoundTrip(echo, b"hello")

    first = http.client.HTTPConnection(LOOPBACK, server.httpPort, timeout=LINE_TIMEOUT)
    second = http.client.HTTPConnection(LOOPBACK, server.httpPort, timeout=LINE_TIMEOUT)
    stack.callback(first.close)
    stack.callback(second.close)
    for connection, number in ((first, 1), (first, 2), (second, 3)):
        connection.request("GET", "/")
        assert connection.getresponse().read() == b"I am request #%d\n" % (number,)

    alice = clients.chatUser(server.chatPort)
    bob = clients.chatUser(server.chatPort)
    alice.inbox.waitForLine(f"* {bob.name} joined (2 in the room)")
    alice.send(b"one\ntwo\n")
    bob.inbox.waitForLine(f"<{alice.name}> two")

    samples = scrapeMetrics(port)
    expected = {
        ("netdemos_connections_total", "echo"): 1,
        ("netdemos_connections_total", "http"): 2,
        ("netdemos_connections_total", "chat"): 2,
        ("netdemos_connections_active", "echo"): 1,
        ("netdemos_connections_active", "http"): 2,
        ("netdemos_connections_active", "chat"): 2,
    }
    actual = {
        (name, service): sample(samples, name, service=service)
        for name, service in expected
    }
    assert actual == expected
    for service in ("echo", "http", "chat"):
        rejected = sample(
            samples,
            "netdemos_connections_rejected_total",
            service=service,
            reason="limit",
        )
        assert rejected == 0
    assert sample(samples, "netdemos_echo_bytes_total") == 5
    assert sample(samples, "netdemos_http_requests_total") == 3
    assert sample(samples, "netdemos_chat_messages_total") == 2
    for reason in ("slow", "idle"):
        assert (
            sample(samples, "netdemos_chat_clients_dropped_total", reason=reason) == 0
        )
    assert ("process_resident_memory_bytes", frozenset()) in samples
    # Labels name a service or a reason, never a peer.
    assert not any(LOOPBACK in value for _, labels in samples for _, value in labels)

    again = scrapeMetrics(port)
    assert sample(again, "netdemos_http_requests_total") == 3
    assert sample(again, "netdemos_connections_total", service="http") == 2
    second.request("GET", "/")
    assert second.getresponse().read() == b"I am request #4\n"
    # /metrics is rendered at most once a second: the figure moves by then.
    deadline = time.monotonic() + LINE_TIMEOUT
    while sample(scrapeMetrics(port), "netdemos_http_requests_total") != 4:
        assert time.monotonic() < deadline, "the figures never caught up"
        time.sleep(0.1)  # a polling interval

    assert httpGet(port, "/livez") == (200, b"ok\n")
    assert httpGet(port, "/readyz") == (200, b"ok\n")
    server.assertNoErrorsLogged()


def test_httpGaugeFallsToZeroOnceClientsHaveClosed(launcher: Launcher) -> None:
    """
    After three GETs, each on a connection the client then closed, the gauge
    of active HTTP connections on /metrics falls back to 0, and the total
    stays at 3.

    A gauge that kept counting closed connections would report a leak that
    is not there; and the connection limit counts the same figure, so in time
    every client would be turned away with 503.
    """
    server = launcher.start(services=["http"], metrics=True)
    assert getNumbers(server, 3) == [1, 2, 3]
    # The server sees each close a moment after the client makes it.
    deadline = time.monotonic() + LINE_TIMEOUT
    while True:
        samples = scrapeMetrics(server.metricsPort)
        active = sample(samples, "netdemos_connections_active", service="http")
        if active == 0:
            break
        assert time.monotonic() < deadline, f"{active} closed connections counted"
        time.sleep(0.02)  # a polling interval
    assert sample(samples, "netdemos_connections_total", service="http") == 3
    server.assertNoErrorsLogged()


# Graceful stop


def pushUntilStalled(connection: socket.socket) -> int:
    """
    Send to echo without reading until the connection will take no more;
    return how many bytes that was.

    Stalled means no progress for a second: by then the server has stopped
    reading because it cannot send the echo.
    """
    connection.setblocking(False)
    chunk = b"x" * 65536
    pushed = 0
    lastProgress = time.monotonic()
    deadline = lastProgress + 30
    while time.monotonic() - lastProgress < 1.0:
        assert time.monotonic() < deadline, f"still sending after {pushed} bytes"
        _, writable, _ = select.select([], [connection], [], 0.1)
        if writable:
            try:
                pushed += connection.send(chunk)
                lastProgress = time.monotonic()
            except BlockingIOError:
                pass
    return pushed


SHUTDOWN_TIMEOUT = 3


def test_sigtermDrainsThenAbortsHangingClientsWithinTimeout(
    launcher: Launcher, clients: Clients
) -> None:
    """
    On SIGTERM, with an echo client that does not read holding the server:
    /readyz turns 503 while /livez and the metrics port stay up, a chat client
    is told C{* server shutting down} and then closed, the hanging echo
    connection is aborted after --shutdown-timeout, and twistd exits by
    SIGTERM within that timeout and a margin.

    A load balancer polling /readyz takes the server out of rotation only if
    it answers 503 during the drain; and a client that never reads must not
    be able to stall a stop (and so a deploy) for ever.
    """
    server = launcher.start(
        services=["echo", "chat"],
        metrics=True,
        extra=[f"--shutdown-timeout={SHUTDOWN_TIMEOUT}"],
    )
    port = server.metricsPort
    chat = clients.chatUser(server.chatPort)
    hanging = clients.connect(server.echoPort, receiveBuffer=4096)
    pushed = pushUntilStalled(hanging)

    start = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    deadline = start + SHUTDOWN_TIMEOUT
    while True:
        # A refused connection here (the metrics port closed early) fails.
        status, body = httpGet(port, "/readyz")
        if status == 503:
            break
        assert status == 200, (status, body)
        assert time.monotonic() < deadline, "/readyz never answered 503"
    readyzAfter = time.monotonic() - start
    assert httpGet(port, "/livez") == (200, b"ok\n")

    chat.inbox.waitForLine("* server shutting down")
    chat.inbox.waitForEOF()
    chatClosedAfter = time.monotonic() - start
    # Still draining, because of the echo client, and still saying so.
    assert httpGet(port, "/readyz")[0] == 503

    returncode = server.process.wait(timeout=SHUTDOWN_TIMEOUT + 5)
    exitAfter = time.monotonic() - start
    print(
        f"echo client pushed {pushed} bytes; after SIGTERM: /readyz 503 at"
        f" {readyzAfter:.3f}s, chat closed at {chatClosedAfter:.3f}s, exit at"
        f" {exitAfter:.3f}s"
    )
    assert returncode == KILLED_BY_SIGTERM, server.output()
    assert exitAfter < SHUTDOWN_TIMEOUT + 5
    assert (
        f"1 connections still open after {SHUTDOWN_TIMEOUT:.1f}s; aborting them"
        in server.output()
    ), server.output()
    server.assertNoErrorsLogged()


LONG_SHUTDOWN_TIMEOUT = 20
PROMPT_EXIT = 5


def test_sigtermWithNoClientLeftDoesNotWaitOutTheTimeout(
    launcher: Launcher,
) -> None:
    """
    With --shutdown-timeout=20 and three GETs done on connections the client
    then closed, SIGTERM ends twistd within 5 s, and nothing is aborted.

    The timeout is for clients that hang; if connections already closed still
    counted as open, every stop, and so every deploy, would wait it out.
    """
    server = launcher.start(
        services=["http"], extra=[f"--shutdown-timeout={LONG_SHUTDOWN_TIMEOUT}"]
    )
    assert getNumbers(server, 3) == [1, 2, 3]
    returncode, seconds = terminate(server)
    print(f"with no client left, twistd exited {seconds:.3f}s after SIGTERM")
    assert returncode == KILLED_BY_SIGTERM, server.output()
    assert seconds < PROMPT_EXIT, server.output()
    assert "still open" not in server.output(), server.output()
    server.assertNoErrorsLogged()


# The request counter across restarts


def getNumbers(server: Netdemos, count: int) -> list[int]:
    return [nextNumber(server.httpPort) for _ in range(count)]


def test_counterContinuesAfterCleanRestart(launcher: Launcher, tmp_path: Path) -> None:
    """
    With --counter-file, three GETs, a SIGTERM and a restart on the same file:
    the next GET is C{I am request #4}.

    A counter that restarted from 1 after every deploy would repeat numbers
    that clients may already have recorded.
    """
    countFile = tmp_path / "count"
    options = [f"--counter-file={countFile}"]
    server = launcher.start(services=["http"], extra=options)
    assert getNumbers(server, 3) == [1, 2, 3]
    returncode, seconds = terminate(server)
    print(f"a clean stop took {seconds:.3f}s")
    assert returncode == KILLED_BY_SIGTERM, server.output()

    restarted = launcher.start(services=["http"], extra=options)
    assert getNumbers(restarted, 1) == [4]
    restarted.assertNoErrorsLogged()


def test_counterNeverRepeatsANumberAfterSigkill(
    launcher: Launcher, tmp_path: Path
) -> None:
    """
    With a fresh --counter-file, GETs #1 to #5, then SIGKILL (no chance to
    save) and a restart: the next number is above 5.

    After a crash numbers may be skipped, but a repeated one would make two
    different requests indistinguishable.
    """
    countFile = tmp_path / "count"
    options = [f"--counter-file={countFile}"]
    server = launcher.start(services=["http"], extra=options)
    assert getNumbers(server, 5) == [1, 2, 3, 4, 5]
    server.process.kill()
    server.process.wait(timeout=EXIT_TIMEOUT)

    restarted = launcher.start(services=["http"], extra=options)
    [number] = getNumbers(restarted, 1)
    print(f"after SIGKILL at #5 the next request is #{number}")
    assert number > 5


def test_counterFileWithoutACountStopsStartup(tmp_path: Path) -> None:
    """
    A --counter-file that holds C{garbage} ends twistd with a non-zero status
    and a message naming the file, without a traceback, and the file is left
    as it was.

    Starting again from 1 instead would silently repeat numbers; overwriting
    the file would destroy what the operator needs to look at.
    """
    countFile = tmp_path / "count"
    countFile.write_text("garbage\n")
    result = runNetdemos(
        tmp_path,
        {"http": [f"tcp:0:interface={LOOPBACK}"]},
        [f"--counter-file={countFile}"],
    )
    assert result.returncode != 0, result.stdout
    assert any(
        "--counter-file" in line and str(countFile) in line
        for line in result.stdout.splitlines()
    ), result.stdout
    assert "Traceback" not in result.stdout, result.stdout
    assert countFile.read_text() == "garbage\n"


# Limits


def test_connectionLimitTurnsAwayTheNextClientOfEachService(
    launcher: Launcher, clients: Clients, stack: ExitStack
) -> None:
    """
    With --max-connections=2 and two clients of each service connected, a
    third chat client is told C{! server full, try again later} and closed, a
    third HTTP client gets a 503, and a third echo client is closed at once;
    the metrics count each refusal; and once a chat client leaves, a new one
    gets in.

    The limit is what keeps a flood of connections from exhausting file
    descriptors and memory, and it must not lock clients out for good.
    """
    server = launcher.start(metrics=True, extra=["--max-connections=2"])

    chatters = [clients.chatUser(server.chatPort) for _ in range(2)]
    turnedAway = clients.connect(server.chatPort)
    closing = readUntilClosed(turnedAway, time.monotonic() + LINE_TIMEOUT)
    assert closing == (b"! server full, try again later\r\n", "EOF")

    for number in (1, 2):
        keepAlive = http.client.HTTPConnection(
            LOOPBACK, server.httpPort, timeout=LINE_TIMEOUT
        )
        stack.callback(keepAlive.close)
        keepAlive.request("GET", "/")
        assert keepAlive.getresponse().read() == b"I am request #%d\n" % (number,)
    refused = clients.connect(server.httpPort)
    refused.sendall(b"GET / HTTP/1.1\r\nHost: netdemos\r\n\r\n")
    # The server answers without reading the request, so closing may reset.
    answer, _ = readUntilClosed(refused, time.monotonic() + LINE_TIMEOUT)
    assert answer.startswith(b"HTTP/1.1 503 "), answer

    for _ in range(2):
        echoRoundTrip(clients.connect(server.echoPort), b"in")
    shutOut = clients.connect(server.echoPort)
    assert readUntilClosed(shutOut, time.monotonic() + LINE_TIMEOUT)[0] == b""

    samples = scrapeMetrics(server.metricsPort)
    rejected = {
        service: sample(
            samples,
            "netdemos_connections_rejected_total",
            service=service,
            reason="limit",
        )
        for service in ("echo", "http", "chat")
    }
    assert rejected == {"echo": 1, "http": 1, "chat": 1}

    chatters[1].close()
    chatters[0].inbox.waitForLine(f"* {chatters[1].name} left")
    clients.chatUser(server.chatPort)  # waits for its welcome
    server.assertNoErrorsLogged()


# How far the wall clock may move against a monotonic one during a test.
WALL_CLOCK_SLACK = 0.05


def test_idleClientsAreDisconnectedButTalkingClientsStay(
    launcher: Launcher, clients: Clients
) -> None:
    """
    With --idle-timeout=1, a silent chat client is told C{! idle for 1
    seconds; disconnecting} and closed, a silent echo client is closed, both
    no sooner than a second after connecting; a chat client that talks every
    0.3 s for 2 s stays connected; the metrics count one idle chat drop.

    Idle connections hold file descriptors and count against the connection
    limit; dropping a client that is talking, though, would break the room.
    """
    server = launcher.start(
        services=["echo", "chat"], metrics=True, extra=["--idle-timeout=1"]
    )
    start = time.monotonic()
    silentChat = clients.chatUser(server.chatPort)
    silentEcho = clients.connect(server.echoPort)
    talker = clients.chatUser(server.chatPort)

    talkError: list[OSError] = []

    def talk() -> None:
        # Sending every 0.3 s is the behaviour under test, not a wait.
        end = time.monotonic() + 2
        sent = 0
        try:
            while time.monotonic() < end:
                talker.send(b"still here %d\n" % (sent,))
                sent += 1
                time.sleep(0.3)
        except OSError as e:
            talkError.append(e)

    talking = threading.Thread(target=talk, daemon=True)
    talking.start()

    silentChat.inbox.waitForLine("! idle for 1 seconds; disconnecting")
    silentChat.inbox.waitForEOF(timeout=5)
    chatClosedAfter = time.monotonic() - start
    assert readUntilClosed(silentEcho, start + 6) == (b"", "EOF")
    echoClosedAfter = time.monotonic() - start
    talking.join(timeout=10)
    talkedFor = time.monotonic() - start

    print(
        f"idle chat closed at {chatClosedAfter:.3f}s, idle echo at"
        f" {echoClosedAfter:.3f}s; talker talked until {talkedFor:.3f}s"
    )
    # Twisted times its calls by the wall clock (time.time), which the system
    # may adjust by a few milliseconds while this test reads a monotonic one:
    # 0.998 s was seen, twice in ten runs.  A timeout cut short by a bug would
    # be far sooner.
    assert chatClosedAfter >= 1 - WALL_CLOCK_SLACK
    assert echoClosedAfter >= 1 - WALL_CLOCK_SLACK

    talker.inbox.waitForLine(f"* {silentChat.name} left (idle)")
    lines = talker.inbox.snapshot()
    assert not any(line.startswith("! idle") for line in lines), lines
    assert not talkError and not talker.inbox.eof, (talkError, lines[-5:])
    talker.send(b"and now\n")
    talker.inbox.waitForLine(f"<{talker.name}> and now")
    samples = scrapeMetrics(server.metricsPort)
    assert sample(samples, "netdemos_chat_clients_dropped_total", reason="idle") == 1
    server.assertNoErrorsLogged()


# Logs


def test_jsonLoggerWritesOneJSONObjectALine(launcher: Launcher) -> None:
    """
    With C{--logger=netdemos.logs.json} every line of a short real run, start
    to stop, is one JSON object (no record separator before it, which
    C{jq} and log shippers would take for a stray byte), and the banner's
    events carry their fields: the text a shipper indexes is in them.
    """
    server = launcher.start(
        services=["echo", "web"], twistdOptions=["--logger=netdemos.logs.json"]
    )
    server.waitUntilLogged("netdemos: ready")
    returncode, _ = terminate(server)
    assert returncode == KILLED_BY_SIGTERM
    lines = server.output().splitlines()
    events = [json.loads(line) for line in lines]
    assert all(isinstance(event, dict) for event in events), lines
    (ready,) = [
        event for event in events if event.get("line", "").startswith("netdemos: ready")
    ]
    assert ready["log_format"] == "{line}"
    assert ready["log_level"]["name"] == "info"
    assert ready["log_namespace"] == "netdemos.lifecycle"
    assert ready["text"] == ready["line"]
    assert any(event.get("log_format") == "netdemos: stopped" for event in events)
