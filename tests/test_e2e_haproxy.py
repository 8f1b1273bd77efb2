"""
End-to-end tests of netdemos behind a real HAProxy, with the PROXY protocol:
the shipped C{contrib/haproxy/haproxy.cfg} in front of two instances on one
Redis, every port in it replaced by a free one.
"""

from __future__ import annotations

import socket
import subprocess
import time
from contextlib import ExitStack
from pathlib import Path

import websockets.sync.client
from support import LINE_TIMEOUT
from support.backbone import HAProxy, RedisServer, requireProgram, stop
from support.clients import Clients, connect, getNumbers, waitForReadiness
from support.process import Launcher, Netdemos
from support.prometheus import sample, scrapeMetrics
from support.proxy import FORGED_V1_HEADERS
from support.running import LOOPBACK, readUntilClosed


def behindHAProxy(
    launcher: Launcher, redis: RedisServer, name: str, ports: dict[str, int]
) -> Netdemos:
    """
    Start an instance on the ports HAProxy's backends use: chat, echo and
    web expecting a PROXY header, HTTP and metrics plain.
    """
    server = launcher.start(
        services=["echo", "http", "chat", "web"],
        metrics=True,
        extra=[f"--name={name}", f"--redis={redis.url}"],
        proxied=["echo", "chat", "web"],
        ports=ports,
    )
    server.waitUntilLogged(f"chat: {name} is in the room on Redis")
    waitForReadiness(server.metricsPort, 200)
    return server


def test_shippedConfigurationIsValid(tmp_path: Path, stack: ExitStack) -> None:
    result = HAProxy(tmp_path, stack).check()
    assert result.returncode == 0, result.stdout + result.stderr


def test_clientsOwnAddressesAndOneCountBehindHAProxy(
    launcher: Launcher, clients: Clients, tmp_path: Path, stack: ExitStack
) -> None:
    """
    Behind HAProxy with send-proxy, the room names each client by its own
    address, not HAProxy's, a WebSocket member as much as a TCP one; echo
    works through it; and GETs balanced over both instances never repeat a
    number; the web site's /whoami names the client and the balancer.
    """
    redis = RedisServer(tmp_path, stack).start()
    proxy = HAProxy(tmp_path, stack)
    port = proxy.ports
    for name, shift in (("a", 10000), ("b", 20000)):
        behindHAProxy(
            launcher,
            redis,
            name,
            {
                "echo": port[shift + 1234],
                "http": port[shift + 8080],
                "chat": port[shift + 1025],
                "web": port[shift + 8081],
                "metrics": port[shift + 9100],
            },
        )
    proxy.start()

    answers: list[tuple[int, str]] = []
    while {name for _, name in answers} != {"a", "b"} or len(answers) < 100:
        assert len(answers) < 1000, "HAProxy never balanced onto both"
        answers += getNumbers(port[8080], 10)
    numbers = [number for number, _ in answers]
    assert len(set(numbers)) == len(numbers)

    users = [
        clients.chatUser(port[1025], source=source)
        for source in ("127.0.0.5", "127.0.0.6")
    ]
    users[0].send(b"through the balancer\n")
    for user in users:
        user.inbox.waitForLine(f"<127.0.0.5:{users[0].localPort}> through the balancer")

    browser = clients.connect(port[8081], source="127.0.0.7")
    browserName = f"127.0.0.7:{browser.getsockname()[1]}"
    with websockets.sync.client.connect(
        f"ws://{LOOPBACK}:{port[8081]}/chat", sock=browser, open_timeout=LINE_TIMEOUT
    ) as member:
        welcome = member.recv(timeout=LINE_TIMEOUT)
        assert str(welcome).startswith(f"* welcome, you are {browserName} ("), welcome
        member.send("from a browser")
        for user in users:
            user.inbox.waitForLine(f"<{browserName}> from a browser")

    # The web site's mirror shows both: the client the PROXY header names,
    # and HAProxy's own connection, as TCP saw it.
    with clients.connect(port[8081], source="127.0.0.8") as mirror:
        mirror.sendall(b"GET /whoami HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer, _ = readUntilClosed(mirror, time.monotonic() + LINE_TIMEOUT)
        seen = dict(
            line.split(": ", 1)
            for line in answer.split(b"\r\n\r\n", 1)[1].decode().splitlines()
        )
        assert seen["Proxy-Peer"] == f"127.0.0.8:{mirror.getsockname()[1]}"
        assert seen["Peer"].startswith("127.0.0.1:"), seen

    with socket.create_connection((LOOPBACK, port[1234]), timeout=LINE_TIMEOUT) as echo:
        echo.sendall(b"ping")
        echo.shutdown(socket.SHUT_WR)
        assert readUntilClosed(echo, time.monotonic() + LINE_TIMEOUT) == (
            b"ping",
            "EOF",
        )


def test_aClientWithoutAHeaderIsClosedAndCounted(launcher: Launcher) -> None:
    """
    Straight to a haproxy: endpoint, without the balancer's header: the
    connection is closed without a word, and counted.
    """
    proxied = launcher.start(services=["chat"], metrics=True, proxied=["chat"])
    with connect(proxied.chatPort) as client:
        client.sendall(b"hello, no header here\n")
        received, _ = readUntilClosed(client, time.monotonic() + LINE_TIMEOUT)
    assert received == b""
    samples = scrapeMetrics(proxied.metricsPort)
    assert (
        sample(
            samples,
            "netdemos_connections_rejected_total",
            service="chat",
            reason="proxy",
        )
        == 1
    )


def test_aUnixSocketFrontendIsServedAsTheBalancer(
    launcher: Launcher, tmp_path: Path, stack: ExitStack
) -> None:
    """
    HAProxy in front of a UNIX socket sends C{PROXY UNKNOWN}, having no TCP
    addresses to give, as the spec allows: netdemos serves the connection
    under the balancer's own address.
    """
    proxied = launcher.start(services=["chat"], proxied=["chat"])
    path = tmp_path / "chat.sock"
    config = tmp_path / "unix.cfg"
    config.write_text(
        "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n"
        "  timeout server 30s\n"
        f"frontend chat\n  bind unix@{path}\n  default_backend room\n"
        f"backend room\n  server n1 {LOOPBACK}:{proxied.chatPort} send-proxy\n"
    )
    program = requireProgram("haproxy", "haproxy")
    with (tmp_path / "haproxy.log").open("wb") as log:
        process = subprocess.Popen(
            [program, "-db", "-f", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    stack.callback(stop, process)
    deadline = time.monotonic() + LINE_TIMEOUT
    while not path.exists():
        assert process.poll() is None, (tmp_path / "haproxy.log").read_text()
        assert time.monotonic() < deadline, "haproxy never listened"
        time.sleep(0.02)  # a polling interval
    with socket.socket(socket.AF_UNIX) as client:
        client.settimeout(LINE_TIMEOUT)
        client.connect(str(path))
        client.sendall(b"/who\n")
        received = b""
        while b"* in the room (1): " not in received:
            chunk = client.recv(4096)
            assert chunk, received
            received += chunk
    assert b"* welcome, you are 127.0.0.1:" in received, received


def test_forgedProxyHeadersAreRefusedAndCounted(launcher: Launcher) -> None:
    """
    A v1 header whose addresses or ports are not what the spec allows is
    refused like any invalid header: closed without a word, counted, and no
    traceback; nobody joins the room under a forged name.
    """
    proxied = launcher.start(services=["chat"], metrics=True, proxied=["chat"])
    for header in FORGED_V1_HEADERS:
        with connect(proxied.chatPort) as client:
            client.sendall(header + b"hello\n")
            received, _ = readUntilClosed(client, time.monotonic() + LINE_TIMEOUT)
        assert received == b"", (header, received)
    samples = scrapeMetrics(proxied.metricsPort)
    rejected = sample(
        samples, "netdemos_connections_rejected_total", service="chat", reason="proxy"
    )
    assert rejected == len(FORGED_V1_HEADERS)
    proxied.assertNoErrorsLogged()
    assert "\x1b" not in proxied.output()
