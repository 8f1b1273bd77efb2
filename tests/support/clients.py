"""
Clients of a running netdemos, made of plain sockets: connections, chat users
and the lines they receive, HTTP requests, echo round trips and floods, TLS.
"""

from __future__ import annotations

import http.client
import resource
import select
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field

import pytest

from support import LINE_TIMEOUT
from support.certificates import Certificate
from support.running import LOOPBACK, START_TIMEOUT, readUntilClosed


def bracketed(host: str) -> str:
    """
    C{host} as it stands before C{:PORT}: an IPv6 address in brackets.
    """
    return f"[{host}]" if ":" in host else host


def connect(
    port: int,
    host: str = LOOPBACK,
    receiveBuffer: int | None = None,
    timeout: float = LINE_TIMEOUT,
    source: str | None = None,
) -> socket.socket:
    """
    Connect to C{port} on C{host}, once, with no retry; C{timeout} is the new
    socket's.

    @param receiveBuffer: if given, the receive buffer to ask for, which
        bounds the window TCP offers the server.
    @param source: if given, the address to connect from, such as another
        loopback address (C{127.0.0.5}), which the room names the client by.
    """
    connection = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        if receiveBuffer is not None:
            # Set before connecting, so that it bounds the window TCP offers.
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receiveBuffer)
        if source is not None:
            connection.bind((source, 0))
        connection.settimeout(timeout)
        connection.connect((host, port))
    except BaseException:
        connection.close()
        raise
    return connection


@dataclass
class LineCollector:
    """
    Read CRLF-terminated lines from a socket in a background thread, keeping
    every byte and every line, so a test can wait for a line and afterwards
    check everything that arrived before it.

    @ivar bytesPerSecond: if given, read no faster than this, as a client on
        a slow link does.
    """

    connection: socket.socket
    bytesPerSecond: int | None = None
    raw: bytearray = field(default_factory=bytearray)
    lines: list[str] = field(default_factory=list)
    eof: bool = False
    error: OSError | None = None

    def __post_init__(self) -> None:
        self._condition = threading.Condition()
        self._partial = b""
        self._thread = threading.Thread(target=self._readForever, daemon=True)
        self._thread.start()

    def _readForever(self) -> None:
        started = time.monotonic()
        try:
            while True:
                data = self.connection.recv(65536)
                if not data:
                    break
                with self._condition:
                    self.raw += data
                    *complete, self._partial = (self._partial + data).split(b"\r\n")
                    self.lines.extend(
                        line.decode("utf-8", "replace") for line in complete
                    )
                    self._condition.notify_all()
                if self.bytesPerSecond is not None:
                    # Pacing the reads is what a slow link does.
                    ahead = len(self.raw) / self.bytesPerSecond - (
                        time.monotonic() - started
                    )
                    if ahead > 0:
                        time.sleep(ahead)
        except OSError as e:
            self.error = e
        finally:
            with self._condition:
                self.eof = True
                self._condition.notify_all()

    def waitFor(
        self,
        matches: Callable[[str], bool],
        what: str,
        start: int = 0,
        timeout: float = LINE_TIMEOUT,
    ) -> int:
        """
        Wait until a line for which C{matches} is true has arrived at index
        C{start} or later, and return its index.
        """
        deadline = time.monotonic() + timeout
        position = start
        with self._condition:
            while True:
                while position < len(self.lines):
                    if matches(self.lines[position]):
                        return position
                    position += 1
                remaining = deadline - time.monotonic()
                if self.eof or remaining <= 0:
                    raise AssertionError(
                        f"never received {what} (eof={self.eof},"
                        f" error={self.error!r}); last lines: {self.lines[-5:]!r}"
                    )
                self._condition.wait(remaining)

    def waitForLine(
        self, wanted: str, start: int = 0, timeout: float = LINE_TIMEOUT
    ) -> int:
        """
        Wait until the line C{wanted} has arrived at index C{start} or later,
        and return its index.
        """
        return self.waitFor(lambda line: line == wanted, repr(wanted), start, timeout)

    def waitForEOF(self, timeout: float = LINE_TIMEOUT) -> None:
        with self._condition:
            if not self._condition.wait_for(lambda: self.eof, timeout):
                raise AssertionError(f"no EOF; last lines: {self.lines[-5:]!r}")

    def snapshot(self) -> list[str]:
        with self._condition:
            return list(self.lines)

    def close(self) -> None:
        try:
            # shutdown, unlike close, wakes the reading thread.
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.connection.close()
        self._thread.join(timeout=5)


class LineReader:
    """
    Read CRLF-terminated lines from a socket in the calling thread.

    Not a background thread like L{LineCollector}: an C{ssl.SSLSocket} must
    not be read in one thread while written in another, and a crowd of a
    thousand clients is better off without a thousand threads.
    """

    def __init__(self, connection: socket.socket) -> None:
        self.connection = connection
        self._buffer = b""

    def nextLine(self, deadline: float) -> str | None:
        """
        The next line, or L{None} if the server closes the connection (by EOF
        or reset) first.  Fail if neither happens by C{deadline}.
        """
        while b"\r\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no complete line; have {self._buffer!r}")
            self.connection.settimeout(remaining)
            try:
                data = self.connection.recv(65536)
            except ConnectionResetError:
                data = b""
            if not data:
                return None
            self._buffer += data
        line, self._buffer = self._buffer.split(b"\r\n", 1)
        return line.decode("utf-8")

    def readLine(self, timeout: float = LINE_TIMEOUT) -> str:
        """
        The next line; fail if the server closes the connection first.
        """
        line = self.nextLine(time.monotonic() + timeout)
        if line is None:
            raise AssertionError(
                f"closed before a complete line; have {self._buffer!r}"
            )
        return line

    def waitForLine(self, wanted: str, timeout: float = LINE_TIMEOUT) -> list[str]:
        """
        Read lines until C{wanted}; return all the lines read, C{wanted} last.
        """
        deadline = time.monotonic() + timeout
        lines: list[str] = []
        while not lines or lines[-1] != wanted:
            lines.append(self.readLine(deadline - time.monotonic()))
        return lines


class ChatUser:
    """
    A chat client: a connection to the room and, unless it is not to read at
    all, a L{LineCollector} reading it.

    C{name} is what the room calls it before any C{/nick}: its own address,
    unless another member already has that name.  That happens with several
    instances on one Redis: the kernel may give two clients the same local
    port when they connect to different servers, and the second is then
    called C{local-N}.  So a reading client takes its name from its welcome.
    """

    def __init__(self, connection: socket.socket, reading: bool = True) -> None:
        connection.settimeout(None)
        self.connection = connection
        address = connection.getsockname()
        self.localPort: int = address[1]
        self.name = f"{bracketed(address[0])}:{self.localPort}"
        self.collector: LineCollector | None = None
        if reading:
            self.startReading()

    def startReading(self) -> LineCollector:
        """
        Start collecting lines, and wait for the welcome that says the server
        has put this client in the room.
        """
        self.collector = LineCollector(self.connection)
        welcome = "* welcome, you are "
        found = self.collector.waitFor(
            lambda line: line.startswith(welcome), repr(welcome + "...")
        )
        self.name = self.collector.snapshot()[found][len(welcome) :].split(" (")[0]
        return self.collector

    @property
    def inbox(self) -> LineCollector:
        assert self.collector is not None, "this client is not reading"
        return self.collector

    def send(self, data: bytes) -> None:
        self.connection.sendall(data)

    def who(self) -> list[str]:
        """
        Ask the room who is in it (C{/who}); return the names, sorted.
        """
        start = len(self.inbox.snapshot())
        self.send(b"/who\n")
        found = self.inbox.waitFor(
            lambda line: line.startswith("* in the room ("), "the answer to /who", start
        )
        line = self.inbox.snapshot()[found]
        return sorted(line.split(": ", 1)[1].split(", "))

    def waitForCrowd(self, size: int, timeout: float = LINE_TIMEOUT) -> list[str]:
        """
        Ask C{/who} until the room holds C{size}, on whichever instances;
        return the names.  Joins on other instances are heard in the order
        Redis delivers them, not the order the clients connected in.
        """
        deadline = time.monotonic() + timeout
        while len(names := self.who()) != size:
            assert time.monotonic() < deadline, f"the room never held {size}: {names}"
        return names

    def close(self) -> None:
        if self.collector is not None:
            self.collector.close()
        else:
            self.connection.close()


def echoRoundTrip(connection: socket.socket, data: bytes) -> None:
    """
    Send C{data} to echo and check that exactly it comes back.
    """
    connection.sendall(data)
    received = b""
    while len(received) < len(data):
        chunk = connection.recv(65536)
        assert chunk, f"EOF after {received!r}"
        received += chunk
    assert received == data


@dataclass(frozen=True)
class Echoed:
    """
    What came back from echo before its EOF.

    @ivar count: how many bytes came back.
    @ivar firstDifference: the offset of the first byte that is not the one
        sent there, or L{None} if every byte that came back is.
    """

    count: int
    firstDifference: int | None


def differsAt(one: bytes, other: bytes) -> int:
    """
    The index of the first byte where C{one} and C{other} differ; the length
    of the shorter if it is the start of the other.
    """
    for index, (a, b) in enumerate(zip(one, other, strict=False)):
        if a != b:
            return index
    return min(len(one), len(other))


def echoThroughHalfClose(
    connection: socket.socket, payload: bytes, timeout: float = 60.0
) -> Echoed:
    """
    Send C{payload} to echo on C{connection} from another thread, then shut
    down the sending side (C{shutdown(SHUT_WR)}), as C{nc -N} piping a file
    does; meanwhile read what comes back, comparing it with C{payload}, until
    EOF.  Fail if the sending fails or EOF has not come within C{timeout}.
    """
    sendError: list[BaseException] = []

    def sendAllThenHalfClose() -> None:
        try:
            connection.sendall(payload)
            connection.shutdown(socket.SHUT_WR)
        except BaseException as e:  # reported by the reading thread
            sendError.append(e)

    sender = threading.Thread(target=sendAllThenHalfClose, daemon=True)
    sender.start()
    sent = memoryview(payload)
    count = 0
    firstDifference = None
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no EOF after {count} bytes echoed"
        connection.settimeout(remaining)
        data = connection.recv(1024 * 1024)
        if not data:
            break
        expected = sent[count : count + len(data)]
        if firstDifference is None and expected != data:
            firstDifference = count + differsAt(data, bytes(expected))
        count += len(data)
    sender.join(timeout=LINE_TIMEOUT)
    assert not sendError, sendError
    return Echoed(count, firstDifference)


def pushWithoutReading(
    connection: socket.socket,
    limit: int,
    stalled: float = 2.0,
    timeout: float = 20.0,
) -> int:
    """
    Send on C{connection}, never reading, until the peer has taken nothing
    more for C{stalled} seconds, or C{limit} bytes have gone, or C{timeout}
    has passed; return how many bytes went.

    A peer that pushes back stops taking data once its buffers and the
    kernel's are full; one that does not goes on taking it.
    """
    chunk = b"x" * (1024 * 1024)
    pushed = 0
    connection.setblocking(False)
    start = lastProgress = time.monotonic()
    while pushed < limit and time.monotonic() - start < timeout:
        _, writable, _ = select.select([], [connection], [], 0.1)
        if writable:
            try:
                sent = connection.send(chunk)
            except BlockingIOError:
                sent = 0
            if sent:
                pushed += sent
                lastProgress = time.monotonic()
        if time.monotonic() - lastProgress > stalled:
            break
    return pushed


def resetConnection(connection: socket.socket) -> None:
    """
    Close C{connection} with a reset (RST), as a crashing peer or one that
    gives up on a stalled download does: C{SO_LINGER} with a zero timeout
    throws away whatever is unsent.
    """
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    connection.close()


def httpGet(port: int, path: str = "/", host: str = LOOPBACK) -> tuple[int, bytes]:
    """
    GET C{path} on a new connection; return the status and the body.
    """
    connection = http.client.HTTPConnection(host, port, timeout=LINE_TIMEOUT)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def rawHTTP(port: int, request: bytes, host: str = LOOPBACK) -> bytes:
    """
    Send C{request} as it is on a new connection; return all the server sends
    before it closes the connection, which it must do cleanly.
    """
    with connect(port, host) as connection:
        connection.sendall(request)
        answer, ending = readUntilClosed(connection, time.monotonic() + LINE_TIMEOUT)
    assert ending == "EOF", (ending, answer)
    return answer


def requestNumber(body: bytes) -> int:
    """
    The N in the counter's C{I am request #N} answer.
    """
    prefix = b"I am request #"
    assert body.startswith(prefix) and body.endswith(b"\n"), body
    return int(body[len(prefix) :])


def nextNumber(port: int) -> int:
    """
    GET C{/} and return the number the counter gave the request.
    """
    status, body = httpGet(port)
    assert status == 200, (status, body)
    return requestNumber(body)


def waitForReadiness(metricsPort: int, status: int, timeout: float = 10.0) -> float:
    """
    Poll C{/readyz} on C{metricsPort} until it answers C{status}; return how
    long that took.
    """
    start = time.monotonic()
    while httpGet(metricsPort, "/readyz")[0] != status:
        assert time.monotonic() - start < timeout, f"/readyz never said {status}"
        time.sleep(0.02)  # a polling interval
    return time.monotonic() - start


def getNumbers(port: int, count: int) -> list[tuple[int, str]]:
    """
    C{count} GETs over one connection: each answer's number and instance.
    """
    connection = http.client.HTTPConnection(LOOPBACK, port, timeout=LINE_TIMEOUT)
    answers = []
    try:
        for _ in range(count):
            connection.request("GET", "/")
            response = connection.getresponse()
            body = response.read()
            assert response.status == 200, (response.status, body)
            answers.append((requestNumber(body), response.getheader("X-Served-By", "")))
    finally:
        connection.close()
    return answers


class Clients:
    """
    Make clients for one test, and close them all when it ends.
    """

    def __init__(self, stack: ExitStack) -> None:
        self._stack = stack

    def connect(
        self,
        port: int,
        host: str = LOOPBACK,
        receiveBuffer: int | None = None,
        timeout: float = LINE_TIMEOUT,
        source: str | None = None,
    ) -> socket.socket:
        """
        L{connect}, once, with no retry.
        """
        return self._stack.enter_context(
            connect(port, host, receiveBuffer, timeout, source)
        )

    def chatUser(
        self,
        port: int,
        host: str = LOOPBACK,
        reading: bool = True,
        receiveBuffer: int | None = None,
        source: str | None = None,
    ) -> ChatUser:
        """
        Connect a L{ChatUser}, which (if reading) waits for its welcome.
        """
        connection = connect(
            port, host, receiveBuffer, timeout=START_TIMEOUT, source=source
        )
        self._stack.enter_context(connection)
        user = ChatUser(connection, reading)
        self._stack.callback(user.close)
        return user

    def lineCollector(self, port: int, bytesPerSecond: int) -> LineCollector:
        """
        Connect, and collect what arrives in a L{LineCollector} reading no
        faster than C{bytesPerSecond}.
        """
        connection = connect(port)
        connection.settimeout(None)
        collector = LineCollector(connection, bytesPerSecond)
        self._stack.callback(collector.close)
        return collector

    def tls(
        self, certificate: Certificate, port: int, hostname: str = "localhost"
    ) -> ssl.SSLSocket:
        """
        Connect over TLS, checking the server's certificate for C{hostname}.
        """
        return self._stack.enter_context(
            certificate.clientContext().wrap_socket(
                connect(port), server_hostname=hostname
            )
        )


def allowOpenFiles(stack: ExitStack, needed: int) -> int:
    """
    Let this process open C{needed} files, for a crowd of clients (and the
    servers it starts, which inherit the limit): raise the soft open-file
    limit to the hard limit until the test ends, and return the hard limit.
    Fail if the hard limit is lower.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.fail(
            f"this test opens {needed} files, but the hard open-file limit is"
            f" {hard}; raise it to {needed} or more (ulimit -H -n)"
        )
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    stack.callback(resource.setrlimit, resource.RLIMIT_NOFILE, (soft, hard))
    return hard
