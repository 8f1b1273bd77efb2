"""
A TCP (and UNIX) transport that sends at once when nothing is queued.

Twisted's C{transport.write} never sends: it queues the bytes and asks the
reactor to watch the socket for writing (C{startWriting}, an C{epoll_ctl}); on
the reactor's next turn C{doWrite} sends them and stops watching (a second
C{epoll_ctl}).  For a small answer to a small request, as an echo, an HTTP
response or a chat line is, those two system calls and the extra turn cost more
than the C{send} itself.  asyncio and uvloop try the C{send} at once, and watch
the socket only for what the kernel did not take.  L{WriteThrough} does the
same inside Twisted's own transport: when nothing is queued it sends what the
kernel takes now, and leaves only the rest to Twisted's queue and C{doWrite},
so every other behaviour (order, producers, C{loseConnection} after pending
data, half-close, C{abortConnection}, errors reported through
C{connectionLost}) stays Twisted's.

Twisted offers no public hook for this.  It relies on these names of the
installed Twisted, which L{problems} checks at startup and
C{tests/test_writethrough.py} drives:

  - C{tcp.Port.transport} and C{unix.Port.transport}, the class a listening
    port builds each accepted connection's transport from (set here on each
    port netdemos opens, never on Twisted's classes);
  - on the transport, C{abstract.FileDescriptor}'s queue: C{dataBuffer} and
    C{offset} (the bytes C{doWrite} is sending) and C{_tempDataLen} (the bytes
    queued behind them); C{writeSomeData}, which sends what the kernel takes
    and returns how much, or the error as an exception; and
    C{_maybePauseProducer}, which pauses a streaming producer once the queue
    passes C{bufferSize};
  - the state that says Twisted's path must be taken: C{connected},
    C{disconnecting}, C{_writeDisconnecting}, C{_writeDisconnected},
    C{_aborting} (after C{abortConnection} nothing may be sent), C{TLS} (after
    C{startTLS}, writes go through the TLS layer), C{producerPaused}, and
    C{producer} with C{streamingProducer}; and on a UNIX transport,
    C{_sendmsgQueue}, the descriptors C{sendFileDescriptor} queued (set per
    connection, so not checked: without it, only descriptor passing differs).

If any of these is not as expected, netdemos serves with Twisted's transport
unchanged and logs one line; so it does when the environment sets
C{NETDEMOS_WRITE_THROUGH=0}, which the tests and the bench use to compare the
two.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from twisted.internet import abstract, tcp, unix
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocolFactory,
    IStreamServerEndpoint,
)
from twisted.logger import Logger, LogLevel
from zope.interface import implementer

log = Logger()

# Set to 0 to serve with Twisted's transport unchanged.
SWITCH = "NETDEMOS_WRITE_THROUGH"


class WriteThrough:
    """
    Mixed in before a Twisted socket transport: C{write} and C{writeSequence}
    send at once when nothing is queued.
    """

    # The FileDescriptor state this reads and sets (see the module docstring).
    connected: int
    disconnecting: int
    _writeDisconnecting: bool
    _writeDisconnected: bool
    _aborting: bool
    TLS: bool
    producer: Any
    streamingProducer: bool
    producerPaused: bool
    dataBuffer: bytes
    offset: int
    _tempDataLen: int

    def write(self, data: bytes) -> None:
        if type(data) is not bytes or not self._sendsNow():
            # Twisted's own path: it queues, refuses non-bytes, ignores
            # writes after close and empty ones.
            super().write(data)  # type: ignore[misc]
            return
        if data:
            self._sendOrQueue(data)

    def writeSequence(self, iovec: Iterable[bytes]) -> None:
        iovec = list(iovec)
        if any(type(each) is not bytes for each in iovec) or not self._sendsNow():
            super().writeSequence(iovec)  # type: ignore[misc]
            return
        data = b"".join(iovec)
        if data:
            self._sendOrQueue(data)

    def _sendsNow(self) -> bool:
        """
        Whether a write may be sent now: the connection is open for writing,
        nothing is queued before it, and no producer is paused on the queue.
        """
        return bool(
            self.connected
            and not self.dataBuffer
            and not self._tempDataLen
            and not self.disconnecting
            and not self._writeDisconnecting
            and not self._writeDisconnected
            and not self._aborting
            and not self.TLS
            and not self.producerPaused
        )

    def _sendOrQueue(self, data: bytes) -> None:
        sent = self.writeSomeData(data)  # type: ignore[attr-defined]
        if isinstance(sent, Exception):
            # The peer is gone.  Never raise from write: queue the bytes as
            # Twisted would and stop reading, so that the reactor's doWrite
            # meets the error again and reports it through connectionLost,
            # and no end-of-file read reports it first as a clean close.
            self.stopReading()  # type: ignore[attr-defined]
            super().write(data)  # type: ignore[misc]
            return
        if sent < len(data):
            # What the kernel did not take is queued as doWrite would have
            # left it after a partial send, without copying.
            self.dataBuffer = data
            self.offset = sent
            self._maybePauseProducer()  # type: ignore[attr-defined]
            self.startWriting()  # type: ignore[attr-defined]
        elif self.producer is not None and not self.streamingProducer:
            # A pull producer is asked for more when the queue drains, by
            # doWrite: all went out, so let the reactor call it.
            self.startWriting()  # type: ignore[attr-defined]


class WriteThroughTCPServer(WriteThrough, tcp.Server):
    """
    Twisted's TCP server transport, writing through, with Nagle's algorithm
    off (C{TCP_NODELAY}), as asyncio and uvloop have it.

    Twisted's queue sends a turn's writes as one; written through, a
    response's head and body are two sends, and Nagle would hold the second
    until the client acknowledges the first, up to a delayed ACK's 40 ms.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.setTcpNoDelay(True)


class WriteThroughUNIXServer(WriteThrough, unix.Server):
    """
    Twisted's UNIX server transport, writing through.
    """

    def _sendsNow(self) -> bool:
        # Descriptors queued by sendFileDescriptor: doWrite sends each with a
        # byte of all that is queued behind it.  (netdemos sends none, so
        # should Twisted rename the queue, the check may lapse safely.)
        return not getattr(self, "_sendmsgQueue", None) and super()._sendsNow()


# Each Twisted transport class netdemos's ports use, and its writing-through
# version.
WRITING_THROUGH: Mapping[type, type] = {
    tcp.Server: WriteThroughTCPServer,
    unix.Server: WriteThroughUNIXServer,
}

# The class attributes write-through reads, and their values on a transport
# that has not yet connected.
_INITIAL = {
    "connected": 0,
    "disconnecting": 0,
    "_writeDisconnecting": False,
    "_writeDisconnected": False,
    "_aborting": False,
    "TLS": False,
    "producer": None,
    "streamingProducer": False,
    "producerPaused": False,
    "dataBuffer": b"",
    "offset": 0,
}
_METHODS = ("writeSomeData", "_maybePauseProducer", "startWriting", "stopReading")


def problems(transport: type) -> list[str]:
    """
    What, in the installed Twisted, is not as L{WriteThrough} expects of the
    transport class C{transport}: an empty list if write-through is safe.
    """
    found = []
    if not issubclass(transport, abstract.FileDescriptor):
        found.append(f"{transport.__name__} is not a FileDescriptor")
    for name, value in _INITIAL.items():
        actual = getattr(transport, name, None)
        # The type too: bytearray() == b"", but it is not the queue expected.
        if (
            type(actual) is not type(value)
            or actual != value
            or name not in dir(transport)
        ):
            found.append(f"{transport.__name__}.{name}")
    for name in _METHODS:
        if not callable(getattr(transport, name, None)):
            found.append(f"{transport.__name__}.{name}()")
    # _tempDataLen is set per connection, by FileDescriptor.__init__.
    probe = abstract.FileDescriptor.__new__(abstract.FileDescriptor)
    abstract.FileDescriptor.__init__(probe, reactor=_NO_REACTOR)
    if getattr(probe, "_tempDataLen", None) != 0:
        found.append("FileDescriptor._tempDataLen")
    return found


class _NoReactor:
    """
    Stands for a reactor where a probe needs one and never uses it.
    """


_NO_REACTOR: Any = _NoReactor()


def enabled(environ: Mapping[str, str] | None = None) -> bool:
    """
    Whether write-through is wanted: unless C{NETDEMOS_WRITE_THROUGH=0}.
    """
    environ = os.environ if environ is None else environ
    return environ.get(SWITCH, "1").strip() != "0"


class Choice:
    """
    Which transport each port's connections get: decided once, with at most
    one log line when it is Twisted's unchanged.
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._enabled = enabled(environ)
        self._said = False
        # What problems() found for each transport class: once is enough.
        self._problems: dict[type, list[str]] = {}

    def transportFor(self, port: IListeningPort) -> type | None:
        """
        The write-through transport class for C{port}'s connections, or
        L{None} to leave Twisted's.
        """
        current: Any = getattr(port, "transport", None)
        writingThrough = WRITING_THROUGH.get(current) if current else None
        if writingThrough is None:
            # Not a socket port of Twisted's (or already writing through).
            return None
        if not self._enabled:
            self._sayOnce(LogLevel.info, f"{SWITCH}=0")
            return None
        if current not in self._problems:
            self._problems[current] = problems(current)
        found = self._problems[current]
        if found:
            # Asked for, and not given: an operator should know.
            why = "the installed Twisted differs: " + ", ".join(found)
            self._sayOnce(LogLevel.warn, why)
            return None
        return writingThrough

    def _sayOnce(self, level: LogLevel, why: str) -> None:
        if not self._said:
            self._said = True
            log.emit(
                level, "netdemos: using Twisted's transport unchanged ({why})", why=why
            )


@implementer(IStreamServerEndpoint)
class WriteThroughEndpoint:
    """
    A server endpoint whose every port gives its connections the write-through
    transport, when L{Choice} allows it.
    """

    def __init__(self, endpoint: IStreamServerEndpoint, choice: Choice) -> None:
        self._endpoint = endpoint
        self._choice = choice

    def listen(self, protocolFactory: IProtocolFactory) -> Deferred[IListeningPort]:
        def writeThrough(port: IListeningPort) -> IListeningPort:
            transport = self._choice.transportFor(port)
            if transport is not None:
                # An instance attribute: Twisted's Port class is untouched.
                port.transport = transport  # type: ignore[attr-defined]
            return port

        listening: Deferred[IListeningPort] = self._endpoint.listen(protocolFactory)
        return listening.addCallback(writeThrough)
