"""
The load generators: plain sockets on one C{epoll}, as cheap as Python allows.

Every client is a non-blocking socket read with a large buffer; replies are
counted with C{bytes.count}, never parsed, so the generator spends its time in
system calls rather than in Python.  Each function drives one server port and
returns the figure the report shows.
"""

from __future__ import annotations

import errno
import functools
import math
import re
import select
import shutil
import socket
import statistics
import struct
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.servers import Server, acceptQueueLength, pinToGeneratorCPU

RECV_SIZE = 256 * 1024
WARMUP = 0.5
SPIN = 0

IN = select.EPOLLIN
OUT = select.EPOLLOUT


class Window:
    """
    The counting window: C{WARMUP} seconds of load, then C{seconds} counted.

    It also records how busy the server was while counting, so the report can
    show whether the server, not the generator, was the bottleneck.
    """

    def __init__(self, server: Server, seconds: float) -> None:
        self.server = server
        self.opensAt = time.perf_counter() + WARMUP
        self.closesAt = self.opensAt + seconds
        self.isOpen = False
        self.justOpened = False
        self._cpuAtOpen = 0.0
        self.serverBusy = 0.0
        # What the load counts (messages, bytes, lines); zeroed as the window
        # opens, so the warm-up does not count.
        self.count = 0

    def events(self, poller: select.epoll, timeout: float) -> Iterator[tuple[int, int]]:
        """
        The poller's events, until the window closes.
        """
        while self.running():
            if self.justOpened:
                self.count = 0
            yield from poller.poll(timeout)

    def running(self) -> bool:
        now = time.perf_counter()
        self.justOpened = False
        if not self.isOpen and now >= self.opensAt:
            self.isOpen = self.justOpened = True
            self.opensAt = now
            self._cpuAtOpen = self.server.cpuSeconds()
        if now < self.closesAt:
            return True
        used = self.server.cpuSeconds() - self._cpuAtOpen
        self.serverBusy = used / (now - self.opensAt)
        return False

    def result(self, scale: float = 1.0) -> dict[str, float]:
        return {
            "rate": self.count * scale / (self.closesAt - self.opensAt),
            "busy": self.serverBusy,
        }


class LoadError(RuntimeError):
    """
    The server misbehaved under load (closed a client, stalled, ...).
    """


# A WebSocket handshake (RFC 6455's sample key: the server's answer is not
# checked, only its status).
WEBSOCKET_REQUEST = (
    b"GET %s HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n"
)
TEXT, BINARY = 0x1, 0x2


def connect(
    port: int, nodelay: bool = True, webSocket: bytes | None = None
) -> socket.socket:
    """
    A connected, then non-blocking, client socket; a WebSocket to the path
    C{webSocket}, if given.
    """
    s = socket.create_connection(("127.0.0.1", port))
    if nodelay:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if webSocket is not None:
        s.sendall(WEBSOCKET_REQUEST % (webSocket,))
        response = b""
        while b"\r\n\r\n" not in response:
            data = s.recv(4096)
            if not data:
                raise LoadError("the server closed a WebSocket handshake")
            response += data
        if not response.startswith(b"HTTP/1.1 101 "):
            raise LoadError(f"WebSocket refused: {response[:40]!r}")
    s.setblocking(False)
    return s


def clientFrame(opcode: int, payload: bytes) -> bytes:
    """
    One WebSocket frame as a client sends it: masked, as clients must, with
    the all-zero mask, so the payload goes as it is and costs no work here.
    """
    assert len(payload) < 126
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + b"\0\0\0\0" + payload


def startConnecting(port: int) -> socket.socket:
    """
    Begin a non-blocking connect to C{port}; the caller polls for completion.
    """
    s = socket.socket()
    s.setblocking(False)
    code = s.connect_ex(("127.0.0.1", port))
    if code not in (0, errno.EINPROGRESS):
        s.close()
        raise LoadError(f"connect failed: {errno.errorcode[code]}")
    return s


def closeAll(sockets: list[socket.socket]) -> None:
    # SO_LINGER 0 resets instead of closing, so thousands of closed clients
    # leave no TIME_WAIT behind to exhaust ephemeral ports in later rounds.
    linger = struct.pack("ii", 1, 0)
    for s in sockets:
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        except OSError:
            pass
        s.close()


def recvOrFail(s: socket.socket) -> bytes:
    try:
        data = s.recv(RECV_SIZE)
    except BlockingIOError:
        return b""
    if not data:
        raise LoadError("the server closed a client connection")
    return data


def drain(
    sockets: dict[int, socket.socket], poller: select.epoll, quiet: float
) -> None:
    """
    Read and discard until nothing arrives for C{quiet} seconds.
    """
    while True:
        events = poller.poll(quiet)
        if not events:
            return
        for fd, _ in events:
            recvOrFail(sockets[fd])


@contextmanager
def connectPolled(
    port: int,
    count: int,
    events: int,
    nodelay: bool = True,
    webSocket: bytes | None = None,
) -> Iterator[tuple[list[socket.socket], dict[int, socket.socket], select.epoll]]:
    """
    Open C{count} connections to C{port} (WebSockets to the path C{webSocket},
    if given), each registered with one epoll; close them all, and the epoll,
    on the way out.
    """
    sockets = [connect(port, nodelay, webSocket) for _ in range(count)]
    poller = select.epoll()
    try:
        for s in sockets:
            poller.register(s.fileno(), events)
        yield sockets, {s.fileno(): s for s in sockets}, poller
    finally:
        poller.close()
        closeAll(sockets)


@contextmanager
def clientSockets(
    server: Server,
) -> Iterator[tuple[select.epoll, dict[int, socket.socket]]]:
    """
    An epoll and a map of client sockets by file descriptor, for a load to
    fill; on the way out C{server} is stopped, then the sockets are closed.

    The server goes first: with the clients gone first, each departure would
    be announced to everyone still connected.
    """
    poller = select.epoll()
    byFd: dict[int, socket.socket] = {}
    try:
        yield poller, byFd
    finally:
        server.stop()
        poller.close()
        closeAll(list(byFd.values()))


def echoPingPong(
    server: Server, seconds: float, clients: int = 50, webSocket: bool = False
) -> dict[str, float]:
    """
    Messages per second, with one 64-byte message in flight per client; over
    WebSocket (C{/echo}, binary messages) if C{webSocket}.
    """
    message = b"p" * 64
    port, path = server.port("echo"), None
    if webSocket:
        port, path = server.port("web"), b"/echo"
        message = clientFrame(BINARY, message)
    # What comes back: the same bytes, or for WebSocket an unmasked frame.
    size = len(message) - 4 if webSocket else len(message)
    window = Window(server, seconds)
    with connectPolled(port, clients, IN, webSocket=path) as (sockets, byFd, poller):
        owed = dict.fromkeys(byFd, size)
        for s in sockets:
            s.send(message)
        for fd, _ in window.events(poller, SPIN):
            s = byFd[fd]
            left = owed[fd] - len(recvOrFail(s))
            while left <= 0:
                left += size
                window.count += 1
                s.send(message)
            owed[fd] = left
    return window.result()


ECHOLOAD_SOURCE = Path(__file__).with_name("echoload.c")


@functools.cache
def echoLoadProgram() -> str | None:
    """
    The C echo load generator (C{bench/echoload.c}), compiled once per run
    into a temporary directory; L{None} if there is no C compiler.
    """
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return None
    built = Path(tempfile.mkdtemp(prefix="netdemos-bench-")) / "echoload"
    subprocess.run(
        [compiler, "-O2", "-o", str(built), str(ECHOLOAD_SOURCE)], check=True
    )
    return str(built)


def echoLoad(server: Server, seconds: float, *arguments: str) -> dict[str, float]:
    """
    Run the C generator against the server's echo port, pinned to the
    generator CPU; the server's CPU time is read as its window opens and
    closes.
    """
    program = echoLoadProgram()
    assert program is not None
    port = str(server.port("echo"))
    mode, *rest = arguments
    argv = [program, mode, port, *rest[:2], str(WARMUP), f"{seconds:g}", *rest[2:]]
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, text=True, preexec_fn=pinToGeneratorCPU
    ) as generator:
        assert generator.stdout is not None
        opened = generator.stdout.readline()
        cpuAtOpen = server.cpuSeconds()
        closed = generator.stdout.readline()
        cpuAtClose = server.cpuSeconds()
    if opened.strip() != "open" or generator.returncode != 0:
        raise LoadError(f"echoload failed ({generator.returncode}): {closed!r}")
    _, count, _, elapsed = closed.split()
    return {
        "rate": int(count) / float(elapsed),
        "busy": (cpuAtClose - cpuAtOpen) / float(elapsed),
    }


def echoPingPongInC(server: Server, seconds: float) -> dict[str, float]:
    """
    L{echoPingPong}'s load from the C generator: messages per second, 50
    clients with one 64-byte message in flight each.
    """
    return echoLoad(server, seconds, "pingpong", "50", "64")


def echoBulkInC(server: Server, seconds: float) -> dict[str, float]:
    """
    L{echoBulk}'s load from the C generator: megabytes (10**6) echoed per
    second, 4 clients with 8 messages of 16 KiB in flight each.
    """
    result = echoLoad(server, seconds, "bulk", "4", str(16 * 1024), "8")
    return {**result, "rate": result["rate"] * 1e-6}


def udpEcho(
    server: Server, seconds: float, inFlight: int = 32, size: int = 64
) -> dict[str, float]:
    """
    Datagrams echoed per second, one client keeping C{inFlight} datagrams of
    C{size} bytes in flight; if none comes back for a while, those in flight
    are taken as lost and sent afresh.
    """
    message = b"u" * size
    window = Window(server, seconds)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.connect(("127.0.0.1", server.port("echo-udp")))
        client.setblocking(False)
        with select.epoll() as poller:
            poller.register(client.fileno(), IN)
            for _ in range(inFlight):
                client.send(message)
            while window.running():
                if window.justOpened:
                    window.count = 0
                if not poller.poll(0.2):
                    for _ in range(inFlight):  # all lost: start again
                        client.send(message)
                    continue
                while True:
                    try:
                        client.recv(size)
                    except BlockingIOError:
                        break
                    window.count += 1
                    client.send(message)
    return window.result()


def echoBulk(
    server: Server,
    seconds: float,
    clients: int = 4,
    size: int = 16 * 1024,
    inFlight: int = 8,
) -> dict[str, float]:
    """
    Megabytes (10**6) echoed per second, C{inFlight} messages in flight each.

    The payload is all one byte, so only counts are kept: bytes still to send
    and bytes sent but not yet echoed.
    """
    chunk = memoryview(b"b" * (size * inFlight))
    window = Window(server, seconds)
    with connectPolled(server.port("echo"), clients, IN | OUT, nodelay=False) as (
        _,
        byFd,
        poller,
    ):
        toSend = dict.fromkeys(byFd, size * inFlight)
        received = dict.fromkeys(byFd, 0)
        for fd, event in window.events(poller, 0.5):
            s = byFd[fd]
            if event & IN:
                n = len(recvOrFail(s))
                window.count += n
                # Each whole message echoed frees a slot for a new one.
                done, received[fd] = divmod(received[fd] + n, size)
                toSend[fd] += done * size
            if toSend[fd]:
                try:
                    toSend[fd] -= s.send(chunk[: toSend[fd]])
                except BlockingIOError:
                    pass
            poller.modify(fd, IN | OUT if toSend[fd] else IN)
    return window.result(scale=1e-6)


def httpWrk(server: Server, seconds: float, connections: int = 50) -> dict[str, float]:
    """
    Requests per second as measured by C{wrk -t1}, pinned to the generator CPU.
    """
    url = f"http://127.0.0.1:{server.port('http')}/"
    cpuBefore = server.cpuSeconds()
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", url]
    out = subprocess.run(
        argv, capture_output=True, text=True, check=True, preexec_fn=pinToGeneratorCPU
    ).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if match is None or "Non-2xx" in out or "Socket errors" in out:
        raise LoadError(f"wrk reported a problem:\n{out}")
    busy = (server.cpuSeconds() - cpuBefore) / seconds
    return {"rate": float(match.group(1)), "busy": busy}


def httpKeepAlive(
    server: Server, seconds: float, connections: int = 50
) -> dict[str, float]:
    """
    Requests per second from our own client, one request in flight each.

    The fallback when C{wrk} is not installed.  A response is counted when its
    status line arrives; the small body comes in the same segment.
    """
    request = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
    marker = b"HTTP/1.1 "
    window = Window(server, seconds)
    port = server.port("http")
    with connectPolled(port, connections, IN) as (sockets, byFd, poller):
        tails = dict.fromkeys(byFd, b"")
        for s in sockets:
            s.send(request)
        for fd, _ in window.events(poller, 0.5):
            s = byFd[fd]
            data = tails[fd] + recvOrFail(s)
            responses = data.count(marker)
            tails[fd] = data[-(len(marker) - 1) :]
            if responses:
                window.count += responses
                s.send(request * responses)
    return window.result()


def httpLoad() -> Callable[[Server, float], dict[str, float]]:
    return httpWrk if shutil.which("wrk") else httpKeepAlive


def chatFanOut(
    server: Server,
    seconds: float,
    clients: int = 200,
    senders: int = 4,
    inFlight: int = 16,
    webSocket: bool = False,
) -> dict[str, float]:
    """
    Lines delivered per second, summed over all clients; over WebSocket
    (C{/chat}) if C{webSocket}.

    The first C{senders} clients each keep C{inFlight} lines in flight: a line
    is in flight until it comes back to its own sender, recognised by a token
    only that sender puts in its lines.  Every client, senders included, counts
    the newlines it receives (over WebSocket, the text frames: each line is one,
    and its ASCII text never holds the byte 0x81 that starts one).  Fewer than
    about 16 in flight per sender leaves the server idle between round trips,
    measuring latency, not throughput.
    """
    port, path, lineEnd = server.port("chat"), None, b"\n"
    if webSocket:
        port, path, lineEnd = server.port("web"), b"/chat", b"\x81"
    with connectPolled(port, clients, IN, webSocket=path) as (sockets, byFd, poller):
        # Let join announcements (netdemos makes some) pass before counting.
        server.waitIdle(quiet=0.2, timeout=30)
        drain(byFd, poller, 0.2)

        tokens: dict[int, bytes] = {}
        lines: dict[int, bytes] = {}
        tails: dict[int, bytes] = {}
        for i, s in enumerate(sockets[:senders]):
            fd = s.fileno()
            tokens[fd] = b"@S%d@" % (i,)
            line = (tokens[fd] + b"." * 64)[:62]
            lines[fd] = clientFrame(TEXT, line) if webSocket else line + b"\r\n"
            tails[fd] = b""
            s.send(lines[fd] * inFlight)

        window = Window(server, seconds)
        for fd, _ in window.events(poller, 0.5):
            data = recvOrFail(byFd[fd])
            window.count += data.count(lineEnd)
            resend(byFd[fd], data, tokens.get(fd), tails, lines)
    return window.result()


def chatLoadTest(
    server: Server, seconds: float, readers: int = 2, lineSize: int = 500
) -> dict[str, float]:
    """
    Lines delivered per second to C{readers} clients that read everything,
    while one client sends C{lineSize}-byte lines as fast as TCP takes them
    (and reads and discards what it is sent); and how many of the readers
    were still connected at the end (C{kept}).

    A room that lets the sender outrun its readers drops them and delivers
    nothing more; one that holds the sender back delivers at the readers'
    pace.
    """
    port = server.port("chat")
    block = memoryview((b"x" * (lineSize - 2) + b"\r\n") * 256)
    offset = 0
    with connectPolled(port, readers + 1, IN) as (sockets, byFd, poller):
        server.waitIdle(quiet=0.2, timeout=30)
        drain(byFd, poller, 0.2)
        sender = sockets[0]
        poller.modify(sender.fileno(), IN | OUT)
        gone: set[int] = set()
        window = Window(server, seconds)
        for fd, event in window.events(poller, 0.5):
            s = byFd[fd]
            if event & OUT:
                try:
                    offset = (offset + s.send(block[offset:])) % lineSize
                except (BlockingIOError, ConnectionError):
                    pass
            if not event & (IN | select.EPOLLHUP | select.EPOLLERR):
                continue
            try:
                data = s.recv(RECV_SIZE)
            except BlockingIOError:
                continue
            except ConnectionError:
                data = b""
            if not data:
                poller.unregister(fd)
                gone.add(fd)
            elif s is not sender:
                window.count += data.count(b"\n")
        kept = sum(1 for s in sockets[1:] if s.fileno() not in gone)
    return {**window.result(), "kept": kept}


def resend(
    s: socket.socket,
    data: bytes,
    token: bytes | None,
    tails: dict[int, bytes],
    lines: dict[int, bytes],
) -> None:
    """
    A sender keeps its lines in flight: for each of its own lines that came
    back (C{token} in C{data}, which may be split between reads), send one more.
    """
    if token is None:
        return
    fd = s.fileno()
    data = tails[fd] + data
    back = data.count(token)
    tails[fd] = data[-(len(token) - 1) :]
    if back:
        s.send(lines[fd] * back)


def chatIdle(server: Server, clients: int, settleTimeout: float) -> dict[str, float]:
    """
    Connect C{clients} idle chat clients, then time one line reaching them all.

    Returns the server's RSS growth per connection (bytes), the seconds from the
    first connect until the server is idle again with everyone in, and the
    seconds for one line from the first client to reach every client.

    Clients connect in batches smaller than Twisted's default listen backlog
    (50), and each batch waits until the server has accepted all of it, so no
    handshake is dropped: an idle client whose handshake the server dropped
    would look connected but never be in the room.  All the while every
    client reads what the server sends, as real idle clients would.
    """
    rssBefore = server.rssBytes()
    port = server.port("chat")
    batch = 40
    began = time.perf_counter()
    deadline = began + settleTimeout
    with clientSockets(server) as (poller, byFd):

        def readFor(timeout: float, connecting: set[int]) -> None:
            for fd, event in poller.poll(timeout):
                if event & OUT and fd in connecting:
                    connecting.discard(fd)
                    poller.modify(fd, IN)
                if event & IN:
                    recvOrFail(byFd[fd])

        while len(byFd) < clients:
            count = min(batch, clients - len(byFd))
            connecting = set(connectAtOnce(port, count, poller, byFd))
            while connecting or acceptQueueLength(port):
                if time.perf_counter() > deadline:
                    raise LoadError(f"only {len(byFd) - len(connecting)} connected")
                readFor(0.002, connecting)
        # Wait for the server to finish whatever joining costs it, reading all
        # the while so that no client looks slow.
        quiet = 0.3
        cpu, mark = server.cpuSeconds(), time.perf_counter()
        while True:
            for fd, _ in poller.poll(0.05):
                recvOrFail(byFd[fd])
            now = time.perf_counter()
            if now - mark >= quiet:
                used = server.cpuSeconds()
                if used - cpu < quiet * 0.05:
                    break
                cpu, mark = used, now
            if now > deadline:
                raise LoadError(f"server still busy after {settleTimeout:g}s")
        drain(byFd, poller, 0.05)
        settled = mark - began
        rssPerClient = (server.rssBytes() - rssBefore) / clients

        token = b"@IDLE@"
        missing = set(byFd)
        tails = dict.fromkeys(byFd, b"")
        first = next(iter(byFd.values()))
        sent = time.perf_counter()
        first.send(token + b" hello everyone\r\n")
        while missing:
            if time.perf_counter() - sent > settleTimeout:
                raise LoadError(f"line reached only {clients - len(missing)}")
            for fd, _ in poller.poll(0.5):
                data = tails[fd] + recvOrFail(byFd[fd])
                if token in data:
                    missing.discard(fd)
                tails[fd] = data[-(len(token) - 1) :]
        fanOut = time.perf_counter() - sent
    return {"rss": rssPerClient, "settle": settled, "fanout": fanOut}


def connectAtOnce(
    port: int,
    count: int,
    poller: select.epoll,
    byFd: dict[int, socket.socket],
    serve: Callable[[float], None] = lambda timeout: None,
) -> list[int]:
    """
    Begin C{count} non-blocking connects to C{port} as fast as possible.

    Each socket joins C{byFd} and C{poller} (for C{IN | OUT}: C{OUT} says the
    connect completed).  C{serve(0)} runs every few hundred connects, so the
    first connections can be served while the rest are still being opened.
    Returns their file descriptors.
    """
    opened = []
    for i in range(count):
        s = startConnecting(port)
        byFd[s.fileno()] = s
        opened.append(s.fileno())
        poller.register(s.fileno(), IN | OUT)
        if i % 500 == 499:
            serve(0)
    return opened


def connectionBurst(server: Server, clients: int, timeout: float) -> float:
    """
    Seconds until C{clients} echo connections, opened at once, are all served.

    A connection counts as accepted when a byte sent on it comes back: only
    then has the server called C{accept} for it.  Connections the listen queue
    had no room for wait for the client's SYN retransmission (1 s, then 3 s,
    ...), which is what a small backlog costs.
    """
    port = server.port("echo")
    served: set[int] = set()
    with clientSockets(server) as (poller, byFd):

        def serve(timeoutNow: float) -> None:
            for fd, event in poller.poll(timeoutNow):
                s = byFd[fd]
                if event & (select.EPOLLERR | select.EPOLLHUP):
                    code = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    raise LoadError(f"connection failed: {errno.errorcode.get(code)}")
                if event & OUT:
                    s.send(b"x")
                    poller.modify(fd, IN)
                elif event & IN and recvOrFail(s):
                    served.add(fd)
                    poller.unregister(fd)

        began = time.perf_counter()
        connectAtOnce(port, clients, poller, byFd, serve)
        while len(served) < clients:
            if time.perf_counter() - began > timeout:
                missing = clients - len(served)
                raise LoadError(f"{missing} of {clients} not served in time")
            serve(0.5)
        return time.perf_counter() - began


HERALD = b"@HERALD@"
HERALD_PERIOD = 0.05
# The start of a line a joining client never finishes, so no room shows it.
UNFINISHED_LINE = b" "


def chatJoin(server: Server, clients: int, timeout: float) -> dict[str, float]:
    """
    Seconds from the first of C{clients} chat connects, opened at once, until
    every one of them has received something from the room; and the server's
    CPU seconds meanwhile.

    A room sends a client nothing before it is in, so a client's first data
    proves it was admitted.  netdemos greets each newcomer with a welcome line;
    the naive room says nothing on join, but takes a client in the moment it
    accepts its connection.  So a herald, in the room before the burst, says a
    line as soon as the server holds a socket for every client (as
    C{/proc/PID/fd} shows), and again, if anyone missed it, once it has come
    back to the herald.  The naive figure is then its last accept plus one
    fan-out, without a line said to a half-full room to slow it down; netdemos
    hears the herald too, but its welcomes come first.

    On connecting, each client sends the start of a line it never finishes.
    Under a burst the kernel answers some handshakes with SYN cookies, and a
    connection whose last ACK met a full accept queue exists only on the
    client's side until the client sends something (its retransmissions then
    get it in): without this, the naive room, with Twisted's listen backlog
    of 50, never admits about a tenth of 2000 silent clients.  Every client
    reads all it is sent, so none is slow.
    """
    port = server.port("chat")
    admitted: set[int] = set()
    heard = b""
    with clientSockets(server) as (poller, byFd):
        herald = connect(port)
        byFd[herald.fileno()] = herald
        poller.register(herald.fileno(), IN)

        def serve(timeoutNow: float) -> None:
            nonlocal heard
            for fd, event in poller.poll(timeoutNow):
                if event & (select.EPOLLERR | select.EPOLLHUP):
                    raise LoadError(f"{len(admitted)} of {clients} admitted")
                if event & OUT:
                    byFd[fd].send(UNFINISHED_LINE)
                    poller.modify(fd, IN)
                if event & IN:
                    data = recvOrFail(byFd[fd])
                    if fd == herald.fileno():
                        heard = heard[-len(HERALD) :] + data
                    else:
                        admitted.add(fd)

        def heraldSays() -> None:
            nonlocal heard
            heard = b""
            herald.send(HERALD + b" is everyone here?\r\n")

        # The herald's first line coming back proves it is in the room.
        heraldSays()
        began = time.perf_counter()
        while HERALD not in heard:
            if time.perf_counter() - began > timeout:
                raise LoadError("the herald never heard itself")
            serve(0.5)
        everyone = server.openFiles() + clients

        began, cpuBefore = time.perf_counter(), server.cpuSeconds()
        connectAtOnce(port, clients, poller, byFd, serve)
        said = -math.inf
        while len(admitted) < clients:
            now = time.perf_counter()
            if now - began > timeout:
                raise LoadError(f"{len(admitted)} of {clients} admitted in time")
            back = HERALD in heard or said == -math.inf
            if back and now - said >= HERALD_PERIOD:
                if server.openFiles() >= everyone:
                    heraldSays()
                    said = now
            serve(0.005)
        return {
            "join": time.perf_counter() - began,
            "cpu": server.cpuSeconds() - cpuBefore,
        }


PROBE_REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
FLOOD = b"/nick fa\r\n/nick fb\r\n"


class Probe:
    """
    HTTP GETs one after another, each on a new connection, as a visitor or a
    health check makes them, timed from the connect until the server closes
    the connection after its response.
    """

    def __init__(self, port: int, poller: select.epoll) -> None:
        self.port = port
        self.poller = poller
        self.latencies: list[float] = []
        self.socket: socket.socket | None = None
        self.fd = -1
        self.startedAt = 0.0
        self.response = b""

    def start(self) -> None:
        self.socket = startConnecting(self.port)
        self.fd = self.socket.fileno()
        self.poller.register(self.fd, OUT)
        self.startedAt = time.perf_counter()
        self.response = b""

    def handle(self, event: int) -> None:
        """
        Carry the GET in flight one step further, given its poll event.
        """
        assert self.socket is not None
        if event & OUT:
            self.socket.send(PROBE_REQUEST)
            self.poller.modify(self.fd, IN)
            return
        data = self.socket.recv(RECV_SIZE)
        if data:
            self.response += data
            return
        self.latencies.append(time.perf_counter() - self.startedAt)
        if not self.response.startswith(b"HTTP/1.1 200 "):
            raise LoadError(f"HTTP answered {self.response[:40]!r}")
        self.stop()

    def stop(self) -> None:
        if self.socket is not None:
            self.poller.unregister(self.fd)
            closeAll([self.socket])
            self.socket = None


def chatFlood(
    server: Server, seconds: float, clients: int = 1000, answerWithin: float = 30.0
) -> dict[str, float]:
    """
    The worst and the median latency of HTTP GETs (see L{Probe}) while one
    client floods C{/nick} commands into a chat room of C{clients} others.

    The others are idle and never read.  The flooder writes renames for
    C{seconds}, as fast as TCP takes them, and reads and discards what it is
    sent, so nothing but the server slows it down.  Its lines end in CRLF, as
    the naive room (a L{LineReceiver}) needs; to that room they are plain
    lines, relayed to everyone.  One GET before the flood is not timed: a
    server's first request pays for lazy imports, not for the flood.  The GET
    in flight when the flood ends is waited for, up to C{answerWithin}
    seconds; if it is still unanswered then, the time it waited counts (a
    lower bound: the server is frozen, whatever the exact figure).
    """
    chatPort = server.port("chat")
    # Whole lines, whatever part of the payload a send takes.
    payload = memoryview(FLOOD * 4096)
    offset = 0
    with connectPolled(chatPort, clients, IN):
        server.waitIdle(quiet=0.2, timeout=30)
        with connectPolled(chatPort, 1, IN, nodelay=False) as ((flooder,), _, poller):
            probe = Probe(server.port("http"), poller)

            def serve(flooding: bool) -> None:
                nonlocal offset
                for fd, event in poller.poll(0.05):
                    if fd == probe.fd:
                        probe.handle(event)
                        if flooding and probe.socket is None:
                            probe.start()
                        continue
                    if event & IN:
                        recvOrFail(flooder)
                    if event & OUT:
                        try:
                            sent = flooder.send(payload[offset:])
                        except BlockingIOError:
                            continue
                        offset = (offset + sent) % len(FLOOD)

            def answered() -> bool:
                deadline = time.perf_counter() + answerWithin
                while probe.socket is not None:
                    if time.perf_counter() > deadline:
                        return False
                    serve(False)
                return True

            try:
                probe.start()
                if not answered():
                    raise LoadError(f"no HTTP answer in {answerWithin:g}s")
                probe.latencies.clear()
                poller.modify(flooder.fileno(), IN | OUT)
                probe.start()
                floodEnds = time.perf_counter() + seconds
                while time.perf_counter() < floodEnds:
                    serve(True)
                poller.modify(flooder.fileno(), IN)
                if not answered():
                    probe.latencies.append(time.perf_counter() - probe.startedAt)
            finally:
                probe.stop()
    return {
        "worst": max(probe.latencies),
        "median": statistics.median(probe.latencies),
    }
