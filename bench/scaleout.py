"""
The scale-out benchmarks (issue 9): netdemos on Redis against netdemos alone.

C{python -m bench.scaleout [--rounds N] [--seconds S] [--free]
[--baseline PATH]} needs C{redis-server} (and C{wrk}, else the bench's own
HTTP client).  Like C{python -m bench}, the servers (netdemos, Redis, the
naive room) are pinned to CPU 0 and the generator to CPU 1, unless C{--free}
leaves every process free to use every core, as C{netdemos@.service} runs
them; the targets alternate round after round.  C{--baseline} adds the
netdemos of another tree (a checkout of an earlier main) to the HTTP and
two-instance rounds.  It prints a markdown table:

  - the HTTP counter with C{--redis} against the in-process counter;
  - chat fan-out, 200 clients and 4 senders: two instances on one Redis
    (clients split between them) against one instance, and the naive room;
  - a line's latency from a client on one instance to a client on the
    other, at 100 lines a second;
  - the time from Redis coming back to the room being whole again.
"""

from __future__ import annotations

import argparse
import select
import shutil
import socket
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from support.running import freePorts

from bench import loads, servers
from bench.servers import Server


class Redis:
    """
    A redis-server without persistence, pinned with the servers.
    """

    def __init__(self) -> None:
        program = shutil.which("redis-server") or "/usr/bin/redis-server"
        (self.port,) = freePorts(1)
        directory = servers.logDirectory() / f"redis-{self.port}"
        directory.mkdir()
        self.argv = [program, "--port", str(self.port), "--bind", "127.0.0.1"]
        self.argv += ["--save", "", "--appendonly", "no", "--dir", str(directory)]
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> float:
        """
        Start it; return the time it first answered, by C{time.perf_counter}.
        """
        self.process = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )
        servers.pinToServerCPU(self.process.pid)
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port)) as probe:
                    probe.sendall(b"PING\r\n")
                    if probe.recv(64) == b"+PONG\r\n":
                        return time.perf_counter()
            except OSError:
                time.sleep(0.005)

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()


def netdemosOn(redis: Redis | None, name: str, source: Path | None = None) -> Server:
    """
    netdemos with all services, on C{redis} if given, waiting until it serves
    and, on Redis, until it is in the room.  C{source}: a directory holding
    the C{netdemos} to run instead of the installed one.
    """
    options = ["--chat-rate=0", f"--name={name}"]
    if redis is not None:
        options.append(f"--redis={redis.url}")
    server = servers.startNetdemos(name=name, source=source, options=lambda: options)
    server.secondsUntilListening()
    if redis is not None:
        deadline = time.monotonic() + 15
        while "is in the room on Redis" not in server.logPath.read_text():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} never joined the room: {server.logPath}")
            time.sleep(0.02)
    return server


def accepting(server: Server) -> Server:
    server.secondsUntilListening()
    return server


def fanOut(chatPorts: list[int], seconds: float, clients: int = 200) -> float:
    """
    Lines delivered per second to C{clients} spread over C{chatPorts}, with 4
    senders (2 per port when there are two) each keeping 16 lines in flight,
    as L{loads.chatFanOut} does on one port.
    """
    sockets = [loads.connect(chatPorts[i % len(chatPorts)]) for i in range(clients)]
    poller = select.epoll()
    byFd = {s.fileno(): s for s in sockets}
    try:
        for s in sockets:
            poller.register(s.fileno(), select.EPOLLIN)
        loads.drain(byFd, poller, 0.5)
        tokens, lines, tails = {}, {}, {}
        for i, s in enumerate(sockets[:4]):
            tokens[s.fileno()] = b"@S%d@" % (i,)
            lines[s.fileno()] = (tokens[s.fileno()] + b"." * 64)[:62] + b"\r\n"
            tails[s.fileno()] = b""
            s.send(lines[s.fileno()] * 16)
        opens = time.perf_counter() + loads.WARMUP
        closes = opens + seconds
        count = 0
        while (now := time.perf_counter()) < closes:
            for fd, _ in poller.poll(0.5):
                data = loads.recvOrFail(byFd[fd])
                if now >= opens:
                    count += data.count(b"\n")
                loads.resend(byFd[fd], data, tokens.get(fd), tails, lines)
        return count / seconds
    finally:
        poller.close()
        loads.closeAll(sockets)


def readLine(client: socket.socket, buffer: bytearray, deadline: float) -> bytes:
    while b"\r\n" not in buffer:
        client.settimeout(max(deadline - time.monotonic(), 0.001))
        data = client.recv(65536)
        if not data:
            raise loads.LoadError("closed")
        buffer += data
    line, _, rest = bytes(buffer).partition(b"\r\n")
    buffer[:] = rest
    return line


def crossLatency(
    a: Server, b: Server, seconds: float, rate: float = 100.0
) -> list[float]:
    """
    Latencies in seconds of lines said on C{a} and heard on C{b}, at C{rate}.
    """
    sender = socket.create_connection(("127.0.0.1", a.port("chat")))
    receiver = socket.create_connection(("127.0.0.1", b.port("chat")))
    buffer = bytearray()
    try:
        time.sleep(0.5)  # let the welcome and joins pass
        receiver.setblocking(False)
        try:
            while receiver.recv(65536):
                pass
        except BlockingIOError:
            pass
        receiver.setblocking(True)
        latencies = []
        for number in range(int(seconds * rate)):
            sent = time.perf_counter()
            sender.sendall(b"latency %d\n" % (number,))
            wanted = b"> latency %d" % (number,)
            while not readLine(receiver, buffer, time.monotonic() + 5).endswith(wanted):
                pass
            latencies.append(time.perf_counter() - sent)
            time.sleep(max(0.0, sent + 1 / rate - time.perf_counter()))
        return latencies
    finally:
        sender.close()
        receiver.close()


def roomWholeAgain(redis: Redis, a: Server, b: Server) -> float:
    """
    Kill Redis, start it again empty; seconds from its first answer until a
    client on each instance has been told the room is whole again.
    """
    clients = [socket.create_connection(("127.0.0.1", s.port("chat"))) for s in (a, b)]
    buffers = [bytearray(), bytearray()]
    try:
        redis.kill()
        for client, buffer in zip(clients, buffers, strict=True):
            while not readLine(client, buffer, time.monotonic() + 10).startswith(
                b"! cut off"
            ):
                pass
        back = redis.start()
        for client, buffer in zip(clients, buffers, strict=True):
            while not readLine(client, buffer, time.monotonic() + 30).startswith(
                b"* back in touch"
            ):
                pass
        return time.perf_counter() - back
    finally:
        for client in clients:
            client.close()


def alternate(
    rounds: int, measures: dict[str, Callable[[], float]]
) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {label: [] for label in measures}
    for round in range(rounds):
        for label, measure in measures.items():
            results[label].append(measure())
            print(f"  round {round + 1} {label}: {results[label][-1]:,.0f}", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scaleout")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--free", action="store_true", help="pin nothing")
    parser.add_argument("--baseline", type=Path, help="a tree to compare with")
    args = parser.parse_args()
    if args.free:
        servers.runFree()
    servers.pinToGeneratorCPU()
    redis = Redis()
    redis.start()
    rows: list[str] = []

    def withServers(
        starts: list[Callable[[], Server]], measure: Callable[[list[Server]], float]
    ) -> Callable[[], float]:
        def run() -> float:
            running = [start() for start in starts]
            try:
                return measure(running)
            finally:
                for server in running:
                    server.stop()

        return run

    http = alternate(
        args.rounds,
        {
            "redis": withServers(
                [lambda: netdemosOn(redis, "h")],
                lambda s: loads.httpLoad()(s[0], args.seconds)["rate"],
            ),
            "memory": withServers(
                [lambda: netdemosOn(None, "h")],
                lambda s: loads.httpLoad()(s[0], args.seconds)["rate"],
            ),
            **(
                {}
                if args.baseline is None
                else {
                    "redis, baseline": withServers(
                        [lambda: netdemosOn(redis, "h", args.baseline)],
                        lambda s: loads.httpLoad()(s[0], args.seconds)["rate"],
                    )
                }
            ),
        },
    )
    chat = alternate(
        args.rounds,
        {
            "two": withServers(
                [lambda: netdemosOn(redis, "a"), lambda: netdemosOn(redis, "b")],
                lambda s: fanOut([each.port("chat") for each in s], args.seconds),
            ),
            "one": withServers(
                [lambda: netdemosOn(None, "one")],
                lambda s: fanOut([s[0].port("chat")], args.seconds),
            ),
            **(
                {}
                if args.baseline is None
                else {
                    "two, baseline": withServers(
                        [
                            lambda: netdemosOn(redis, "a", args.baseline),
                            lambda: netdemosOn(redis, "b", args.baseline),
                        ],
                        lambda s: fanOut(
                            [each.port("chat") for each in s], args.seconds
                        ),
                    )
                }
            ),
            "naive": withServers(
                [lambda: accepting(servers.startBaseline("chat"))],
                lambda s: fanOut([s[0].port("chat")], args.seconds),
            ),
        },
    )
    a, b = netdemosOn(redis, "a"), netdemosOn(redis, "b")
    try:
        latencies = sorted(crossLatency(a, b, args.seconds * 2))
        whole = [roomWholeAgain(redis, a, b) for _ in range(args.rounds)]
    finally:
        a.stop()
        b.stop()
        redis.kill()

    median = statistics.median
    ratio = median(http["redis"]) / median(http["memory"])
    rows.append(
        f"| HTTP, {'wrk -t1 -c50' if shutil.which('wrk') else 'own client, 50 conns'}"
        f" | requests/s | {median(http['redis']):,.0f} with --redis"
        f" | {median(http['memory']):,.0f} in memory | {ratio:.2f} | ≥ 0.8"
        f" {'✓' if ratio >= 0.8 else '✗'} |"
    )
    two, one, naive = (median(chat[key]) for key in ("two", "one", "naive"))
    rows.append(
        f"| chat fan-out, 200 clients, 4 senders | lines delivered/s | {two:,.0f} on"
        f" two instances | {one:,.0f} on one | {two / one:.2f} | ≥ 0.6"
        f" {'✓' if two / one >= 0.6 else '✗'} |"
    )
    rows.append(
        f"| chat fan-out, 200 clients, 4 senders | lines delivered/s | {two:,.0f} on"
        f" two instances | {naive:,.0f} naive room | {two / naive:.2f} | ≥ 2"
        f" {'✓' if two / naive >= 2 else '✗'} |"
    )
    p50 = latencies[len(latencies) // 2] * 1000
    p99 = latencies[int(len(latencies) * 0.99)] * 1000
    rows.append(
        f"| line from instance A to B, 100 lines/s | latency | p50 {p50:.2f} ms,"
        f" p99 {p99:.2f} ms | | | p99 < 5 ms {'✓' if p99 < 5 else '✗'} |"
    )
    rows.append(
        f"| Redis back, empty | room whole again | median {median(whole):.2f} s,"
        f" worst {max(whole):.2f} s | | | < 2 s {'✓' if max(whole) < 2 else '✗'} |"
    )
    if args.baseline is not None:
        before = median(http["redis, baseline"])
        rows.append(
            f"| HTTP with --redis | requests/s | {median(http['redis']):,.0f}"
            f" | {before:,.0f} baseline | {median(http['redis']) / before:.2f} | |"
        )
        before = median(chat["two, baseline"])
        rows.append(
            f"| chat fan-out on two instances | lines delivered/s | {two:,.0f}"
            f" | {before:,.0f} baseline | {two / before:.2f} | |"
        )
    print(f"servers {'free on every core' if args.free else 'pinned to CPU 0'}\n")
    print("| load | metric | measured | against | ratio | target |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))
    logs = servers.logDirectory()
    print(f"\n{args.rounds} rounds of {args.seconds:g} s; logs in {logs}")


if __name__ == "__main__":
    main()
