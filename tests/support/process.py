"""
Run the installed C{twistd netdemos} for a test: on free loopback ports, with
any mix of services, TLS, metrics, options and environment; wait until it
listens; stop it when the test ends.

Built on L{support.running}, which the benchmarks share.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from support import EXIT_TIMEOUT, LINE_TIMEOUT
from support.certificates import Certificate
from support.clients import waitForReadiness
from support.running import (
    SERVICES,
    ServerExitedError,
    ServerProcess,
    childEnvironment,
    freePorts,
    loopbackEndpoint,
    netdemosCommand,
    serviceArguments,
    spawn,
    twistdCommand,
)

# On SIGTERM twistd stops the service, then kills itself with the same signal,
# so that its parent sees how it ended.
KILLED_BY_SIGTERM = -signal.SIGTERM


class Netdemos(ServerProcess):
    """
    A running C{twistd -n netdemos}, its output going to a file.
    """

    @property
    def echoPort(self) -> int:
        return self.port("echo")

    @property
    def httpPort(self) -> int:
        return self.port("http")

    @property
    def chatPort(self) -> int:
        return self.port("chat")

    @property
    def webPort(self) -> int:
        return self.port("web")

    @property
    def metricsPort(self) -> int:
        return self.port("metrics")

    def waitUntilLogged(
        self, text: str, path: Path | None = None, timeout: float = LINE_TIMEOUT
    ) -> str:
        """
        Poll the server's output, or the log file at C{path}, until it holds
        C{text}; return what it holds.  Fail if the server exits first.
        """
        logPath = self.logPath if path is None else path
        deadline = time.monotonic() + timeout
        while True:
            logged = logPath.read_text(errors="replace") if logPath.exists() else ""
            if text in logged:
                return logged
            if self.process.poll() is not None:
                raise AssertionError(
                    f"twistd exited with {self.process.returncode} before"
                    f" logging {text!r}:\n{self.output()}\n{logged}"
                )
            assert time.monotonic() < deadline, f"{text!r} not logged:\n{logged}"
            time.sleep(0.02)  # a polling interval

    def assertNoErrorsLogged(self) -> None:
        output = self.output()
        for marker in ("Traceback", "Unhandled Error"):
            assert marker not in output, f"server logged {marker!r}:\n{output}"


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
        services: Mapping[str, int] | Sequence[str] = SERVICES,
        metrics: bool = False,
        tls: Certificate | None = None,
        extra: Sequence[str] = (),
        twistdOptions: Sequence[str] = (),
        environ: Mapping[str, str] | None = None,
        openFiles: tuple[int, int] | None = None,
        waitUntilStarted: Callable[[Netdemos], None] = Netdemos.waitUntilListening,
        proxied: Collection[str] = (),
        ports: Mapping[str, int] | None = None,
    ) -> Netdemos:
        """
        Start C{twistd -n --pidfile= netdemos} with each of C{services} on free
        loopback ports (over TLS with C{tls}), the others off, and
        C{--metrics} on another port if asked; then call C{waitUntilStarted},
        which by default waits until it listens on every port.

        @param services: the services to switch on, each on one port, or a
            mapping of each to how many ports it listens on.
        @param extra: more netdemos options.
        @param twistdOptions: options for twistd itself, such as
            C{--logfile=PATH}, which go before C{netdemos}.
        @param environ: variables to add to its environment.
        @param openFiles: the soft and hard open-file limits (C{ulimit -S -n},
            C{ulimit -H -n}) to start it with; by default, this process's.
        @param proxied: the services that expect a PROXY protocol header
            first (C{haproxy:ENDPOINT}), as behind a balancer.
        @param ports: the port of each service (and metrics), where a
            balancer's configuration names them, instead of free ones.
        """
        counts = (
            dict(services)
            if isinstance(services, Mapping)
            else dict.fromkeys(services, 1)
        )
        if metrics:
            counts["metrics"] = 1

        def startOnFreePorts() -> Netdemos:
            if ports is None:
                free = iter(freePorts(sum(counts.values())))
                used = {
                    name: [next(free) for _ in range(count)]
                    for name, count in counts.items()
                }
            else:
                used = {name: [ports[name]] for name in counts}
            loopback = loopbackEndpoint if tls is None else tls.serverEndpoint

            def endpoint(service: str, port: int) -> str:
                inner = loopback(port)
                return f"haproxy:{inner}" if service in proxied else inner

            args = serviceArguments(
                {
                    service: [endpoint(service, port) for port in servicePorts]
                    for service, servicePorts in used.items()
                    if service != "metrics"
                }
            )
            if metrics:
                args.append(f"--metrics={loopbackEndpoint(used['metrics'][0])}")
            command = netdemosCommand([*args, *extra], twistdOptions, openFiles)
            server = self.spawn(command, used, environ)
            waitUntilStarted(server)
            return server

        return onFreshPortsUntilBound(startOnFreePorts)

    def spawn(
        self,
        command: Sequence[str],
        ports: dict[str, list[int]],
        environ: Mapping[str, str] | None = None,
        passFds: Sequence[int] = (),
    ) -> Netdemos:
        """
        Start C{command}, which runs netdemos (or execs it) on C{ports}, with
        its output going to a new file in the working directory.

        @param passFds: descriptors it inherits, such as listening sockets.
        """
        logPath = self.workdir / f"twistd-{time.monotonic_ns()}.out"
        process = spawn(command, self.workdir, logPath, environ, passFds=passFds)
        server = Netdemos(process, logPath, ports)
        self._stack.callback(server.stop)
        return server


def runTwistd(
    workdir: Path, args: Sequence[str], timeout: float = EXIT_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    """
    Run C{twistd ARGS} from C{workdir} to completion; stderr joins stdout.
    """
    return subprocess.run(
        [*twistdCommand(), *args],
        cwd=workdir,
        env=childEnvironment(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )


def installedPython(workdir: Path, program: str) -> Any:
    """
    Run C{program} in a child Python from C{workdir}, isolated (C{-I}), so
    that neither the source tree nor its C{netdemos.egg-info} is on its
    C{sys.path}: it imports the installed netdemos.  Return what it prints,
    read as JSON.
    """
    result = subprocess.run(
        [sys.executable, "-I", "-c", program],
        cwd=workdir,
        env=childEnvironment(),
        capture_output=True,
        text=True,
        timeout=EXIT_TIMEOUT,
        check=True,
    )
    return json.loads(result.stdout)


def runNetdemos(
    workdir: Path,
    endpoints: Mapping[str, Sequence[str]],
    extra: Sequence[str] = (),
    twistdOptions: Sequence[str] = ("-n", "--pidfile="),
) -> subprocess.CompletedProcess[str]:
    """
    Run C{twistd [twistdOptions] netdemos} to completion with each service on
    its C{endpoints} and the others off, and the C{extra} options: for a
    server that is expected to exit at startup.
    """
    return runTwistd(
        workdir, [*twistdOptions, "netdemos", *serviceArguments(endpoints), *extra]
    )


def redisInstance(
    launcher: Launcher,
    redis: Any,
    name: str,
    services: Sequence[str] = ("http", "chat"),
    extra: Sequence[str] = (),
) -> Netdemos:
    """
    Start an instance called C{name} on C{redis} (a L{RedisServer}), with
    metrics and no chat flood control, and wait until it is in the room and
    ready.
    """
    server = launcher.start(
        services=services,
        metrics=True,
        extra=[f"--name={name}", f"--redis={redis.url}", "--chat-rate=0", *extra],
    )
    if "chat" in services:
        server.waitUntilLogged(f"chat: {name} is in the room on Redis")
    waitForReadiness(server.metricsPort, 200)
    return server
