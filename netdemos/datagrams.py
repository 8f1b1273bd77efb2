"""
Where a datagram service listens: C{udp:PORT[:interface=ADDRESS]}, or a
datagram socket systemd passed (C{systemd:name=NAME}); and the service that
opens the port at startup and closes it on stop.

Twisted's endpoint strings (C{serverFromString}) are for streams only, so the
two kinds of datagram endpoint are parsed here, in the same syntax.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import DatagramProtocol
from twisted.python.systemd import ListenFDs
from zope.interface import Interface, implementer

# The largest datagram UDP can carry, so that none is read in part (Twisted
# reads 8192 bytes by default and drops the rest).
MAX_DATAGRAM = 65_535

# A colon inside a value is written \: as in Twisted's endpoint strings
# (udp:7:interface=\:\:1).
_FIELD_SEPARATOR = re.compile(r"(?<!\\):")


class IDatagramServerEndpoint(Interface):
    """
    Where a datagram protocol can listen; the datagram counterpart of
    L{twisted.internet.interfaces.IStreamServerEndpoint}, but synchronous, as
    opening a datagram port is.
    """

    def listen(protocol: DatagramProtocol) -> IListeningPort:
        """
        Listen with C{protocol}.

        @raise twisted.internet.error.CannotListenError: if it cannot.
        """


@implementer(IDatagramServerEndpoint)
class UDPServerEndpoint:
    """
    A UDP port on one address, or on every IPv4 address.
    """

    def __init__(self, reactor: Any, port: int, interface: str = "") -> None:
        self._reactor = reactor
        self.port = port
        self.interface = interface

    def listen(self, protocol: DatagramProtocol) -> IListeningPort:
        port: IListeningPort = self._reactor.listenUDP(
            self.port, protocol, self.interface, MAX_DATAGRAM
        )
        return port


@implementer(IDatagramServerEndpoint)
class AdoptedDatagramEndpoint:
    """
    A datagram socket this process inherited, as systemd passes one.
    """

    def __init__(self, reactor: Any, fileno: int) -> None:
        self._reactor = reactor
        self.fileno = fileno

    def listen(self, protocol: DatagramProtocol) -> IListeningPort:
        # The socket says what it is; a copy, as closing it closes the
        # descriptor.
        with socket.socket(fileno=os.dup(self.fileno)) as inherited:
            family, kind = inherited.family, inherited.type
        if kind != socket.SOCK_DGRAM:
            raise ValueError(f"descriptor {self.fileno} is not a datagram socket")
        port: IListeningPort = self._reactor.adoptDatagramPort(
            self.fileno, family, protocol, MAX_DATAGRAM
        )
        return port


def normalizeDatagramEndpoint(description: str) -> str:
    """
    Accept a bare port number N as shorthand for C{udp:N}.
    """
    return f"udp:{description}" if description.isdigit() else description


def datagramEndpoint(
    reactor: Any,
    description: str,
    inherited: Callable[[], dict[str, int]] | None = None,
) -> IDatagramServerEndpoint:
    """
    Parse C{description}, without listening.

    @param inherited: the descriptors systemd passed, by name; this process's
        by default.
    @raise ValueError: saying what is wrong with it, in one line.
    """
    kind, *fields = [
        each.replace("\\:", ":") for each in _FIELD_SEPARATOR.split(description)
    ]
    if kind == "udp" and fields and fields[0].isdigit():
        port = int(fields[0])
        if port > 65535:
            raise ValueError(f"port {port} is out of range")
        arguments = _keywords(fields[1:], {"interface"})
        interface = arguments.get("interface", "")
        if interface:
            try:
                ipaddress.ip_address(interface)
            except ValueError:
                raise ValueError(
                    f"interface {interface!r} is not an IP address"
                ) from None
        return UDPServerEndpoint(reactor, port, interface)
    if kind == "systemd":
        arguments = _keywords(fields, {"name"})
        if "name" not in arguments:
            raise ValueError("systemd: needs name=NAME")
        named = (inherited or _fromSystemd)()
        name = arguments["name"]
        if name not in named:
            passed = ", ".join(sorted(named)) or "none"
            raise ValueError(
                f"systemd passed no socket named {name!r} (it passed: {passed})"
            )
        return AdoptedDatagramEndpoint(reactor, named[name])
    raise ValueError("not udp:PORT[:interface=ADDRESS] nor systemd:name=NAME")


def _keywords(fields: list[str], known: set[str]) -> dict[str, str]:
    arguments = {}
    for field in fields:
        key, equals, value = field.partition("=")
        if not equals or key not in known:
            raise ValueError(f"unknown argument {field!r}")
        arguments[key] = value
    return arguments


def _fromSystemd() -> dict[str, int]:
    # The first ListenFDs.fromEnvironment() takes LISTEN_FDS and LISTEN_PID
    # out of the environment, and Twisted's systemd: endpoint parser makes it
    # as twistd loads its plugins: the descriptors are known only to it.
    # (docs/private-names.md)
    from twisted.internet.endpoints import _SystemdParser

    daemon: ListenFDs = _SystemdParser._sddaemon
    return daemon.inheritedNamedDescriptors()


class DatagramPortService(Service):
    """
    Listen with one datagram protocol on one endpoint while running: the
    datagram counterpart of L{twisted.application.internet.StreamServerEndpointService}.

    The port opens in L{privilegedStartService}, so that under twistd it is
    bound before privileges are dropped, and an endpoint that cannot listen
    stops startup there.
    """

    def __init__(
        self, endpoint: IDatagramServerEndpoint, protocol: DatagramProtocol
    ) -> None:
        self.endpoint = endpoint
        self.protocol = protocol
        self.port: IListeningPort | None = None

    def privilegedStartService(self) -> None:
        Service.privilegedStartService(self)
        self._listen()

    def startService(self) -> None:
        Service.startService(self)
        self._listen()

    def _listen(self) -> None:
        if self.port is None:
            self.port = self.endpoint.listen(self.protocol)

    def stopService(self) -> Deferred[None] | None:
        Service.stopService(self)
        port, self.port = self.port, None
        # A UDP port closes at once, but IListeningPort may return a Deferred.
        return None if port is None else port.stopListening()
