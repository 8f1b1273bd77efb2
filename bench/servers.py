"""
Start and stop the servers under test, each on free loopback ports.

Three kinds of target: netdemos under the real C{twistd}, the naive homepage
scripts in L{bench.baselines}, and the asyncio peers of L{bench.peers}.  All
are pinned to CPU 0 (when there is more than one CPU) so the load generator,
on CPU 1, never competes with them for a core.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

SERVICES = ("echo", "http", "chat")
BASELINE_SCRIPTS = {
    "echo": "echo_server.py",
    "http": "web_counter.py",
    "chat": "pub_chat.py",
}
SERVER_CPU = 0
GENERATOR_CPU = 1
_BASELINES = Path(__file__).parent / "baselines"
_LOGS = Path(tempfile.mkdtemp(prefix="netdemos-bench-"))


def logDirectory() -> Path:
    """
    Where the servers' stdout (twistd's log, for netdemos) is written.
    """
    return _LOGS


def canPin() -> bool:
    return len(os.sched_getaffinity(0)) > 1


def pinToServerCPU() -> None:
    # Runs in the child between fork and exec.
    if canPin():
        os.sched_setaffinity(0, {SERVER_CPU})


def pinToGeneratorCPU() -> None:
    if canPin():
        os.sched_setaffinity(0, {GENERATOR_CPU})


def freePort() -> int:
    """
    Ask the kernel for a free loopback port by binding port 0.

    The port is released before the server binds it; on a quiet machine
    nothing else grabs it in between.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def acceptQueueLength(port: int) -> int:
    """
    Connections the kernel has completed but the server has not yet accepted.

    For a listening socket C{ss} shows this as Recv-Q.
    """
    out = subprocess.run(
        ["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True
    ).stdout.split()
    return int(out[1]) if len(out) > 1 else 0


def twistdPath() -> str:
    candidate = Path(sys.executable).parent / "twistd"
    return str(candidate) if candidate.exists() else "twistd"


@dataclass
class Server:
    """
    One running server process and the ports it serves, by service name.
    """

    name: str
    process: subprocess.Popen[bytes]
    ports: dict[str, int]
    startedAt: float
    logPath: Path
    stopped: bool = field(default=False)
    # Servers started and stopped with this one (see L{startBaseline}).
    companions: list[Server] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.process.pid

    def rssBytes(self) -> int:
        """
        Resident set size, from C{VmRSS} in C{/proc/PID/status}.
        """
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError(f"no VmRSS for {self.pid}")

    def openFiles(self) -> int:
        """
        How many file descriptors the server holds (its sockets among them).
        """
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def cpuSeconds(self) -> float:
        """
        User plus system CPU time the server has used so far.
        """
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        # The command name, in parentheses, may contain spaces: split after it.
        fields = stat.rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK")

    def waitAccepting(self, timeout: float = 15.0) -> float:
        """
        Wait until every port accepts a connection; return seconds since exec.
        """
        deadline = time.perf_counter() + timeout
        waiting = set(self.ports.values())
        while waiting:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited: see {self.logPath}")
            for port in list(waiting):
                with socket.socket() as probe:
                    if probe.connect_ex(("127.0.0.1", port)) == 0:
                        waiting.discard(port)
            if waiting:
                if time.perf_counter() > deadline:
                    raise RuntimeError(f"{self.name} not accepting on {waiting}")
                time.sleep(0.002)
        return time.perf_counter() - self.startedAt

    def waitIdle(self, quiet: float = 0.3, timeout: float = 60.0) -> bool:
        """
        Wait until the server uses almost no CPU for C{quiet} seconds.
        """
        deadline = time.monotonic() + timeout
        before = self.cpuSeconds()
        while time.monotonic() < deadline:
            time.sleep(quiet)
            now = self.cpuSeconds()
            if now - before < quiet * 0.05:
                return True
            before = now
        return False

    def stop(self) -> None:
        """
        Stop with SIGTERM, as an operator would, and SIGKILL if that is slow.
        """
        if self.stopped:
            return
        self.stopped = True
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(3)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for companion in self.companions:
            companion.stop()


def _childEnvironment(source: Path | None) -> dict[str, str]:
    # Run from a neutral directory, twistd loads the installed netdemos (or
    # the tree given as source), never whatever PYTHONPATH happens to hold.
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if source is not None:
        env["PYTHONPATH"] = str(source)
    return env


def _spawn(
    name: str, argv: list[str], ports: dict[str, int], source: Path | None = None
) -> Server:
    logPath = _LOGS / f"{name}-{'-'.join(map(str, ports.values()))}.log"
    with logPath.open("wb") as log:
        startedAt = time.perf_counter()
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=pinToServerCPU,
            cwd=tempfile.gettempdir(),
            env=_childEnvironment(source),
        )
    return Server(name, process, ports, startedAt, logPath)


def startNetdemos(
    extra: str = "",
    name: str = "netdemos",
    source: Path | None = None,
    options: Callable[[], list[str]] = list,
) -> Server:
    """
    Run C{twistd -n netdemos} with all three services on free ports.

    Logging stays on, as a user runs it: C{-n} sends twistd's log to stdout,
    which goes to a file.  C{extra} is appended to every endpoint string
    (e.g. C{":backlog=1024"}).  C{source}, if given, is a directory holding
    the C{netdemos} package to run instead of the installed one.  C{options}
    makes more command-line options, afresh for each start.
    """
    ports = {service: freePort() for service in SERVICES}
    argv = [twistdPath(), "-n", "--pidfile=", "netdemos", *options()]
    for service, port in ports.items():
        argv.append(f"--{service}=tcp:{port}:interface=127.0.0.1{extra}")
    return _spawn(name, argv, ports, source)


def operatorOptions() -> list[str]:
    """
    What an operator adds: a counter file (a new one each time) and metrics.
    """
    directory = tempfile.mkdtemp(prefix="netdemos-bench-counter-")
    return [
        f"--counter-file={directory}/count",
        "--metrics=tcp:0:interface=127.0.0.1",
    ]


def chatRateLifted() -> list[str]:
    """
    Lift netdemos's chat flood control, for loads that measure throughput.
    """
    return ["--chat-rate=0"]


def startBaseline(service: str, *companions: str) -> Server:
    """
    Run the naive homepage script for C{service} as a plain script.

    Each of C{companions} runs as a script of its own beside it, pinned to the
    same CPU, as a beginner serves two of the homepage's examples; their ports
    join the server's, and stopping the server stops them.
    """
    port = freePort()
    script = _BASELINES / BASELINE_SCRIPTS[service]
    argv = [sys.executable, str(script), str(port)]
    server = _spawn("baseline", argv, {service: port})
    for other in companions:
        companion = startBaseline(other)
        server.ports.update(companion.ports)
        server.companions.append(companion)
    return server


def startPeer(service: str) -> Server:
    """
    Run the asyncio peer for C{service}, the generator-ceiling reference.
    """
    port = freePort()
    script = Path(__file__).parent / "peers.py"
    argv = [sys.executable, str(script), service, str(port)]
    return _spawn("peer", argv, {service: port})
