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
import os
import select
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
import websockets
from e2e_support import (
    EXIT_TIMEOUT,
    LINE_TIMEOUT,
    LOOPBACK,
    START_TIMEOUT,
    Launcher,
    Netdemos,
)
from operator_support import (
    OperatorLauncher,
    httpGet,
    makeCertificate,
    metricsPort,
    sample,
    scrapeMetrics,
)
from websockets.asyncio.client import ClientConnection, connect
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


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    with ExitStack() as stack:
        yield stack


@pytest.fixture
def launcher(tmp_path: Path, stack: ExitStack) -> Launcher:
    return Launcher(tmp_path, stack)


def address(server: Netdemos, path: str, scheme: str = "ws") -> str:
    return f"{scheme}://{LOOPBACK}:{server.webPort}{path}"


def connectTo(
    server: Netdemos, path: str, scheme: str = "ws", **options: object
) -> connect:
    """
    Open a C{websockets} client connection to C{path} on C{server}'s web port.
    """
    return connect(
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
        self.connection = socket.socket()
        if receiveBuffer is not None:
            # Set before connecting, so that it bounds the window TCP offers.
            for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                self.connection.setsockopt(socket.SOL_SOCKET, option, receiveBuffer)
        self.connection.settimeout(START_TIMEOUT)
        self.connection.connect((LOOPBACK, port))
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


# Echo


def test_echoRoundTripsTextAndBinaryUpToOneMebibyte(launcher: Launcher) -> None:
    """
    Text comes back as text and binary as binary, up to the 1 MiB default
    limit, in order, on one connection.

    That is what an operator's WebSocket probe checks of a proxy in between.
    """
    server = launcher.start(web=1)

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
    server = launcher.start(web=1, extra=["--max-line=1000"])

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
    server = launcher.start(web=1)
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
    server = launcher.start(web=1)
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
    server = launcher.start(web=1, extra=["--ws-ping=0.5"])

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


def test_slowWebSocketReaderIsDroppedAsATCPOneIs(launcher: Launcher) -> None:
    """
    A browser tab that stops reading while the room is busy is dropped past
    C{--chat-backlog}, and the others are told; TCP users in the same room
    see it go, and keep receiving.
    """
    server = launcher.start(chat=1, web=1, extra=["--chat-backlog=65536"])
    talker = launcher.chatUser(server.chatPort)
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


def test_thousandWebSocketClientsAllReceiveALine(launcher: Launcher) -> None:
    """
    1000 browsers at once in the room: one line from a TCP client reaches
    every one of them.
    """
    server = launcher.start(chat=1, web=1)
    speaker = launcher.chatUser(server.chatPort)
    wanted = f"<{speaker.name}> hello, everyone"

    async def crowd() -> float:
        handshakes = asyncio.Semaphore(100)

        async def join() -> ClientConnection:
            async with handshakes:
                client = await connectTo(server, "/chat", ping_interval=None)
                await client.recv()  # the welcome: it is in the room
                return client

        clients = await asyncio.gather(*(join() for _ in range(1000)))
        try:
            started = time.monotonic()
            await asyncio.to_thread(speaker.send, b"hello, everyone\n")
            await asyncio.gather(*(receiveUntil(c, wanted) for c in clients))
            return time.monotonic() - started
        finally:
            await asyncio.gather(*(c.close() for c in clients))

    took = asyncio.run(crowd())
    print(f"one line reached 1000 WebSocket clients in {took * 1000:.0f} ms")
    server.assertNoErrorsLogged()


def test_gracefulStopTellsBrowsers(launcher: Launcher) -> None:
    """
    On SIGTERM a browser hears the server is going away, and is closed; the
    server does not wait out its shutdown timeout for it.
    """
    server = launcher.start(web=1, extra=["--shutdown-timeout=20"])

    async def stop() -> None:
        async with connectTo(server, "/chat") as client:
            await client.recv()  # the welcome
            started = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            await receiveUntil(client, "* server shutting down")
            assert await closeCode(client) == 1000
            await asyncio.to_thread(server.process.wait, EXIT_TIMEOUT)
            assert time.monotonic() - started < 10

    asyncio.run(stop())
    server.assertNoErrorsLogged()


# Security


def test_foreignOriginGets403(launcher: Launcher) -> None:
    """
    A page from another site cannot open C{/chat} or C{/echo} (403); the
    page's own origin, and one given with C{--web-origin}, can.
    """
    server = launcher.start(web=1, extra=["--web-origin=https://chat.example"])
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


def test_webCountsAndReadiness(tmp_path: Path, stack: ExitStack) -> None:
    """
    With the web service on, C{/readyz} answers 200 once it listens, and its
    WebSockets are counted under C{service="web"} while they are open.
    """
    launcher = OperatorLauncher(tmp_path, stack)
    server = launcher.start(services=("web",), metrics=True)
    assert httpGet(metricsPort(server), "/readyz")[0] == 200

    async def counted() -> None:
        async with connectTo(server, "/echo") as client:
            await client.send("x")
            await client.recv()
            metrics = scrapeMetrics(metricsPort(server))
            assert sample(metrics, "netdemos_connections_active", service="web") == 1

    asyncio.run(counted())


def test_secureWebSocketOverTLS(tmp_path: Path, stack: ExitStack) -> None:
    """
    On an C{ssl:} endpoint the page is served over HTTPS, and echo works as
    C{wss:}.
    """
    certificate = makeCertificate(tmp_path / "tls")
    launcher = OperatorLauncher(tmp_path, stack)
    server = launcher.start(services=("web",), tls=certificate)
    context = certificate.clientContext()

    async def secure() -> None:
        async with connectTo(server, "/echo", "wss", ssl=context) as client:
            await client.send("over TLS")
            assert await client.recv() == "over TLS"

    asyncio.run(secure())
    with socket.create_connection((LOOPBACK, server.webPort)) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
            assert tls.recv(100).startswith(b"HTTP/1.0 200 ")
