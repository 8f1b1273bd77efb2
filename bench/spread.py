"""
How evenly several netdemos processes share one port's connections.

C{python -m bench.spread [--rounds N] [--processes 2,4]}.

Each process is started as a C{netdemos@.service} instance is, with its HTTP
listening socket handed over by the C{systemd:} endpoint, in one of two ways:

  - C{shared}: one listening socket, inherited by every process (one socket
    unit, C{Sockets=} in every instance); the processes race to accept(2)
    from its one queue;
  - C{reuseport}: one socket per process, all bound to the same port with
    C{SO_REUSEPORT} (C{ReusePort=yes}, one socket unit per instance); the
    kernel hashes each new connection to one of them.

Three loads: sequential new connections (one GET each, one after another, as
a health checker or a script does), 200 concurrent short connections
(C{wrk -H "Connection: close"}), and 50 concurrent keep-alive connections
(C{wrk}).  Nothing is pinned: the processes spread over the cores as systemd
runs them.  Each process's share is the rise in its own
C{netdemos_connections_total{service="http"}}, read from its metrics port.
The report gives, per load, the median and the extreme of each round's
smallest and largest share; an even spread over N processes gives each 1/N.
"""

from __future__ import annotations

import argparse
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from support.running import (
    LOOPBACK,
    ServerProcess,
    freePorts,
    inheritSockets,
    netdemosCommand,
    spawn,
)

SEQUENTIAL_CONNECTIONS = 1000
SHORT_CONNECTIONS = 200
KEEPALIVE_CONNECTIONS = 50
WRK_SECONDS = 3
METRICS_MAX_AGE = 1.1
_TOTAL = re.compile(rb'^netdemos_connections_total\{service="http"\} (\S+)$', re.M)


def listeningSockets(
    mode: str, processes: int, stack: ExitStack
) -> list[socket.socket]:
    """
    The listening sockets for C{processes} processes: the same one for each
    (C{shared}) or one each on the same port (C{reuseport}).
    """

    def listening(port: int, reusePort: bool) -> socket.socket:
        sock = stack.enter_context(socket.socket())
        if reusePort:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((LOOPBACK, port))
        sock.listen(1024)
        return sock

    if mode == "shared":
        return [listening(0, False)] * processes
    first = listening(0, True)
    port = first.getsockname()[1]
    return [first] + [listening(port, True) for _ in range(processes - 1)]


@contextmanager
def instances(
    mode: str, processes: int, workdir: Path
) -> Iterator[tuple[int, list[int]]]:
    """
    Start C{processes} netdemos processes on one HTTP port handed over as
    C{mode} says; yield that port and each process's metrics port.
    """
    with ExitStack() as stack:
        sockets = listeningSockets(mode, processes, stack)
        port = sockets[0].getsockname()[1]
        metricsPorts = freePorts(processes)
        servers = []
        for n, (sock, metrics) in enumerate(zip(sockets, metricsPorts, strict=True)):
            command = netdemosCommand(
                [
                    "--http=systemd:domain=INET:name=http",
                    "--echo=none",
                    "--chat=none",
                    "--web=none",
                    f"--metrics=tcp:{metrics}:interface={LOOPBACK}",
                    f"--name=p{n}",
                ]
            )
            inherit, environ = inheritSockets({"http": sock.fileno()})
            logPath = workdir / f"{mode}-{processes}-{n}-{time.monotonic_ns()}.log"
            process = spawn(
                [*inherit, *command],
                workdir,
                logPath,
                environ,
                passFds=[sock.fileno()],
            )
            server = ServerProcess(process, logPath, {"metrics": [metrics]})
            stack.callback(server.stop)
            servers.append(server)
        for server in servers:
            server.waitUntilListening()
        for sock in set(sockets):
            sock.close()
        yield port, metricsPorts


def accepted(metricsPort: int) -> int:
    """
    How many HTTP connections the process with this metrics port accepted.
    """
    url = f"http://{LOOPBACK}:{metricsPort}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        found = _TOTAL.search(response.read())
    assert found is not None, "no netdemos_connections_total for http"
    return int(float(found.group(1)))


def sequential(port: int) -> None:
    request = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    for _ in range(SEQUENTIAL_CONNECTIONS):
        with socket.create_connection((LOOPBACK, port), timeout=10) as client:
            client.sendall(request)
            while client.recv(65536):
                pass


def wrk(port: int, connections: int, close: bool) -> None:
    argv = ["wrk", "-t2", f"-c{connections}", f"-d{WRK_SECONDS}s"]
    if close:
        argv += ["-H", "Connection: close"]
    subprocess.run(
        [*argv, f"http://{LOOPBACK}:{port}/"], check=True, capture_output=True
    )


LOADS: dict[str, Callable[[int], None]] = {
    "sequential": sequential,
    f"{SHORT_CONNECTIONS} short": lambda port: wrk(port, SHORT_CONNECTIONS, True),
    f"{KEEPALIVE_CONNECTIONS} keep-alive": lambda port: wrk(
        port, KEEPALIVE_CONNECTIONS, False
    ),
}


def shares(
    port: int, metricsPorts: list[int], load: Callable[[int], None]
) -> list[float]:
    """
    Run C{load} against C{port}; return each process's share of the
    connections it made.
    """
    before = [accepted(m) for m in metricsPorts]
    load(port)
    # /metrics is rendered at most once a second: let the last page expire.
    time.sleep(METRICS_MAX_AGE)
    counts = [accepted(m) - b for m, b in zip(metricsPorts, before, strict=True)]
    return [count / sum(counts) for count in counts]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--processes", default="2,4")
    options = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("bench.spread needs wrk (apt-get install wrk)")
    workdir = Path(tempfile.mkdtemp(prefix="netdemos-spread-"))
    results: dict[tuple[int, str, str], list[list[float]]] = {}
    for _ in range(options.rounds):
        # Alternate the modes round after round, so drifts hit both alike.
        for processes in map(int, options.processes.split(",")):
            for mode in ("shared", "reuseport"):
                with instances(mode, processes, workdir) as (port, metrics):
                    for name, load in LOADS.items():
                        got = shares(port, metrics, load)
                        results.setdefault((processes, mode, name), []).append(got)
    print(f"{options.rounds} rounds; shares of each load's connections\n")
    print("| processes | socket | load | smallest share | largest share |")
    print("| --- | --- | --- | --- | --- |")
    for (processes, mode, name), rounds in results.items():
        smallest = [min(each) for each in rounds]
        largest = [max(each) for each in rounds]
        print(
            f"| {processes} | {mode} | {name} "
            f"| {statistics.median(smallest):.0%} (lowest {min(smallest):.0%}) "
            f"| {statistics.median(largest):.0%} (highest {max(largest):.0%}) |"
        )
    print("\n(medians over rounds, and the extreme round in brackets)")


if __name__ == "__main__":
    main()
