"""
Tests for L{netdemos.udpecho} and L{netdemos.datagrams}: the UDP echo sends
each datagram back as it came, and nothing else; never to a privileged port
or to itself; within each source's rate and the overall one; remembering a
bounded number of sources.
"""

from __future__ import annotations

import errno

from support.datagrams import FakeDatagramTransport
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactor
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from netdemos import datagrams, udpecho
from netdemos.figures import IReportsFigures

CLIENT = ("127.0.0.1", 50000)


def echoOn(
    transport: FakeDatagramTransport,
    clock: Clock | None = None,
    rate: float = udpecho.DEFAULT_RATE,
    burst: int = udpecho.DEFAULT_BURST,
    maxSources: int = udpecho.MAX_SOURCES,
) -> udpecho.UDPEcho:
    limits = udpecho.SourceLimits(clock or Clock(), rate, burst, maxSources)
    echo = udpecho.UDPEchoFactory(limits).buildProtocol()
    echo.makeConnection(transport)  # type: ignore[arg-type]
    return echo


class UDPEchoTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.transport = FakeDatagramTransport("127.0.0.1", 7777)
        self.clock = Clock()
        self.echo = echoOn(self.transport, self.clock)
        self.factory = self.echo._factory

    def test_eachDatagramComesBackWholeToItsSource(self) -> None:
        """
        RFC 862: a datagram is sent back to its source as one datagram of the
        same bytes, whatever its size.
        """
        for size in (1, 1400, 65000):
            self.echo.datagramReceived(b"x" * size, CLIENT)
        self.assertEqual(
            self.transport.written,
            [(b"x" * size, CLIENT) for size in (1, 1400, 65000)],
        )
        self.assertEqual(self.factory.datagrams[udpecho.ECHOED], 3)
        self.assertEqual(self.factory.bytes[udpecho.ECHOED], 66401)

    def test_anEmptyDatagramIsEchoed(self) -> None:
        self.echo.datagramReceived(b"", CLIENT)
        self.assertEqual(self.transport.written, [(b"", CLIENT)])

    def test_privilegedSourcePortsGetNothing(self) -> None:
        """
        A datagram from a port below 1024 is dropped, as BSD inetd's
        C{check_loop} does: it may be another echo (7) or chargen (19),
        forged as the source to start a loop.
        """
        for port in (7, 19, 1023):
            self.echo.datagramReceived(b"loop?", ("127.0.0.1", port))
        self.echo.datagramReceived(b"fine", ("127.0.0.1", 1024))
        self.assertEqual(self.transport.written, [(b"fine", ("127.0.0.1", 1024))])
        self.assertEqual(self.factory.datagrams[udpecho.DROPPED_PORT], 3)

    def test_itsOwnAddressGetsNothing(self) -> None:
        """
        A datagram forged to come from the echo's own address would have it
        echo to itself for ever.
        """
        self.echo.datagramReceived(b"me?", ("127.0.0.1", 7777))
        self.echo.datagramReceived(b"other", ("127.0.0.2", 7777))
        self.assertEqual(self.transport.written, [(b"other", ("127.0.0.2", 7777))])
        self.assertEqual(self.factory.datagrams[udpecho.DROPPED_SELF], 1)

    def test_onEveryAddressItsOwnPortGetsNothing(self) -> None:
        """
        Listening on every address, any address may be its own: its port is
        refused from all of them.
        """
        for host in ("0.0.0.0", "::"):
            transport = FakeDatagramTransport(host, 7777)
            echo = echoOn(transport)
            echo.datagramReceived(b"me?", ("10.1.2.3", 7777))
            echo.datagramReceived(b"you", ("10.1.2.3", 7778))
            self.assertEqual(transport.written, [(b"you", ("10.1.2.3", 7778))])

    def test_eachSourceGetsItsBurstThenItsRate(self) -> None:
        """
        A source gets C{burst} datagrams back at once, then C{rate} a second;
        the rest are dropped and counted.
        """
        for _ in range(300):
            self.echo.datagramReceived(b"x", CLIENT)
        self.assertEqual(len(self.transport.written), 200)
        self.assertEqual(self.factory.datagrams[udpecho.DROPPED_RATE], 100)
        self.clock.advance(1)
        for _ in range(300):
            self.echo.datagramReceived(b"x", CLIENT)
        self.assertEqual(len(self.transport.written), 300)

    def test_largeDatagramsCountAsSeveral(self) -> None:
        """
        Bytes are limited too: a 64 KB datagram costs what 32 small ones do,
        so the burst of 200 allows 6 of them.
        """
        for _ in range(10):
            self.echo.datagramReceived(b"x" * 65000, CLIENT)
        self.assertEqual(len(self.transport.written), 6)

    def test_aDatagramLargerThanTheBurstStillPasses(self) -> None:
        """
        With a burst smaller than a large datagram's cost, the datagram costs
        the whole burst rather than never passing.
        """
        echo = echoOn(self.transport, self.clock, rate=1, burst=1)
        echo.datagramReceived(b"x" * 65000, CLIENT)
        echo.datagramReceived(b"x" * 65000, CLIENT)
        self.assertEqual(len(self.transport.written), 1)

    def test_aFlooderDoesNotStarveOthers(self) -> None:
        for _ in range(1000):
            self.echo.datagramReceived(b"flood", CLIENT)
        self.echo.datagramReceived(b"hello", ("127.0.0.9", 40000))
        self.assertEqual(self.transport.written[-1], (b"hello", ("127.0.0.9", 40000)))

    def test_allSourcesTogetherAreLimited(self) -> None:
        """
        Many sources (forged, say) get no more than 100 times what one may,
        however many they are.
        """
        echo = echoOn(self.transport, self.clock, rate=1, burst=1)
        for n in range(250):
            echo.datagramReceived(b"x", (f"10.0.{n // 256}.{n % 256}", 40000))
        self.assertEqual(len(self.transport.written), 100)
        self.clock.advance(1)
        echo.datagramReceived(b"x", ("10.9.9.9", 40000))
        self.assertEqual(len(self.transport.written), 101)

    def test_aDroppedDatagramSpendsNothing(self) -> None:
        """
        A datagram over the overall limit does not spend its source's own
        allowance.
        """
        echo = echoOn(self.transport, self.clock, rate=1, burst=1)
        for n in range(100):
            echo.datagramReceived(b"x", (f"10.0.0.{n}", 40000))
        echo.datagramReceived(b"x", ("10.0.1.1", 40000))
        self.clock.advance(1)
        echo.datagramReceived(b"x", ("10.0.1.1", 40000))
        self.assertEqual(self.transport.written[-1], (b"x", ("10.0.1.1", 40000)))

    def test_theTableOfSourcesIsBounded(self) -> None:
        """
        At most C{maxSources} sources are remembered, the one heard from least
        recently forgotten first.
        """
        echo = echoOn(self.transport, self.clock, rate=1, burst=2, maxSources=3)
        limits = echo._factory.limits
        for host in ("10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.1"):
            echo.datagramReceived(b"x", (host, 40000))
        echo.datagramReceived(b"x", ("10.0.0.4", 40000))
        self.assertEqual(len(limits), 3)
        self.assertEqual(list(limits._sources), ["10.0.0.3", "10.0.0.1", "10.0.0.4"])
        # 10.0.0.1 was remembered: its second datagram spent its burst.
        echo.datagramReceived(b"x", ("10.0.0.1", 40000))
        self.assertEqual(echo._factory.datagrams[udpecho.DROPPED_RATE], 1)

    def test_aClockSetBackDoesNotBlockASource(self) -> None:
        self.clock.advance(1000)
        for _ in range(300):
            self.echo.datagramReceived(b"x", CLIENT)
        self.clock.rightNow = 0.0
        self.echo.datagramReceived(b"after", CLIENT)
        self.assertEqual(self.transport.written[-1], (b"after", CLIENT))

    def test_aFailedSendIsCountedNotRaised(self) -> None:
        """
        A full send buffer loses the datagram, as UDP may; it is counted, and
        no error reaches the port, which would log it for every datagram.
        """
        self.transport.failure = BlockingIOError(errno.EAGAIN, "full")
        self.echo.datagramReceived(b"x", CLIENT)
        self.assertEqual(self.factory.datagrams[udpecho.UNSENT], 1)

    def test_figures(self) -> None:
        self.assertTrue(verifyObject(IReportsFigures, self.factory))
        self.echo.datagramReceived(b"abc", CLIENT)
        self.echo.datagramReceived(b"de", ("127.0.0.1", 53))
        figures = {
            (figure.name, figure.labels): figure.value
            for figure in self.factory.figures()
        }
        self.assertEqual(figures[("udp_datagrams", (("result", "echoed"),))], 1)
        self.assertEqual(figures[("udp_bytes", (("result", "echoed"),))], 3)
        self.assertEqual(figures[("udp_bytes", (("result", "dropped_port"),))], 2)
        self.assertEqual(figures[("udp_sources", ())], 1)


class DatagramEndpointTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactor()

    def parse(self, description: str, **named: int) -> object:
        return datagrams.datagramEndpoint(self.reactor, description, lambda: named)

    def test_udp(self) -> None:
        endpoint = self.parse("udp:7")
        assert isinstance(endpoint, datagrams.UDPServerEndpoint)
        self.assertEqual((endpoint.port, endpoint.interface), (7, ""))
        endpoint = self.parse(r"udp:7:interface=\:\:1")
        assert isinstance(endpoint, datagrams.UDPServerEndpoint)
        self.assertEqual(endpoint.interface, "::1")
        self.assertEqual(datagrams.normalizeDatagramEndpoint("7"), "udp:7")

    def test_badEndpointsSayWhy(self) -> None:
        for description, reason in [
            ("udp:70000", "port 70000 is out of range"),
            ("udp:7:interface=localhost", "'localhost' is not an IP address"),
            ("udp:7:backlog=5", "unknown argument 'backlog=5'"),
            ("tcp:7", "not udp:PORT"),
            ("udp:x", "not udp:PORT"),
            ("systemd:domain=INET", "unknown argument"),
            ("systemd:", "unknown argument"),
            ("systemd:name=echo", "no socket named 'echo' (it passed: none)"),
        ]:
            error = self.assertRaises(ValueError, self.parse, description)
            self.assertIn(reason, str(error))

    def test_systemdAdoptsTheNamedDatagramSocket(self) -> None:
        import socket

        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as inherited:
            endpoint = self.parse("systemd:name=echo", echo=3)
            assert isinstance(endpoint, datagrams.AdoptedDatagramEndpoint)
            endpoint = self.parse(
                "systemd:name=echo-udp", **{"echo-udp": inherited.fileno()}
            )
            protocol = udpecho.UDPEchoFactory(
                udpecho.SourceLimits(Clock())
            ).buildProtocol()
            assert isinstance(endpoint, datagrams.AdoptedDatagramEndpoint)
            endpoint.listen(protocol)
            [(fileno, family, adopted, size)] = self.reactor.adoptedPorts
            self.assertEqual(
                (fileno, family, adopted, size),
                (inherited.fileno(), socket.AF_INET6, protocol, 65535),
            )

    def test_namesComeFromTwistedsOwnListenFDs(self) -> None:
        """
        The names are those Twisted's C{systemd:} endpoints read: once
        Twisted has read them, the environment no longer holds them.
        """
        from twisted.internet.endpoints import _SystemdParser
        from twisted.python.systemd import ListenFDs

        self.patch(_SystemdParser, "_sddaemon", ListenFDs([5, 6], ["a", "b"]))
        endpoint = datagrams.datagramEndpoint(self.reactor, "systemd:name=b")
        assert isinstance(endpoint, datagrams.AdoptedDatagramEndpoint)
        self.assertEqual(endpoint.fileno, 6)

    def test_aStreamSocketIsRefused(self) -> None:
        import socket

        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as inherited:
            endpoint = self.parse("systemd:name=e", e=inherited.fileno())
            assert isinstance(endpoint, datagrams.AdoptedDatagramEndpoint)
            error = self.assertRaises(
                ValueError,
                endpoint.listen,
                udpecho.UDPEchoFactory(udpecho.SourceLimits(Clock())).buildProtocol(),
            )
            self.assertIn("is not a datagram socket", str(error))

    def test_theServiceOpensAndClosesThePort(self) -> None:
        transport = FakeDatagramTransport()

        class Endpoint:
            def listen(self, protocol: object) -> FakeDatagramTransport:
                return transport

        service = datagrams.DatagramPortService(Endpoint(), None)  # type: ignore[arg-type]
        service.privilegedStartService()
        service.startService()
        self.assertIs(service.port, transport)
        service.stopService()
        self.assertFalse(transport.listening)
        self.assertIsNone(service.port)
