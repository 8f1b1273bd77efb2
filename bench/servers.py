"""
Start and stop the servers under test, each on free loopback ports.

Three kinds of target: netdemos under the real C{twistd}, the naive homepage
scripts in L{bench.baselines}, and the asyncio peers of L{bench.peers}.  All
are pinned to CPU 0 (when there is more than one CPU) so the load generator,
on CPU 1, never competes with them for a core.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from support.running import (
    SERVICES,
    ServerExitedError,
    ServerProcess,
    freePorts,
    loopbackEndpoint,
    netdemosCommand,
    serviceArguments,
    spawn,
)

BASELINE_SCRIPTS = {
    "echo": "echo_server.py",
    "http": "web_counter.py",
    "chat": "pub_chat.py",
    "echo-udp": "udp_echo_server.py",
}
SERVER_CPU = 0
GENERATOR_CPU = 1
_BASELINES = Path(__file__).parent / "baselines"
_PEERS = Path(__file__).parent / "peers.py"
_LOGS = Path(tempfile.mkdtemp(prefix="netdemos-bench-"))


def logDirectory() -> Path:
    """
    Where the servers' stdout (twistd's log, for netdemos) is written.
    """
    return _LOGS


# Whether servers and generator are pinned to cores of their own; a bench
# that runs servers as systemd does turns it off (L{runFree}).
_pinning = True


def runFree() -> None:
    """
    Pin nothing from now on: servers and generator share every core.
    """
    global _pinning
    _pinning = False


# The CPUs this process may use, as it started: once it pins itself to the
# generator's CPU, its own affinity says nothing about the machine.
_CPUS = frozenset(os.sched_getaffinity(0))


def canPin() -> bool:
    return _pinning and {SERVER_CPU, GENERATOR_CPU} <= _CPUS


def pinToServerCPU(pid: int) -> None:
    if canPin():
        os.sched_setaffinity(pid, {SERVER_CPU})


def pinToGeneratorCPU() -> None:
    if canPin():
        os.sched_setaffinity(0, {GENERATOR_CPU})


def acceptQueueLength(port: int) -> int:
    """
    Connections the kernel has completed but the server has not yet accepted.

    For a listening socket C{ss} shows this as Recv-Q.
    """
    out = subprocess.run(
        ["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True
    ).stdout.split()
    return int(out[1]) if len(out) > 1 else 0


@dataclass
class Server(ServerProcess):
    """
    One running server process, named for the report, and when it was
    started.
    """

    name: str
    startedAt: float
    # Servers started and stopped with this one (see L{startBaseline}).
    companions: list[Server] = field(default_factory=list)

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

    def secondsUntilListening(self, timeout: float = 15.0) -> float:
        """
        Wait until the server listens on every port; return seconds since
        exec.
        """
        try:
            # A fine polling interval: this is the startup figure.
            self.waitUntilListening(timeout, interval=0.002)
        except ServerExitedError:
            raise RuntimeError(f"{self.name} exited: see {self.logPath}") from None
        except AssertionError as e:
            raise RuntimeError(f"{self.name}: {e}") from None
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
        super().stop()
        for companion in self.companions:
            companion.stop()


def _start(
    name: str, ports: dict[str, int], command: list[str], source: Path | None = None
) -> Server:
    """
    Start C{command}, serving on C{ports}, and pin it to the server's CPU.

    It runs from a neutral directory, so that twistd loads the installed
    netdemos (or the tree given as C{source}), never the current directory's.
    """
    logPath = _LOGS / f"{name}-{'-'.join(map(str, ports.values()))}.log"
    startedAt = time.perf_counter()
    process = spawn(command, Path(tempfile.gettempdir()), logPath, pythonPath=source)
    # Pinned once started, not by a preexec_fn, which is unsafe in a process
    # with threads; Python has started no thread of its own by then.
    pinToServerCPU(process.pid)
    servicePorts = {service: [port] for service, port in ports.items()}
    return Server(process, logPath, servicePorts, name, startedAt)


def startNetdemos(
    extra: str = "",
    name: str = "netdemos",
    source: Path | None = None,
    options: Callable[[], list[str]] = list,
) -> Server:
    """
    Run C{twistd -n netdemos} with every service on free ports.

    Logging stays on, as a user runs it: C{-n} sends twistd's log to stdout,
    which goes to a file.  C{extra} is appended to every endpoint string
    (e.g. C{":backlog=1024"}).  C{source}, if given, is a directory holding
    the C{netdemos} package to run instead of the installed one.  C{options}
    makes more command-line options, afresh for each start.
    """
    ports = dict(zip(SERVICES, freePorts(len(SERVICES)), strict=True))
    endpoints = {
        service: [loopbackEndpoint(port) + extra] for service, port in ports.items()
    }
    command = netdemosCommand([*options(), *serviceArguments(endpoints)])
    return _start(name, ports, command, source)


def startNetdemosUDP(name: str = "netdemos", source: Path | None = None) -> Server:
    """
    Run C{twistd -n netdemos} with the UDP echo alone, its rate limits
    raised as far as they go, for a load that measures throughput.
    """
    [port] = freePorts(1)
    command = netdemosCommand(
        [
            *serviceArguments({}),
            f"--echo-udp=udp:{port}:interface=127.0.0.1",
            "--echo-udp-rate=1000000",
            "--echo-udp-burst=1000000",
        ]
    )
    return _start(name, {"echo-udp": port}, command, source)


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
    [port] = freePorts(1)
    command = [sys.executable, str(_BASELINES / BASELINE_SCRIPTS[service]), str(port)]
    server = _start("baseline", {service: port}, command)
    for other in companions:
        companion = startBaseline(other)
        server.ports.update(companion.ports)
        server.companions.append(companion)
    return server


def startPeer(service: str) -> Server:
    """
    Run the asyncio peer for C{service}, the generator-ceiling reference.
    """
    [port] = freePorts(1)
    command = [sys.executable, str(_PEERS), service, str(port)]
    return _start("peer", {service: port}, command)
