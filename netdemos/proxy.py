"""
The PROXY protocol, for a service behind HAProxy or a cloud TCP balancer: each
connection starts with a header naming the client's own address, which the
balancer's would otherwise hide.

Twisted reads the header (C{twisted.protocols.haproxy}, the C{haproxy:}
endpoint prefix).  L{ProxiedEndpoint} adds what a server needs on top: the
service's protocol starts only once the header has arrived, so that it sees
the client's address from its first moment (the chat names a newcomer by it,
the HTTP channel keeps it for the access log); and a connection without a
valid header in time is closed, and counted.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IDelayedCall,
    IHalfCloseableProtocol,
    IListeningPort,
    IProtocolFactory,
    IReactorTime,
    IStreamServerEndpoint,
)
from twisted.internet.protocol import Protocol, connectionDone

# Twisted exports only proxyEndpoint(); the wrapper is what it builds, and
# the v1 parser, its exception and its result are what the wrapper uses.
from twisted.protocols.haproxy._exceptions import InvalidProxyHeader
from twisted.protocols.haproxy._info import ProxyInfo
from twisted.protocols.haproxy._v1parser import V1Parser
from twisted.protocols.haproxy._wrapper import (
    HAProxyProtocolWrapper,
    HAProxyWrappingFactory,
)
from twisted.python.failure import Failure
from zope.interface import directlyProvides, implementer, providedBy

PREFIX = "haproxy:"

# A balancer sends the header with the connection, in its first packet; a
# client that has sent none after this long is not a balancer.
HEADER_TIMEOUT = 5.0


# The longest v1 header the spec allows, CR LF included.
MAX_V1_HEADER = 107

# The address families of a v1 header: how to check an address, and what
# Twisted calls one.
_V1_FAMILIES: dict[str, tuple[Any, Any]] = {
    "TCP4": (ipaddress.IPv4Address, IPv4Address),
    "TCP6": (ipaddress.IPv6Address, IPv6Address),
}


class StrictV1Parser(V1Parser):
    """
    Twisted's PROXY v1 parser, held to the spec (haproxy's proxy-protocol.txt,
    2.1): a header of at most 107 bytes, in ASCII; C{PROXY UNKNOWN}, with or
    without more on the line, for a connection the balancer cannot describe
    (a UNIX socket, a health check), served with the balancer's own address;
    otherwise two addresses of the declared family and two ports from 0 to
    65535, in decimal.

    Twisted's own takes any text as an address (which reached the chat as a
    member's name, control characters and all), raises a bare C{ValueError}
    on a port that is not a number, and refuses C{PROXY UNKNOWN} without a
    space after it.
    """

    def feed(self, data: bytes) -> tuple[ProxyInfo, bytes] | tuple[None, None]:
        self.buffer += data
        end = self.buffer.find(self.NEWLINE)
        if end == -1:
            if len(self.buffer) >= MAX_V1_HEADER - 1:
                raise InvalidProxyHeader()
            return (None, None)
        if end + len(self.NEWLINE) > MAX_V1_HEADER:
            raise InvalidProxyHeader()
        header, remaining = self.buffer[:end], self.buffer[end + 2 :]
        self.buffer = b""
        return (self.parse(header), remaining)

    @classmethod
    def parse(cls, line: bytes) -> ProxyInfo:
        if not line.isascii():
            raise InvalidProxyHeader()
        fields = line.decode("ascii").split(" ")
        if fields[:2] == ["PROXY", "UNKNOWN"]:
            return ProxyInfo(line, None, None)
        if len(fields) != 6 or fields[0] != "PROXY" or fields[1] not in _V1_FAMILIES:
            raise InvalidProxyHeader()
        parseAddress, addressType = _V1_FAMILIES[fields[1]]
        source, destination = fields[2:4]
        ports = [_port(each) for each in fields[4:6]]
        try:
            parseAddress(source), parseAddress(destination)
        except ValueError:
            raise InvalidProxyHeader() from None
        return ProxyInfo(
            line,
            addressType("TCP", source, ports[0]),
            addressType("TCP", destination, ports[1]),
        )


def _port(text: str) -> int:
    if not (text.isdigit() and len(text) <= 5 and int(text) <= 65535):
        raise InvalidProxyHeader()
    return int(text)


def isProxied(description: str) -> bool:
    """
    Whether the endpoint C{description} expects PROXY protocol headers.
    """
    return description.startswith(PREFIX)


def balancerConnection(transport: object) -> Any | None:
    """
    The balancer's connection, if C{transport} is a PROXY protocol wrapper
    (whose C{getPeer} and C{getHost} give the addresses the header named):
    its own C{getPeer} and C{getHost} are the balancer's, as TCP saw them.
    """
    if isinstance(transport, HAProxyProtocolWrapper):
        return transport.transport
    return None


class _Remainder:
    """
    Takes, in place of the service's protocol, what follows the header in the
    packet that completes it.
    """

    data = b""

    def dataReceived(self, data: bytes) -> None:
        self.data += data


@implementer(IHalfCloseableProtocol)
class HeaderFirst(HAProxyProtocolWrapper):
    """
    Twisted's PROXY protocol wrapper, which connects the service's protocol
    only once the header has been read, and closes a connection whose header
    is not valid, or does not come within L{HEADER_TIMEOUT}, counting it as
    rejected for reason C{proxy}.

    It passes a half-close on, as the balancer does: a client that shuts
    down its sending side after a request (C{nc -N}) still gets the answer.
    """

    factory: HeaderFirstFactory
    _started = False
    _deadline: IDelayedCall | None = None

    def makeConnection(self, transport: Any) -> None:
        # ProtocolWrapper.makeConnection, less connecting the service's
        # protocol, which would see the balancer's address.
        directlyProvides(self, providedBy(transport))
        Protocol.makeConnection(self, transport)
        self.factory.registerProtocol(self)
        # Counted from accept: a crowd sending half a header must not take
        # the descriptors the service's limit leaves for the others.
        self.factory.connections.hold(self)
        self._deadline = self.factory.clock.callLater(HEADER_TIMEOUT, self._refuse)

    def dataReceived(self, data: bytes) -> None:
        if self._started:
            self.wrappedProtocol.dataReceived(data)
            return
        if self._parser is None and data.startswith(V1Parser.PROXYSTR):
            # Twisted's wrapper would make its own parser; it takes one that
            # is already there (its private _parser).
            self._parser = StrictV1Parser()
        service: Any = self.wrappedProtocol
        remainder = _Remainder()
        self.wrappedProtocol = remainder  # type: ignore[assignment]
        try:
            super().dataReceived(data)
        finally:
            self.wrappedProtocol = service
        if self._proxyInfo is not None:
            self._stopDeadline()
            self._started = True
            self.factory.connections.handOver(self)
            service.makeConnection(self)
            if remainder.data:
                service.dataReceived(remainder.data)
        elif self.disconnecting:
            # Twisted closed it: the header is not one.
            self._refuse()

    def _refuse(self) -> None:
        self._stopDeadline()
        self.factory.connections.rejected["proxy"] += 1
        self.transport.abortConnection()  # type: ignore[union-attr]

    def _stopDeadline(self) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    def readConnectionLost(self) -> None:
        halfCloseable = IHalfCloseableProtocol(self.wrappedProtocol, None)
        if not self._started:
            self._refuse()
        elif halfCloseable is not None:
            halfCloseable.readConnectionLost()
        else:
            self.loseConnection()

    def writeConnectionLost(self) -> None:
        halfCloseable = IHalfCloseableProtocol(self.wrappedProtocol, None)
        if halfCloseable is not None:
            halfCloseable.writeConnectionLost()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._stopDeadline()
        if self._started:
            super().connectionLost(reason)
        else:
            self.factory.unregisterProtocol(self)
            self.factory.connections.remove(self)


class HeaderFirstFactory(HAProxyWrappingFactory):
    """
    Wrap a service's factory so that its connections start with a PROXY
    header; rejections are counted in the service's C{connections}.
    """

    # Not Twisted's "Starting factory" line: the banner says where it listens.
    noisy = False

    protocol = HeaderFirst  # type: ignore[assignment]

    def __init__(self, wrappedFactory: Any, clock: IReactorTime) -> None:
        super().__init__(wrappedFactory)
        self.clock = clock
        self.connections = wrappedFactory.connections

    def buildProtocol(self, addr: Any) -> Any:
        # Over its limit, the service turns a connection away with no
        # protocol or one that refuses at once (a 503, "server full"), which
        # needs no client address: it is not kept waiting for a header.
        full = self.connections.full
        service = self.wrappedFactory.buildProtocol(addr)
        if service is None or full:
            return service
        # (Twisted types HAProxyWrappingFactory for its own wrapper only.)
        return HeaderFirst(self, service)  # type: ignore[arg-type]


@implementer(IStreamServerEndpoint)
class ProxiedEndpoint:
    """
    A server endpoint whose connections start with a PROXY protocol header,
    as C{haproxy:ENDPOINT} describes.
    """

    def __init__(self, endpoint: IStreamServerEndpoint, clock: IReactorTime) -> None:
        self._endpoint = endpoint
        self._clock = clock

    def listen(self, protocolFactory: IProtocolFactory) -> Deferred[IListeningPort]:
        return self._endpoint.listen(HeaderFirstFactory(protocolFactory, self._clock))
