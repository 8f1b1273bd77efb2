"""
Tests for L{netdemos.metrics}: the figures in C{/metrics}, and the health pages.
"""

from __future__ import annotations

from chat_support import Room
from http_support import PEER, get
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase
from web_support import WebSocketClient, webSite

from netdemos.counter import CounterSite
from netdemos.echo import EchoFactory
from netdemos.lifecycle import NetdemosService
from netdemos.metrics import makeAdminSite


class MetricsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.server = NetdemosService(MemoryReactorClock())
        self.echo = EchoFactory(Clock())
        self.http = CounterSite(reactor=Clock())
        self.room = Room(backlog=10)
        self.web = webSite(self.room)
        self.admin = makeAdminSite(
            self.server, self.echo, self.http, self.room.factory, self.web
        )

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
        metrics = self.scrape()
        self.assertEqual(metrics['netdemos_connections_active{service="web"}'], 0)

    def test_scrapingDoesNotMoveTheCounter(self) -> None:
        self.scrape()
        self.scrape()
        self.assertEqual(self.http.requestCounter.last, 0)
        self.assertEqual(self.scrape()["netdemos_http_requests_total"], 0)

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
