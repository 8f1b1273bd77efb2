"""
Metrics and health checks, served on their own endpoints (C{--metrics}).

C{/metrics} is the Prometheus text format, produced by the official
C{prometheus-client} library.  The figures are read from the services' own
counters only when scraped, so metrics cost nothing per request or message;
and at most once a second, so that scraping in a loop costs next to nothing
either.
C{/livez} answers 200 while the reactor runs; C{/readyz} answers 200 once every
listener is up and 503 while the server drains.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from twisted.internet.interfaces import IReactorTime
from twisted.web.http import Request
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource

from netdemos import __version__
from netdemos.connections import REJECTION_REASONS
from netdemos.descriptors import ADMIN_MAX_CONNECTIONS
from netdemos.figures import Figure, IReportsFigures
from netdemos.httpguard import DEFAULT_IDLE_TIMEOUT, GuardedSite
from netdemos.lifecycle import NetdemosService


class NetdemosCollector(Collector):
    """
    Read the services' counters at scrape time.

    Labels are low-cardinality on purpose: a service name or a reason, never a
    peer address.
    """

    def __init__(self, server: NetdemosService) -> None:
        self._server = server
        # Set once the site serving these metrics is built.
        self.admin: QuietSite | None = None

    def collect(self) -> Iterator[Metric]:
        yield InfoMetricFamily(
            "netdemos",
            "This instance's name (--name) and netdemos version.",
            value={"instance": self._server.instance, "version": __version__},
        )
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
        factories = self._server.factories
        services = [(name, each.connections) for name, each in factories.items()]
        if self.admin is not None:
            services.append(("metrics", self.admin.connections))
        for name, connections in services:
            total.add_metric([name], connections.total)
            active.add_metric([name], len(connections))
            for reason in REJECTION_REASONS:
                rejected.add_metric([name, reason], connections.rejected[reason])
        yield from (total, active, rejected)
        if self._server.redis is not None:
            yield from redisMetrics(self._server.redis)
        reporting = [*factories.values(), *self._server.reporting.values()]
        yield from families(
            figure
            for service in reporting
            for figure in IReportsFigures(service).figures()
        )


def families(figures: Iterable[Figure]) -> Iterator[Metric]:
    """
    The metric families of C{figures}, each named C{netdemos_NAME}: one per
    name, with a sample per figure.
    """
    found: dict[str, Metric] = {}
    for figure in figures:
        family = found.get(figure.name)
        if family is None:
            kind = (
                CounterMetricFamily if figure.kind == "counter" else GaugeMetricFamily
            )
            family = found[figure.name] = kind(
                f"netdemos_{figure.name}",
                figure.help,
                labels=[name for name, _ in figure.labels],
            )
        family.add_metric([value for _, value in figure.labels], figure.value)  # type: ignore[attr-defined]
    yield from found.values()


class MetricsPage(Resource):
    """
    C{/metrics}, rendered at most once every C{maxAge} seconds.

    Rendering reads C{/proc} and formats every figure, about a millisecond;
    a client scraping in a loop would otherwise take the reactor from every
    other service.  Prometheus scrapes every 15 s or so, and never notices.
    """

    isLeaf = True
    maxAge = 1.0

    def __init__(self, registry: CollectorRegistry, clock: IReactorTime) -> None:
        super().__init__()
        self._registry = registry
        self._clock = clock
        self._rendered = b""
        self._renderedAt: float | None = None

    def render_GET(self, request: IRequest) -> bytes:
        now = self._clock.seconds()
        if self._renderedAt is None or now - self._renderedAt >= self.maxAge:
            self._rendered = generate_latest(self._registry)
            self._renderedAt = now
        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode("ascii"))
        return self._rendered


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


def redisMetrics(link: Any) -> Iterator[Metric]:
    """
    The link to Redis: whether it is usable, the error replies by command,
    and the messages read from it that could not be used.
    """
    yield GaugeMetricFamily(
        "netdemos_redis_up",
        "1 while Redis is connected and answers commands without errors.",
        value=int(link.up and not link.failing),
    )
    errors = CounterMetricFamily(
        "netdemos_redis_errors",
        "Commands Redis answered with an error (OOM, WRONGTYPE...).",
        labels=["command"],
    )
    for command, count in sorted(link.errors.items()):
        errors.add_metric([command], count)
    yield errors
    yield CounterMetricFamily(
        "netdemos_redis_bad_messages",
        "Messages read from Redis that netdemos could not use, and dropped.",
        value=link.badMessages,
    )


def makeAdminSite(server: NetdemosService) -> QuietSite:
    """
    Build the site that serves C{/metrics}, C{/livez} and C{/readyz} for the
    services in C{server.factories}, on the server's clock.
    """
    registry = CollectorRegistry()
    collector = NetdemosCollector(server)
    registry.register(collector)
    ProcessCollector(registry=registry)
    root = Resource()
    root.putChild(b"metrics", MetricsPage(registry, server.clock))
    root.putChild(b"livez", HealthPage(server, readiness=False))
    root.putChild(b"readyz", HealthPage(server, readiness=True))
    collector.admin = QuietSite(
        root,
        timeout=DEFAULT_IDLE_TIMEOUT,
        reactor=server.clock,
        instance=server.instance,
    )
    return collector.admin


class QuietSite(GuardedSite):
    """
    The metrics and health site: no access log, as probes every few seconds
    would flood it; and a small connection limit of its own, past which it
    answers 503, so that it needs few file descriptors and can keep them
    however many the other services hold (see L{netdemos.descriptors}).

    A L{GuardedSite}, like the counter: no health check sends a body, and a
    client that does should not fill the disk through this port either.
    """

    serviceName = "metrics"

    def __init__(
        self,
        resource: IResource,
        maxConnections: int = ADMIN_MAX_CONNECTIONS,
        **kwargs: Any,
    ) -> None:
        super().__init__(resource, maxConnections=maxConnections, **kwargs)

    def log(self, request: Request) -> None:
        pass
