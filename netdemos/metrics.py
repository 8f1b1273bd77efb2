"""
Metrics and health checks, served on their own endpoints (C{--metrics}).

C{/metrics} is the Prometheus text format, produced by the official
C{prometheus-client} library.  The figures are read from the services' own
counters only when scraped, so metrics cost nothing per request or message.
C{/livez} answers 200 while the reactor runs; C{/readyz} answers 200 once every
listener is up and 503 while the server drains.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from twisted.internet.interfaces import IAddress
from twisted.internet.protocol import Protocol
from twisted.web.http import Request
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource
from twisted.web.server import Site

from netdemos.chat.tcp import ChatFactory
from netdemos.counter import (
    DEFAULT_IDLE_TIMEOUT,
    CountedChannel,
    CounterSite,
    ServiceUnavailable,
)
from netdemos.descriptors import ADMIN_MAX_CONNECTIONS
from netdemos.echo import EchoFactory
from netdemos.lifecycle import NetdemosService
from netdemos.limits import Connections
from netdemos.web import WebSite


class NetdemosCollector(Collector):
    """
    Read the services' counters at scrape time.

    Labels are low-cardinality on purpose: a service name or a reason, never a
    peer address.
    """

    def __init__(
        self,
        echo: EchoFactory | None,
        http: CounterSite | None,
        chat: ChatFactory | None,
        web: WebSite | None = None,
    ) -> None:
        self._echo, self._http, self._chat, self._web = echo, http, chat, web
        # Set once the site serving these metrics is built.
        self.admin: QuietSite | None = None

    def collect(self) -> Iterator[Metric]:
        total = CounterMetricFamily(
            "netdemos_connections", "Connections accepted.", labels=["service"]
        )
        active = GaugeMetricFamily(
            "netdemos_connections_active", "Connections open now.", labels=["service"]
        )
        rejected = CounterMetricFamily(
            "netdemos_connections_rejected",
            "Connections turned away.",
            labels=["service", "reason"],
        )
        services = (
            ("echo", self._echo),
            ("http", self._http),
            ("chat", self._chat),
            ("web", self._web),
            ("metrics", self.admin),
        )
        for name, factory in services:
            if factory is None:
                continue
            connections = factory.connections
            total.add_metric([name], connections.total)
            active.add_metric([name], len(connections))
            # "fd": accept(2) ran out of file descriptors (descriptors.py).
            for reason in ("limit", "fd"):
                rejected.add_metric([name, reason], connections.rejected[reason])
        yield from (total, active, rejected)

        if self._echo is not None:
            yield CounterMetricFamily(
                "netdemos_echo_bytes",
                "Bytes echoed.",
                value=self._echo.bytesEchoed,
            )
        if self._http is not None:
            yield CounterMetricFamily(
                "netdemos_http_requests",
                "HTTP requests answered by this process.",
                value=self._http.counterResource.requestsServed,
            )
        if self._chat is not None:
            room = self._chat.room
            yield CounterMetricFamily(
                "netdemos_chat_messages",
                "Chat lines relayed to the room.",
                value=room.messagesRelayed,
            )
            dropped = CounterMetricFamily(
                "netdemos_chat_clients_dropped",
                "Chat clients disconnected by the server.",
                labels=["reason"],
            )
            for reason in ("slow", "memory", "idle"):
                dropped.add_metric([reason], room.clientsDropped[reason])
            yield dropped


class MetricsPage(Resource):
    isLeaf = True

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()
        self._registry = registry

    def render_GET(self, request: IRequest) -> bytes:
        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode("ascii"))
        return generate_latest(self._registry)


class HealthPage(Resource):
    """
    C{/livez}, always 200 while the reactor runs to answer it; or C{/readyz},
    200 only while the server is ready.
    """

    isLeaf = True

    def __init__(self, server: NetdemosService, readiness: bool) -> None:
        super().__init__()
        self._server = server
        self._readiness = readiness

    def render_GET(self, request: IRequest) -> bytes:
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        if self._readiness and not self._server.ready:
            request.setResponseCode(503)
            return b"not ready\n"
        return b"ok\n"


def makeAdminSite(
    server: NetdemosService,
    echo: EchoFactory | None,
    http: CounterSite | None,
    chat: ChatFactory | None,
    web: WebSite | None = None,
) -> QuietSite:
    """
    Build the site that serves C{/metrics}, C{/livez} and C{/readyz}.
    """
    registry = CollectorRegistry()
    collector = NetdemosCollector(echo, http, chat, web)
    registry.register(collector)
    ProcessCollector(registry=registry)
    root = Resource()
    root.putChild(b"metrics", MetricsPage(registry))
    root.putChild(b"livez", HealthPage(server, readiness=False))
    root.putChild(b"readyz", HealthPage(server, readiness=True))
    collector.admin = QuietSite(root, timeout=DEFAULT_IDLE_TIMEOUT)
    return collector.admin


class QuietSite(Site):
    """
    The metrics and health site: no access log, as probes every few seconds
    would flood it; and a small connection limit of its own, past which it
    answers 503, so that it needs few file descriptors and can keep them
    however many the other services hold (see L{netdemos.descriptors}).
    """

    protocol = CountedChannel  # type: ignore[assignment]

    def __init__(
        self,
        resource: IResource,
        maxConnections: int = ADMIN_MAX_CONNECTIONS,
        **kwargs: Any,
    ) -> None:
        self.connections = Connections(maxConnections)
        super().__init__(resource, **kwargs)

    def buildProtocol(  # type: ignore[override]
        self, addr: IAddress | None
    ) -> Protocol | None:
        if self.connections.rejectIfFull():
            return ServiceUnavailable()
        channel: Protocol | None = super().buildProtocol(addr)
        return channel

    def log(self, request: Request) -> None:
        pass
