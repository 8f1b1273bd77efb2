"""
End-to-end: the UDP echo of the installed C{twistd netdemos}, on real
sockets.  It echoes datagrams of any size whole, never to a privileged port,
holds a flooding source to its rate while others are still served, and a flood
from many (forged) addresses costs it bounded memory.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest
from support.process import Launcher, Netdemos, runNetdemos
from support.prometheus import sample, scrapeMetrics
from support.running import LOOPBACK
from support.udp import freeUDPPort, roundTrip, sendFrom, udpClient

# What twistd starts with by default (netdemos.udpecho's DEFAULT_RATE and
# DEFAULT_BURST), which these tests count on.
RATE = 100
BURST = 200


def startUDPEcho(
    launcher: Launcher, *extra: str, metrics: bool = False
) -> tuple[Netdemos, tuple[str, int]]:
    """
    Start netdemos with only the UDP echo, on a free loopback port; return
    it and the address it echoes on.
    """
    for _ in range(3):
        port = freeUDPPort()
        server = launcher.start(
            services=[],
            metrics=metrics,
            extra=[f"--echo-udp=udp:{port}:interface={LOOPBACK}", *extra],
            waitUntilStarted=lambda server: None,
        )
        try:
            server.waitUntilLogged("netdemos: ready")
        except AssertionError:
            if "already in use" not in server.output():
                raise
            continue  # taken between choosing it and binding it
        return server, (LOOPBACK, port)
    raise AssertionError("no free UDP port in 3 attempts")


def udpFigures(server: Netdemos) -> dict[str, float]:
    samples = scrapeMetrics(server.metricsPort)
    figures = {
        result: sample(samples, "netdemos_udp_datagrams_total", result=result)
        for result in ("echoed", "dropped_port", "dropped_rate", "dropped_self")
    }
    figures["sources"] = sample(samples, "netdemos_udp_sources")
    return figures


def waitForFigures(
    server: Netdemos, done: object, timeout: float = 15.0
) -> dict[str, float]:
    """
    Scrape until C{done(figures)} holds (C{/metrics} is rendered at most once
    a second); return the figures.
    """
    deadline = time.monotonic() + timeout
    while not done(figures := udpFigures(server)):  # type: ignore[operator]
        assert time.monotonic() < deadline, figures
        time.sleep(0.2)  # a polling interval
    return figures


def test_datagramsOfEverySizeComeBackIdentical(launcher: Launcher) -> None:
    """
    RFC 862: each datagram comes back to its source as one datagram of the
    same bytes, up to 65,000 bytes (more than Twisted reads by default).
    """
    server, address = startUDPEcho(launcher)
    assert f"nc -u {LOOPBACK} {address[1]}, then type a line" in server.output()
    with udpClient() as client:
        for size in (1, 1400, 65000):
            datagram = bytes(n % 251 for n in range(size))
            assert roundTrip(client, datagram, address) == datagram
    server.assertNoErrorsLogged()


def lowPortClient() -> socket.socket:
    """
    A UDP socket on a privileged port (the tests run as root).
    """
    for port in range(1023, 900, -1):
        client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            client.bind((LOOPBACK, port))
        except PermissionError:
            client.close()
            pytest.fail("binding a port below 1024 needs root, or CAP_NET_BIND_SERVICE")
        except OSError:
            client.close()
            continue
        return client
    raise AssertionError("no free port from 901 to 1023")


def test_aPrivilegedSourcePortGetsNothing(launcher: Launcher) -> None:
    """
    A datagram from a port below 1024 (an echo or chargen service, maybe,
    forged as the source) is dropped: nothing comes back.
    """
    server, address = startUDPEcho(launcher, metrics=True)
    with lowPortClient() as privileged, udpClient() as client:
        privileged.sendto(b"loop?", address)
        # Once the server has counted it as dropped, any reply would
        # already be on its way; and a client on a high port is answered.
        waitForFigures(server, lambda figures: figures["dropped_port"] >= 1)
        assert roundTrip(client, b"fine", address) == b"fine"
        privileged.setblocking(False)
        with pytest.raises(BlockingIOError):
            privileged.recvfrom(100)


def test_aFlooderGetsItsRateAndOthersAreStillServed(launcher: Launcher) -> None:
    """
    A client sending some 10,000 datagrams a second gets about the rate back
    (its burst, then 100 a second); another client is still answered.
    """
    server, address = startUDPEcho(launcher)
    replies = 0
    stop = threading.Event()

    def count(flooder: socket.socket) -> None:
        nonlocal replies
        flooder.settimeout(0.2)
        while not stop.is_set():
            try:
                flooder.recv(100)
                replies += 1
            except TimeoutError:
                pass

    with udpClient() as flooder, udpClient() as other:
        reader = threading.Thread(target=count, args=(flooder,))
        reader.start()
        try:
            started = time.monotonic()
            sent = 0
            # 100 every 10 ms, for 2 s.
            while (elapsed := time.monotonic() - started) < 2.0:
                for _ in range(100):
                    flooder.sendto(b"flood", address)
                sent += 100
                time.sleep(max(0.0, sent / 10_000 - elapsed))  # pacing
            flooding = time.monotonic() - started
            for n in range(10):
                line = f"still there? {n}".encode()
                assert roundTrip(other, line, address) == line
            # The flooder's replies were sent while it sent; let the last
            # ones arrive.
            deadline = time.monotonic() + 1.0
            last = -1
            while replies != last and time.monotonic() < deadline:
                last = replies
                time.sleep(0.2)  # a polling interval
        finally:
            stop.set()
            reader.join()
    allowed = BURST + RATE * flooding
    assert sent > 5 * allowed, (sent, flooding)
    assert 0.8 * (BURST + RATE * 2.0) <= replies <= allowed + RATE * 0.5, (
        replies,
        sent,
        flooding,
    )


def test_manyForgedSourcesCostBoundedMemory(launcher: Launcher) -> None:
    """
    Datagrams from 100,000 addresses (all of 127.0.0.0/8 is this host's)
    leave the server's memory within a few megabytes: it remembers at most
    32,768 sources, forgetting the least recent.  Rate raised so that each is
    answered, which paces the sending.
    """
    server, address = startUDPEcho(launcher, "--echo-udp-rate=1000", metrics=True)

    def sources(first: int, count: int) -> list[str]:
        return [
            f"127.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"
            for n in range(first, first + count)
        ]

    with udpClient("0.0.0.0") as client:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)

        def flood(addresses: list[str]) -> None:
            # At most 256 unanswered at once, so the server's socket
            # buffer never overflows for long.
            window = 256
            client.settimeout(1.0)
            inFlight = 0
            for source in addresses:
                if inFlight >= window:
                    try:
                        client.recv(100)
                        inFlight -= 1
                    except TimeoutError:
                        inFlight = 0  # lost; carry on
                sendFrom(client, b"x", source, address)
                inFlight += 1

        flood(sources(1 << 16, 2_000))  # 127.1.x.y
        waitForFigures(server, lambda figures: figures["echoed"] >= 1_900)
        before = server.rssBytes()
        flood(sources(2 << 16, 100_000))  # 127.2.x.y and on
        figures = waitForFigures(server, lambda f: f["sources"] == 32_768)
        after = server.rssBytes()
        flood(sources(4 << 16, 50_000))  # 127.4.x.y: new ones again
        waitForFigures(server, lambda f: f["echoed"] >= figures["echoed"] + 45_000)
        again = server.rssBytes()
    megabyte = 1024 * 1024
    # The table of 32,768 sources is some 5 MB.
    assert after - before < 10 * megabyte, (before, after)
    assert again - after < 2 * megabyte, (after, again)
    server.assertNoErrorsLogged()


def test_aBusyPortEndsTwistdWithOneLine(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind((LOOPBACK, 0))
        endpoint = f"udp:{taken.getsockname()[1]}:interface={LOOPBACK}"
        result = runNetdemos(tmp_path, {}, [f"--echo-udp={endpoint}"])
    assert result.returncode == 1, result.stdout
    assert result.stdout.rstrip().endswith(
        f"netdemos: cannot listen for echo-udp {endpoint}: [Errno 98] Address"
        " already in use"
    ), result.stdout
    assert "Traceback" not in result.stdout, result.stdout


def test_aBadEndpointEndsTwistdWithOneLine(tmp_path: Path) -> None:
    result = runNetdemos(tmp_path, {}, ["--echo-udp=udp:7:interface=localhost"])
    assert result.returncode != 0, result.stdout
    assert (
        "--echo-udp=udp:7:interface=localhost: interface 'localhost' is not an IP"
        " address" in result.stdout
    ), result.stdout
    assert "Traceback" not in result.stdout, result.stdout
