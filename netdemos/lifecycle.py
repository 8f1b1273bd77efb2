"""
The top of the service tree: start every listener, say when the server is
ready, and stop gracefully.

Stopping (SIGTERM or SIGINT under twistd) goes in this order:
  1. readiness turns false (C{/readyz} answers 503) and systemd is told
     C{STOPPING=1};
  2. the service listeners stop accepting;
  3. each service closes its connections gracefully (chat clients are told the
     server is going away; answered HTTP requests are flushed);
  4. after C{shutdownTimeout} seconds, whatever still hangs is aborted;
  5. the backends stop: state is saved (the HTTP count) and the link to
     Redis closed; and only then do the metrics and health
     listeners stop, so a probe can watch the drain.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Any

from twisted.application.service import MultiService, Service
from twisted.internet.defer import (
    Deferred,
    DeferredList,
    inlineCallbacks,
    maybeDeferred,
)
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from netdemos.connections import Drainable
from netdemos.listening import Listener, banner
from netdemos.notify import Notifier
from netdemos.writethrough import Choice

log = Logger()

DEFAULT_SHUTDOWN_TIMEOUT = 5.0
STATUS_INTERVAL = 10.0


def _reason(error: Exception) -> str:
    if isinstance(error, CannotListenError):
        return str(error.socketError)
    return " ".join(str(error).split()) or type(error).__name__


class StartupError(SystemExit, Exception):
    """
    The server cannot start; the message says why, in one line.

    Both a L{SystemExit} and an L{Exception}, on purpose.  twistd handles an
    L{Exception} raised while starting (it tells the parent process of a
    daemon, which would otherwise wait forever, and removes the pid file) and
    then re-raises it; as a L{SystemExit}, Python then prints just the message
    and exits with status 1, instead of printing a traceback.
    """


class NetdemosService(MultiService):
    """
    The netdemos service tree.

    @ivar instance: this instance's name (C{--name}), in its log and status
        line.
    @ivar listeners: one L{StreamServerEndpointService} per service endpoint.
    @ivar admin: the metrics and health listeners, stopped last.
    @ivar backends: what the services use that outlives any one client (the
        link to Redis, the HTTP count), stopped once the clients are gone,
        which saves state and closes links.
    @ivar dependencies: what the server needs besides its listeners to serve,
        such as a Redis counter: each has a C{ready} attribute.
    @ivar reporting: the services that report figures but hold no
        connections (the UDP echo), by name; the L{factories} report theirs
        too.
    @ivar redis: the link to Redis (C{--redis}), if any, for C{/metrics}.
    @ivar transports: which transport the stream listeners give their
        connections: Twisted's, writing through when nothing is queued.
    """

    def __init__(
        self,
        clock: IReactorTime,
        notifier: Notifier | None = None,
        shutdownTimeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
        instance: str = "netdemos",
    ) -> None:
        super().__init__()
        self.clock = clock
        self.instance = instance
        self.notifier = notifier if notifier is not None else Notifier({})
        self.shutdownTimeout = shutdownTimeout
        self.listeners = MultiService()
        self.listeners.setServiceParent(self)
        self.admin = MultiService()
        self.admin.setServiceParent(self)
        self.factories: dict[str, Drainable] = {}
        self.backends = MultiService()
        self.backends.setServiceParent(self)
        self.reporting: dict[str, Any] = {}
        self.dependencies: list[Any] = []
        self.redis: Any = None
        self.listening: list[Listener] = []
        self.transports = Choice()
        self._serving = False
        self._statusLoop = LoopingCall(self._reportStatus)
        self._statusLoop.clock = clock

    def privilegedStartService(self) -> None:
        # Binding happens here, before twistd drops privileges.  An endpoint
        # that cannot listen (port in use, port out of range, no such
        # directory for a UNIX socket...) ends twistd with a one-line message
        # naming it, rather than a traceback or a half-working server.
        Service.privilegedStartService(self)
        for group in (self.listeners, self.admin):
            for child in group:
                try:
                    child.privilegedStartService()
                except Exception as e:
                    raise StartupError(
                        f"netdemos: cannot listen for {child.name}: {_reason(e)}"
                    ) from e

    @property
    def ready(self) -> bool:
        """
        Every listener is listening, the server is not stopping, and every
        dependency is ready: what C{/readyz} reports, for a load balancer to
        send traffic here or not.
        """
        return self._serving and all(each.ready for each in self.dependencies)

    def startService(self) -> None:
        super().startService()
        # Every endpoint netdemos accepts listens synchronously, so by now every
        # port is bound and accepting.  systemd's READY=1 means started, not
        # ready for traffic: a dependency that is not up yet (Redis) is for
        # /readyz to report, not a reason to hold up or fail the start.
        self._serving = True
        self.notifier.ready()
        self._statusLoop.start(STATUS_INTERVAL, now=True)
        for line in banner(self.instance, self.listening):
            log.info("{line}", line=line)

    def summary(self) -> str:
        """
        One line on what the server is doing, for C{systemctl status}: whose
        instance it is, and its clients.
        """
        listening = sum(1 for _ in self.listeners)
        clients = ", ".join(
            f"{name} {len(service.connections)}"
            for name, service in self.factories.items()
        )
        return f"{self.instance}: {listening} listeners; clients: {clients or 'none'}"

    def _reportStatus(self) -> None:
        self.notifier.status(self.summary())

    def stopService(self) -> Deferred[None]:
        self._serving = False
        Service.stopService(self)
        if self._statusLoop.running:
            self._statusLoop.stop()
        self.notifier.stopping()
        self.notifier.status("shutting down")
        log.info("netdemos: shutting down ({instance})", instance=self.instance)
        return self._stop()

    @inlineCallbacks
    def _stop(self) -> Generator[Deferred[Any], object, None]:
        # Whatever fails on the way, state is still saved and the health
        # listener still stops.
        try:
            yield self.listeners.stopService()
            yield self._drain(list(self.factories.values()))
        except Exception:
            log.failure("netdemos: error while draining")
        # One may take a moment: closing the link to Redis, once the room
        # has told the other instances its members are leaving.
        try:
            yield self.backends.stopService()
        except Exception:
            log.failure("netdemos: error while saving state")
        yield self.admin.stopService()
        log.info("netdemos: stopped")

    def _drain(self, services: Sequence[Drainable]) -> Deferred[None]:
        """
        Close every service's connections; fire when they are all gone, or
        after C{shutdownTimeout}, having aborted those that hang.
        """
        drained: Deferred[None] = Deferred()

        def allClosed(result: object) -> None:
            if timer.active():
                timer.cancel()
                drained.callback(None)

        def hung() -> None:
            left = sum(len(service.connections) for service in services)
            log.warn(
                "netdemos: {count} connections still open after {timeout}s;"
                " aborting them",
                count=left,
                timeout=self.shutdownTimeout,
            )
            for service in services:
                service.connections.abortAll()
            drained.callback(None)

        timer = self.clock.callLater(self.shutdownTimeout, hung)
        closing = [maybeDeferred(service.close) for service in services]
        DeferredList(closing, consumeErrors=True).addCallback(allClosed)
        return drained
