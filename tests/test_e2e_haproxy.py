"""
End-to-end tests of netdemos behind a real HAProxy, with the PROXY protocol:
the shipped C{contrib/haproxy/haproxy.cfg} in front of two instances on one
Redis, every port in it replaced by a free one.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from backbone_support import HAProxy, RedisServer
from e2e_support import LINE_TIMEOUT, LOOPBACK, ChatUser, Netdemos, freePorts
from operator_support import (
    OperatorLauncher,
    readUntilClosed,
    sample,
    scrapeMetrics,
    waitUntilListening,
)
from test_e2e_redis import getNumbers, waitForReadiness


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    with ExitStack() as stack:
        yield stack


@pytest.fixture
def launcher(tmp_path: Path, stack: ExitStack) -> OperatorLauncher:
    return OperatorLauncher(tmp_path, stack)


def behindHAProxy(
    launcher: OperatorLauncher, redis: RedisServer, name: str, ports: dict[str, int]
) -> Netdemos:
    """
    Start an instance on the ports HAProxy's backends use: chat and echo
    expecting a PROXY header, HTTP and metrics plain.
    """
    server = launcher._spawn(
        [
            f"--echo=haproxy:tcp:{ports['echo']}:interface={LOOPBACK}",
            f"--http=tcp:{ports['http']}:interface={LOOPBACK}",
            f"--chat=haproxy:tcp:{ports['chat']}:interface={LOOPBACK}",
            f"--metrics=tcp:{ports['metrics']}:interface={LOOPBACK}",
            f"--name={name}",
            f"--redis={redis.url}",
        ],
        {service: [port] for service, port in ports.items()},
        {},
        None,
    )
    waitUntilListening(server)
    server.waitUntilLogged(f"chat: {name} is in the room on Redis")
    waitForReadiness(server, 200)
    return server


def test_shippedConfigurationIsValid(tmp_path: Path, stack: ExitStack) -> None:
    result = HAProxy(tmp_path, stack).check()
    assert result.returncode == 0, result.stdout + result.stderr


def test_clientsOwnAddressesAndOneCountBehindHAProxy(
    launcher: OperatorLauncher, tmp_path: Path, stack: ExitStack
) -> None:
    """
    Behind HAProxy with send-proxy, the room names each client by its own
    address, not HAProxy's; echo works through it; and GETs balanced over
    both instances never repeat a number.
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
        ChatUser(port[1025], source=source) for source in ("127.0.0.5", "127.0.0.6")
    ]
    for user in users:
        stack.callback(user.close)
    users[0].send(b"through the balancer\n")
    for user in users:
        user.inbox.waitForLine(f"<127.0.0.5:{users[0].localPort}> through the balancer")

    with socket.create_connection((LOOPBACK, port[1234]), timeout=LINE_TIMEOUT) as echo:
        echo.sendall(b"ping")
        echo.shutdown(socket.SHUT_WR)
        assert readUntilClosed(echo, time.monotonic() + LINE_TIMEOUT) == (
            b"ping",
            "EOF",
        )


def test_aClientWithoutAHeaderIsClosedAndCounted(
    launcher: OperatorLauncher, tmp_path: Path, stack: ExitStack
) -> None:
    """
    Straight to a haproxy: endpoint, without the balancer's header: the
    connection is closed without a word, and counted.
    """
    chatPort, metrics = freePorts(2)
    proxied = launcher._spawn(
        [
            f"--chat=haproxy:tcp:{chatPort}:interface={LOOPBACK}",
            "--echo=none",
            "--http=none",
            f"--metrics=tcp:{metrics}:interface={LOOPBACK}",
        ],
        {"chat": [chatPort], "metrics": [metrics]},
        {},
        None,
    )
    waitUntilListening(proxied)
    with socket.create_connection((LOOPBACK, chatPort), timeout=LINE_TIMEOUT) as client:
        client.sendall(b"hello, no header here\n")
        received, _ = readUntilClosed(client, time.monotonic() + LINE_TIMEOUT)
    assert received == b""
    samples = scrapeMetrics(metrics)
    assert (
        sample(
            samples,
            "netdemos_connections_rejected_total",
            service="chat",
            reason="proxy",
        )
        == 1
    )
