"""
File descriptors: every connection holds one, and the process may hold only
so many (C{RLIMIT_NOFILE}).

At startup L{fitToOpenFileLimit} raises the soft limit to the hard one and, if
even that cannot hold every service's connection limit, lowers the limits so
that each service keeps descriptors of its own: one crowded service then runs
into its own limit, not the process's, and the others (C{/livez} included) keep
accepting.  If accept(2) runs out of descriptors all the same,
L{AcceptFailures} counts it, says so at most once a second, and never lets the
reactor spin on it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IDelayedCall,
    IListeningPort,
    IProtocolFactory,
    IReactorTime,
    IStreamServerEndpoint,
)
from twisted.logger import ILogObserver, LogEvent, Logger
from zope.interface import implementer

from netdemos.connections import Connections

log = Logger()

# Descriptors the process holds besides its listeners and its connections:
# stdio, the log file, the reactor's epoll and waker, Twisted's spare descriptor
# (see AcceptFailures), the access log, the journal and notify sockets; and,
# briefly, the counter file as it is saved, /proc as /metrics is scraped,
# modules imported late.  About 15 in all; the rest is margin.
SPARE_DESCRIPTORS = 32

# Per service: a connection turned away ("! server full", 503) still holds a
# descriptor until its answer is written, in the next turn of the reactor.
REFUSAL_HEADROOM = 16

# The metrics and health site's connection limit: a few probes and scrapers at
# once.  It is small so that it fits any open-file limit, which keeps /livez
# answering whatever the other services hold.
ADMIN_MAX_CONNECTIONS = 16

# A connection limit lowered to fit the open-file limit is worth a warning
# only below this: thousands of connections per service are plenty for a test
# target, and a warning as the first line a newcomer sees is alarming.
WARN_BELOW = 1000

# select(2) cannot watch a descriptor numbered FD_SETSIZE or above.
FD_SETSIZE = 1024

# While accept(2) fails for want of resources, neither try again nor say so
# more often than this.
ACCEPT_RETRY_SECONDS = 1.0


class OpenFileLimit(Protocol):
    """
    The process's C{RLIMIT_NOFILE}, as a soft and a hard limit; L{None} means
    unlimited.
    """

    def get(self) -> tuple[int | None, int | None]: ...

    def set(self, soft: int, hard: int | None) -> None: ...


class ProcessOpenFileLimit:
    """
    This process's L{OpenFileLimit}, through the C{resource} module.
    """

    def get(self) -> tuple[int | None, int | None]:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        return (
            None if soft == resource.RLIM_INFINITY else soft,
            None if hard == resource.RLIM_INFINITY else hard,
        )

    def set(self, soft: int, hard: int | None) -> None:
        import resource

        unlimited = resource.RLIM_INFINITY
        resource.setrlimit(
            resource.RLIMIT_NOFILE, (soft, unlimited if hard is None else hard)
        )


def usableOpenFiles(reactor: object) -> int | None:
    """
    The most descriptors C{reactor} can watch: L{FD_SETSIZE} if it is built
    on select(2), else no limit (L{None}).
    """
    from twisted.internet.selectreactor import SelectReactor

    return FD_SETSIZE if isinstance(reactor, SelectReactor) else None


@dataclass(frozen=True)
class DescriptorPlan:
    """
    How to use the open-file limit.

    @ivar openFiles: the soft limit to set, or L{None} to leave it (unlimited).
    @ivar limits: the connection limit of each service.
    """

    openFiles: int | None
    limits: dict[str, int]

    def lowered(self, wanted: Mapping[str, int]) -> bool:
        return self.limits != dict(wanted)

    def short(self, wanted: Mapping[str, int]) -> bool:
        """
        Whether some service was lowered to fewer connections than
        L{WARN_BELOW}, and fewer than it was asked for: worth a warning.
        """
        return any(
            limit < min(wanted[name], WARN_BELOW) for name, limit in self.limits.items()
        )


def overhead(services: int, listeners: int) -> int:
    """
    Descriptors needed besides the connections that C{services} can hold.
    """
    return SPARE_DESCRIPTORS + listeners + REFUSAL_HEADROOM * services


def planDescriptors(
    wanted: Mapping[str, int],
    soft: int | None,
    hard: int | None,
    listeners: int,
    ceiling: int | None = None,
) -> DescriptorPlan:
    """
    Choose the soft open-file limit, and each service's connection limit.

    The soft limit goes up to the hard one (or, with no hard limit, to what
    is needed), but never past C{ceiling}.  If the connection limits
    C{wanted} do not fit in it with L{overhead}, they are lowered to a fair
    share each: a service wanting less than an equal share (the admin site)
    keeps what it wants, and the others split the rest equally.

    @param wanted: the connection limit of each service that is on.
    @param listeners: how many endpoints the services listen on.
    @param ceiling: the highest usable limit; L{FD_SETSIZE} for a reactor
        built on select(2).
    @raise ValueError: if the limit leaves no connection for some service.
    """
    needed = sum(wanted.values()) + overhead(len(wanted), listeners)
    if soft is None and ceiling is None:
        return DescriptorPlan(None, dict(wanted))
    openFiles = hard if hard is not None else max(soft or 0, needed)
    if ceiling is not None:
        openFiles = min(openFiles, ceiling)
    if needed <= openFiles:
        return DescriptorPlan(openFiles, dict(wanted))
    limits = shareFairly(wanted, openFiles - overhead(len(wanted), listeners))
    if min(limits.values(), default=1) < 1:
        raise ValueError(
            f"the open-file limit {openFiles} leaves no descriptor for some"
            f" service's connections; it needs at least"
            f" {overhead(len(wanted), listeners) + len(wanted)}"
        )
    return DescriptorPlan(openFiles, limits)


def shareFairly(wanted: Mapping[str, int], available: int) -> dict[str, int]:
    """
    Share C{available} among services wanting C{wanted} each, max-min fairly:
    the same cap for all, as high as C{available} allows.
    """
    left = available
    demands = sorted(wanted.values())
    for position, demand in enumerate(demands):
        sharing = len(demands) - position
        if demand * sharing > left:
            level = left // sharing
            return {name: min(want, level) for name, want in wanted.items()}
        left -= demand
    return dict(wanted)


def fitToOpenFileLimit(
    connections: Mapping[str, Connections],
    listeners: int,
    openFiles: OpenFileLimit,
    ceiling: int | None = None,
) -> DescriptorPlan:
    """
    Raise the soft open-file limit, lower the services' connection limits if
    it still cannot hold them (see L{planDescriptors}), and log the outcome.
    """
    wanted = {name: each.limit for name, each in connections.items()}
    soft, hard = openFiles.get()
    plan = planDescriptors(wanted, soft, hard, listeners, ceiling)
    target = plan.openFiles
    if target is not None and target != soft:
        try:
            openFiles.set(target, hard)
        except (OSError, ValueError) as e:
            # A sandbox may forbid even this (systemd's @resources filter
            # holds setrlimit); make do with the soft limit there is.
            log.warn(
                "netdemos: cannot change the open-file limit from {soft} to"
                " {target}: {error}",
                soft=soft,
                target=target,
                error=e,
            )
            plan = planDescriptors(wanted, soft, soft, listeners, ceiling)
        else:
            log.info(
                "netdemos: {change} the open-file limit from {soft} to {target}",
                change="lowered" if soft is None or target < soft else "raised",
                soft="unlimited" if soft is None else soft,
                target=target,
            )
    for name, limit in plan.limits.items():
        connections[name].limit = limit
    summary = (
        ", ".join(f"{name} {limit}" for name, limit in plan.limits.items())
        or "none (no connection service is on)"
    )
    if plan.lowered(wanted):
        (log.warn if plan.short(wanted) else log.info)(
            "netdemos: open-file limit {openFiles}; connection limits lowered"
            " to {summary}",
            openFiles=plan.openFiles,
            summary=summary,
            limits=plan.limits,
        )
    else:
        log.info(
            "netdemos: open-file limit {openFiles}; connection limits {summary}",
            openFiles="unlimited" if plan.openFiles is None else plan.openFiles,
            summary=summary,
            limits=plan.limits,
        )
    return plan


# What twisted.internet.tcp.Port logs about accept(2) failures.  With EMFILE,
# it closes a spare descriptor it keeps, accepts each waiting connection in
# its place and closes it at once: clients are turned away, not left waiting,
# and the port does not spin (twisted/twisted#5368).  Any other failure is
# logged and the port returns; with level-triggered epoll it is called again
# at once while the connection waits, and would spin.
_CLOSED_FOR_EMFILE = "EMFILE recovery: Closed socket from {address}"
_COULD_NOT_ACCEPT = "Could not accept new connection ({acceptError})"
_RESERVE_BOOKKEEPING = {
    "EMFILE encountered; releasing reserved file descriptor.",
    "Re-reserving EMFILE recovery file descriptor.",
}
# ECONNABORTED, the other failure Twisted logs, is the client's doing.
_EXHAUSTED = {"EMFILE", "ENFILE", "ENOBUFS", "ENOMEM"}


@implementer(ILogObserver)
class AcceptFailures:
    """
    Watch one listening port's accept(2) failures for want of descriptors
    (or of kernel memory, which Twisted reports alike): count each in
    C{connections.rejected["fd"]}, log at most one line a second, and on a
    failure that would make the port spin, stop accepting on it for a second.

    Twisted has no hook for accept failures (twisted/twisted#2122), but
    C{tcp.Port} logs them, and only them, through its own logger: see
    L{watchAcceptFailures}.
    """

    def __init__(
        self,
        port: Any,
        service: str,
        connections: Connections,
        clock: IReactorTime,
        forward: Callable[[LogEvent], None],
    ) -> None:
        """
        @param port: the listening port, a C{tcp.Port} or a subclass.
        @param forward: where the port's other events go.
        """
        self.port = port
        self.service = service
        self.connections = connections
        self.clock = clock
        self.forward = forward
        self._unreported = 0
        self._error = ""
        self._quietUntil: IDelayedCall | None = None
        self._resumeCall: IDelayedCall | None = None

    def __call__(self, event: LogEvent) -> None:
        message = event.get("log_format")
        if message == _CLOSED_FOR_EMFILE:
            self._turnedAway("EMFILE")
        elif message == _COULD_NOT_ACCEPT and event.get("acceptError") in _EXHAUSTED:
            self._turnedAway(event["acceptError"])
            self._pause()
        elif message not in _RESERVE_BOOKKEEPING:
            self.forward(event)

    def _turnedAway(self, error: str) -> None:
        self.connections.rejected["fd"] += 1
        self._unreported += 1
        self._error = error
        if self._quietUntil is None:
            self._report()

    def _report(self) -> None:
        """
        Log what happened since the last report, if anything; then stay quiet
        for a second.
        """
        if not self._unreported:
            self._quietUntil = None
            return
        log.warn(
            "netdemos: {service} cannot accept connections: out of file"
            " descriptors ({error}); {count} turned away",
            service=self.service,
            error=self._error,
            count=self._unreported,
        )
        self._unreported = 0
        self._quietUntil = self.clock.callLater(ACCEPT_RETRY_SECONDS, self._report)

    def _pause(self) -> None:
        if self._resumeCall is None:
            self.port.stopReading()
            self._resumeCall = self.clock.callLater(ACCEPT_RETRY_SECONDS, self._resume)

    def _resume(self) -> None:
        self._resumeCall = None
        if self.port.connected and not self.port.disconnecting:
            self.port.startReading()


def watchAcceptFailures(
    port: IListeningPort, service: str, connections: Connections, clock: IReactorTime
) -> None:
    """
    Route C{port}'s accept-failure events to an L{AcceptFailures}.

    C{tcp.Port} (which TLS, UNIX and systemd-adopted ports are too) logs
    through C{self._logger}, a class attribute; an instance attribute takes
    its place for this port alone.  That is an attribute private to Twisted:
    C{tests/test_descriptors.py} drives the installed Twisted's own
    C{Port.doRead} to check that it still works this way.
    """
    portLogger = getattr(port, "_logger", None)
    if not isinstance(portLogger, Logger):
        log.warn(
            "netdemos: cannot watch {port} for accept failures; running out of"
            " file descriptors may make it spin",
            port=port,
        )
        return
    watcher = AcceptFailures(port, service, connections, clock, portLogger.observer)
    port._logger = Logger(  # type: ignore[attr-defined]
        namespace=portLogger.namespace, source=port, observer=watcher
    )


@implementer(IStreamServerEndpoint)
class WatchedEndpoint:
    """
    A server endpoint whose every port is watched for accept failures, see
    L{watchAcceptFailures}.
    """

    def __init__(
        self,
        endpoint: IStreamServerEndpoint,
        service: str,
        connections: Connections,
        clock: IReactorTime,
    ) -> None:
        self._endpoint = endpoint
        self._service = service
        self._connections = connections
        self._clock = clock

    def listen(self, protocolFactory: IProtocolFactory) -> Deferred[IListeningPort]:
        def watch(port: IListeningPort) -> IListeningPort:
            watchAcceptFailures(port, self._service, self._connections, self._clock)
            return port

        listening: Deferred[IListeningPort] = self._endpoint.listen(protocolFactory)
        return listening.addCallback(watch)
