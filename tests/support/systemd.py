"""
What the tests know of systemd: the units shipped in C{contrib/systemd}, and
the socket a C{Type=notify} service sends its C{sd_notify} messages to.
"""

from __future__ import annotations

import configparser
import socket
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from support.running import (
    SERVICES,
    START_TIMEOUT,
    ServerExitedError,
    ServerProcess,
)

UNITS = Path(__file__).resolve().parents[2] / "contrib" / "systemd"
SERVICE = "netdemos.service"
# One socket unit a service, named after it.
SOCKETS = {service: f"netdemos-{service}.socket" for service in SERVICES}
# Sockets netdemos.service adopts only when told to: the UDP echo is off by
# default.
DATAGRAM_SOCKETS = {"echo-udp": "netdemos-echo-udp.socket"}
# netdemos@.service: each instance has a socket of its own for each service.
INSTANCE_SOCKETS = {service: f"netdemos-{service}@.socket" for service in SERVICES}


def readUnit(name: str) -> configparser.ConfigParser:
    """
    Read a unit file; enough of its syntax for the keys these tests look at.
    """
    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.optionxform = str  # type: ignore[assignment, method-assign]
    unit.read_string((UNITS / name).read_text())
    return unit


class NotifySocket:
    """
    The systemd end of C{sd_notify}: an C{AF_UNIX} datagram socket that
    collects every message sent to it.

    It lives in a new short temporary directory, because a socket path may
    not be longer than about 100 bytes.
    """

    def __init__(self, stack: ExitStack) -> None:
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        self.path = directory / "notify"
        self._socket = stack.enter_context(
            socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        )
        self._socket.bind(str(self.path))
        self.messages: list[bytes] = []

    def waitFor(self, wanted: bytes, server: ServerProcess) -> None:
        """
        Receive messages until one holds the line C{wanted}.

        @raise ExitedBeforeMessageError: if the server exits without sending it.
        """
        deadline = time.monotonic() + START_TIMEOUT
        while not any(wanted in message.splitlines() for message in self.messages):
            # Checked before receiving, so that what the server sent before it
            # exited is still read.
            exited = server.process.poll() is not None
            remaining = deadline - time.monotonic()
            assert remaining > 0, (
                f"no {wanted!r} within {START_TIMEOUT}s; got {self.messages!r}"
            )
            # A short timeout, so that a server that exits is noticed.
            self._socket.settimeout(0 if exited else min(remaining, 0.2))
            try:
                self.messages.append(self._socket.recv(4096))
            except (TimeoutError, BlockingIOError):
                if exited:
                    raise ExitedBeforeMessageError(
                        server, wanted, self.messages
                    ) from None


class ExitedBeforeMessageError(ServerExitedError):
    """
    The server exited before it sent an C{sd_notify} message a test waited for.
    """

    def __init__(
        self, server: ServerProcess, wanted: bytes, messages: list[bytes]
    ) -> None:
        output = server.output()
        AssertionError.__init__(
            self,
            f"twistd exited with {server.process.returncode} before sending"
            f" {wanted!r}; it sent {messages!r}:\n{output}",
        )
        self.output = output
