"""
End-to-end tests of the web service: the chat room and echo over WebSocket,
their limits, and the page in a real browser.

Each runs the installed C{twistd -n netdemos} on free loopback ports.  The
clients are the C{websockets} library, where a well-behaved client will do;
a plain socket framed by wsproto, where the test needs a client that
misbehaves (never reads, never answers a ping, sends fragments forever); and
Chromium, driven by Playwright, for the page.
"""

from __future__ import annotations

import asyncio
import http.client
import os
import select
import shutil
import signal
import socket
import time
from collections.abc import Iterator

import pytest
import websockets
from playwright.sync_api import Browser, Page, expect, sync_playwright
from support import EXIT_TIMEOUT, LINE_TIMEOUT
from support.certificates import Certificate
from support.clients import Clients, connect, httpGet, rawHTTP
from support.process import Launcher, Netdemos
from support.prometheus import sample, scrapeMetrics
from support.running import (
    LOOPBACK,
    START_TIMEOUT,
    loopbackEndpoint,
    netdemosCommand,
    serviceArguments,
)
from websockets.asyncio.client import ClientConnection
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    Request,
)

MB = 1024 * 1024


def address(server: Netdemos, path: str, scheme: str = "ws") -> str:
    return f"{scheme}://{LOOPBACK}:{server.webPort}{path}"


def connectTo(
    server: Netdemos, path: str, scheme: str = "ws", **options: object
) -> websockets.connect:
    """
    Open a C{websockets} client connection to C{path} on C{server}'s web port.
    """
    return websockets.connect(
        address(server, path, scheme),
        proxy=None,
        compression=None,
        open_timeout=START_TIMEOUT,
        **options,  # type: ignore[arg-type]
    )


async def receiveUntil(client: ClientConnection, wanted: str) -> list[str]:
    """
    Receive text messages until C{wanted}; return them all, C{wanted} last.
    """
    received: list[str] = []

    async def receive() -> None:
        while not received or received[-1] != wanted:
            received.append(str(await client.recv()))

    await asyncio.wait_for(receive(), LINE_TIMEOUT)
    return received


async def closeCode(client: ClientConnection) -> int | None:
    """
    Wait for the server to close C{client}; the code of its close frame.
    """
    await asyncio.wait_for(client.wait_closed(), LINE_TIMEOUT)
    return client.close_code


class RawWebSocket:
    """
    A WebSocket client on a plain blocking socket, framed by wsproto: for
    what a well-behaved client library will not do.
    """

    def __init__(self, port: int, path: str, receiveBuffer: int | None = None) -> None:
        self.connection = connect(port, LOOPBACK, receiveBuffer, START_TIMEOUT)
        if receiveBuffer is not None:
            # And a send buffer as small, so that its sends block soon.
            self.connection.setsockopt(
                socket.SOL_SOCKET, socket.SO_SNDBUF, receiveBuffer
            )
        self.wire = WSConnection(ConnectionType.CLIENT)
        self.events: list[Event] = []
        self.closed = False
        self.connection.sendall(
            self.wire.send(Request(host=f"{LOOPBACK}:{port}", target=path))
        )
        self.readUntil(lambda event: isinstance(event, AcceptConnection))

    def send(self, event: Event) -> None:
        self.connection.sendall(self.wire.send(event))

    def readSome(self, timeout: float) -> None:
        """
        Read what has arrived within C{timeout} seconds into L{events}.
        """
        self.connection.settimeout(timeout)
        try:
            data = self.connection.recv(65536)
        except TimeoutError:
            return
        except ConnectionResetError:
            data = b""
        if not data:
            self.closed = True
            self.wire.receive_data(None)
        else:
            self.wire.receive_data(data)
        self.events.extend(self.wire.events())

    def readUntil(self, done: object, timeout: float = LINE_TIMEOUT) -> Event:
        """
        Read until an event for which C{done} is true arrives; return it.
        """
        assert callable(done)
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events:
                if done(event):
                    return event
            remaining = deadline - time.monotonic()
            assert remaining > 0 and not self.closed, (
                f"not there in {timeout} s; got {self.events!r}"
            )
            self.readSome(remaining)

    def readToEnd(self, timeout: float = LINE_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not self.closed:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"not closed in {timeout} s; got {self.events!r}"
            self.readSome(remaining)

    def readable(self) -> bool:
        return bool(select.select([self.connection], [], [], 0)[0])

    def close(self) -> None:
        self.connection.close()


def isClose(event: Event) -> bool:
    return isinstance(event, CloseConnection)


# The page's files, revalidated


def test_browsersCopyOfAFileIsRevalidatedWith304(launcher: Launcher) -> None:
    """
    A GET with C{If-None-Match} naming a file's C{ETag}, or with
    C{If-Modified-Since} its C{Last-Modified}, is answered 304, with no
    body, on the same connection as the 200 that gave them; C{HEAD} too.

    The files are served C{Cache-Control: no-cache}, so that a browser asks
    every time: that costs a bodiless 304, not a download, when its copy is
    current.
    """
    server = launcher.start(services=["web"])
    connection = http.client.HTTPConnection(
        LOOPBACK, server.webPort, timeout=LINE_TIMEOUT
    )
    try:
        for path in ("/", "/chat.js", "/chat.css"):
            connection.request("GET", path)
            response = connection.getresponse()
            body = response.read()
            assert response.status == 200 and body, (path, response.status)
            etag = response.getheader("ETag")
            lastModified = response.getheader("Last-Modified")
            assert etag and lastModified, response.getheaders()
            for method, headers in (
                ("GET", {"If-None-Match": f'"stale", {etag}'}),
                ("GET", {"If-Modified-Since": lastModified}),
                ("HEAD", {"If-None-Match": etag}),
            ):
                connection.request(method, path, headers=headers)
                response = connection.getresponse()
                assert response.status == 304, (path, method, headers)
                assert response.read() == b""
                assert response.getheader("ETag") == etag
                assert response.getheader("Last-Modified") == lastModified
                assert response.getheader("Cache-Control") == "no-cache"
                assert response.getheader("Content-Length") is None
            connection.request("GET", path, headers={"If-None-Match": '"stale"'})
            response = connection.getresponse()
            assert response.status == 200 and response.read() == body
    finally:
        connection.close()
    server.assertNoErrorsLogged()


# Echo


def test_echoRoundTripsTextAndBinaryUpToOneMebibyte(launcher: Launcher) -> None:
    """
    Text comes back as text and binary as binary, up to the 1 MiB default
    limit, in order, on one connection.

    That is what an operator's WebSocket probe checks of a proxy in between.
    """
    server = launcher.start(services=["web"])

    async def roundTrips() -> None:
        async with connectTo(server, "/echo", max_size=None) as client:
            for size in (1, 125, 126, 65535, 65536, MB):
                text = ("\u00e9t\u00e9 " * size)[: size // 2]
                await client.send(text)
                assert await client.recv() == text
                data = os.urandom(size)
                await client.send(data)
                assert await client.recv() == data

    asyncio.run(roundTrips())
    server.assertNoErrorsLogged()


def test_oversizeMessagesCloseWith1009(launcher: Launcher) -> None:
    """
    One byte over the limit closes with 1009 (message too big): on C{/echo}
    over C{--ws-max-message}, on C{/chat} over C{--max-line}.
    """
    server = launcher.start(services=["web"], extra=["--max-line=1000"])

    async def oversize() -> None:
        async with connectTo(server, "/echo") as client:
            await client.send(b"x" * MB)
            assert len(await client.recv()) == MB
            await client.send(b"x" * (MB + 1))
            assert await closeCode(client) == 1009
        async with connectTo(server, "/chat") as client:
            await client.recv()  # the welcome
            await client.send("y" * 1000)
            assert str(await client.recv()).endswith("y" * 1000)
            await client.send("y" * 1001)
            assert await closeCode(client) == 1009

    asyncio.run(oversize())


def test_endlessContinuationFramesCloseWith1009InBoundedMemory(
    launcher: Launcher,
) -> None:
    """
    A client that starts a message and sends continuation frames forever is
    closed with 1009 once the message passes the 1 MiB limit, and the server
    grows by little more than that.

    Twisted reassembles a message without a bound of its own: before netdemos
    capped it, the server read everything and grew without end.
    """
    server = launcher.start(services=["web"])
    client = RawWebSocket(server.webPort, "/echo")
    rssBefore = server.rssBytes()
    piece = b"x" * 65536
    client.send(BytesMessage(data=piece, message_finished=False))
    sent = len(piece)
    client.connection.settimeout(2)
    while sent < 32 * MB and not client.readable():
        try:
            client.send(BytesMessage(data=piece, message_finished=False))
        except (TimeoutError, OSError):
            break  # the server has stopped reading
        sent += len(piece)
    close = client.readUntil(isClose)
    grown = server.rssBytes() - rssBefore
    print(
        f"sent {sent / MB:.1f} MB of one message; the server grew {grown / MB:.1f} MB"
    )
    assert isinstance(close, CloseConnection) and close.code == 1009, close
    assert sent < 8 * MB, f"the server read {sent / MB:.0f} MB of one message"
    assert grown < 8 * MB, f"the server grew {grown / MB:.0f} MB"
    client.close()
    server.assertNoErrorsLogged()


def test_echoDoesNotReadFromAClientThatDoesNotRead(launcher: Launcher) -> None:
    """
    A client that sends without reading what comes back is soon not read
    from: its sends block, and the server holds a bounded amount for it.
    """
    server = launcher.start(services=["web"])
    client = RawWebSocket(server.webPort, "/echo", receiveBuffer=65536)
    rssBefore = server.rssBytes()
    piece = os.urandom(65536)
    client.connection.settimeout(2)
    sent = 0
    while sent < 64 * MB:
        try:
            client.send(BytesMessage(data=piece))
        except TimeoutError:
            break  # pushed back
        sent += len(piece)
    grown = server.rssBytes() - rssBefore
    print(
        f"a non-reader got {sent / MB:.1f} MB in; the server grew {grown / MB:.1f} MB"
    )
    assert sent < 16 * MB, f"the server kept reading: {sent / MB:.0f} MB"
    assert grown < 16 * MB, f"the server grew {grown / MB:.0f} MB"
    client.close()


# Chat


def test_quietPeerIsPingedAndClosedIfItNeverAnswers(launcher: Launcher) -> None:
    """
    With C{--ws-ping=0.5}, a client that reads but never answers pings gets
    a ping and is closed; a client whose library answers stays.
    """
    server = launcher.start(services=["web"], extra=["--ws-ping=0.5"])

    async def answering() -> None:
        async with connectTo(server, "/chat", ping_interval=None) as client:
            await client.recv()  # the welcome
            silent = RawWebSocket(server.webPort, "/chat")
            silent.readUntil(lambda event: isinstance(event, Ping), timeout=5)
            await asyncio.to_thread(silent.readToEnd, 5)
            host, port = client.local_address[:2]
            await client.send("still here")
            await receiveUntil(client, f"<{host}:{port}> still here")
            silent.close()

    asyncio.run(answering())


def test_slowWebSocketReaderIsDroppedAsATCPOneIs(
    launcher: Launcher, clients: Clients
) -> None:
    """
    A browser tab that stops reading while the room is busy is dropped past
    C{--chat-backlog}, and the others are told; TCP users in the same room
    see it go, and keep receiving.
    """
    server = launcher.start(
        services=["chat", "web"], extra=["--chat-backlog=65536", "--chat-rate=0"]
    )
    talker = clients.chatUser(server.chatPort)
    stalled = RawWebSocket(server.webPort, "/chat", receiveBuffer=4096)
    name = f"{LOOPBACK}:{stalled.connection.getsockname()[1]}"
    talker.inbox.waitForLine(f"* {name} joined (2 in the room)")
    dropped = f"* {name} was dropped (too slow)"
    for batch in range(100):
        # Paced by the talker's own reading, so that only the tab falls behind.
        talker.send(b"".join(b"%d %s\n" % (batch, b"z" * 1000) for _ in range(20)))
        talker.inbox.waitForLine(f"<{talker.name}> {batch} " + "z" * 1000)
        if dropped in talker.inbox.snapshot():
            break
    talker.inbox.waitForLine(dropped)
    stalled.close()


def test_pingFloodFromANonReaderIsDroppedInBoundedMemory(
    launcher: Launcher, clients: Clients
) -> None:
    """
    A client that floods C{/chat} with pings and never reads the pongs is
    dropped past C{--chat-backlog}, as one that does not read the room is,
    within seconds, and the server grows by little; a TCP user in the same
    room sees it go, and keeps being served.

    Twisted answers each ping itself, straight to the transport: before the
    pongs counted in the member's backlog, the server read pings and queued
    pongs for such a client without end (38 MB in 10 s).
    """
    server = launcher.start(
        services=["chat", "web"], metrics=True, extra=["--chat-backlog=65536"]
    )
    talker = clients.chatUser(server.chatPort)
    flooder = RawWebSocket(server.webPort, "/chat", receiveBuffer=4096)
    name = f"{LOOPBACK}:{flooder.connection.getsockname()[1]}"
    talker.inbox.waitForLine(f"* {name} joined (2 in the room)")
    rssBefore = server.rssBytes()
    pings = b"".join(flooder.wire.send(Ping(b"p" * 125)) for _ in range(100))
    flooder.connection.settimeout(0.5)
    sent = grown = 0
    started = time.monotonic()
    deadline = started + 2 * LINE_TIMEOUT
    while True:
        grown = server.rssBytes() - rssBefore
        assert time.monotonic() < deadline and grown < 20 * MB, (
            f"not dropped after {sent / MB:.1f} MB of pings in"
            f" {time.monotonic() - started:.1f} s; the server grew {grown / MB:.1f} MB"
        )
        try:
            flooder.connection.sendall(pings)
        except TimeoutError:
            continue  # pushed back: the server has stopped reading
        except OSError:
            break  # aborted
        sent += len(pings)
    print(
        f"{sent / MB:.1f} MB of pings, dropped in {time.monotonic() - started:.1f} s;"
        f" the server grew {grown / MB:.1f} MB"
    )
    talker.inbox.waitForLine(f"* {name} was dropped (too slow)")
    talker.send(b"still served\n")
    talker.inbox.waitForLine(f"<{talker.name}> still served")
    samples = scrapeMetrics(server.metricsPort)
    assert sample(samples, "netdemos_chat_clients_dropped_total", reason="slow") == 1
    flooder.close()
    server.assertNoErrorsLogged()


def test_thousandWebSocketClientsAllReceiveALine(
    launcher: Launcher, clients: Clients
) -> None:
    """
    1000 browsers at once in the room: one line from a TCP client reaches
    every one of them.
    """
    server = launcher.start(services=["chat", "web"])
    speaker = clients.chatUser(server.chatPort)
    wanted = f"<{speaker.name}> hello, everyone"

    async def crowd() -> float:
        handshakes = asyncio.Semaphore(100)

        async def join() -> ClientConnection:
            async with handshakes:
                client = await connectTo(server, "/chat", ping_interval=None)
                await client.recv()  # the welcome: it is in the room
                return client

        browsers = await asyncio.gather(*(join() for _ in range(1000)))
        try:
            started = time.monotonic()
            await asyncio.to_thread(speaker.send, b"hello, everyone\n")
            await asyncio.gather(*(receiveUntil(c, wanted) for c in browsers))
            return time.monotonic() - started
        finally:
            await asyncio.gather(*(c.close() for c in browsers))

    took = asyncio.run(crowd())
    print(f"one line reached 1000 WebSocket clients in {took * 1000:.0f} ms")
    server.assertNoErrorsLogged()


def test_gracefulStopTellsBrowsers(launcher: Launcher) -> None:
    """
    On SIGTERM a browser hears the server is going away, and is closed; the
    server does not wait out its shutdown timeout for it.
    """
    server = launcher.start(services=["web"], extra=["--shutdown-timeout=20"])

    async def stop() -> None:
        async with connectTo(server, "/chat") as client:
            await client.recv()  # the welcome
            started = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            await receiveUntil(client, "* server shutting down")
            assert await closeCode(client) == 1001
            await asyncio.to_thread(server.process.wait, EXIT_TIMEOUT)
            assert time.monotonic() - started < 10

    asyncio.run(stop())
    server.assertNoErrorsLogged()


# Security


def test_everyWebResponseNamesItsInstance(launcher: Launcher, clients: Clients) -> None:
    """
    Behind a balancer, X-Served-By tells which instance answered: the page,
    a plain GET of C{/chat}, and the 503 of a full site name C{--name}, as
    every other netdemos response does.
    """
    server = launcher.start(
        services=["web"], extra=["--name=web-1", "--max-connections=1"]
    )
    for path in (b"/", b"/chat"):
        answer = rawHTTP(
            server.webPort,
            b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path,
        )
        assert b"\r\nX-Served-By: web-1\r\n" in answer, answer[:300]
    with connect(server.webPort):
        answer = rawHTTP(server.webPort, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 503 "), answer[:100]
    assert b"\r\nX-Served-By: web-1\r\n" in answer, answer


def test_badHandshakesAreRefusedAndCountedNotLogged(launcher: Launcher) -> None:
    """
    One kept-alive connection sends 300 upgrade requests without
    C{Sec-WebSocket-Key}: each gets 400, each is counted as a refused
    handshake, and the log does not grow by a line for each.
    """
    server = launcher.start(services=["web"], metrics=True)
    before = len(server.output().splitlines())
    request = (
        b"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    with connect(server.webPort) as client:
        client.sendall(request * 300)
        answers = b""
        deadline = time.monotonic() + LINE_TIMEOUT
        while answers.count(b"HTTP/1.1 400 ") < 300:
            assert time.monotonic() < deadline, answers[-300:]
            client.settimeout(max(deadline - time.monotonic(), 0.01))
            chunk = client.recv(65536)
            assert chunk, answers[-300:]
            answers += chunk
    assert answers.count(b"HTTP/1.1 ") == 300
    samples = scrapeMetrics(server.metricsPort)
    assert (
        sample(
            samples,
            "netdemos_http_requests_refused_total",
            service="web",
            reason="handshake",
        )
        == 300
    )
    assert len(server.output().splitlines()) - before < 10, server.output()[-2000:]


def test_foreignOriginGets403(launcher: Launcher) -> None:
    """
    A page from another site cannot open C{/chat} or C{/echo} (403); the
    page's own origin, and one given with C{--web-origin}, can.
    """
    server = launcher.start(
        services=["web"], extra=["--web-origin=https://chat.example"]
    )
    own = f"http://{LOOPBACK}:{server.webPort}"

    async def origins() -> None:
        for path in ("/chat", "/echo"):
            with pytest.raises(websockets.InvalidStatus) as refused:
                async with connectTo(server, path, origin="https://evil.example"):
                    pass
            assert refused.value.response.status_code == 403
            for origin in (own, "https://chat.example"):
                async with connectTo(server, path, origin=origin) as client:
                    await client.ping()

    asyncio.run(origins())


# Operators


def test_webCountsAndReadiness(launcher: Launcher) -> None:
    """
    With the web service on, C{/readyz} answers 200 once it listens, and its
    WebSockets are counted under C{service="web"} while they are open.
    """
    server = launcher.start(services=["web"], metrics=True)
    assert httpGet(server.metricsPort, "/readyz")[0] == 200

    async def counted() -> None:
        async with connectTo(server, "/echo") as client:
            await client.send("x")
            await client.recv()
            metrics = scrapeMetrics(server.metricsPort)
            assert sample(metrics, "netdemos_connections_active", service="web") == 1

    asyncio.run(counted())


def test_secureWebSocketOverTLS(launcher: Launcher, certificate: Certificate) -> None:
    """
    On an C{ssl:} endpoint the page is served over HTTPS, and echo works as
    C{wss:}.
    """
    server = launcher.start(services=["web"], tls=certificate)
    context = certificate.clientContext()

    async def secure() -> None:
        async with connectTo(server, "/echo", "wss", ssl=context) as client:
            await client.send("over TLS")
            assert await client.recv() == "over TLS"
            # A TLS transport with a producer registered never closed: the
            # client waited out its own timeout, then dropped the connection.
            started = time.monotonic()
            await client.close()
            assert time.monotonic() - started < 5

    asyncio.run(secure())
    with socket.create_connection((LOOPBACK, server.webPort)) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
            assert tls.recv(100).startswith(b"HTTP/1.0 200 ")


# The page, in Chromium

# We run as root, and without the background-networking switches Chromium's
# own connections (component updates and the like) are refused here.
CHROMIUM_SWITCHES = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# Set to a path, the chat test saves a screenshot of its first page there:
# how the README's docs/chat-page.png is made.
SCREENSHOT = "NETDEMOS_SCREENSHOT"


def chromiumPath() -> str:
    """
    Debian's Chromium (C{apt-get install chromium}; C{.ci/run} installs it).

    Without it the browser tests skip, saying why, except in CI, where they
    fail: a CI that skipped them would look green having tested no page.
    """
    path = shutil.which("chromium") or "/usr/bin/chromium"
    if not os.access(path, os.X_OK):
        reason = "the browser tests need Chromium: apt-get install chromium"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return path


@pytest.fixture
def browser() -> Iterator[Browser]:
    path = chromiumPath()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=path, args=CHROMIUM_SWITCHES
        )
        yield browser
        browser.close()


def openPage(browser: Browser, url: str, **options: object) -> tuple[Page, str]:
    """
    Open the chat page at C{url}; wait until it is in the room, and return
    it with the name the room gave it.
    """
    page = browser.new_page(**options)  # type: ignore[arg-type]
    page.goto(url)
    expect(page.locator("#status")).to_have_text("connected")
    welcome = page.locator("#lines li").first
    expect(welcome).to_contain_text("* welcome, you are ")
    name = welcome.inner_text().split("you are ", 1)[1].split(" ", 1)[0]
    return page, name


def say(page: Page, text: str) -> None:
    """
    Type C{text} in the page's box and press Enter, as a user does.
    """
    page.locator("#text").fill(text)
    page.keyboard.press("Enter")


def expectLine(page: Page, line: str) -> None:
    """
    Wait until C{line} is on the page, as one item, exactly.
    """
    expect(page.locator("#lines").get_by_text(line, exact=True)).to_have_count(1)


def test_pagesAndATCPClientChatInEveryDirection(
    launcher: Launcher, clients: Clients, browser: Browser
) -> None:
    """
    Two pages and a TCP client are in one room: each one's lines reach the
    other two, and C{/nick} from a page renames it for everyone.
    """
    server = launcher.start(services=["chat", "web"])
    url = f"http://{LOOPBACK}:{server.webPort}/"
    first, firstName = openPage(browser, url)
    second, secondName = openPage(browser, url)
    tcp = clients.chatUser(server.chatPort)

    say(first, "hello from the first page")
    expectLine(second, f"<{firstName}> hello from the first page")
    tcp.inbox.waitForLine(f"<{firstName}> hello from the first page")
    say(second, "hello from the second page")
    expectLine(first, f"<{secondName}> hello from the second page")
    tcp.inbox.waitForLine(f"<{secondName}> hello from the second page")
    tcp.send(b"hello from nc\n")
    for page in (first, second):
        expectLine(page, f"<{tcp.name}> hello from nc")

    say(first, "/nick alice")
    expectLine(first, "* you are now alice")
    expectLine(second, f"* {firstName} is now alice")
    tcp.inbox.waitForLine(f"* {firstName} is now alice")
    say(first, "I am alice now")
    expectLine(second, "<alice> I am alice now")
    tcp.inbox.waitForLine("<alice> I am alice now")
    expect(first.locator("#text")).to_have_value("")

    if os.environ.get(SCREENSHOT):
        tcp.send(b"/nick bob\n")
        say(second, "/nick carol")
        tcp.send(b"hi alice, hi carol: this room is also on port 1025 (nc)\n")
        say(second, "<b>not bold</b>: every line is shown as text")
        expectLine(first, "<carol> <b>not bold</b>: every line is shown as text")
        first.set_viewport_size({"width": 720, "height": 420})
        first.screenshot(path=os.environ[SCREENSHOT])
    server.assertNoErrorsLogged()


def test_markupInALineIsShownAsTextAndRunsNothing(
    launcher: Launcher, clients: Clients, browser: Browser
) -> None:
    """
    A line holding HTML and script, from a page or from C{nc}, shows in the
    other page as exactly that text, and nothing in it runs.
    """
    server = launcher.start(services=["chat", "web"])
    url = f"http://{LOOPBACK}:{server.webPort}/"
    attacker, attackerName = openPage(browser, url)
    victim, _ = openPage(browser, url)
    dialogs: list[str] = []
    victim.on("dialog", lambda dialog: dialogs.append(dialog.message))
    tcp = clients.chatUser(server.chatPort)

    image = "<img src=x onerror=alert(1)>"
    script = "<script>window.pwned = true</script>"
    say(attacker, image)
    tcp.send(script.encode() + b"\n")
    expectLine(victim, f"<{attackerName}> {image}")
    expectLine(victim, f"<{tcp.name}> {script}")
    assert victim.locator("#lines img, #lines script").count() == 0
    assert victim.evaluate("window.pwned") is None
    assert dialogs == []


def test_pageReconnectsAfterTheServerRestarts(
    launcher: Launcher, browser: Browser
) -> None:
    """
    When the server stops, the page says so and that it is reconnecting;
    once a server is back on the port it is in the room again, by itself,
    under the nick it had.
    """
    server = launcher.start(services=["web"])
    page, _ = openPage(browser, f"http://{LOOPBACK}:{server.webPort}/")
    say(page, "/nick bob")
    expectLine(page, "* you are now bob")

    server.stop()
    expectLine(page, "* server shutting down")
    expect(page.locator("#status")).to_contain_text("reconnecting in")
    expect(page.locator("#lines li.local").last).to_contain_text(
        "disconnected (the server is going away); reconnecting in 1 s"
    )
    # A new server on the same port, as a restart by systemd would be.
    command = netdemosCommand(
        serviceArguments({"web": [loopbackEndpoint(server.webPort)]})
    )
    launcher.spawn(command, server.ports).waitUntilListening()
    expect(page.locator("#status")).to_have_text("connected", timeout=30_000)
    expect(page.locator("#lines li").last).to_have_text("* you are now bob")


def test_pageFitsAPhoneWorksByKeyboardAndHasADarkMode(
    launcher: Launcher, browser: Browser
) -> None:
    """
    On a phone-sized screen the page does not scroll sideways; the box has
    the focus on arrival, so Enter alone sends; and in dark mode the page is
    dark with light text, as in light mode it is the other way round.
    """
    server = launcher.start(services=["web"])
    url = f"http://{LOOPBACK}:{server.webPort}/"
    colours = {}
    for scheme in ("light", "dark"):
        page, name = openPage(
            browser,
            url,
            viewport={"width": 360, "height": 640},
            color_scheme=scheme,
            is_mobile=True,
            has_touch=True,
        )
        assert page.evaluate("document.activeElement.id") == "text"
        page.keyboard.type("typed, and sent with Enter")
        page.keyboard.press("Enter")
        expectLine(page, f"<{name}> typed, and sent with Enter")
        assert page.evaluate("document.documentElement.scrollWidth") <= 360
        send = page.get_by_role("button", name="Send").bounding_box()
        assert send is not None and send["x"] + send["width"] <= 360
        colours[scheme] = page.evaluate(
            "[getComputedStyle(document.body).backgroundColor,"
            " getComputedStyle(document.body).color]"
        )
    assert luminance(colours["light"][0]) > luminance(colours["light"][1])
    assert luminance(colours["dark"][0]) < luminance(colours["dark"][1])


def luminance(colour: str) -> float:
    """
    The relative luminance of a CSS C{rgb(R, G, B)} colour, 0 to 1.
    """
    red, green, blue = (
        int(part) / 255 for part in colour[colour.index("(") + 1 : -1].split(",")
    )
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue


def test_pageOverTLSUsesSecureWebSocket(
    launcher: Launcher, certificate: Certificate, browser: Browser
) -> None:
    """
    Served on an C{ssl:} endpoint, the page connects with C{wss:}: a page
    over HTTPS may not open a plain C{ws:} connection.
    """
    server = launcher.start(services=["web"], tls=certificate)
    page, _ = openPage(
        browser, f"https://localhost:{server.webPort}/", ignore_https_errors=True
    )
    assert page.evaluate("location.protocol") == "https:"
