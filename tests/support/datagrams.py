"""
Fakes for datagram protocols: a transport that records what is written, and a
memory reactor that can listen on UDP ports.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.testing import MemoryReactorClock


class FakeDatagramTransport:
    """
    A datagram port's transport: C{written} holds each C{(datagram, address)}
    sent; C{failure}, if set, is raised by every write instead.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 7777) -> None:
        family = IPv6Address if ":" in host else IPv4Address
        self._host = family("UDP", host, port)
        self.written: list[tuple[bytes, tuple[str, int]]] = []
        self.failure: Exception | None = None
        self.listening = True

    def getHost(self) -> IPv4Address | IPv6Address:
        return self._host

    def write(self, datagram: bytes, addr: tuple[str, int]) -> None:
        if self.failure is not None:
            raise self.failure
        self.written.append((datagram, addr))

    def stopListening(self) -> None:
        self.listening = False


class DatagramReactor(MemoryReactorClock):
    """
    A L{MemoryReactorClock} that also listens on UDP: C{udpServers} holds
    each C{(port, protocol, interface, maxPacketSize)} listened on.
    """

    def __init__(self) -> None:
        super().__init__()
        self.udpServers: list[tuple[int, DatagramProtocol, str, int]] = []

    def listenUDP(
        self,
        port: int,
        protocol: DatagramProtocol,
        interface: str = "",
        maxPacketSize: int = 8192,
    ) -> Any:
        self.udpServers.append((port, protocol, interface, maxPacketSize))
        transport = FakeDatagramTransport(interface or "0.0.0.0", port or 40000)
        protocol.makeConnection(transport)  # type: ignore[arg-type]
        return transport
