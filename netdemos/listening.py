"""
Where the server listens, and how to try each service from there: the banner
it logs once every listener is up.

L{RecordedEndpoint} wraps each service's endpoint and notes the port it
listens on, so the banner gives the real address: the port the kernel chose
for C{tcp:0}, the path of a C{unix:} socket, the address of a socket systemd
passed.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any

from twisted.application import strports
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IAddress,
    IListeningPort,
    IProtocolFactory,
    IStreamServerEndpoint,
)
from twisted.internet.protocol import DatagramProtocol
from zope.interface import implementer

from netdemos import datagrams, descriptors, proxy, writethrough

# Addresses that mean "every address": a client tries them as localhost.
_EVERY_ADDRESS = ("0.0.0.0", "::", "")


@dataclass(frozen=True)
class Listener:
    """
    One listening port: the service, the endpoint it was asked for, and where
    it listens.
    """

    service: str
    description: str
    address: IAddress

    def tryIt(self) -> str:
        """
        A command or URL that tries this service, for a person to paste.
        """
        kind = self.description.split(":", 1)[0]
        if kind == "haproxy":
            return "(behind a balancer that sends a PROXY protocol header)"
        tls = kind == "ssl"
        address = self.address
        if isinstance(address, UNIXAddress):
            path = shlex.quote(_text(address.name))
            return _overUNIX(self.service, path, tls)
        if isinstance(address, IPv4Address | IPv6Address) and address.type == "UDP":
            return (
                f"nc -u {_host(address).strip('[]')} {address.port}, then type a line"
            )
        if isinstance(address, IPv4Address | IPv6Address):
            return _overTCP(self.service, _host(address), address.port, tls)
        return str(address)


def _text(name: bytes | str | None) -> str:
    if isinstance(name, bytes):
        return name.decode("utf-8", "replace")
    return name or ""


def _host(address: IPv4Address | IPv6Address) -> str:
    if address.host in _EVERY_ADDRESS:
        return "localhost"
    if isinstance(address, IPv6Address):
        return f"[{address.host}]"
    return address.host


# Interactive, as every nc (OpenBSD's, ncat, busybox) takes it: piped, some
# wait for the server to close and others close at once.
_TYPE_A_LINE = {"echo": ", then type a line"}


def _overTCP(service: str, host: str, port: int, tls: bool) -> str:
    scheme = "https" if tls else "http"
    url = f"{scheme}://{host}:{port}"
    insecure = "-k " if tls else ""
    # nc and openssl take an IPv6 host without brackets.
    bare = host.strip("[]")
    if service == "http":
        return f"curl {insecure}{url}/"
    if service == "metrics":
        return f"curl {insecure}{url}/metrics"
    if service == "web":
        return f"{url}/ in a browser"
    if tls:
        command = f"openssl s_client -quiet -connect {host}:{port}"
    else:
        command = f"nc {bare} {port}"
    return command + _TYPE_A_LINE.get(service, "")


def _overUNIX(service: str, path: str, tls: bool) -> str:
    if service in ("http", "metrics", "web"):
        page = "/metrics" if service == "metrics" else "/"
        scheme = "https" if tls else "http"
        return f"curl --unix-socket {path} {scheme}://localhost{page}"
    return f"nc -U {path}" + _TYPE_A_LINE.get(service, "")


def banner(instance: str, listeners: list[Listener]) -> list[str]:
    """
    The lines that say the server is ready, and for each listener where it
    is and how to try it: each a log event of its own, as a journal wants.
    """
    width = max((len(each.description) for each in listeners), default=0)
    lines = [f"netdemos: ready ({instance}); try:"]
    for each in listeners:
        lines.append(f"  {each.service:<8} {each.description:<{width}}  {each.tryIt()}")
    return lines


class _Recording:
    """
    What a recorded endpoint of either kind shares: where it notes the ports
    it opens, and how.
    """

    def __init__(
        self,
        endpoint: Any,
        service: str,
        description: str,
        listeners: list[Listener],
    ) -> None:
        self._endpoint = endpoint
        self._service = service
        self._description = description
        self._listeners = listeners

    def _record(self, port: IListeningPort) -> IListeningPort:
        self._listeners.append(
            Listener(self._service, self._description, port.getHost())
        )
        return port


@implementer(IStreamServerEndpoint)
class RecordedEndpoint(_Recording):
    """
    A stream endpoint that notes, in C{listeners}, where each port it opens
    listens.
    """

    def listen(self, protocolFactory: IProtocolFactory) -> Deferred[IListeningPort]:
        listening: Deferred[IListeningPort] = self._endpoint.listen(protocolFactory)
        return listening.addCallback(self._record)


# Twisted listens with a backlog of 50; a burst of connections beyond that is
# dropped by the kernel and the clients retry after 1 s, 3 s, ...  Endpoints
# that do not set backlog= themselves get this instead.
DEFAULT_LISTEN_BACKLOG = 1024
_BACKLOG_TYPES = ("tcp", "tcp6", "ssl", "unix")


def withListenBacklog(description: str) -> str:
    """
    Add C{backlog=DEFAULT_LISTEN_BACKLOG} to a listening endpoint that takes one
    and does not set it.
    """
    kind = description.split(":", 1)[0]
    if kind in _BACKLOG_TYPES and "backlog=" not in description:
        return f"{description}:backlog={DEFAULT_LISTEN_BACKLOG}"
    return description


def listen(
    server: Any,
    parent: Any,
    name: str,
    description: str,
    factory: Any,
    reactor: Any,
) -> None:
    """
    Listen with C{factory} on C{description}, under C{parent} in C{server},
    with the write-through transport the server chose; watch the port for
    accept failures, counted in C{factory.connections}, and note where it
    listens for the startup banner.
    """
    # haproxy:ENDPOINT is Twisted's own prefix; netdemos applies it itself, to
    # ENDPOINT with its listen backlog, so as to wait for the header first.
    inner = (
        description[len(proxy.PREFIX) :]
        if proxy.isProxied(description)
        else description
    )
    child = strports.service(withListenBacklog(inner), factory, reactor=reactor)
    child.endpoint = writethrough.WriteThroughEndpoint(
        child.endpoint, server.transports
    )
    if inner != description:
        child.endpoint = proxy.ProxiedEndpoint(child.endpoint, reactor)
    child.endpoint = RecordedEndpoint(
        child.endpoint, name, description, server.listening
    )
    child.endpoint = descriptors.WatchedEndpoint(
        child.endpoint, name, factory.connections, reactor
    )
    child.setName(f"{name} {description}")
    child.setServiceParent(parent)


@implementer(datagrams.IDatagramServerEndpoint)
class RecordedDatagramEndpoint(_Recording):
    """
    A datagram endpoint that notes, in C{listeners}, where each port it opens
    listens.
    """

    def listen(self, protocol: DatagramProtocol) -> IListeningPort:
        return self._record(self._endpoint.listen(protocol))


def listenDatagrams(
    server: Any,
    parent: Any,
    name: str,
    description: str,
    factory: Any,
    reactor: Any,
) -> None:
    """
    Listen with a protocol from C{factory} on the datagram endpoint
    C{description}, under C{parent} in C{server}, and note where it listens
    for the startup banner.
    """
    endpoint = RecordedDatagramEndpoint(
        datagrams.datagramEndpoint(reactor, description),
        name,
        description,
        server.listening,
    )
    child = datagrams.DatagramPortService(endpoint, factory.buildProtocol())
    child.setName(f"{name} {description}")
    child.setServiceParent(parent)
