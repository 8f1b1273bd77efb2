"""
The load generators: plain sockets on one C{epoll}, as cheap as Python allows.

Every client is a non-blocking socket read with a large buffer; replies are
counted with C{bytes.count}, never parsed, so the generator spends its time in
system calls rather than in Python.  Each function drives one server port and
returns the figure the report shows.
"""

from __future__ import annotations

import errno
import re
import select
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

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


def connect(port: int, nodelay: bool = True) -> socket.socket:
    """
    A connected, then non-blocking, client socket.
    """
    s = socket.create_connection(("127.0.0.1", port))
    if nodelay:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.setblocking(False)
    return s


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
    port: int, count: int, events: int, nodelay: bool = True
) -> Iterator[tuple[list[socket.socket], dict[int, socket.socket], select.epoll]]:
    """
    Open C{count} connections to C{port}, each registered with one epoll;
    close them all, and the epoll, on the way out.
    """
    sockets = [connect(port, nodelay=nodelay) for _ in range(count)]
    poller = select.epoll()
    try:
        for s in sockets:
            poller.register(s.fileno(), events)
        yield sockets, {s.fileno(): s for s in sockets}, poller
    finally:
        poller.close()
        closeAll(sockets)


def echoPingPong(server: Server, seconds: float, clients: int = 50) -> dict[str, float]:
    """
    Messages per second, with one 64-byte message in flight per client.
    """
    size = 64
    message = b"p" * size
    window = Window(server, seconds)
    with connectPolled(server.port("echo"), clients, IN) as (sockets, byFd, poller):
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
) -> dict[str, float]:
    """
    Lines delivered per second, summed over all clients.

    The first C{senders} clients each keep C{inFlight} lines in flight: a line
    is in flight until it comes back to its own sender, recognised by a token
    only that sender puts in its lines.  Every client, senders included, counts
    the newlines it receives.  Fewer than about 16 in flight per sender leaves
    the server idle between round trips, measuring latency, not throughput.
    """
    with connectPolled(server.port("chat"), clients, IN) as (sockets, byFd, poller):
        # Let join announcements (netdemos makes some) pass before counting.
        server.waitIdle(quiet=0.2, timeout=30)
        drain(byFd, poller, 0.2)

        tokens: dict[int, bytes] = {}
        lines: dict[int, bytes] = {}
        tails: dict[int, bytes] = {}
        for i, s in enumerate(sockets[:senders]):
            fd = s.fileno()
            tokens[fd] = b"@S%d@" % (i,)
            lines[fd] = (tokens[fd] + b"." * 64)[:62] + b"\r\n"
            tails[fd] = b""
            s.send(lines[fd] * inFlight)

        window = Window(server, seconds)
        for fd, _ in window.events(poller, 0.5):
            data = recvOrFail(byFd[fd])
            window.count += data.count(b"\n")
            token = tokens.get(fd)
            if token is not None:
                data = tails[fd] + data
                back = data.count(token)
                tails[fd] = data[-(len(token) - 1) :]
                if back:
                    byFd[fd].send(lines[fd] * back)
    return window.result()


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
    poller = select.epoll()
    byFd: dict[int, socket.socket] = {}
    batch = 40
    began = time.perf_counter()
    deadline = began + settleTimeout

    def readFor(timeout: float, connecting: set[int]) -> None:
        for fd, event in poller.poll(timeout):
            if event & OUT and fd in connecting:
                connecting.discard(fd)
                poller.modify(fd, IN)
            if event & IN:
                recvOrFail(byFd[fd])

    try:
        while len(byFd) < clients:
            connecting = set()
            for _ in range(min(batch, clients - len(byFd))):
                s = startConnecting(port)
                byFd[s.fileno()] = s
                connecting.add(s.fileno())
                poller.register(s.fileno(), IN | OUT)
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
    finally:
        # Stop the server first: with the clients gone first, each departure
        # would be announced to everyone still connected.
        server.stop()
        poller.close()
        closeAll(list(byFd.values()))
    return {"rss": rssPerClient, "settle": settled, "fanout": fanOut}


def connectionBurst(server: Server, clients: int, timeout: float) -> float:
    """
    Seconds until C{clients} echo connections, opened at once, are all served.

    A connection counts as accepted when a byte sent on it comes back: only
    then has the server called C{accept} for it.  Connections the listen queue
    had no room for wait for the client's SYN retransmission (1 s, then 3 s,
    ...), which is what a small backlog costs.
    """
    port = server.port("echo")
    poller = select.epoll()
    byFd: dict[int, socket.socket] = {}
    waiting: set[int] = set()

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
                waiting.discard(fd)
                poller.unregister(fd)

    began = time.perf_counter()
    try:
        for i in range(clients):
            s = startConnecting(port)
            byFd[s.fileno()] = s
            waiting.add(s.fileno())
            poller.register(s.fileno(), IN | OUT)
            if i % 500 == 499:
                serve(0)
        while waiting:
            if time.perf_counter() - began > timeout:
                raise LoadError(f"{len(waiting)} of {clients} not served in time")
            serve(0.5)
        return time.perf_counter() - began
    finally:
        server.stop()
        poller.close()
        closeAll(list(byFd.values()))
