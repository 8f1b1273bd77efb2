"""
Tests for L{netdemos.writethrough}.

The installed Twisted's own C{tcp.Server} and C{unix.Server}, and their
write-through versions, are driven around a fake socket and a fake reactor:
each guarantee is one test run against every transport, so that the same test
shows the write-through transport keeps Twisted's behaviour.  No real socket,
no real clock.
"""

from __future__ import annotations

import errno
import os
import socket as stdsocket
import struct
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from support.events import logged
from twisted.internet import abstract, tcp, unix
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionAborted, ConnectionDone, ConnectionLost
from twisted.internet.interfaces import (
    IHalfCloseableDescriptor,
    IHalfCloseableProtocol,
    IListeningPort,
    IPullProducer,
    IPushProducer,
    IStreamServerEndpoint,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.testing import EventLoggingObserver, MemoryReactorClock
from twisted.logger import LogLevel, formatEvent
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from netdemos.echo import Echo, EchoFactory
from netdemos.writethrough import (
    SWITCH,
    Choice,
    WriteThroughEndpoint,
    WriteThroughTCPServer,
    WriteThroughUNIXServer,
    enabled,
    problems,
)

if TYPE_CHECKING:
    _TestCase = SynchronousTestCase
else:
    _TestCase = object


class FakeSocket:
    """
    Stands in for a connected, non-blocking stream socket, behaving as the
    kernel does under one.

    @ivar room: how many more bytes the kernel's send buffer takes, or
        L{None} for any number; once it is full, C{send} raises C{EAGAIN}.
    @ivar sendError: an errno every C{send} raises, as for a peer that is gone.
    @ivar sends: what each C{send} took, in order (empty sends included).
    @ivar descriptors: each C{(byte, descriptor)} that C{sendmsg} sent.
    @ivar sentWhenShutdown: for each C{shutdown(how)}, what had been sent by
        then.
    @ivar sentWhenClosed: what had been sent when C{close} was called, or
        L{None} while it is open.
    @ivar lingered: whether C{SO_LINGER} was set: an abortive close, which
        sends a reset.
    """

    def __init__(self, room: int | None = None) -> None:
        self.room = room
        self.sendError: int | None = None
        self.sends: list[bytes] = []
        self.descriptors: list[tuple[bytes, int]] = []
        self.sentWhenShutdown: dict[int, bytes] = {}
        self.sentWhenClosed: bytes | None = None
        self.lingered = False
        self.blocking = True
        self._incoming: list[bytes] = []
        self._pendingError: int | None = None
        self._endOfFile = False

    @property
    def sent(self) -> bytes:
        return b"".join(self.sends)

    def makeRoom(self, size: int | None = None) -> None:
        """
        Let the kernel take C{size} more bytes, or any number.
        """
        self.room = None if size is None else (self.room or 0) + size

    def receive(self, data: bytes) -> None:
        """
        The peer sends C{data}.
        """
        self._incoming.append(data)

    def closeByPeer(self) -> None:
        """
        The peer closes the connection: C{recv} reads the end of the file.
        """
        self._endOfFile = True

    def resetByPeer(self) -> None:
        """
        The peer resets the connection.  As on Linux, the next C{send} or
        C{recv} raises C{ECONNRESET}; then C{send} raises C{EPIPE} and
        C{recv} reads the end of the file.
        """
        self._pendingError = errno.ECONNRESET

    def readable(self) -> bool:
        """
        Whether a poll reactor would find the socket readable.
        """
        return bool(self._pendingError or self._incoming or self._endOfFile)

    def writable(self) -> bool:
        """
        Whether a poll reactor would find the socket writable.
        """
        return bool(
            self._pendingError or self.sendError or self.room is None or self.room > 0
        )

    def _raiseIfBroken(self) -> None:
        if self.sentWhenClosed is not None:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        if self._pendingError is not None:
            code, self._pendingError = self._pendingError, None
            self.sendError, self._endOfFile = errno.EPIPE, True
            raise OSError(code, os.strerror(code))

    def send(self, data: bytes | memoryview) -> int:
        self._raiseIfBroken()
        if self.sendError is not None:
            raise OSError(self.sendError, os.strerror(self.sendError))
        taken = bytes(data)
        if taken and self.room is not None:
            if self.room == 0:
                raise BlockingIOError(errno.EAGAIN, os.strerror(errno.EAGAIN))
            taken = taken[: self.room]
            self.room -= len(taken)
        self.sends.append(taken)
        return len(taken)

    def sendmsg(
        self,
        buffers: Sequence[bytes],
        ancillary: Sequence[tuple[int, int, bytes]] = (),
        flags: int = 0,
    ) -> int:
        data = b"".join(buffers)
        sent = self.send(data)
        for _, _, packed in ancillary:
            self.descriptors.append((data[:sent], struct.unpack("i", packed)[0]))
        return sent

    def recv(self, size: int) -> bytes:
        self._raiseIfBroken()
        if self._incoming:
            data = self._incoming.pop(0)
            if len(data) > size:
                self._incoming.insert(0, data[size:])
            return data[:size]
        if self._endOfFile:
            return b""
        raise BlockingIOError(errno.EAGAIN, os.strerror(errno.EAGAIN))

    def recvmsg(
        self, size: int, ancillarySize: int = 0, flags: int = 0
    ) -> tuple[bytes, list[Any], int, None]:
        return self.recv(size), [], 0, None

    def setblocking(self, flag: bool) -> None:
        self.blocking = flag

    def fileno(self) -> int:
        return 11

    def setsockopt(self, level: int, option: int, value: Any) -> None:
        if option == stdsocket.SO_LINGER:
            self.lingered = True

    def shutdown(self, how: int) -> None:
        self.sentWhenShutdown[how] = self.sent

    def close(self) -> None:
        self.sentWhenClosed = self.sent


class Reactor(MemoryReactorClock):
    """
    A fake reactor that also lists each C{addWriter} call: on a real reactor,
    each is an C{epoll_ctl} (or its like) when the transport was not watched.
    """

    def __init__(self) -> None:
        super().__init__()
        self.watchedForWriting: list[object] = []

    def addWriter(self, writer: Any) -> None:
        self.watchedForWriting.append(writer)
        super().addWriter(writer)


def accept(
    transportClass: Callable[..., Any],
    socket: FakeSocket,
    protocol: Protocol,
    reactor: Reactor,
) -> Any:
    """
    Give C{socket} the transport a listening port would, and connect
    C{protocol} to it, as C{tcp.Port.doRead} does with an accepted socket.
    """
    port = tcp.Port(0, Factory(), reactor=reactor)
    if isinstance(transportClass, type) and issubclass(transportClass, unix.Server):
        client: Any = ""
    else:
        client = ("127.0.0.1", 40000)
    transport = transportClass(socket, protocol, client, port, 0, reactor)
    protocol.makeConnection(transport)
    return transport


def turn(reactor: Reactor, transport: Any, socket: FakeSocket) -> None:
    """
    One turn of a poll reactor for C{transport}: C{doRead} if it is read from
    and its socket is readable, then C{doWrite} if it is written to and its
    socket writable; what they return is reported as posixbase's
    C{_doReadOrWrite} and C{_disconnectSelectable} report it.
    """
    why = None
    inRead = False
    if transport in reactor.getReaders() and socket.readable():
        why = transport.doRead()
        inRead = True
    if not why and transport in reactor.getWriters() and socket.writable():
        why = transport.doWrite()
        inRead = False
    if why:
        reactor.removeReader(transport)
        if (
            inRead
            and type(why) is ConnectionDone
            and IHalfCloseableDescriptor.providedBy(transport)
        ):
            transport.readConnectionLost(Failure(why))
        else:
            reactor.removeWriter(transport)
            transport.connectionLost(Failure(why))


class Chunk(bytes):
    """
    Bytes of a subclass, as some libraries hand out.
    """


class Recorder(Protocol):
    """
    A protocol that notes how its connection ended.
    """

    def __init__(self) -> None:
        self.lost: list[Failure] = []

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost.append(reason)


@implementer(IHalfCloseableProtocol)
class HalfCloseable(Recorder):
    """
    A protocol that notes what its (fake) socket had sent when writing was
    shut down.
    """

    transport: Any

    def __init__(self) -> None:
        super().__init__()
        self.sentWhenWriteLost: bytes | None = None

    def readConnectionLost(self) -> None:
        pass

    def writeConnectionLost(self) -> None:
        self.sentWhenWriteLost = self.transport.socket.sent


@implementer(IPushProducer)
class PushProducer:
    """
    A streaming producer that notes what it was asked to do.
    """

    def __init__(self) -> None:
        self.calls: list[str] = []

    def pauseProducing(self) -> None:
        self.calls.append("pause")

    def resumeProducing(self) -> None:
        self.calls.append("resume")

    def stopProducing(self) -> None:
        self.calls.append("stop")


@implementer(IPullProducer)
class PullProducer:
    """
    A pull producer that writes its next chunk each time it is asked for more,
    then unregisters and closes the connection.
    """

    def __init__(self, consumer: Any, chunks: list[bytes]) -> None:
        self.consumer = consumer
        self.chunks = chunks
        self.asked = 0

    def resumeProducing(self) -> None:
        self.asked += 1
        if self.chunks:
            self.consumer.write(self.chunks.pop(0))
        else:
            self.consumer.unregisterProducer()
            self.consumer.loseConnection()

    def stopProducing(self) -> None:
        pass


class TLSLayer:
    """
    Stands for the TLS protocol C{startTLS} puts between a transport and its
    protocol: what is written to it goes to the peer encrypted, later.
    """

    def __init__(self) -> None:
        self.written: list[object] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def writeSequence(self, iovec: list[bytes]) -> None:
        self.written.append(iovec)


class TransportGuarantees(_TestCase):
    """
    What a server transport guarantees its protocol; each subclass runs these
    against one transport class.
    """

    transportClass: ClassVar[Callable[..., Any]]

    reactor: Reactor
    socket: FakeSocket
    protocol: Any
    transport: Any

    def connect(self, room: int | None = None, protocol: Any = None) -> None:
        """
        Accept a connection whose kernel send buffer takes C{room} bytes.
        """
        self.reactor = Reactor()
        self.socket = FakeSocket(room)
        self.protocol = Recorder() if protocol is None else protocol
        self.transport = accept(
            self.transportClass, self.socket, self.protocol, self.reactor
        )

    def turn(self) -> None:
        turn(self.reactor, self.transport, self.socket)

    def drain(self) -> None:
        """
        Run the reactor until the transport has nothing more to write.
        """
        for _ in range(50):
            if self.transport not in self.reactor.getWriters():
                return
            self.turn()
        self.fail("the transport still has something to write after 50 turns")

    def test_writesKeepTheirOrderAcrossAPartialSend(self) -> None:
        """
        Under load the kernel takes only part of a write; what is written
        after it must never overtake what is still queued.
        """
        self.connect(room=3)
        self.transport.write(b"hello")
        self.transport.write(b", ")
        self.transport.writeSequence([b"wor", b"ld"])
        self.socket.makeRoom(4)
        self.turn()
        self.socket.makeRoom()
        self.drain()
        self.transport.write(b"!")
        self.drain()
        self.assertEqual(self.socket.sent, b"hello, world!")
        self.assertEqual(self.protocol.lost, [])

    def test_writeSequenceKeepsItsOrderAndThatOfWrites(self) -> None:
        """
        C{writeSequence} sends its pieces in order, between the writes made
        before and after it.
        """
        self.connect(room=5)
        self.transport.writeSequence([b"ab", b"cd", b"ef"])
        self.transport.write(b"gh")
        self.transport.writeSequence((b"ij", b"kl"))
        self.socket.makeRoom()
        self.drain()
        self.assertEqual(self.socket.sent, b"abcdefghijkl")

    def test_bytesSubclassIsSentInItsPlace(self) -> None:
        """
        Twisted accepts any C{bytes}, a subclass too; such a write keeps its
        place among the others.
        """
        self.connect()
        self.transport.write(Chunk(b"first, "))
        self.transport.write(b"second")
        self.drain()
        self.assertEqual(self.socket.sent, b"first, second")

    def test_writeLargerThanTheSendLimitArrivesWhole(self) -> None:
        """
        A write larger than what one C{send} is given (C{SEND_LIMIT}) goes
        out in several, whole and in order, followed by the next write.
        """
        self.connect()
        data = bytes(range(256)) * 1200
        self.transport.write(data)
        self.transport.write(b"end")
        self.drain()
        self.assertEqual(self.socket.sent, data + b"end")
        self.assertLessEqual(
            max(len(each) for each in self.socket.sends), self.transport.SEND_LIMIT
        )

    def test_streamingProducerIsPausedPastBufferSizeAndResumedWhenDrained(
        self,
    ) -> None:
        """
        A streaming producer is paused once more than C{bufferSize} bytes
        wait to be sent, and resumed only when all of them are sent: that is
        how a server's memory stays bounded when a client does not read.
        """
        self.connect(room=0)
        producer = PushProducer()
        self.transport.registerProducer(producer, True)
        self.transport.write(b"x" * self.transport.bufferSize)
        self.assertEqual(producer.calls, [])
        self.transport.write(b"y")
        self.assertEqual(producer.calls, ["pause"])
        self.socket.makeRoom(10)
        self.turn()
        self.assertEqual(producer.calls, ["pause"])
        self.socket.makeRoom()
        self.drain()
        self.assertEqual(producer.calls, ["pause", "resume"])
        self.assertEqual(self.socket.sent, b"x" * self.transport.bufferSize + b"y")

    def test_streamingProducerIsPausedByOneWriteLargerThanBufferSize(
        self,
    ) -> None:
        """
        One write larger than C{bufferSize}, of which the kernel takes only a
        little, pauses the producer too, until all of it is sent.
        """
        self.connect(room=10)
        producer = PushProducer()
        self.transport.registerProducer(producer, True)
        data = b"x" * (2 * self.transport.bufferSize)
        self.transport.write(data)
        self.assertEqual(producer.calls, ["pause"])
        self.socket.makeRoom()
        self.drain()
        self.assertEqual(producer.calls, ["pause", "resume"])
        self.assertEqual(self.socket.sent, data)

    def test_echoStopsReadingWhileTheClientDoesNotRead(self) -> None:
        """
        netdemos's echo registers the transport as its own producer: while
        the client does not read, the transport stops reading from it, and
        reads again once what was queued is sent.
        """
        factory = EchoFactory(Reactor())
        self.connect(room=0, protocol=factory.buildProtocol(None))
        size = self.transport.bufferSize
        self.socket.receive(b"x" * size)
        self.socket.receive(b"y")
        self.socket.receive(b"z")
        self.turn()
        self.turn()
        self.assertNotIn(self.transport, self.reactor.getReaders())
        self.turn()
        self.socket.makeRoom()
        self.drain()
        self.assertIn(self.transport, self.reactor.getReaders())
        self.turn()
        self.drain()
        self.assertEqual(self.socket.sent, b"x" * size + b"yz")
        self.assertEqual(factory.bytesEchoed, size + 2)

    def test_pullProducerIsAskedForMoreEachTimeItsWriteHasGoneOut(self) -> None:
        """
        A pull producer writes only when asked; it must be asked again once
        its write has gone out, or the response stalls forever.
        """
        self.connect()
        producer = PullProducer(self.transport, [b"one", b"two", b"three"])
        self.transport.registerProducer(producer, False)
        self.drain()
        self.assertEqual(self.socket.sent, b"onetwothree")
        self.assertEqual(producer.asked, 4)
        self.assertEqual(len(self.protocol.lost), 1)
        self.assertTrue(self.protocol.lost[0].check(ConnectionDone))

    def test_loseConnectionClosesOnlyAfterPendingDataIsSent(self) -> None:
        """
        C{loseConnection} after a write the kernel has not yet taken sends it
        all first: a response is never cut short by closing after it.
        """
        self.connect(room=2)
        self.transport.write(b"last words")
        self.transport.loseConnection()
        self.turn()
        self.assertIsNone(self.socket.sentWhenClosed)
        self.assertEqual(self.protocol.lost, [])
        self.socket.makeRoom()
        self.drain()
        self.assertEqual(self.socket.sentWhenShutdown, {2: b"last words"})
        self.assertEqual(self.socket.sentWhenClosed, b"last words")
        self.assertEqual(len(self.protocol.lost), 1)
        self.assertTrue(self.protocol.lost[0].check(ConnectionDone))

    def test_halfCloseShutsDownWritingOnlyAfterPendingDataIsSent(self) -> None:
        """
        C{loseWriteConnection} after a write the kernel has not yet taken
        sends it all before C{shutdown(SHUT_WR)}, tells a half-closeable
        protocol, and keeps the connection open for reading; writes after
        it are dropped.
        """
        self.connect(room=2, protocol=HalfCloseable())
        self.transport.write(b"goodbye")
        self.transport.loseWriteConnection()
        self.turn()
        self.assertEqual(self.socket.sentWhenShutdown, {})
        self.assertIsNone(self.protocol.sentWhenWriteLost)
        self.socket.makeRoom()
        self.drain()
        self.assertEqual(self.socket.sentWhenShutdown, {1: b"goodbye"})
        self.assertEqual(self.protocol.sentWhenWriteLost, b"goodbye")
        self.transport.write(b"too late")
        self.transport.writeSequence([b"far too late"])
        self.drain()
        self.assertEqual(self.socket.sent, b"goodbye")
        self.assertIn(self.transport, self.reactor.getReaders())
        self.assertIsNone(self.socket.sentWhenClosed)
        self.assertEqual(self.protocol.lost, [])

    def test_abortConnectionSendsNothingMoreAndReportsConnectionAborted(
        self,
    ) -> None:
        """
        After C{abortConnection} nothing more is sent, neither what was
        queued nor what is written later; the socket is reset, and the
        protocol learns it was aborted.
        """
        self.connect(room=2)
        self.transport.write(b"never mind")
        self.transport.abortConnection()
        sentBefore = self.socket.sent
        self.transport.write(b"and this")
        self.transport.writeSequence([b"nor", b"this"])
        self.socket.makeRoom()
        for _ in range(3):
            self.turn()
        self.reactor.advance(0)
        self.assertEqual(self.socket.sent, sentBefore)
        self.assertTrue(self.socket.lingered)
        self.assertEqual(self.socket.sentWhenShutdown, {})
        self.assertIsNotNone(self.socket.sentWhenClosed)
        self.assertEqual(len(self.protocol.lost), 1)
        self.assertTrue(self.protocol.lost[0].check(ConnectionAborted))

    def test_nothingIsSentAfterAbortConnectionEvenWithNothingQueued(
        self,
    ) -> None:
        """
        A write between C{abortConnection} and the C{connectionLost} it
        schedules is not sent either, though nothing is queued before it.
        """
        self.connect()
        self.transport.abortConnection()
        self.transport.write(b"after the abort")
        self.transport.writeSequence([b"nor", b"this"])
        self.turn()
        self.reactor.advance(0)
        self.assertEqual(self.socket.sent, b"")
        self.assertTrue(self.socket.lingered)
        self.assertTrue(self.protocol.lost[0].check(ConnectionAborted))

    def assertSendErrorIsReportedAsConnectionLost(self) -> None:
        # Neither write may raise: the protocol learns of the error later,
        # from connectionLost, as with any transport.
        self.transport.write(b"into the void")
        self.transport.writeSequence([b"and ", b"more"])
        self.assertEqual(self.protocol.lost, [])
        self.turn()
        self.assertEqual(len(self.protocol.lost), 1)
        self.assertTrue(self.protocol.lost[0].check(ConnectionLost))
        self.assertIsNotNone(self.socket.sentWhenClosed)
        self.assertEqual(self.reactor.getWriters(), [])
        self.assertEqual(self.reactor.getReaders(), [])

    def test_brokenPipeIsReportedAsConnectionLost(self) -> None:
        """
        C{EPIPE} from C{send} never raises from C{write}: the protocol's
        C{connectionLost} gets a C{ConnectionLost} on the next turn.
        """
        self.connect()
        self.socket.sendError = errno.EPIPE
        self.assertSendErrorIsReportedAsConnectionLost()

    def test_connectionResetIsReportedAsConnectionLost(self) -> None:
        """
        A peer that resets the connection (C{ECONNRESET}, after which its
        socket reads as ended) is reported as C{ConnectionLost}, not as a
        clean close, and C{write} never raises.
        """
        self.connect()
        self.socket.resetByPeer()
        self.assertSendErrorIsReportedAsConnectionLost()

    def test_writesAfterConnectionLostAreIgnored(self) -> None:
        """
        A protocol may write after its connection is lost (a late timer, a
        chat line for a member who left): it is dropped, without an error.
        """
        self.connect()
        self.transport.write(b"bye")
        self.transport.loseConnection()
        self.drain()
        self.assertEqual(len(self.protocol.lost), 1)
        self.transport.write(b"late")
        self.transport.writeSequence([b"later"])
        self.assertEqual(self.socket.sent, b"bye")
        self.assertEqual(self.reactor.getWriters(), [])

    def test_writesAfterThePeerClosedAreIgnored(self) -> None:
        """
        Once the peer's close is reported, writes are dropped without an
        error, though nothing was queued and the protocol did not close.
        """
        self.connect()
        self.socket.closeByPeer()
        self.turn()
        self.assertEqual(len(self.protocol.lost), 1)
        self.assertTrue(self.protocol.lost[0].check(ConnectionDone))
        self.transport.write(b"late")
        self.transport.writeSequence([b"later"])
        self.assertEqual(self.socket.sends, [])
        self.assertEqual(self.reactor.getWriters(), [])

    def test_textIsRefusedWithTypeError(self) -> None:
        """
        Only bytes may be written, as with Twisted's transports: text or any
        other buffer raises C{TypeError}, and nothing of that call is sent.
        """
        self.connect()
        for wrong in ["text", bytearray(b"bytes"), memoryview(b"bytes")]:
            self.assertRaises(TypeError, self.transport.write, wrong)
            self.assertRaises(TypeError, self.transport.writeSequence, [b"fine", wrong])
        self.drain()
        self.assertEqual(self.socket.sent, b"")
        self.assertEqual(self.protocol.lost, [])

    def test_emptyWritesDoNothing(self) -> None:
        """
        Writing nothing sends nothing and does not close the connection.
        """
        self.connect()
        self.transport.write(b"")
        self.transport.writeSequence([])
        self.assertEqual(self.reactor.getWriters(), [])
        self.transport.writeSequence([b"", b""])
        self.drain()
        self.assertEqual(self.socket.sent, b"")
        self.assertEqual(self.protocol.lost, [])
        self.assertIn(self.transport, self.reactor.getReaders())


class TwistedTCPTests(TransportGuarantees, SynchronousTestCase):
    transportClass = tcp.Server


class WriteThroughTCPTests(TransportGuarantees, SynchronousTestCase):
    transportClass = WriteThroughTCPServer


class UNIXGuarantees(TransportGuarantees):
    """
    What a UNIX server transport guarantees besides.
    """

    def test_descriptorsAreSentWithTheBytesWrittenAfterThem(self) -> None:
        """
        Descriptors passed with C{sendFileDescriptor} go out each with a byte
        of what is written after them, even over several writes.
        """
        self.connect()
        self.transport.sendFileDescriptor(5)
        self.transport.sendFileDescriptor(6)
        self.transport.write(b"a")
        self.transport.write(b"b")
        self.drain()
        self.assertEqual(self.socket.descriptors, [(b"a", 5), (b"b", 6)])
        self.assertEqual(self.socket.sent, b"ab")
        self.assertEqual(self.protocol.lost, [])
        self.assertIn(self.transport, self.reactor.getReaders())


class TwistedUNIXTests(UNIXGuarantees, SynchronousTestCase):
    transportClass = unix.Server


class WriteThroughUNIXTests(UNIXGuarantees, SynchronousTestCase):
    transportClass = WriteThroughUNIXServer


class WriteThroughTests(SynchronousTestCase):
    """
    What the write-through transport does that Twisted's does not.
    """

    def connect(self, room: int | None = None, protocol: Any = None) -> None:
        self.reactor = Reactor()
        self.socket = FakeSocket(room)
        self.protocol = Recorder() if protocol is None else protocol
        self.transport = accept(
            WriteThroughTCPServer, self.socket, self.protocol, self.reactor
        )

    def test_writeWithNothingQueuedIsSentAtOnceWithoutWatchingForWritable(
        self,
    ) -> None:
        """
        The point of write-through: with nothing queued, a write goes to
        C{send} at once, and the reactor is never asked to watch the socket
        (two C{epoll_ctl} calls and a turn saved).
        """
        self.connect()
        self.transport.write(b"hello")
        self.assertEqual(self.socket.sends, [b"hello"])
        self.assertEqual(self.reactor.watchedForWriting, [])
        self.assertEqual(self.reactor.getWriters(), [])

    def test_writeSequenceGoesOutInOneSend(self) -> None:
        """
        With nothing queued, C{writeSequence}'s pieces go out joined, in one
        C{send}, without watching the socket.
        """
        self.connect()
        self.transport.writeSequence([b"HTTP/1.1 200 OK\r\n", b"\r\n", b"1"])
        self.assertEqual(self.socket.sends, [b"HTTP/1.1 200 OK\r\n\r\n1"])
        self.assertEqual(self.reactor.watchedForWriting, [])

    def test_partialSendQueuesOnlyTheRestWithoutCopying(self) -> None:
        """
        What the kernel did not take is left to Twisted's C{doWrite} as it
        leaves a partial send itself: the same bytes object, from the offset
        sent, with nothing behind it; and the socket is watched for writing.
        """
        self.connect(room=3)
        data = b"hello world"
        self.transport.write(data)
        self.assertEqual(self.socket.sends, [b"hel"])
        self.assertIs(self.transport.dataBuffer, data)
        self.assertEqual(self.transport.offset, 3)
        self.assertEqual(self.transport._tempDataBuffer, [])
        self.assertEqual(self.transport._tempDataLen, 0)
        self.assertEqual(self.reactor.watchedForWriting, [self.transport])

    def test_echoStillWritesThrough(self) -> None:
        """
        netdemos's echo registers the transport as its own producer; its
        replies still go out at once, without watching the socket.
        """
        self.connect(protocol=EchoFactory(Reactor()).buildProtocol(None))
        self.assertIsInstance(self.protocol, Echo)
        self.assertIs(self.transport.producer, self.transport)
        self.socket.receive(b"ping\r\n")
        turn(self.reactor, self.transport, self.socket)
        self.assertEqual(self.socket.sends, [b"ping\r\n"])
        self.assertEqual(self.reactor.watchedForWriting, [])

    def test_afterStartTLSWritesGoThroughTheTLSLayer(self) -> None:
        """
        Once C{startTLS} has begun, what is written must be encrypted: it
        goes to the TLS layer, as Twisted's transport sends it, never
        straight to the socket in clear.
        """
        self.connect()
        layer = TLSLayer()
        self.transport.TLS = True
        self.transport.protocol = layer
        self.transport.write(b"secret")
        self.transport.writeSequence([b"more ", b"secrets"])
        self.assertEqual(self.socket.sends, [])
        self.assertEqual(layer.written, [b"secret", [b"more ", b"secrets"]])


def withoutClassAttribute(case: SynchronousTestCase, cls: type, name: str) -> None:
    """
    Take C{name} away from the installed Twisted's class that C{cls} has it
    from, for the length of the test C{case}.
    """
    owner = next(each for each in cls.__mro__ if name in vars(each))
    value = vars(owner)[name]
    delattr(owner, name)
    case.addCleanup(setattr, owner, name, value)


class ProblemsTests(SynchronousTestCase):
    """
    L{problems} checks at startup that the installed Twisted is as
    write-through expects.
    """

    def test_installedTwistedHasWhatWriteThroughNeeds(self) -> None:
        """
        With the installed Twisted, write-through is safe for both of the
        transports netdemos's ports use.
        """
        self.assertEqual(problems(tcp.Server), [])
        self.assertEqual(problems(unix.Server), [])

    def test_missingAttributeIsNamed(self) -> None:
        """
        A Twisted without C{_aborting} would let write-through send after
        C{abortConnection}: the check names it.
        """
        withoutClassAttribute(self, tcp.Server, "_aborting")
        self.assertEqual(problems(tcp.Server), ["Server._aborting"])
        self.assertEqual(problems(unix.Server), ["Server._aborting"])

    def test_changedAttributeIsNamed(self) -> None:
        """
        A queue that does not start as an empty C{bytes}, or a flag that no
        longer starts false, is named.
        """
        for name, value in [
            ("dataBuffer", b"queued"),
            ("dataBuffer", bytearray()),
            ("offset", None),
            ("TLS", True),
        ]:
            changed = type("Changed", (tcp.Server,), {name: value})
            self.assertEqual(problems(changed), [f"Changed.{name}"])

    def test_missingMethodIsNamed(self) -> None:
        """
        A Twisted without C{_maybePauseProducer} would leave a streaming
        producer running over a full queue: the check names it.
        """
        changed = type("Changed", (tcp.Server,), {"_maybePauseProducer": None})
        self.assertEqual(problems(changed), ["Changed._maybePauseProducer()"])

    def test_queueLengthNotSetByFileDescriptorIsNamed(self) -> None:
        """
        C{_tempDataLen} is set per connection; a Twisted whose
        C{FileDescriptor.__init__} no longer sets it is named.
        """

        def init(self: abstract.FileDescriptor, reactor: Any = None) -> None:
            self.reactor = reactor

        self.patch(abstract.FileDescriptor, "__init__", init)
        self.assertEqual(problems(tcp.Server), ["FileDescriptor._tempDataLen"])

    def test_notAFileDescriptorIsNamed(self) -> None:
        """
        Write-through only knows Twisted's C{FileDescriptor} queue.
        """
        self.assertIn("object is not a FileDescriptor", problems(object))


def writeThroughMessages(events: EventLoggingObserver) -> list[str]:
    return [
        formatEvent(event)
        for event in events
        if event["log_namespace"] == "netdemos.writethrough"
    ]


def somePorts(reactor: MemoryReactorClock) -> list[Any]:
    factory = Factory()
    return [
        tcp.Port(0, factory, interface="127.0.0.1", reactor=reactor),
        tcp.Port(0, factory, interface="::1", reactor=reactor),
        unix.Port(b"/run/netdemos/echo.sock", factory, reactor=reactor),
    ]


class NotASocketPort:
    """
    A listening port of some other kind, whose C{transport} is not one of
    Twisted's socket transports.
    """

    transport = object


class ChoiceTests(SynchronousTestCase):
    def test_socketPortsGetTheWriteThroughTransportQuietly(self) -> None:
        """
        TCP and UNIX ports get the write-through version of their own
        transport, and the normal case logs nothing.
        """
        events = logged(self)
        choice = Choice({})
        tcpPort, _, unixPort = somePorts(MemoryReactorClock())
        self.assertIs(choice.transportFor(tcpPort), WriteThroughTCPServer)
        self.assertIs(choice.transportFor(unixPort), WriteThroughUNIXServer)
        self.assertEqual(writeThroughMessages(events), [])

    def test_switchedOffServesWithTwistedsTransportAndSaysSoOnce(self) -> None:
        """
        C{NETDEMOS_WRITE_THROUGH=0} (to compare the two, or if write-through
        misbehaves) leaves every port with Twisted's transport, and says so
        in one log line, not one per port.
        """
        events = logged(self)
        choice = Choice({SWITCH: "0"})
        for port in somePorts(MemoryReactorClock()):
            self.assertIsNone(choice.transportFor(port))
        self.assertEqual(
            writeThroughMessages(events),
            [
                "netdemos: using Twisted's transport unchanged"
                " (NETDEMOS_WRITE_THROUGH=0)"
            ],
        )

    def test_differentTwistedServesWithItsTransportAndSaysWhyOnce(self) -> None:
        """
        When the installed Twisted is not as write-through expects, every
        port keeps Twisted's transport, and one log line says what differs.
        """
        withoutClassAttribute(self, tcp.Server, "_aborting")
        events = logged(self)
        choice = Choice({})
        for port in somePorts(MemoryReactorClock()):
            self.assertIsNone(choice.transportFor(port))
        [message] = writeThroughMessages(events)
        self.assertIn("Server._aborting", message)
        [event] = [e for e in events if "_aborting" in str(e.get("why", ""))]
        self.assertEqual(event["log_level"], LogLevel.warn)

    def test_otherPortsAreLeftAloneSilently(self) -> None:
        """
        A port that is not a Twisted socket port (or already writes through)
        is left alone, and that is no reason to log, even switched off.
        """
        events = logged(self)
        writingThrough = tcp.Port(0, Factory(), reactor=MemoryReactorClock())
        writingThrough.transport = WriteThroughTCPServer
        for environ in [{}, {SWITCH: "0"}]:
            choice = Choice(environ)
            self.assertIsNone(choice.transportFor(NotASocketPort()))  # type: ignore[arg-type]
            self.assertIsNone(choice.transportFor(object()))  # type: ignore[arg-type]
            self.assertIsNone(choice.transportFor(writingThrough))
        self.assertEqual(writeThroughMessages(events), [])

    def test_onlyZeroSwitchesItOff(self) -> None:
        """
        Write-through is on unless C{NETDEMOS_WRITE_THROUGH} is 0, as a
        systemd C{Environment=} or a shell may spell it.
        """
        self.assertTrue(enabled({}))
        self.assertTrue(enabled({SWITCH: "1"}))
        self.assertFalse(enabled({SWITCH: "0"}))
        self.assertFalse(enabled({SWITCH: " 0\n"}))


@implementer(IStreamServerEndpoint)
class OnePortEndpoint:
    """
    A server endpoint whose C{listen} gives the one port it was made with.
    """

    def __init__(self, port: IListeningPort) -> None:
        self.port = port

    def listen(self, factory: object) -> Deferred[IListeningPort]:
        return succeed(self.port)


class ListeningSocket:
    """
    Stands in for a port's listening socket: C{accept} gives each of
    C{accepted}, then raises C{EAGAIN}.
    """

    def __init__(self, *accepted: tuple[FakeSocket, tuple[str, int]]) -> None:
        self.accepted = list(accepted)

    def accept(self) -> tuple[FakeSocket, tuple[str, int]]:
        if not self.accepted:
            raise BlockingIOError(errno.EAGAIN, os.strerror(errno.EAGAIN))
        return self.accepted.pop(0)


class WriteThroughEndpointTests(SynchronousTestCase):
    def test_portGivesItsConnectionsTheWriteThroughTransport(self) -> None:
        """
        A port listened on through L{WriteThroughEndpoint} gives each
        connection it accepts the write-through transport; Twisted's own
        C{tcp.Port} class, and so any other port, is left as it was.
        """
        reactor = MemoryReactorClock()
        factory = Factory.forProtocol(Recorder)
        port = tcp.Port(0, factory, interface="127.0.0.1", reactor=reactor)
        endpoint = WriteThroughEndpoint(OnePortEndpoint(port), Choice({}))
        self.assertIs(self.successResultOf(endpoint.listen(factory)), port)
        self.assertIs(port.transport, WriteThroughTCPServer)
        self.assertIs(tcp.Port.transport, tcp.Server)
        self.assertIs(tcp.Port(0, factory, reactor=reactor).transport, tcp.Server)

        socket = FakeSocket()
        listening: Any = port
        listening.socket = ListeningSocket((socket, ("127.0.0.1", 40000)))
        listening.numberAccepts = 1
        port.doRead()
        [transport] = reactor.getReaders()
        self.assertIsInstance(transport, WriteThroughTCPServer)
        transport.write(b"hello")
        self.assertEqual(socket.sends, [b"hello"])

    def test_switchedOffLeavesThePortAsItWas(self) -> None:
        """
        Switched off, the endpoint gives the port untouched: its connections
        get Twisted's transport.
        """
        port = tcp.Port(0, Factory(), reactor=MemoryReactorClock())
        endpoint = WriteThroughEndpoint(OnePortEndpoint(port), Choice({SWITCH: "0"}))
        self.successResultOf(endpoint.listen(Factory()))
        self.assertNotIn("transport", vars(port))
        self.assertIs(port.transport, tcp.Server)
