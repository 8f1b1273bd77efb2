"""
Helpers for the end-to-end tests: run the installed C{twistd netdemos} on free
loopback ports and talk to it with plain sockets.

Nothing here imports Twisted or netdemos: the tests must see the server only as
a client would, through the installed plugin that C{twistd} finds.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

LOOPBACK = "127.0.0.1"

# Generous, because a loaded 2-core machine may take seconds to start Python.
START_TIMEOUT = 30.0
EXIT_TIMEOUT = 30.0
LINE_TIMEOUT = 10.0


def twistdCommand() -> list[str]:
    """
    The command that runs C{twistd} with the Python running the tests.
    """
    script = Path(sys.executable).parent / "twistd"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


def subprocessEnvironment() -> dict[str, str]:
    """
    The environment for a child Python: unbuffered, and with no C{PYTHONPATH}
    that could put the source tree's C{twisted/plugins} ahead of the installed
    one.
    """
    env = dict(os.environ)
    # Also no systemd hand-over: the server must bind the ports it is given.
    for name in ("PYTHONPATH", "NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID"):
        env.pop(name, None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def freePorts(count: int) -> list[int]:
    """
    Return C{count} distinct TCP ports that are free on the loopback interface.

    All the sockets are held open until every port is chosen, so the kernel
    cannot hand out the same port twice.
    """
    with ExitStack() as stack:
        ports = []
        for _ in range(count):
            probe = stack.enter_context(socket.socket())
            probe.bind((LOOPBACK, 0))
            ports.append(probe.getsockname()[1])
    return ports


def loopbackEndpoint(port: int) -> str:
    return f"tcp:{port}:interface={LOOPBACK}"


def runTwistd(
    workdir: Path, args: Sequence[str], timeout: float = EXIT_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    """
    Run C{twistd ARGS} from C{workdir} to completion; stderr joins stdout.
    """
    return subprocess.run(
        [*twistdCommand(), *args],
        cwd=workdir,
        env=subprocessEnvironment(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )


# Connections the readiness check makes must leave no trace a test could see.
Probe = Callable[[socket.socket], None]


def closeProbe(connection: socket.socket) -> None:
    """
    Readiness probe for echo and HTTP: connecting was enough.
    """


def chatProbe(connection: socket.socket) -> None:
    """
    Readiness probe for chat: leave with C{/quit} and wait for the server to
    close, so the probe has left the room before any test client joins it.
    """
    connection.sendall(b"/quit\n")
    readToEOF(connection, time.monotonic() + START_TIMEOUT)


class ServerExitedError(AssertionError):
    """
    twistd exited while the test waited for it to listen.
    """

    def __init__(self, returncode: int, output: str) -> None:
        super().__init__(f"twistd exited with {returncode} at startup:\n{output}")
        self.output = output


@dataclass
class Netdemos:
    """
    A running C{twistd -n netdemos}, its output going to a file in C{workdir}.

    @ivar ports: the loopback ports of each service (none if it is off).
    """

    process: subprocess.Popen[bytes]
    workdir: Path
    logPath: Path
    ports: dict[str, list[int]]

    @property
    def echoPort(self) -> int:
        return self.ports["echo"][0]

    @property
    def httpPort(self) -> int:
        return self.ports["http"][0]

    @property
    def chatPort(self) -> int:
        return self.ports["chat"][0]

    @property
    def webPort(self) -> int:
        return self.ports["web"][0]

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return self.logPath.read_text(errors="replace")

    def waitUntilListening(self, port: int, probe: Probe) -> None:
        """
        Poll-connect to C{port} until the server accepts, then run C{probe}.
        """
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.process.poll() is not None:
                raise ServerExitedError(self.process.returncode, self.output())
            try:
                connection = socket.create_connection(
                    (LOOPBACK, port), timeout=START_TIMEOUT
                )
            except ConnectionRefusedError:
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"twistd did not listen on {port} within"
                        f" {START_TIMEOUT}s:\n{self.output()}"
                    ) from None
                # A polling interval, not a guess at how long startup takes.
                time.sleep(0.02)
                continue
            with connection:
                probe(connection)
            return

    def waitUntilOwns(self, ports: set[int]) -> None:
        """
        Check that the listeners that answered are this server's own: another
        process may have been listening on a port chosen as free, in which
        case this server cannot bind it and exits.
        """
        deadline = time.monotonic() + START_TIMEOUT
        while not ports <= self.listeningPorts():
            if self.process.poll() is not None:
                raise ServerExitedError(self.process.returncode, self.output())
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"another process listens on {ports - self.listeningPorts()}"
                )
            time.sleep(0.02)  # a polling interval

    def rssBytes(self) -> int:
        """
        The server's resident set size, from C{/proc/PID/status}.
        """
        status = Path(f"/proc/{self.pid}/status").read_text()
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError(f"no VmRSS in /proc/{self.pid}/status")

    def listeningPorts(self) -> set[int]:
        """
        The TCP ports this process has listening sockets on.

        C{/proc/PID/net/tcp} lists every socket in the network namespace, so
        keep only those whose inode is one of this process's open files.
        """
        ownInodes = set()
        fdDirectory = Path(f"/proc/{self.pid}/fd")
        for fd in fdDirectory.iterdir():
            try:
                target = os.readlink(fd)
            except FileNotFoundError:
                continue
            if target.startswith("socket:["):
                ownInodes.add(target[len("socket:[") : -1])
        ports = set()
        for table in ("tcp", "tcp6"):
            lines = Path(f"/proc/{self.pid}/net/{table}").read_text().splitlines()
            for line in lines[1:]:
                fields = line.split()
                localAddress, state, inode = fields[1], fields[3], fields[9]
                if state == "0A" and inode in ownInodes:  # 0A is TCP_LISTEN
                    ports.add(int(localAddress.rsplit(":", 1)[1], 16))
        return ports

    def assertNoErrorsLogged(self) -> None:
        output = self.output()
        for marker in ("Traceback", "Unhandled Error"):
            assert marker not in output, f"server logged {marker!r}:\n{output}"

    def stop(self) -> None:
        """
        Stop the server: SIGTERM, then SIGKILL if it does not go quickly.
        """
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


PROBES: dict[str, Probe] = {
    "echo": closeProbe,
    "http": closeProbe,
    "chat": chatProbe,
    "web": closeProbe,
}


@contextmanager
def netdemosRunning(
    workdir: Path, ports: dict[str, list[int]], extra: Sequence[str] = ()
) -> Iterator[Netdemos]:
    """
    Start C{twistd -n --pidfile= netdemos} in C{workdir}, each service on its
    loopback C{ports} or off, wait until every port accepts, and always stop
    the server on the way out.

    Every service is given explicitly, so the server never falls back to its
    default, non-loopback, fixed ports.
    """
    args: list[str] = []
    for service in PROBES:
        endpoints = [loopbackEndpoint(port) for port in ports.get(service, [])]
        args.extend(f"--{service}={endpoint}" for endpoint in endpoints or ["none"])
    args.extend(extra)
    logPath = workdir / f"twistd-{time.monotonic_ns()}.out"
    with logPath.open("wb") as log:
        process = subprocess.Popen(
            [*twistdCommand(), "-n", "--pidfile=", "netdemos", *args],
            cwd=workdir,
            env=subprocessEnvironment(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = Netdemos(process, workdir, logPath, ports)
    try:
        for service, servicePorts in ports.items():
            for port in servicePorts:
                server.waitUntilListening(port, PROBES[service])
        server.waitUntilOwns({port for each in ports.values() for port in each})
        yield server
    finally:
        server.stop()


def onFreshPortsUntilBound(
    start: Callable[[], Netdemos], attempts: int = 3
) -> Netdemos:
    """
    Call C{start}, which picks free ports and starts a server on them; again if
    a port was taken in between.

    A port found free may be taken (by any process's outgoing connection)
    before twistd binds it.
    """
    for attempt in range(1, attempts + 1):
        try:
            return start()
        except ServerExitedError as e:
            if attempt == attempts or "already in use" not in e.output:
                raise
    raise AssertionError("unreachable")


class Launcher:
    """
    Start netdemos servers for one test and stop them all when it ends.
    """

    def __init__(self, workdir: Path, stack: ExitStack) -> None:
        self.workdir = workdir
        self._stack = stack

    def start(
        self,
        echo: int = 0,
        http: int = 0,
        chat: int = 0,
        web: int = 0,
        extra: Sequence[str] = (),
    ) -> Netdemos:
        """
        Start a server with C{echo}, C{http}, C{chat} and C{web} endpoints on
        that many free loopback ports each; a service with none is switched off.
        """
        counts = {"echo": echo, "http": http, "chat": chat, "web": web}

        def startOnFreePorts() -> Netdemos:
            free = iter(freePorts(sum(counts.values())))
            ports = {
                service: [next(free) for _ in range(count)]
                for service, count in counts.items()
            }
            return self._stack.enter_context(
                netdemosRunning(self.workdir, ports, extra)
            )

        return onFreshPortsUntilBound(startOnFreePorts)

    def chatUser(
        self, port: int, reading: bool = True, receiveBuffer: int | None = None
    ) -> ChatUser:
        """
        Connect a L{ChatUser}, to be closed when the test ends.
        """
        user = ChatUser(port, reading=reading, receiveBuffer=receiveBuffer)
        self._stack.callback(user.close)
        return user

    def chatPair(self) -> tuple[Netdemos, ChatUser, ChatUser]:
        """
        Start a chat-only server with two users in the room, the first having
        seen the second join.
        """
        server = self.start(chat=1)
        first = self.chatUser(server.chatPort)
        second = self.chatUser(server.chatPort)
        first.inbox.waitForLine(f"* {second.name} joined (2 in the room)")
        return server, first, second


def readToEOF(connection: socket.socket, deadline: float) -> bytes:
    """
    Read until the peer closes; fail if that does not happen by C{deadline}.
    """
    chunks: list[bytes] = []
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError("no EOF before the deadline")
        connection.settimeout(remaining)
        data = connection.recv(65536)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


@dataclass
class LineCollector:
    """
    Read CRLF-terminated lines from a socket in a background thread, keeping
    every byte and every line, so a test can wait for a line and afterwards
    check everything that arrived before it.
    """

    connection: socket.socket
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


class ChatUser:
    """
    A chat client: a socket to the room and, unless it is not to read at all,
    a L{LineCollector} reading it.

    C{name} is what the room calls it before any C{/nick}: its own address.
    """

    def __init__(
        self, port: int, reading: bool = True, receiveBuffer: int | None = None
    ) -> None:
        connection = socket.socket()
        if receiveBuffer is not None:
            # Set before connecting, so that it bounds the window TCP offers.
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receiveBuffer)
        connection.settimeout(START_TIMEOUT)
        connection.connect((LOOPBACK, port))
        connection.settimeout(None)
        self.connection = connection
        self.localPort: int = connection.getsockname()[1]
        self.name = f"{LOOPBACK}:{self.localPort}"
        self.collector: LineCollector | None = None
        if reading:
            self.startReading()

    def startReading(self) -> LineCollector:
        """
        Start collecting lines, and wait for the welcome that says the server
        has put this client in the room.
        """
        self.collector = LineCollector(self.connection)
        welcome = f"* welcome, you are {self.name} ("
        self.collector.waitFor(
            lambda line: line.startswith(welcome), repr(welcome + "...")
        )
        return self.collector

    @property
    def inbox(self) -> LineCollector:
        assert self.collector is not None, "this client is not reading"
        return self.collector

    def send(self, data: bytes) -> None:
        self.connection.sendall(data)

    def close(self) -> None:
        if self.collector is not None:
            self.collector.close()
        else:
            self.connection.close()
