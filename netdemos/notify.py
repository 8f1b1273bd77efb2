"""
Tell systemd how the service is doing, with the C{sd_notify} protocol.

A unit with C{Type=notify} gets the address of a datagram socket in the
C{NOTIFY_SOCKET} environment variable, and systemd counts it as started only
once it sends C{READY=1}.  Each message is one datagram of C{KEY=VALUE} lines;
see sd_notify(3).  Outside systemd the variable is unset and L{Notifier} does
nothing, so the same code runs under C{twistd -n} on a laptop.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

from twisted.logger import Logger

log = Logger()


class Notifier:
    """
    Send C{sd_notify} messages to the socket named by C{NOTIFY_SOCKET}.

    Sending never blocks and never raises: the socket is non-blocking, so a
    stalled systemd cannot stall the reactor, and a failure is logged rather
    than allowed to take the service down.  Only the first failure is logged,
    so a vanished socket cannot flood the journal.

    @ivar socketName: C{NOTIFY_SOCKET} as given, or L{None} when unset; shown in
        log events.
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        """
        @param environ: The environment to read C{NOTIFY_SOCKET} from; by
            default the process environment.
        """
        if environ is None:
            environ = os.environ
        self.socketName = environ.get("NOTIFY_SOCKET") or None
        self._address = socketAddress(self.socketName) if self.socketName else None
        self._failureLogged = False

    def ready(self) -> None:
        """
        Say that startup is finished and the service is serving.
        """
        self.notify(READY=1)

    def status(self, text: str) -> None:
        """
        Set the one-line status that C{systemctl status} shows.
        """
        self.notify(STATUS=text)

    def stopping(self) -> None:
        """
        Say that the service has begun shutting down.
        """
        self.notify(STOPPING=1)

    def notify(self, **fields: str | int) -> None:
        """
        Send C{fields} to systemd as one message, e.g. C{notify(READY=1)}.
        """
        if self._address is None:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.setblocking(False)
                sock.sendto(formatMessage(fields), self._address)
        except OSError as e:
            if not self._failureLogged:
                self._failureLogged = True
                log.warn(
                    "sd_notify: cannot notify systemd at {socketName}: {error}"
                    " (further failures will not be logged)",
                    socketName=self.socketName,
                    fields=fields,
                    error=e,
                )


def socketAddress(name: str) -> str:
    """
    Turn C{NOTIFY_SOCKET} into an C{AF_UNIX} address.

    A leading C{@} names a Linux abstract socket, whose address really starts
    with a NUL byte; anything else is a filesystem path.
    """
    if name.startswith("@"):
        return "\0" + name[1:]
    return name


def formatMessage(fields: Mapping[str, str | int]) -> bytes:
    """
    Encode C{fields} as C{KEY=VALUE} lines.

    Lines are the protocol's separator, so a value is folded onto one line: a
    newline in a status text must not smuggle in a second assignment.
    """
    lines = [
        f"{key}={' '.join(str(value).splitlines())}\n" for key, value in fields.items()
    ]
    return "".join(lines).encode("utf-8")
