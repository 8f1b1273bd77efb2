"""
Run the netdemos benchmarks and print a markdown report.

C{python -m bench [--quick]
[--only echo,bulk,http,chat,idle,startup,burst,join,flood,wschat,wsecho,
loadtest,udp] [--previous PATH] [--profile]}.
Servers run one at a time, pinned to CPU 0; the generator runs in this
process (and C{wrk}) on CPU 1.  Every load alternates netdemos, the
naive homepage script and, where one exists, the asyncio peer, round after
round, so slow drifts in the machine hit all of them alike.
"""

from __future__ import annotations

import argparse
import math
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from support.running import childEnvironment

from bench import loads, servers
from bench.servers import Server

LOAD_NAMES = (
    "echo",
    "bulk",
    "http",
    "chat",
    "idle",
    "startup",
    "burst",
    "join",
    "flood",
    "wschat",
    "wsecho",
    "loadtest",
    "udp",
)


@dataclass(frozen=True)
class Target:
    """
    A server to measure; C{role} is "subject", "baseline" or "peer".  It is
    measured by its load's C{measure}, unless it has its own.
    """

    label: str
    role: str
    start: Callable[[], Server]
    measure: Callable[[Server, float], dict[str, float]] | None = None


@dataclass(frozen=True)
class Metric:
    key: str
    title: str
    unit: str
    scale: float = 1.0
    digits: int = 0
    goal: str = ""
    met: Callable[[float, float], bool] | None = None  # (subject, ratio)


@dataclass
class Load:
    name: str
    targets: list[Target]
    measure: Callable[[Server, float], dict[str, float]]
    metrics: list[Metric]
    rounds: int
    results: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Settings:
    rounds: int
    seconds: float
    wrkSeconds: int
    idleClients: int
    idleRounds: int
    idleTimeout: float
    burstClients: int
    burstRounds: int
    joinClients: int
    floodClients: int
    source: Path | None
    previous: Path | None


def rateMetrics(unit: str, goal: str, minimum: float, digits: int = 0) -> list[Metric]:
    return [
        Metric(
            "rate",
            "rate",
            unit,
            digits=digits,
            goal=goal,
            met=lambda n, r: r >= minimum,
        )
    ]


def buildLoads(settings: Settings) -> dict[str, Load]:
    def netdemos(
        extra: str = "",
        label: str = "netdemos",
        options: Callable[[], list[str]] = list,
    ) -> Target:
        start = partial(servers.startNetdemos, extra, label, settings.source, options)
        return Target(label, "subject", start)

    def previous(options: Callable[[], list[str]] = list) -> list[Target]:
        # The same load on another tree (the previous main, say), alternating
        # with this one round after round, if --previous names one.
        if settings.previous is None:
            return []
        start = partial(
            servers.startNetdemos, "", "netdemos, previous", settings.previous, options
        )
        return [Target("netdemos, previous", "subject", start)]

    def naive(service: str, *companions: str) -> Target:
        start = partial(servers.startBaseline, service, *companions)
        return Target("naive", "baseline", start)

    def peer(service: str) -> Target:
        return Target("asyncio peer", "peer", partial(servers.startPeer, service))

    def timed(
        run: Callable[[Server, float], dict[str, float]],
    ) -> Callable[[Server, float], dict[str, float]]:
        return lambda server, startup: run(server, settings.seconds)

    def overTCP(
        label: str,
        run: Callable[..., dict[str, float]],
        options: Callable[[], list[str]] = list,
    ) -> Target:
        # The same netdemos, measured over TCP: what the WebSocket loads
        # are compared with.
        start = partial(servers.startNetdemos, "", label, settings.source, options)
        return Target(label, "baseline", start, timed(run))

    rounds = settings.rounds
    # A Python generator is slower per message than the echo servers it
    # measures; the C one keeps the server the bottleneck.
    if loads.echoLoadProgram() is not None:
        echoTool, pingPong, bulk = (
            "C generator",
            loads.echoPingPongInC,
            loads.echoBulkInC,
        )
    else:
        echoTool, pingPong, bulk = (
            "Python generator",
            loads.echoPingPong,
            loads.echoBulk,
        )
    return {
        "echo": Load(
            f"echo ping-pong (50 conns, 64 B, 1 in flight; {echoTool})",
            [netdemos(), *previous(), naive("echo"), peer("echo")],
            timed(pingPong),
            rateMetrics("messages/s", "ratio >= 1.6", 1.6),
            rounds,
        ),
        "bulk": Load(
            f"echo bulk (4 conns, 16 KiB, 8 in flight; {echoTool})",
            [netdemos(), *previous(), naive("echo"), peer("echo")],
            timed(bulk),
            rateMetrics("MB/s", "ratio >= 1.0", 1.0, digits=1),
            rounds,
        ),
        "http": Load(
            f"HTTP ({httpTool(settings)})",
            [
                netdemos(),
                *previous(),
                naive("http"),
                netdemos(
                    label="netdemos --counter-file --metrics",
                    options=servers.operatorOptions,
                ),
                peer("http"),
            ],
            lambda server, startup: loads.httpLoad()(server, settings.wrkSeconds),
            rateMetrics("requests/s", "ratio >= 1.4", 1.4),
            rounds,
        ),
        "chat": Load(
            "chat fan-out (200 clients, 4 senders x 16 in flight, 64 B lines;"
            " netdemos --chat-rate=0)",
            [
                netdemos(options=servers.chatRateLifted),
                *previous(servers.chatRateLifted),
                naive("chat"),
                netdemos(label="netdemos (default --chat-rate)"),
                peer("chat"),
            ],
            timed(loads.chatFanOut),
            rateMetrics("lines delivered/s", "ratio >= 3.0", 3.0),
            rounds,
        ),
        "loadtest": Load(
            "chat load test (netdemos --chat-rate=0): 1 client sends 500 B lines"
            " as fast as TCP takes them, 2 read everything",
            [
                netdemos(options=servers.chatRateLifted),
                *previous(servers.chatRateLifted),
                naive("chat"),
                peer("chat"),
            ],
            timed(loads.chatLoadTest),
            [
                Metric("rate", "rate", "lines delivered/s"),
                Metric(
                    "kept",
                    "readers still connected",
                    "of 2",
                    goal="2",
                    met=lambda n, r: n == 2,
                ),
            ],
            rounds,
        ),
        "wschat": Load(
            "WebSocket chat fan-out (200 clients, 4 senders x 16 in flight,"
            " 62 B lines) against the TCP room",
            [
                # Throughput, not flood control, is measured: both wires lift
                # the limit.
                Target(
                    "netdemos",
                    "subject",
                    netdemos(options=servers.chatRateLifted).start,
                    timed(partial(loads.chatFanOut, webSocket=True)),
                ),
                overTCP("TCP room", loads.chatFanOut, servers.chatRateLifted),
            ],
            timed(loads.chatFanOut),
            rateMetrics("lines delivered/s", "ratio >= 0.5", 0.5),
            rounds,
        ),
        "udp": Load(
            "UDP echo (1 client, 64 B, 32 in flight; netdemos with"
            " --echo-udp-rate and --echo-udp-burst at their maximum)",
            [
                Target(
                    "netdemos",
                    "subject",
                    partial(servers.startNetdemosUDP, "netdemos", settings.source),
                ),
                naive("echo-udp"),
                peer("echo-udp"),
            ],
            timed(loads.udpEcho),
            rateMetrics("datagrams/s", "ratio >= 0.9", 0.9),
            rounds,
        ),
        "wsecho": Load(
            "WebSocket echo ping-pong (50 conns, 64 B, 1 in flight) against TCP echo",
            [
                Target(
                    "netdemos",
                    "subject",
                    netdemos().start,
                    timed(partial(loads.echoPingPong, webSocket=True)),
                ),
                overTCP("TCP echo", loads.echoPingPong),
            ],
            timed(loads.echoPingPong),
            [Metric("rate", "rate", "messages/s")],
            rounds,
        ),
        "idle": Load(
            f"idle chat ({settings.idleClients} connections)",
            [netdemos(), *previous(), naive("chat"), peer("chat")],
            lambda server, startup: loads.chatIdle(
                server, settings.idleClients, settings.idleTimeout
            ),
            [
                Metric(
                    "rss",
                    "RSS per connection",
                    "KB",
                    scale=1e-3,
                    digits=2,
                    goal="<= 10 KB",
                    met=lambda n, r: n <= 10e3,
                ),
                Metric(
                    "fanout",
                    "one line reaches all",
                    "ms",
                    scale=1e3,
                    goal="< 1000 ms",
                    met=lambda n, r: n < 1.0,
                ),
                Metric("settle", "all joined, server idle", "s", digits=1),
            ],
            settings.idleRounds,
        ),
        "startup": Load(
            "startup (exec to every port accepting)",
            # The naive reference is the web script: the heaviest import.
            [netdemos(), *previous(), naive("http")],
            lambda server, startup: {"startup": startup},
            [
                Metric(
                    "startup",
                    "startup",
                    "ms",
                    scale=1e3,
                    goal="< 1000 ms",
                    met=lambda n, r: n < 1.0,
                )
            ],
            rounds,
        ),
        "burst": Load(
            f"connection burst ({settings.burstClients} echo connections at once)",
            [
                netdemos(),
                *previous(),
                naive("echo"),
                netdemos(":backlog=1024", "netdemos backlog=1024"),
                peer("echo"),
            ],
            lambda server, startup: {
                "burst": loads.connectionBurst(server, settings.burstClients, 90)
            },
            [Metric("burst", "all accepted", "s", digits=2)],
            settings.burstRounds,
        ),
        "join": Load(
            f"chat join ({settings.joinClients} clients connecting at once)",
            [netdemos(), *previous(), naive("chat")],
            lambda server, startup: loads.chatJoin(server, settings.joinClients, 60),
            [
                Metric(
                    "join",
                    "all admitted",
                    "s",
                    digits=2,
                    goal="ratio <= 1.5",
                    met=lambda n, r: r <= 1.5,
                ),
                Metric("cpu", "server CPU meanwhile", "s", digits=2),
            ],
            rounds,
        ),
        "flood": Load(
            f"command flood (/nick, {settings.seconds:g}s) in a chat room of"
            f" {settings.floodClients}; HTTP GETs meanwhile",
            # The naive chat and web counter are two processes on one CPU.
            [netdemos(), *previous(), naive("chat", "http")],
            timed(partial(loads.chatFlood, clients=settings.floodClients)),
            [
                Metric(
                    "worst",
                    "worst HTTP latency",
                    "ms",
                    scale=1e3,
                    digits=1,
                    goal="< 100 ms",
                    met=lambda n, r: n < 0.1,
                ),
                Metric("median", "median HTTP latency", "ms", scale=1e3, digits=2),
            ],
            rounds,
        ),
    }


def httpTool(settings: Settings) -> str:
    if shutil.which("wrk"):
        return f"wrk -t1 -c50 -d{settings.wrkSeconds}s"
    return f"own keep-alive client, 50 conns, {settings.seconds:g}s"


def runLoad(load: Load) -> None:
    """
    Measure every target of C{load}, alternating, for C{load.rounds} rounds.
    """
    for target in load.targets:
        load.results[target.label] = []
    for round in range(1, load.rounds + 1):
        for target in load.targets:
            server = target.start()
            try:
                startup = server.secondsUntilListening()
                values = (target.measure or load.measure)(server, startup)
            except (loads.LoadError, RuntimeError, OSError) as e:
                values = {}
                load.errors.append(f"{target.label}, round {round}: {e}")
            finally:
                server.stop()
            load.results[target.label].append(values)
            shown = ", ".join(f"{k}={v:.4g}" for k, v in values.items()) or "failed"
            progress(f"  {load.name} | round {round} | {target.label}: {shown}")


def median(values: list[float]) -> float:
    values = [v for v in values if not math.isnan(v)]
    return statistics.median(values) if values else math.nan


def column(load: Load, label: str, key: str) -> list[float]:
    return [each.get(key, math.nan) for each in load.results.get(label, [])]


def tableRows(load: Load) -> list[str]:
    baseline = next(t.label for t in load.targets if t.role == "baseline")
    peers = [t.label for t in load.targets if t.role == "peer"]
    rows = []
    for metric in load.metrics:
        base = column(load, baseline, metric.key)
        for subject in (t.label for t in load.targets if t.role == "subject"):
            mine = column(load, subject, metric.key)
            ratio = median([a / b for a, b in zip(mine, base, strict=True) if b])
            value, reference = median(mine), median(base)
            ceiling = median(column(load, peers[0], metric.key)) if peers else math.nan
            busy = "/".join(
                fmt(median(column(load, label, "busy")) * 100, 0)
                for label in (subject, baseline, *peers)
            )
            # The server's CPU time for each unit of the rate: unlike the
            # rate, it holds when the host lends the VM's CPUs elsewhere.
            perUnit = (
                "/".join(
                    fmt(cpuPerUnit(load, label), 1) for label in (subject, baseline)
                )
                if metric.key == "rate"
                else ""
            )
            # The goals are netdemos's own, not its variants'.
            goal, verdict = "", ""
            if subject == "netdemos":
                goal = metric.goal
                if metric.met is not None:
                    verdict = "yes" if metric.met(value, ratio) else "**no**"
            rows.append(
                f"| {load.name} | {metric.title} ({metric.unit}) | {subject} "
                f"| {fmt(value * metric.scale, metric.digits)} "
                f"| {fmt(reference * metric.scale, metric.digits)} "
                f"| {fmt(ratio, 2)} "
                f"| {fmt(ceiling * metric.scale, metric.digits)} "
                f"| {busy if busy.strip('/') else ''} "
                f"| {perUnit if perUnit.strip('/') else ''} "
                f"| {goal} | {verdict} |"
            )
    return rows


def cpuPerUnit(load: Load, label: str) -> float:
    """
    The median, over rounds, of the server's CPU microseconds for each unit
    of the rate (a message, a request, a megabyte).
    """
    perUnit = [
        busy / rate * 1e6
        for busy, rate in zip(
            column(load, label, "busy"), column(load, label, "rate"), strict=True
        )
        if rate and not math.isnan(busy)
    ]
    return median(perUnit) if perUnit else math.nan


def fmt(value: float, digits: int) -> str:
    return "" if math.isnan(value) else f"{value:,.{digits}f}"


def machine(settings: Settings) -> list[str]:
    import twisted

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    where = subprocess.run(
        [sys.executable, "-c", "import netdemos; print(netdemos.__file__)"],
        capture_output=True,
        text=True,
        env=childEnvironment(settings.source),
        cwd="/",
    ).stdout.strip()
    wrk = shutil.which("wrk") or "not installed"
    return [
        f"- command: `{' '.join(['python', '-m', 'bench', *sys.argv[1:]])}`",
        f"- machine: {servers.os.cpu_count()} cores ({cpu}),"
        f" {platform.system()} {platform.release()}",
        f"- Python {platform.python_version()}, Twisted {twisted.__version__},"
        f" netdemos from {where}, wrk: {wrk}",
        f"- servers pinned to CPU {servers.SERVER_CPU}, generator/wrk to CPU"
        f" {servers.GENERATOR_CPU}; {settings.rounds} rounds of"
        f" {settings.seconds:g}s (+{loads.WARMUP:g}s warm-up), alternating",
        f"- server logs (netdemos logs as twistd -n does, to stdout): "
        f"{servers.logDirectory()}",
    ]


def cpuTimes() -> dict[str, list[int]]:
    """
    Each CPU's times from C{/proc/stat}, in clock ticks.
    """
    return {
        fields[0]: [int(n) for n in fields[1:]]
        for fields in map(str.split, Path("/proc/stat").read_text().splitlines())
        if fields and fields[0].startswith("cpu") and fields[0] != "cpu"
    }


def stealSince(before: dict[str, list[int]]) -> str:
    """
    How much of each CPU's time the host gave to others since C{before}
    (steal time): rates measured while it is high are low, and noisy.
    """
    shares = []
    for cpu, now in cpuTimes().items():
        spent = [b - a for a, b in zip(before.get(cpu, now), now, strict=False)]
        # user nice system idle iowait irq softirq steal
        total = sum(spent[:8])
        if len(spent) > 7 and total:
            shares.append(f"{cpu} {100 * spent[7] / total:.0f}%")
    return f"CPU steal time during the run: {', '.join(shares) or 'unknown'}."


def report(
    selected: list[Load], settings: Settings, elapsed: float, steal: str = ""
) -> str:
    lines = ["# netdemos benchmark", "", *machine(settings), ""]
    lines.append(
        "| Load | Metric | subject | subject median | naive median "
        "| subject/naive (median of ratios) | asyncio peer median (ceiling) "
        "| server CPU % subj/naive/peer | server CPU µs per unit subj/naive "
        "| Target | Met |"
    )
    lines.append("|" + "---|" * 11)
    for load in selected:
        lines.extend(tableRows(load))
    errors = [f"- {load.name}: {e}" for load in selected for e in load.errors]
    if errors:
        lines += ["", "Failures:", *errors]
    lines += ["", f"Total time: {elapsed:.0f}s. {steal}"]
    return "\n".join(lines)


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def raiseFileLimit() -> None:
    # 10,000 clients here and 10,000 connections in the server; the servers
    # inherit this limit.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def parseArguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smoke test: short")
    parser.add_argument(
        "--only", default=",".join(LOAD_NAMES), help="comma-separated loads"
    )
    parser.add_argument("--rounds", type=int, help="rounds per load (default 5)")
    parser.add_argument(
        "--idle-clients", type=int, help="connections for the idle test (10000)"
    )
    parser.add_argument(
        "--netdemos-source",
        type=Path,
        help="directory holding a netdemos package to run instead of the installed",
    )
    parser.add_argument(
        "--previous",
        type=Path,
        help="directory holding another netdemos package (the previous main) to"
        " measure beside this one on every load, alternating rounds",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also profile netdemos with py-spy under chat fan-out and HTTP",
    )
    return parser.parse_args(argv)


def settingsFrom(args: argparse.Namespace) -> Settings:
    quick = args.quick
    rounds = args.rounds or (2 if quick else 5)
    return Settings(
        rounds=rounds,
        seconds=1.0 if quick else 3.0,
        wrkSeconds=2 if quick else 5,
        idleClients=args.idle_clients or (2000 if quick else 10000),
        # netdemos needs minutes to admit 10,000 chat clients (see the report),
        # so the idle load runs fewer rounds than the others.
        idleRounds=1 if quick else min(rounds, 2),
        idleTimeout=60.0 if quick else 150.0,
        burstClients=2000 if quick else 10000,
        burstRounds=1 if quick else min(rounds, 3),
        joinClients=2000,
        floodClients=1000,
        source=args.netdemos_source,
        previous=args.previous,
    )


def main(argv: list[str]) -> None:
    args = parseArguments(argv)
    settings = settingsFrom(args)
    wanted = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(wanted) - set(LOAD_NAMES)
    if unknown:
        raise SystemExit(f"unknown loads: {', '.join(sorted(unknown))}")
    raiseFileLimit()
    servers.pinToGeneratorCPU()
    began = time.perf_counter()
    timesAtStart = cpuTimes()
    allLoads = buildLoads(settings)
    selected = [allLoads[name] for name in wanted]
    for load in selected:
        progress(f"{load.name}:")
        runLoad(load)
    elapsed = time.perf_counter() - began
    print(report(selected, settings, elapsed, stealSince(timesAtStart)))
    if args.profile:
        from bench import profiling

        print(profiling.profileAll(settings.seconds * 2, settings.source))


if __name__ == "__main__":
    main(sys.argv[1:])
