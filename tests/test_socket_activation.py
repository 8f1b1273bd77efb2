"""
End-to-end: the installed C{twistd netdemos} serving on sockets it inherits,
as it does under systemd.

systemd-socket-activate(1) stands in for systemd: it listens, and on the first
connection execs the command with the listening sockets as descriptors 3, 4, 5
and C{LISTEN_FDS}, C{LISTEN_PID} and C{LISTEN_FDNAMES} set, as systemd does for
C{.socket} units.  It passes the child a bare environment, so anything else the
child needs goes in with C{-E}.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path

from test_systemd_units import SERVICE, SOCKETS, readUnit
from twisted.trial.unittest import SkipTest, SynchronousTestCase

# Generous, because a loaded machine may take seconds to start Python.
TIMEOUT = 30.0


def twistd() -> str:
    script = Path(sys.executable).parent / "twistd"
    if not script.exists():
        raise SkipTest(f"no twistd script next to {sys.executable}")
    return str(script)


def freePorts(host: str, count: int) -> list[int]:
    """
    Ports free on C{host}, all held at once so none is handed out twice.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with ExitStack() as stack:
        probes = [stack.enter_context(socket.socket(family)) for _ in range(count)]
        for probe in probes:
            probe.bind((host, 0))
        return [probe.getsockname()[1] for probe in probes]


def bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def receiveUntil(
    connection: socket.socket, done: Callable[[bytes], bool], what: str
) -> bytes:
    """
    Read until C{done} is true of everything read, or fail at the deadline.
    """
    deadline = time.monotonic() + TIMEOUT
    received = b""
    while not done(received):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"never received {what}; got {received!r}")
        connection.settimeout(remaining)
        data = connection.recv(65536)
        if not data:
            raise AssertionError(f"EOF before {what}; got {received!r}")
        received += data
    return received


class SocketActivationTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.activate = shutil.which("systemd-socket-activate")
        if self.activate is None:
            raise SkipTest("systemd-socket-activate is not installed")
        directory = tempfile.TemporaryDirectory()
        self.addCleanup(directory.cleanup)
        self.workdir = Path(directory.name)

    def activated(
        self,
        host: str,
        names: Sequence[str],
        command: Sequence[str],
        environment: Sequence[str] = (),
    ) -> tuple[subprocess.Popen[bytes], dict[str, int]]:
        """
        Run C{command} under systemd-socket-activate with a listening socket
        on C{host} named after each of C{names}.  C{command} starts on the
        first connection.

        @return: the process and the port of each name.
        """
        ports = dict(zip(names, freePorts(host, len(names)), strict=True))
        listen = [f"--listen={bracketed(host)}:{port}" for port in ports.values()]
        setenv = [f"--setenv={each}" for each in ["PYTHONUNBUFFERED=1", *environment]]
        self.logPath = self.workdir / "activate.log"
        with self.logPath.open("wb") as log:
            process = subprocess.Popen(
                [str(self.activate), *listen, f"--fdname={':'.join(names)}"]
                + [*setenv, *command],
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.addCleanup(self.kill, process)
        self.process = process
        return process, ports

    def kill(self, process: subprocess.Popen[bytes]) -> None:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(TIMEOUT)

    def output(self) -> str:
        return self.logPath.read_text(errors="replace")

    def connect(self, host: str, port: int) -> socket.socket:
        """
        Connect, retrying until systemd-socket-activate is listening.
        """
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                connection = socket.create_connection((host, port), timeout=TIMEOUT)
            except ConnectionRefusedError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        f"nothing listening:\n{self.output()}"
                    ) from None
                # A polling interval, not a guess at how long startup takes.
                time.sleep(0.02)
                continue
            self.addCleanup(connection.close)
            return connection

    def assertServes(self, host: str, ports: dict[str, int]) -> None:
        """
        Echo echoes, HTTP answers, chat welcomes each client by the address
        it connects from (which is only right if C{domain=} matched the
        socket), and the web service serves its page.
        """
        echo = self.connect(host, ports["echo"])
        echo.sendall(b"hello, inherited socket\r\n")
        receiveUntil(echo, lambda data: data.endswith(b"socket\r\n"), "the echo")

        http = self.connect(host, ports["http"])
        http.sendall(b"GET / HTTP/1.0\r\nHost: netdemos\r\n\r\n")
        response = receiveUntil(http, lambda data: b"\r\n\r\n" in data, "headers")
        self.assertTrue(response.startswith(b"HTTP/1.0 200 "), response)

        chat = self.connect(host, ports["chat"])
        me = f"{bracketed(host)}:{chat.getsockname()[1]}".encode()
        welcome = receiveUntil(chat, lambda data: b"\r\n" in data, "a welcome")
        self.assertTrue(welcome.startswith(b"* welcome, you are " + me), welcome)
        chat.sendall(b"hi all\r\n")
        receiveUntil(chat, lambda data: b"<" + me + b"> hi all\r\n" in data, "my line")

        web = self.connect(host, ports["web"])
        web.sendall(b"GET / HTTP/1.0\r\nHost: netdemos\r\n\r\n")
        response = receiveUntil(web, lambda data: b"\r\n\r\n" in data, "headers")
        self.assertTrue(response.startswith(b"HTTP/1.0 200 "), response)

    def test_adoptsNamedIPv4Sockets(self) -> None:
        """
        Given sockets by name, each service adopts its own: what systemd does
        with C{FileDescriptorName=}, whatever order the descriptors come in.
        """
        names = ["chat", "web", "echo", "http"]  # not the order of the options
        process, ports = self.activated(
            "127.0.0.1",
            names,
            [twistd(), "-n", "--pidfile=", "netdemos"]
            + [f"--{name}=systemd:domain=INET:name={name}" for name in names],
        )
        self.assertServes("127.0.0.1", ports)
        self.assertIsNone(process.poll(), self.output())

    def test_shippedUnitCommandLine(self) -> None:
        """
        The unit's own C{ExecStart} serves its sockets' address family, tells
        systemd C{READY=1} and C{STOPPING=1}, and logs without timestamps.
        """
        try:
            freePorts("::1", 1)
        except OSError:
            raise SkipTest("no IPv6 loopback") from None
        receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(receiver.close)
        notifySocket = str(self.workdir / "notify")
        receiver.bind(notifySocket)
        receiver.settimeout(TIMEOUT)
        stateDirectory = self.workdir / "state"
        (stateDirectory / "netdemos").mkdir(parents=True)

        execStart = readUnit(SERVICE)["Service"]["ExecStart"]
        command = shlex.split(execStart.replace("%S", str(stateDirectory)))
        command[0] = twistd()
        names = [
            readUnit(unit)["Socket"]["FileDescriptorName"] for unit in SOCKETS.values()
        ]
        process, ports = self.activated(
            "::1", names, command, [f"NOTIFY_SOCKET={notifySocket}"]
        )

        self.assertServes("::1", ports)
        self.assertEqual(receiver.recv(4096), b"READY=1\n")
        process.send_signal(signal.SIGTERM)
        # twistd ends by re-raising the signal, which systemd counts as a
        # clean stop; STOPPING=1 below shows it stopped gracefully.
        self.assertEqual(process.wait(TIMEOUT), -signal.SIGTERM, self.output())
        messages = []
        receiver.setblocking(False)
        while True:
            try:
                messages.append(receiver.recv(4096))
            except BlockingIOError:
                break
        self.assertIn(b"STOPPING=1\n", messages)

        twistdLog = self.output().split("\nExecing ", 1)[1].splitlines()[1:]
        self.assertTrue(twistdLog)
        for line in twistdLog:
            self.assertRegex(line, r"^<[2-7]>\[", "not a journal line")
