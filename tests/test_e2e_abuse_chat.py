"""
End-to-end tests of the chat's protections against one hostile client: each
replays an attack that hurt innocent users before netdemos had them, against a
real C{twistd -n netdemos}, and checks that the others do not notice.
"""

from __future__ import annotations

import resource
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from support.clients import Clients, allowOpenFiles, connect, echoRoundTrip, httpGet
from support.process import Launcher, Netdemos
from support.running import START_TIMEOUT

MB = 1024 * 1024

# Anything slower than this is an outage a user notices.
ANSWER_WITHIN = 1.0


@pytest.fixture(autouse=True)
def manyDescriptors(stack: ExitStack) -> None:
    """
    A crowd of clients needs thousands of descriptors in this process (and in
    the server, which inherits the limit): raise the soft limit to the hard one.
    """
    allowOpenFiles(stack, 5000)


@contextmanager
def crowd(port: int, size: int, receiveBuffer: int | None = None) -> Iterator[None]:
    """
    Connect C{size} chat clients that never read, and close them on the way out.
    """
    with ExitStack() as stack:
        for _ in range(size):
            stack.enter_context(
                connect(port, receiveBuffer=receiveBuffer, timeout=START_TIMEOUT)
            )
        yield


def waitForRoomOf(clients: Clients, server: Netdemos, size: int) -> None:
    """
    Wait until the room holds C{size} clients, asking C{/who} as a client would.
    """
    observer = clients.chatUser(server.chatPort)
    deadline = time.monotonic() + 60
    start = 0
    while True:
        start = len(observer.inbox.snapshot())
        observer.send(b"/who\n")
        index = observer.inbox.waitFor(
            lambda line: line.startswith("* in the room ("), "/who", start
        )
        line = observer.inbox.snapshot()[index]
        count = int(line[len("* in the room (") : line.index(")")])
        if count >= size + 1:
            break
        assert time.monotonic() < deadline, f"only {count} of {size} joined"
        time.sleep(0.2)  # polling the room's size, not waiting for an event
    observer.close()


class Flooder:
    """
    A client sending C{block} again and again, as fast as TCP lets it, from a
    thread, until stopped.
    """

    def __init__(self, port: int, block: bytes) -> None:
        self.connection = connect(port)
        self.block = block
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._flood, daemon=True)

    def _flood(self) -> None:
        self.connection.settimeout(0.2)
        view = memoryview(self.block)
        while not self._stop.is_set():
            try:
                self.sent += self.connection.send(view)
            except TimeoutError:
                continue  # the server is pushing back: good, keep pushing
            except OSError:
                return

    def __enter__(self) -> Flooder:
        self._thread.start()
        deadline = time.monotonic() + 10
        while self.sent < len(self.block):
            assert time.monotonic() < deadline, "the flood never started"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.connection.close()


def timed(action: object) -> float:
    assert callable(action)
    started = time.monotonic()
    action()
    return time.monotonic() - started


def echoPing(port: int) -> None:
    with connect(port) as connection:
        echoRoundTrip(connection, b"ping\n")


def test_commandFloodInACrowdHurtsNobodyAndStopStaysOnTime(
    launcher: Launcher, clients: Clients
) -> None:
    """
    One client writing renames and unknown commands as fast as it can into a
    room of 1000 used to freeze every service for seconds (each rename went to
    everyone at once, each reply flushed the room) and made SIGTERM overrun
    its timeout.  Now echo, HTTP and chat keep answering within a second, and
    SIGTERM still stops within --shutdown-timeout plus one second.
    """
    server = launcher.start(extra=["--shutdown-timeout=3"])
    with crowd(server.chatPort, 1000):
        waitForRoomOf(clients, server, 1000)
        speaker = clients.chatUser(server.chatPort)
        listener = clients.chatUser(server.chatPort)
        with Flooder(server.chatPort, b"/nick fa\n/nick fb\n/x\na\n" * 4000):
            worst = {"echo": 0.0, "http": 0.0, "chat": 0.0}
            for n in range(5):
                worst["echo"] = max(
                    worst["echo"], timed(lambda: echoPing(server.echoPort))
                )
                worst["http"] = max(
                    worst["http"], timed(lambda: httpGet(server.httpPort))
                )
                start = len(listener.inbox.snapshot())
                wanted = f"<{speaker.name}> innocent {n}"
                sent = time.monotonic()
                speaker.send(b"innocent %d\n" % n)
                listener.inbox.waitForLine(wanted, start)
                worst["chat"] = max(worst["chat"], time.monotonic() - sent)
            print(f"worst answers during the flood: {worst}")
            assert all(seconds < ANSWER_WITHIN for seconds in worst.values()), worst

            started = time.monotonic()
            server.process.terminate()
            server.process.wait(timeout=30)
            took = time.monotonic() - started
    print(f"SIGTERM during the flood: stopped in {took:.2f} s")
    assert took < 3 + 1


def test_floodDoesNotDropReadersOnAnOrdinaryLink(
    launcher: Launcher, clients: Clients
) -> None:
    """
    One client sending ordinary lines as fast as TCP allows used to get every
    reader on a 1 MB/s link dropped as "too slow" within a second: the flooder
    hurt everyone but itself.  Now flood control slows the flooder, and the
    readers stay and hear an innocent line within a second.
    """
    server = launcher.start(["chat"])
    # Each reads at most 1 MB a second, as a client on a slow link does.
    readers = [
        clients.lineCollector(server.chatPort, bytesPerSecond=1 * MB) for _ in range(3)
    ]
    speaker = clients.chatUser(server.chatPort)
    line = b"flood " + b"x" * 1000 + b"\n"
    with Flooder(server.chatPort, line * 64):
        for n in range(6):
            wanted = f"<{speaker.name}> innocent {n}"
            speaker.send(b"innocent %d\n" % n)
            deadline = time.monotonic() + ANSWER_WITHIN
            while not all(wanted in reader.snapshot() for reader in readers):
                assert not any(reader.eof for reader in readers), "a reader was dropped"
                assert time.monotonic() < deadline, f"{wanted!r} took over 1 s"
                time.sleep(0.01)
            time.sleep(0.3)  # let the flood go on between the lines
    for reader in readers:
        assert not reader.eof
        assert not any(
            "too slow" in each or each.startswith("! ") for each in reader.snapshot()
        )


def tcpMemoryBytes() -> int:
    """
    The kernel's memory for all TCP sockets on this machine, from
    C{/proc/net/sockstat} (in pages).
    """
    for line in Path("/proc/net/sockstat").read_text().splitlines():
        if line.startswith("TCP:"):
            fields = line.split()
            return int(fields[fields.index("mem") + 1]) * resource.getpagesize()
    raise AssertionError("no TCP line in /proc/net/sockstat")


# What 2000 clients that never read may cost while 400 KB is said: the room's
# --chat-memory (64 MiB) plus Python's overhead; in the kernel, a fixed 32 KiB
# send buffer per socket (16 KiB asked, doubled by Linux) plus what the clients' own
# receive buffers hold.  Before these limits: 783 MB of kernel memory here.
RSS_BUDGET = 128 * MB
TCP_BUDGET = 512 * MB


def test_nonReadingCrowdCostsBoundedMemory(
    launcher: Launcher, clients: Clients
) -> None:
    """
    2000 clients connect and never read while one client says 400 KB: the
    server's memory and the kernel's TCP memory stay within a stated budget,
    even with flood control lifted, because chat sockets have a fixed send
    buffer and the room a budget for unsent output.
    """
    server = launcher.start(["chat"], extra=["--chat-rate=0"])
    with crowd(server.chatPort, 2000):
        waitForRoomOf(clients, server, 2000)
        rssBefore, tcpBefore = server.rssBytes(), tcpMemoryBytes()
        speaker = clients.chatUser(server.chatPort)
        listener = clients.chatUser(server.chatPort)
        peakRss = peakTcp = 0
        for n in range(100):
            speaker.send(b"%04d " % n + b"y" * 4000 + b"\n")
            if n % 10 == 9:
                listener.inbox.waitForLine(
                    f"<{speaker.name}> {n:04d} " + "y" * 4000, timeout=30
                )
                peakRss = max(peakRss, server.rssBytes() - rssBefore)
                peakTcp = max(peakTcp, tcpMemoryBytes() - tcpBefore)
        print(
            f"2000 non-readers, 400 KB said: server RSS grew {peakRss / MB:.0f} MB,"
            f" kernel TCP memory {peakTcp / MB:.0f} MB"
        )
        assert peakRss < RSS_BUDGET, f"RSS grew {peakRss / MB:.0f} MB"
        assert peakTcp < TCP_BUDGET, f"TCP memory grew {peakTcp / MB:.0f} MB"
        # The readers were not the ones dropped.
        assert not listener.inbox.eof
        server.assertNoErrorsLogged()
