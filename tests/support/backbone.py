"""
Helpers for the end-to-end tests of several instances: a real C{redis-server}
and a real C{haproxy}, each started by the test on free loopback ports, in
the test's own temporary directory, and stopped when it ends.

In CI (C{CI} set) a missing server program fails the test: C{.ci/run}
installs both, and a test that quietly skips proves nothing.  Elsewhere the
test is skipped, saying what to install.

Like L{support.process}, it uses only L{support.running}, none of Twisted.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from contextlib import ExitStack
from pathlib import Path

import pytest

from support.running import LOOPBACK, START_TIMEOUT, freePorts

# Where Debian puts the programs; /usr/sbin is not on every user's PATH.
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])


def requireProgram(name: str, package: str) -> str:
    """
    The path of the program C{name}; or fail (in CI) or skip (elsewhere).
    """
    path = shutil.which(name, path=SEARCH_PATH)
    if path is not None:
        return path
    if os.environ.get("CI"):
        pytest.fail(f"{name} is not installed; .ci/run installs {package}")
    pytest.skip(f"{name} is not installed (apt-get install {package})")


class RedisServer:
    """
    A C{redis-server} of the test's own, without persistence: one that is
    killed and started again comes back empty, as a Redis restarted without
    AOF or RDB does.

    It is also a fault injector, for what an operator's bad day does to
    Redis: L{restartEmpty}, L{pause} and L{resume}, and through L{command}
    C{DEBUG SLEEP}, C{CONFIG SET maxmemory} (see L{fill}), a key overwritten
    with another type, C{SCRIPT FLUSH}, and anything published on a channel,
    bytes included.
    """

    def __init__(self, workdir: Path, stack: ExitStack) -> None:
        self.program = requireProgram("redis-server", "redis-server")
        self.workdir = workdir / f"redis-{time.monotonic_ns()}"
        self.workdir.mkdir()
        self.port = freePorts(1)[0]
        self.process: subprocess.Popen[bytes] | None = None
        stack.callback(self.kill)

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    def start(self) -> RedisServer:
        """
        Start it on its port, and wait until it answers C{PING}.
        """
        with (self.workdir / "redis.log").open("ab") as log:
            self.process = subprocess.Popen(
                [
                    self.program,
                    "--port",
                    str(self.port),
                    "--bind",
                    LOOPBACK,
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(self.workdir),
                    # For DEBUG SLEEP, from loopback only.
                    "--enable-debug-command",
                    "local",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while self.command("PING") != b"+PONG\r\n":
            assert self.process.poll() is None, (self.workdir / "redis.log").read_text()
            assert time.monotonic() < deadline, "redis-server did not answer PING"
            time.sleep(0.02)  # a polling interval
        return self

    def command(self, *words: str | bytes) -> bytes | None:
        """
        Send one command; its raw reply, or L{None} if Redis is not there.
        """
        encoded = [word.encode() if isinstance(word, str) else word for word in words]
        request = b"*%d\r\n" % (len(encoded),) + b"".join(
            b"$%d\r\n%s\r\n" % (len(word), word) for word in encoded
        )
        try:
            with socket.create_connection((LOOPBACK, self.port), timeout=5) as client:
                client.sendall(request)
                return client.recv(65536)
        except OSError:
            return None

    def kill(self) -> None:
        """
        SIGKILL it, as a crash would, and wait until it is gone.
        """
        if self.process is not None and self.process.poll() is None:
            self.resume()
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def restartEmpty(self) -> None:
        """
        Kill it and start it again on the same port, with nothing in it.
        """
        self.kill()
        self.start()

    def pause(self) -> None:
        """
        SIGSTOP it: connections stay open, and nothing is answered.
        """
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def fill(self) -> None:
        """
        Make it refuse every write with an OOM error, as a Redis that reached
        its C{maxmemory} with C{noeviction} does; L{drain} lifts it.
        """
        self.expect(b"+OK", "CONFIG", "SET", "maxmemory-policy", "noeviction")
        self.expect(b"+OK", "CONFIG", "SET", "maxmemory", "1")

    def drain(self) -> None:
        self.expect(b"+OK", "CONFIG", "SET", "maxmemory", "0")

    def publish(self, channel: str, message: str | bytes) -> int:
        """
        Publish C{message} on C{channel}, as any program with access could;
        return how many subscribers got it.
        """
        reply = self.command("PUBLISH", channel, message)
        assert reply is not None and reply.startswith(b":"), reply
        return int(reply[1:])

    def expect(self, wanted: bytes, *words: str | bytes) -> None:
        reply = self.command(*words)
        assert reply is not None and reply.startswith(wanted), (words, reply)


class HAProxy:
    """
    C{haproxy} running C{contrib/haproxy/haproxy.cfg}, every port in it
    replaced by a free one: the shipped configuration is what is tested.

    @ivar ports: the free port that stands for each port of the file.
    """

    CONFIG = Path(__file__).resolve().parents[2] / "contrib/haproxy/haproxy.cfg"

    def __init__(self, workdir: Path, stack: ExitStack) -> None:
        self.program = requireProgram("haproxy", "haproxy")
        self.workdir = workdir
        self.stack = stack
        text = self.CONFIG.read_text()
        shipped = sorted(
            {int(port) for port in re.findall(r"(?::|port )(\d+)\b", text)}
        )
        self.ports = dict(zip(shipped, freePorts(len(shipped)), strict=True))
        self.configPath = workdir / "haproxy.cfg"
        self.configPath.write_text(
            re.sub(
                r"(:|port )(\d+)\b",
                lambda match: f"{match[1]}{self.ports[int(match[2])]}",
                text,
            )
        )

    def check(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.program, "-c", "-f", str(self.configPath)],
            capture_output=True,
            text=True,
            timeout=30,
        )

    def start(self) -> None:
        """
        Start it in the foreground, and wait until its frontends listen.
        """
        logPath = self.workdir / "haproxy.log"
        with logPath.open("wb") as log:
            process = subprocess.Popen(
                [self.program, "-db", "-f", str(self.configPath)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.stack.callback(stop, process)
        for shipped in (8080, 1025, 1234, 8081):
            deadline = time.monotonic() + START_TIMEOUT
            while True:
                assert process.poll() is None, logPath.read_text()
                try:
                    socket.create_connection((LOOPBACK, self.ports[shipped])).close()
                    break
                except ConnectionRefusedError:
                    assert time.monotonic() < deadline, logPath.read_text()
                    time.sleep(0.02)  # a polling interval


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
