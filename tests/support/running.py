"""
Run the real C{twistd netdemos} from netdemos's own tests and benchmarks: find
C{twistd}, pick free loopback ports, start it, wait until it listens, read a
connection until the server closes it, and stop it.

This is for tests and benchmarks, as L{twisted.internet.testing} is for the
tests of Twisted's users; a server never needs it.  It uses the standard
library only and imports nothing of Twisted, so the process that runs a test
or a benchmark loads no server code and sees netdemos only as its clients do.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

LOOPBACK = "127.0.0.1"

# Every service has its own option, --echo=ENDPOINT and so on; a new service
# is a new name here.
SERVICES = ("echo", "http", "chat", "web")

# Generous, because a loaded 2-core machine may take seconds to start Python.
START_TIMEOUT = 30.0

# How long a server has to exit after SIGTERM before it is killed.
STOP_TIMEOUT = 5.0


def twistdCommand() -> list[str]:
    """
    The command that runs C{twistd} with the Python running this code.
    """
    script = Path(sys.executable).parent / "twistd"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


def childEnvironment(pythonPath: Path | None = None) -> dict[str, str]:
    """
    The environment for a child Python: unbuffered, and with no C{PYTHONPATH}
    that could put a source tree's C{twisted/plugins} ahead of the installed
    one, unless C{pythonPath} is given to run that tree on purpose.
    """
    env = dict(os.environ)
    # Also no systemd hand-over: the server must bind the ports it is given.
    for name in ("PYTHONPATH", "NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID"):
        env.pop(name, None)
    env["PYTHONUNBUFFERED"] = "1"
    if pythonPath is not None:
        env["PYTHONPATH"] = str(pythonPath)
    return env


def freePorts(count: int, host: str = LOOPBACK) -> list[int]:
    """
    Return C{count} distinct TCP ports that are free on C{host}.

    All the sockets are held open until every port is chosen, so the kernel
    cannot hand out the same port twice.  Another process may still take one
    before the server binds it.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with ExitStack() as stack:
        probes = [stack.enter_context(socket.socket(family)) for _ in range(count)]
        for probe in probes:
            probe.bind((host, 0))
        return [probe.getsockname()[1] for probe in probes]


def loopbackEndpoint(port: int) -> str:
    """
    The server endpoint string for TCP C{port} on the loopback interface.
    """
    return f"tcp:{port}:interface={LOOPBACK}"


def serviceArguments(endpoints: Mapping[str, Sequence[str]]) -> list[str]:
    """
    The options that put each service on its C{endpoints} and switch off every
    service that has none, so that none falls back to its default, non-loopback,
    fixed port.
    """
    unknown = set(endpoints) - set(SERVICES)
    assert not unknown, f"not a netdemos service: {sorted(unknown)}"
    return [
        f"--{service}={endpoint}"
        for service in SERVICES
        for endpoint in endpoints.get(service) or ["none"]
    ]


def withOpenFileLimit(openFiles: tuple[int, int] | None) -> list[str]:
    """
    The start of a command that runs the rest with C{openFiles}, a soft and a
    hard open-file limit: util-linux's C{prlimit}, which then executes it (so
    the process is the command's own).  Nothing if C{openFiles} is L{None}.

    Not C{preexec_fn}, which is unsafe in a process with threads.
    """
    if openFiles is None:
        return []
    prlimit = shutil.which("prlimit")
    assert prlimit is not None, "setting a server's open-file limit needs prlimit"
    soft, hard = openFiles
    return [prlimit, f"--nofile={soft}:{hard}", "--"]


def spawn(
    command: Sequence[str],
    cwd: Path,
    logPath: Path,
    environ: Mapping[str, str] | None = None,
    pythonPath: Path | None = None,
    passFds: Sequence[int] = (),
) -> subprocess.Popen[bytes]:
    """
    Start C{command} in C{cwd}, with nothing on its stdin, its stdout and
    stderr going to C{logPath}, and L{childEnvironment} plus C{environ}.

    @param pythonPath: a directory holding the C{netdemos} package to run
        instead of the installed one.
    @param passFds: descriptors it inherits, such as listening sockets.
    """
    with logPath.open("wb") as log:
        return subprocess.Popen(
            command,
            cwd=cwd,
            env={**childEnvironment(pythonPath), **(environ or {})},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            pass_fds=passFds,
        )


def netdemosCommand(
    args: Sequence[str],
    twistdOptions: Sequence[str] = (),
    openFiles: tuple[int, int] | None = None,
) -> list[str]:
    """
    The command that runs C{twistd -n --pidfile= [twistdOptions] netdemos
    [args]}: in the foreground, with no pid file, so that one server never
    stops another.

    @param twistdOptions: options for twistd itself, such as
        C{--logfile=PATH}, which go before C{netdemos}.
    @param openFiles: the soft and hard open-file limits (C{ulimit -S -n},
        C{ulimit -H -n}) to run it with; by default, this process's.
    """
    return [
        *withOpenFileLimit(openFiles),
        *twistdCommand(),
        "-n",
        "--pidfile=",
        *twistdOptions,
        "netdemos",
        *args,
    ]


def inheritSockets(sockets: Mapping[str, int]) -> tuple[list[str], dict[str, str]]:
    """
    The start of a command that runs the rest with C{sockets} (a name and a
    descriptor for each) handed over as systemd hands a service its sockets:
    as descriptors 3, 4, ... in order, with C{LISTEN_FDS}, C{LISTEN_FDNAMES}
    and C{LISTEN_PID}; and the environment that goes with it.

    C{LISTEN_PID} must be the server's own pid, which only the child knows: a
    small Python program moves the descriptors into place, sets it and
    executes the rest, which keeps the pid.  Pass the descriptors to the child
    (C{passFds}).
    """
    moves = "".join(
        f"os.dup2({fd}, {3 + n}, inheritable=True);"
        for n, fd in enumerate(sockets.values())
    )
    command = [
        sys.executable,
        "-c",
        f"import os, sys; {moves} os.environ['LISTEN_PID'] = str(os.getpid());"
        " os.execv(sys.argv[1], sys.argv[1:])",
    ]
    environ = {"LISTEN_FDS": str(len(sockets)), "LISTEN_FDNAMES": ":".join(sockets)}
    return command, environ


class ServerExitedError(AssertionError):
    """
    The server exited while it was waited for.
    """

    def __init__(self, returncode: int, output: str) -> None:
        super().__init__(f"the server exited with {returncode}:\n{output}")
        self.output = output


@dataclass
class ServerProcess:
    """
    A server started by a test or a benchmark, its output going to a file.

    @ivar ports: the loopback ports each of its services listens on.
    """

    process: subprocess.Popen[bytes]
    logPath: Path
    ports: dict[str, list[int]]

    @property
    def pid(self) -> int:
        return self.process.pid

    def port(self, service: str) -> int:
        """
        The (first) port C{service} listens on.
        """
        return self.ports[service][0]

    def output(self) -> str:
        return self.logPath.read_text(errors="replace")

    def listeningPorts(self) -> set[int]:
        """
        The TCP ports this process has listening sockets on, and the UDP
        ports it has bound.

        C{/proc/PID/net/tcp} lists every socket in the network namespace, so
        keep only those whose inode is one of this process's open files.
        """
        ownInodes = set()
        for fd in Path(f"/proc/{self.pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except FileNotFoundError:
                continue
            if target.startswith("socket:["):
                ownInodes.add(target[len("socket:[") : -1])
        ports = set()
        # 0A is TCP_LISTEN; 07 (TCP_CLOSE) is how a bound UDP socket shows.
        for table, bound in (
            ("tcp", "0A"),
            ("tcp6", "0A"),
            ("udp", "07"),
            ("udp6", "07"),
        ):
            lines = Path(f"/proc/{self.pid}/net/{table}").read_text().splitlines()
            for line in lines[1:]:
                fields = line.split()
                localAddress, state, inode = fields[1], fields[3], fields[9]
                if state == bound and inode in ownInodes:
                    ports.add(int(localAddress.rsplit(":", 1)[1], 16))
        return ports

    def waitUntilListening(
        self, timeout: float = START_TIMEOUT, interval: float = 0.02
    ) -> None:
        """
        Wait until this process listens on all its ports, reading
        C{/proc/PID} every C{interval} seconds and never connecting: a
        connection would be counted, and logged, as a client's.

        A port another process listens on does not count: that one was taken
        after it was found free, and this server will exit, unable to bind it.

        @raise ServerExitedError: if the server exits first.
        """
        wanted = {port for each in self.ports.values() for port in each}
        deadline = time.monotonic() + timeout
        try:
            while not wanted <= self.listeningPorts():
                if self.process.poll() is not None:
                    raise ServerExitedError(self.process.returncode, self.output())
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"not listening on {wanted - self.listeningPorts()}"
                        f" within {timeout}s:\n{self.output()}"
                    )
                time.sleep(interval)  # a polling interval
        except OSError as e:
            # Its /proc entries vanish as it exits; if it did not, that is news.
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                raise e from None
            raise ServerExitedError(self.process.returncode, self.output()) from None

    def rssBytes(self) -> int:
        """
        The server's resident set size, from C{VmRSS} in C{/proc/PID/status}.
        """
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError(f"no VmRSS in /proc/{self.pid}/status")

    def stop(self) -> None:
        """
        Stop the server, as an operator would, with SIGTERM; then SIGKILL if
        it does not go within L{STOP_TIMEOUT}.
        """
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_TIMEOUT)


def readUntilClosed(connection: socket.socket, deadline: float) -> tuple[bytes, str]:
    """
    Read until the peer closes; return what arrived and how it ended, C{"EOF"}
    or C{"reset"}.  Fail if it has not ended by C{deadline}.
    """
    chunks: list[bytes] = []
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"not closed before the deadline; got {chunks!r}")
        connection.settimeout(remaining)
        try:
            data = connection.recv(65536)
        except ConnectionResetError:
            return b"".join(chunks), "reset"
        if not data:
            return b"".join(chunks), "EOF"
        chunks.append(data)
