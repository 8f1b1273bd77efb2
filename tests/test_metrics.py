"""
Tests for L{netdemos.metrics}: the figures in C{/metrics}, and the health pages.
"""

from __future__ import annotations

import re
from pathlib import Path

from support.chat import Room
from support.datagrams import FakeDatagramTransport
from support.http import connectChannel, exchange, get
from support.redis import FakeRedis
from support.transport import PEER
from support.web import WebSocketClient, webSite
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from netdemos import __version__, metrics
from netdemos.counter import CounterSite
from netdemos.echo import EchoFactory
from netdemos.figures import Figure, IReportsFigures
from netdemos.lifecycle import NetdemosService
from netdemos.metrics import makeAdminSite
from netdemos.udpecho import SourceLimits, UDPEchoFactory


class MetricsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.server = NetdemosService(self.clock, instance="web-1")
        self.echo = EchoFactory(Clock())
        self.http = CounterSite(reactor=Clock())
        self.room = Room(backlog=10)
        self.web = webSite(self.room)
        self.server.factories.update(
            echo=self.echo, http=self.http, chat=self.room.factory, web=self.web
        )
        self.admin = makeAdminSite(self.server)

    def scrape(self) -> dict[str, float]:
        response = get(self.admin, b"/metrics")
        head, body = response.split(b"\r\n\r\n", 1)
        self.assertIn(b"Content-Type: text/plain; version=", head)
        return {
            name: float(value)
            for name, value in (
                line.rsplit(" ", 1)
                for line in body.decode().splitlines()
                if line and not line.startswith("#")
            )
        }

    def test_figuresMatchTraffic(self) -> None:
        echo = self.echo.buildProtocol(PEER)
        assert echo is not None
        echo.makeConnection(StringTransport())
        echo.dataReceived(b"12345")
        for _ in range(3):
            get(self.http, b"/")
        alice, _ = self.room.connect()
        slow, _ = self.room.connect()
        alice.dataReceived(b"one\ntwo\n")
        slow.pauseProducing()
        alice.dataReceived(b"this line is too much for slow\n")
        self.room.clock.advance(0)  # the reactor's turn ends

        metrics = self.scrape()
        self.assertEqual(metrics['netdemos_connections_total{service="echo"}'], 1)
        self.assertEqual(metrics['netdemos_connections_active{service="echo"}'], 1)
        self.assertEqual(metrics['netdemos_connections_total{service="http"}'], 3)
        self.assertEqual(metrics['netdemos_connections_total{service="chat"}'], 2)
        self.assertEqual(metrics["netdemos_echo_bytes_total"], 5)
        self.assertEqual(metrics["netdemos_http_requests_total"], 3)
        self.assertEqual(metrics["netdemos_chat_messages_total"], 3)
        self.assertEqual(
            metrics['netdemos_chat_clients_dropped_total{reason="slow"}'], 1
        )
        self.assertEqual(
            metrics[
                'netdemos_connections_rejected_total{reason="limit",service="chat"}'
            ],
            0,
        )
        self.assertIn("process_cpu_seconds_total", metrics)

    def test_udpEchoReportsWithoutConnections(self) -> None:
        """
        A service with no connections (the UDP echo) reports its figures
        through the server's C{reporting}, and has no connection figures.
        """
        echoes = UDPEchoFactory(SourceLimits(Clock()))
        self.server.reporting["echo-udp"] = echoes
        echo = echoes.buildProtocol()
        echo.makeConnection(FakeDatagramTransport())  # type: ignore[arg-type]
        echo.datagramReceived(b"hello", ("127.0.0.1", 40000))
        echo.datagramReceived(b"hi", ("127.0.0.1", 19))
        figures = self.scrape()
        self.assertEqual(figures['netdemos_udp_datagrams_total{result="echoed"}'], 1)
        self.assertEqual(figures['netdemos_udp_bytes_total{result="dropped_port"}'], 2)
        self.assertEqual(figures["netdemos_udp_sources"], 1)
        self.assertNotIn('netdemos_connections_total{service="echo-udp"}', figures)

    def test_webSocketsAreCountedUnderWeb(self) -> None:
        """
        A WebSocket is counted under C{service="web"} while it is open, once,
        and no longer once it has closed.
        """
        browser = WebSocketClient(self.web, self.room)
        metrics = self.scrape()
        self.assertEqual(metrics['netdemos_connections_total{service="web"}'], 1)
        self.assertEqual(metrics['netdemos_connections_active{service="web"}'], 1)
        browser.sendText("/quit")
        browser.receive()
        self.clock.advance(1)  # past the rendered page's age
        metrics = self.scrape()
        self.assertEqual(metrics['netdemos_connections_active{service="web"}'], 0)

    def test_theLinkToRedis(self) -> None:
        """
        With C{--redis}: whether the link is usable, the error replies by
        command, and the messages dropped as unusable.
        """
        self.assertNotIn("netdemos_redis_up", self.scrape())
        link = FakeRedis(Clock()).link()
        self.server.redis = link
        link.goUp()
        link.badMessage("test:room", "not JSON")
        link.refusing = Exception("OOM")
        for message in ("x", "y"):
            self.failureResultOf(link.publish("test:room", message))
        self.clock.advance(1)
        figures = self.scrape()
        self.assertEqual(figures["netdemos_redis_up"], 0)
        self.assertEqual(figures['netdemos_redis_errors_total{command="publish"}'], 2)
        self.assertEqual(figures["netdemos_redis_bad_messages_total"], 1)
        link.refusing = None
        link.publish("test:room", "z")
        self.clock.advance(1)
        self.assertEqual(self.scrape()["netdemos_redis_up"], 1)

    def test_scrapingDoesNotMoveTheCounter(self) -> None:
        self.scrape()
        self.scrape()
        self.assertEqual(self.http.requestCounter.peek(), 1)
        self.assertEqual(self.scrape()["netdemos_http_requests_total"], 0)

    def test_renderedAtMostOncePerSecond(self) -> None:
        """
        Scrapes within a second of a render get that render again; the first
        one after it renders afresh.  A client scraping in a loop would
        otherwise take the reactor from every other service (2,900 scrapes/s
        cut the counter from 16.8k to 0.6k requests/s).
        """
        get(self.http, b"/")
        self.assertEqual(self.scrape()["netdemos_http_requests_total"], 1)
        get(self.http, b"/")
        self.clock.advance(0.9)
        self.assertEqual(self.scrape()["netdemos_http_requests_total"], 1)
        self.clock.advance(0.1)
        self.assertEqual(self.scrape()["netdemos_http_requests_total"], 2)

    def test_refusedRequestsByReason(self) -> None:
        """
        Requests the counter refused are counted by reason, every reason
        present from the start so that a dashboard can graph a rate.
        """
        exchange(self.http, b"GET / HTTP/1.1\r\n\r\n")
        exchange(self.http, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n")
        exchange(self.http, b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n")
        exchange(
            self.web,
            b"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\n\r\n",
        )
        metrics = self.scrape()

        def refused(service: str, reasons: tuple[str, ...]) -> dict[str, float]:
            return {
                reason: metrics[
                    "netdemos_http_requests_refused_total"
                    f'{{reason="{reason}",service="{service}"}}'
                ]
                for reason in reasons
            }

        counter = ("body", "headers", "host", "malformed", "timeout")
        self.assertEqual(
            refused("http", counter),
            {"body": 2, "headers": 0, "host": 1, "malformed": 0, "timeout": 0},
        )
        self.assertEqual(
            refused("web", ("handshake", "origin", "body")),
            {"handshake": 1, "origin": 0, "body": 0},
        )

    def test_adminSiteRefusesBodies(self) -> None:
        """
        The metrics port takes no body either: it is refused unread, not
        spooled to disk.
        """
        channel, transport = connectChannel(self.admin)
        channel.dataReceived(
            b"POST /metrics HTTP/1.1\r\nHost: x\r\n"
            b"Content-Length: 1000000000000\r\n\r\n"
        )
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 405 "))
        self.assertTrue(transport.writeClosed)

    def test_infoNamesInstanceAndVersion(self) -> None:
        """
        C{netdemos_info} tells which instance, of which version, a scrape
        came from; and the metrics site names it in C{X-Served-By} too.
        """
        response = get(self.admin, b"/metrics")
        self.assertIn(
            b'\nnetdemos_info{instance="web-1",version="%s"} 1.0\n'
            % (__version__.encode(),),
            response,
        )
        self.assertIn(b"\r\nX-Served-By: web-1\r\n", response)

    def test_noPeerAddressInLabels(self) -> None:
        self.room.connect()
        self.assertNotIn(b"127.0.0.1", get(self.admin, b"/metrics"))

    def test_liveAlwaysReadyOnlyWhenReady(self) -> None:
        self.assertIn(b" 200 ", get(self.admin, b"/livez").split(b"\r\n")[0])
        self.assertIn(b" 503 ", get(self.admin, b"/readyz").split(b"\r\n")[0])
        self.server.startService()
        self.assertIn(b" 200 ", get(self.admin, b"/readyz").split(b"\r\n")[0])
        self.server.stopService()
        self.assertIn(b" 503 ", get(self.admin, b"/readyz").split(b"\r\n")[0])
        self.assertIn(b" 200 ", get(self.admin, b"/livez").split(b"\r\n")[0])


class FiguresTests(SynchronousTestCase):
    """
    Each service reports its own figures through L{IReportsFigures}; the
    metrics know no service.
    """

    def test_everyServiceReportsItsFigures(self) -> None:
        room = Room()
        services = [
            EchoFactory(Clock()),
            CounterSite(reactor=Clock()),
            room.factory,
            webSite(room),
            UDPEchoFactory(SourceLimits(Clock())),
        ]
        for service in services:
            self.assertTrue(verifyObject(IReportsFigures, service))
            for figure in service.figures():
                self.assertIsInstance(figure, Figure)
                self.assertRegex(figure.name, r"^[a-z_]+$")

    def test_metricsImportsNoService(self) -> None:
        """
        C{netdemos.metrics} reads services only through the interface: it
        imports none of their modules.
        """
        source = Path(metrics.__file__).read_text()
        imported = re.findall(r"^from netdemos(?:\.([\w.]+))? import", source, re.M)
        services = {
            "echo",
            "counter",
            "web",
            "chat.tcp",
            "chat.room",
            "chat.member",
            "udpecho",
        }
        self.assertEqual(services & set(imported), set())
