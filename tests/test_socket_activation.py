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
import re
import shlex
import shutil
import signal
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

import pytest
from support import EXIT_TIMEOUT
from support.clients import Clients, bracketed, echoRoundTrip, rawHTTP
from support.process import Launcher, Netdemos
from support.running import START_TIMEOUT, freePorts, twistdCommand
from support.systemd import SERVICE, SOCKETS, NotifySocket, readUnit
from support.udp import freeUDPPort, udpClient


@pytest.fixture
def activate() -> str:
    """
    The systemd-socket-activate program.
    """
    program = shutil.which("systemd-socket-activate")
    if program is None:
        # In CI a missing tool fails: a CI that skipped would look green
        # having tested no socket activation.
        if os.environ.get("CI"):
            pytest.fail("systemd-socket-activate is not installed (package systemd)")
        pytest.skip("systemd-socket-activate is not installed")
    return program


def activated(
    launcher: Launcher,
    activate: str,
    host: str,
    names: Sequence[str],
    command: Sequence[str],
    environment: Sequence[str] = (),
) -> Netdemos:
    """
    Run C{command} under systemd-socket-activate with a listening socket on
    C{host} named after each of C{names}; return once it listens.  C{command}
    starts on the first connection.
    """
    ports = {
        name: [port]
        for name, port in zip(names, freePorts(len(names), host), strict=True)
    }
    listen = [f"--listen={bracketed(host)}:{port}" for [port] in ports.values()]
    setenv = [f"--setenv={each}" for each in ["PYTHONUNBUFFERED=1", *environment]]
    server = launcher.spawn(
        [activate, *listen, f"--fdname={':'.join(names)}", *setenv, *command], ports
    )
    server.waitUntilListening()
    return server


def assertServes(clients: Clients, host: str, server: Netdemos) -> None:
    """
    Echo echoes, HTTP answers, chat welcomes each client by the address
    it connects from (which is only right if C{domain=} matched the
    socket), and the web service serves its page.
    """
    # The first connection starts twistd, which may take seconds.
    echo = clients.connect(server.echoPort, host, timeout=START_TIMEOUT)
    echoRoundTrip(echo, b"hello, inherited socket\r\n")

    request = b"GET / HTTP/1.0\r\nHost: netdemos\r\n\r\n"
    response = rawHTTP(server.httpPort, request, host)
    assert response.startswith(b"HTTP/1.0 200 "), response

    # It waits for a welcome that names it by its address.
    chat = clients.chatUser(server.chatPort, host)
    chat.send(b"hi all\r\n")
    chat.inbox.waitForLine(f"<{chat.name}> hi all")

    response = rawHTTP(server.webPort, request, host)
    assert response.startswith(b"HTTP/1.0 200 "), response


def test_adoptsNamedIPv4Sockets(
    launcher: Launcher, activate: str, clients: Clients
) -> None:
    """
    Given sockets by name, each service adopts its own: what systemd does
    with C{FileDescriptorName=}, whatever order the descriptors come in.
    """
    names = ["chat", "web", "echo", "http"]  # not the order of the options
    server = activated(
        launcher,
        activate,
        "127.0.0.1",
        names,
        [*twistdCommand(), "-n", "--pidfile=", "netdemos"]
        + [f"--{name}=systemd:domain=INET:name={name}" for name in names],
    )
    assertServes(clients, "127.0.0.1", server)
    assert server.process.poll() is None, server.output()


def test_shippedUnitCommandLine(
    launcher: Launcher,
    activate: str,
    clients: Clients,
    stack: ExitStack,
    tmp_path: Path,
) -> None:
    """
    The unit's own C{ExecStart} serves its sockets' address family, tells
    systemd C{READY=1} and C{STOPPING=1}, and logs without timestamps.
    """
    try:
        freePorts(1, "::1")
    except OSError:
        # As for a missing program: in CI, a test that cannot run fails.
        if os.environ.get("CI"):
            pytest.fail("no IPv6 loopback (::1)")
        pytest.skip("no IPv6 loopback")
    notify = NotifySocket(stack)
    stateDirectory = tmp_path / "state"
    (stateDirectory / "netdemos").mkdir(parents=True)

    execStart = readUnit(SERVICE)["Service"]["ExecStart"]
    command = shlex.split(execStart.replace("%S", str(stateDirectory)))
    command[:1] = twistdCommand()
    names = [
        readUnit(unit)["Socket"]["FileDescriptorName"] for unit in SOCKETS.values()
    ]
    server = activated(
        launcher, activate, "::1", names, command, [f"NOTIFY_SOCKET={notify.path}"]
    )

    assertServes(clients, "::1", server)
    notify.waitFor(b"READY=1", server)
    assert notify.messages[0] == b"READY=1\n", notify.messages
    server.process.send_signal(signal.SIGTERM)
    # twistd ends by re-raising the signal, which systemd counts as a
    # clean stop; STOPPING=1 below shows it stopped gracefully.
    assert server.process.wait(EXIT_TIMEOUT) == -signal.SIGTERM, server.output()
    notify.waitFor(b"STOPPING=1", server)
    assert b"STOPPING=1\n" in notify.messages, notify.messages

    twistdLog = server.output().split("\nExecing ", 1)[1].splitlines()[1:]
    assert twistdLog
    for line in twistdLog:
        assert re.search(r"^<[2-7]>\[", line), f"not a journal line: {line!r}"


def test_adoptsADatagramSocketForTheUDPEcho(launcher: Launcher, activate: str) -> None:
    """
    C{--echo-udp=systemd:name=NAME} adopts the datagram socket passed by
    that name (as C{netdemos-echo-udp.socket} passes it), whatever its
    family; the datagram that started the server is answered too.
    """
    port = freeUDPPort("::1")
    command = [*twistdCommand(), "-n", "--pidfile=", "netdemos"]
    command += [f"--{name}=none" for name in ("echo", "http", "chat", "web")]
    command += ["--echo-udp=systemd:name=echo-udp"]
    server = launcher.spawn(
        [
            activate,
            "--datagram",
            f"--listen=[::1]:{port}",
            "--fdname=echo-udp",
            "--setenv=PYTHONUNBUFFERED=1",
            *command,
        ],
        {},
    )
    with udpClient("::1") as client:
        # The first datagram starts twistd, which may take seconds; until
        # systemd-socket-activate listens, datagrams are lost: send again.
        deadline = time.monotonic() + START_TIMEOUT
        replies: set[bytes] = set()
        sent = 0
        while not replies:
            assert time.monotonic() < deadline, server.output()
            client.sendto(b"%d" % sent, ("::1", port))
            sent += 1
            client.settimeout(1.0)
            try:
                replies.add(client.recv(100))
            except TimeoutError:
                continue
        client.settimeout(5.0)
        client.sendto(b"adopted", ("::1", port))
        while (reply := client.recv(100)) != b"adopted":
            replies.add(reply)
