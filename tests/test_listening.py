"""
Tests for L{netdemos.listening}: the startup banner says where each service
listens, with the real address, and how to try it.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from support.certificates import makeCertificate
from twisted.internet import reactor
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint, UNIXClientEndpoint
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.internet.testing import MemoryReactor
from twisted.trial.unittest import SynchronousTestCase, TestCase

from netdemos.echo import Echo, EchoFactory
from netdemos.lifecycle import NetdemosService
from netdemos.listening import Listener, RecordedEndpoint, banner, listen
from netdemos.writethrough import (
    Choice,
    WriteThroughTCPServer,
    WriteThroughUNIXServer,
)


def tcp(service: str, description: str, host: str, port: int) -> Listener:
    family = IPv6Address if ":" in host else IPv4Address
    return Listener(service, description, family("TCP", host, port))


class TryItTests(SynchronousTestCase):
    def test_eachServiceOverTCP(self) -> None:
        """
        Every address (C{0.0.0.0}, C{::}) is tried as localhost; each service
        with the client people have.
        """
        self.assertEqual(
            [
                tcp("echo", "tcp6:1234", "::", 1234).tryIt(),
                tcp("http", "tcp:0", "0.0.0.0", 41000).tryIt(),
                tcp("chat", "tcp6:1025", "::", 1025).tryIt(),
                tcp("web", "tcp6:8081", "::", 8081).tryIt(),
                tcp("metrics", "tcp:9100", "127.0.0.1", 9100).tryIt(),
            ],
            [
                "nc localhost 1234, then type a line",
                "curl http://localhost:41000/",
                "nc localhost 1025",
                "http://localhost:8081/ in a browser",
                "curl http://127.0.0.1:9100/metrics",
            ],
        )

    def test_udpEcho(self) -> None:
        """
        The UDP echo is tried with C{nc -u}, which needs a line typed.
        """
        self.assertEqual(
            [
                Listener("echo-udp", "udp:7", IPv4Address("UDP", "0.0.0.0", 7)).tryIt(),
                Listener("echo-udp", "udp:7", IPv6Address("UDP", "::1", 7)).tryIt(),
            ],
            [
                "nc -u localhost 7, then type a line",
                "nc -u ::1 7, then type a line",
            ],
        )

    def test_anIPv6AddressIsBracketedInURLsOnly(self) -> None:
        self.assertEqual(
            tcp("http", "tcp6:80:interface=\\:\\:1", "::1", 80).tryIt(),
            "curl http://[::1]:80/",
        )
        self.assertEqual(
            tcp("chat", "tcp6:1025:interface=\\:\\:1", "::1", 1025).tryIt(),
            "nc ::1 1025",
        )

    def test_tls(self) -> None:
        self.assertEqual(
            tcp("http", "ssl:8443:privateKey=k", "0.0.0.0", 8443).tryIt(),
            "curl -k https://localhost:8443/",
        )
        self.assertEqual(
            tcp("chat", "ssl:6697:privateKey=k", "0.0.0.0", 6697).tryIt(),
            "openssl s_client -quiet -connect localhost:6697",
        )

    def test_unixSockets(self) -> None:
        def unix(service: str, path: str) -> str:
            return Listener(service, f"unix:{path}", UNIXAddress(path)).tryIt()

        self.assertEqual(unix("chat", "/run/chat.sock"), "nc -U /run/chat.sock")
        self.assertEqual(
            unix("http", "/run/my http.sock"),
            "curl --unix-socket '/run/my http.sock' http://localhost/",
        )

    def test_behindABalancer(self) -> None:
        self.assertEqual(
            tcp("chat", "haproxy:tcp:1025", "0.0.0.0", 1025).tryIt(),
            "(behind a balancer that sends a PROXY protocol header)",
        )


class BannerTests(SynchronousTestCase):
    def test_oneLinePerListenerAligned(self) -> None:
        self.assertEqual(
            banner(
                "web-1",
                [
                    tcp("echo", "tcp6:1234", "::", 1234),
                    tcp("http", "tcp:0", "0.0.0.0", 41000),
                ],
            ),
            [
                "netdemos: ready (web-1); try:",
                "  echo     tcp6:1234  nc localhost 1234, then type a line",
                "  http     tcp:0      curl http://localhost:41000/",
            ],
        )


class RecordedEndpointTests(SynchronousTestCase):
    def test_recordsWhereThePortListens(self) -> None:
        """
        The address recorded is the port's own (C{getHost}), so a port the
        kernel chose is the one shown.
        """
        reactor = MemoryReactor()
        port = reactor.listenTCP(41000, Factory())

        class Endpoint:
            def listen(self, factory: Factory) -> object:
                return succeed(port)

        listeners: list[Listener] = []
        endpoint = RecordedEndpoint(Endpoint(), "http", "tcp:0", listeners)
        self.assertIs(self.successResultOf(endpoint.listen(Factory())), port)
        self.assertEqual(listeners, [Listener("http", "tcp:0", port.getHost())])
        self.assertEqual(listeners[0].tryIt(), "curl http://localhost:41000/")


class WriteThroughWiringTests(TestCase):
    """
    L{listen} gives every connection of the endpoints netdemos builds the
    write-through transport: driven with the real reactor, on loopback.
    """

    def connectionOn(self, description: str, greeting: bytes = b"") -> Deferred[Any]:
        """
        Listen for echo on C{description}, connect to it, send C{greeting},
        and fire with the server's echo protocol for that connection.
        """
        server = NetdemosService(reactor)
        # Whatever this test's environment says.
        server.transports = Choice({})
        factory = EchoFactory(reactor)
        listen(server, server.listeners, "echo", description, factory, reactor)
        server.privilegedStartService()
        server.startService()
        self.addCleanup(server.stopService)
        [listener] = server.listening
        address = listener.address
        client: IStreamClientEndpoint
        if isinstance(address, UNIXAddress):
            client = UNIXClientEndpoint(reactor, address.name)
        else:
            assert isinstance(address, IPv4Address)
            client = TCP4ClientEndpoint(reactor, address.host, address.port)

        async def connected() -> Any:
            protocol: Any = await client.connect(Factory.forProtocol(Protocol))
            self.addCleanup(protocol.transport.loseConnection)
            protocol.transport.write(greeting)
            while not any(isinstance(each, Echo) for each in factory.connections.live):
                await deferLater(reactor, 0.01)
            [echo] = factory.connections.live
            return echo

        return Deferred.fromCoroutine(connected())

    def directory(self) -> Path:
        """
        A new directory, removed after the test (not trial's C{mktemp},
        which leaves its directories in the one the tests run from).
        """
        path = Path(tempfile.mkdtemp(prefix="netdemos-test-"))
        self.addCleanup(shutil.rmtree, path, True)
        return path

    async def test_tcp(self) -> None:
        """
        A C{tcp:} connection writes through, with Nagle's algorithm off.
        """
        echo = await self.connectionOn("tcp:0:interface=127.0.0.1")
        self.assertIsInstance(echo.transport, WriteThroughTCPServer)
        self.assertTrue(echo.transport.getTcpNoDelay())

    async def test_unix(self) -> None:
        """
        A C{unix:} connection writes through.
        """
        echo = await self.connectionOn(f"unix:{self.directory() / 'echo.sock'}")
        self.assertIsInstance(echo.transport, WriteThroughUNIXServer)

    async def test_beneathTLS(self) -> None:
        """
        Under C{ssl:}, the TCP transport beneath the TLS layer writes through.
        """
        certificate = makeCertificate(self.directory())
        echo = await self.connectionOn(certificate.serverEndpoint(0))
        self.assertIsInstance(echo.transport.transport, WriteThroughTCPServer)

    async def test_behindTheProxyWrapper(self) -> None:
        """
        Behind C{haproxy:}, the transport beneath the wrapper writes through.
        """
        echo = await self.connectionOn(
            "haproxy:tcp:0:interface=127.0.0.1",
            b"PROXY TCP4 192.0.2.1 127.0.0.1 4000 1234\r\n",
        )
        self.assertIsInstance(echo.transport.transport, WriteThroughTCPServer)
