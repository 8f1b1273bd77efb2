"""
The live connections of a service: a registry that counts them, caps them, and
closes them all gracefully when the server stops (L{Drainable}, the contract a
service's factory offers L{netdemos.lifecycle.NetdemosService}); and the idle
timeout of a connection, on the clock it was given (L{ClockedTimeoutMixin}).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any, Protocol

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.protocols.policies import TimeoutMixin

DEFAULT_MAX_CONNECTIONS = 10_000

# Why a connection is turned away, for /metrics: "limit", the service's limit
# (counted here, in Connections.rejectIfFull); "fd", accept(2) ran out of file
# descriptors (netdemos.descriptors); "proxy", no valid PROXY protocol header
# in time (netdemos.proxy).
REJECTION_REASONS = ("limit", "fd", "proxy")


class Closeable(Protocol):
    """
    A connection's protocol, which knows how to close itself gracefully.

    Not simply C{transport.loseConnection()}: a transport with a producer
    registered waits for it to unregister before closing, and only the protocol
    knows about its producer.  twisted.web's C{HTTPChannel.loseConnection} is
    the model.
    """

    transport: Any

    def loseConnection(self) -> None: ...


def closeWhenSent(transport: Any) -> None:
    """
    Close C{transport} once everything written to it has been sent.

    A transport with a producer registered waits for that producer to
    unregister before it closes, even while the producer is paused (when the
    peer is not reading, exactly the case that matters); so unregister first.
    """
    transport.unregisterProducer()
    transport.loseConnection()


class ClockedTimeoutMixin(TimeoutMixin):
    """
    L{TimeoutMixin}, timed by the protocol's own clock rather than the global
    reactor: as twisted.web's C{HTTPFactory} gives its channels the factory's
    C{reactor.callLater}, so tests drive idle timeouts with a C{task.Clock}.

    @ivar clock: the reactor the protocol was given, which it sets before it
        sets a timeout.
    """

    clock: IReactorTime

    def callLater(self, period: float, func: Callable[[], object]) -> IDelayedCall:
        return self.clock.callLater(period, func)


class Connections:
    """
    The live connections of one service.

    The service's factory calls L{rejectIfFull} before building a protocol, and each
    protocol calls L{add} when it connects and L{remove} when it is gone.

    @ivar limit: most connections at once; past it new ones are turned away.
    @ivar total: connections accepted since start.
    @ivar rejected: connections turned away, by reason.
    """

    def __init__(self, limit: int = DEFAULT_MAX_CONNECTIONS) -> None:
        self.limit = limit
        self.live: set[Closeable] = set()
        self.total = 0
        self.rejected: Counter[str] = Counter()
        self._waiting: list[Deferred[None]] = []

    def __len__(self) -> int:
        return len(self.live)

    def rejectIfFull(self) -> bool:
        """
        Say whether a new connection must be turned away; count it if so.
        """
        if not self.full:
            return False
        self.rejected["limit"] += 1
        return True

    @property
    def full(self) -> bool:
        return len(self.live) >= self.limit

    def add(self, protocol: Closeable) -> None:
        self.live.add(protocol)
        self.total += 1

    def hold(self, placeholder: Closeable) -> None:
        """
        A connection accepted but not yet handed to the service's protocol
        (it waits for a PROXY header): it holds a descriptor, so it counts
        toward the limit until it is handed over (L{handOver}) or gone
        (L{remove}).
        """
        self.live.add(placeholder)

    def handOver(self, placeholder: Closeable) -> None:
        """
        The connection C{placeholder} held is about to be served by the
        service's own protocol, which will L{add} itself.
        """
        self.live.discard(placeholder)

    def replace(self, old: Closeable, new: Closeable) -> None:
        """
        The same connection is now served by C{new} (an HTTP channel that was
        upgraded to a WebSocket, say): it is still counted once.
        """
        self.live.discard(old)
        self.live.add(new)

    def remove(self, protocol: Closeable) -> None:
        self.live.discard(protocol)
        if not self.live:
            waiting, self._waiting = self._waiting, []
            for d in waiting:
                d.callback(None)

    def whenEmpty(self) -> Deferred[None]:
        """
        A L{Deferred} that fires once no connection is left.
        """
        if not self.live:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._waiting.append(d)
        return d

    def closeAll(self) -> Deferred[None]:
        """
        Close every connection once what was written to it is sent.
        """
        for protocol in list(self.live):
            protocol.loseConnection()
        return self.whenEmpty()

    def abortAll(self) -> None:
        """
        Drop every connection now, sent or not: for clients that hang.
        """
        for protocol in list(self.live):
            protocol.transport.abortConnection()


class Drainable(Protocol):
    """
    What a service's factory offers for a graceful stop: its connections, and
    a C{close} that closes them gracefully and fires once they are all gone.
    """

    connections: Connections

    def close(self) -> Deferred[None]: ...
