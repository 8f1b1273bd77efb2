"""
Unit tests for L{netdemos.httpguard}: the private names of twisted.web's
L{HTTPChannel} that a L{GuardedChannel} (and the counter's channel) rely on,
checked against the installed Twisted, and what the channel does with them.

The refusals themselves are tested through the counter's site, in
C{tests/test_counter.py}.
"""

from __future__ import annotations

from typing import Any

from support.http import connect
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IProtocol
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http import HTTPChannel
from twisted.web.iweb import IRequest
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site
from twisted.web.websocket import WebSocketResource
from wsproto import ConnectionType, WSConnection
from wsproto.events import Request as HandshakeRequest

from netdemos.connections import Connections
from netdemos.httpguard import DEFAULT_IDLE_TIMEOUT, GuardedSite
from netdemos.web import EchoSocketFactory
from netdemos.websocket import DEFAULT_MAX_MESSAGE, DEFAULT_PING_INTERVAL


class RecordingChannel(HTTPChannel):
    """
    twisted.web's own L{HTTPChannel}, which notes what it shows of itself at
    the points where L{netdemos.httpguard.GuardedChannel} looks.

    @ivar seen: what was noted, in order.
    """

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[Any, ...]] = []
        self._inAllContentReceived = False

    def allHeadersReceived(self) -> None:
        hosts = self.requests[-1].requestHeaders.getRawHeaders(b"host")
        self.seen.append(("headers", self._command, self._version, self.length, hosts))
        super().allHeadersReceived()

    def _respondToBadRequestAndDisconnect(self) -> None:
        self.seen.append(("bad", self._receivedHeaderSize, self._receivedHeaderCount))
        super()._respondToBadRequestAndDisconnect()

    def allContentReceived(self) -> None:
        self._inAllContentReceived = True
        try:
            super().allContentReceived()
        finally:
            self._inAllContentReceived = False

    def setTimeout(self, period: float | None) -> float | None:
        self.seen.append(("setTimeout", period, self._inAllContentReceived))
        if period is None and self._inAllContentReceived:
            # What CounterChannel answers, so that the timeout put back
            # after the answer can be told from the site's.
            return 42
        previous: float | None = super().setTimeout(period)
        return previous

    def _protocolUpgradeForWebsockets(self, protocol: IProtocol) -> None:
        self.seen.append(("upgrade", protocol))
        super()._protocolUpgradeForWebsockets(protocol)


class Pending(Resource):
    """
    A leaf that answers nothing until told to, and notes whether its channel
    said it was handling a request while it rendered.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[Any] = []
        self.handling: list[bool] = []

    def render_GET(self, request: IRequest) -> int:
        self.requests.append(request)
        self.handling.append(request.channel._handlingRequest)  # type: ignore[attr-defined]
        return NOT_DONE_YET


def recordingSite(resource: Resource, clock: Clock | None = None) -> Site:
    site = Site(resource, reactor=clock or Clock(), timeout=DEFAULT_IDLE_TIMEOUT)
    site.protocol = RecordingChannel  # type: ignore[assignment]
    return site


def recordingChannel(
    resource: Resource | None = None,
) -> tuple[RecordingChannel, Any]:
    channel, transport = connect(recordingSite(resource or Pending()))
    assert isinstance(channel, RecordingChannel)
    return channel, transport


def handshake(path: str = "/") -> bytes:
    """
    A WebSocket opening handshake for C{path}, as wsproto's client sends it.
    """
    return WSConnection(ConnectionType.CLIENT).send(
        HandshakeRequest(host="x", target=path)
    )


def echoResource(clock: Clock, connections: Connections) -> Resource:
    root = Resource()
    factory = EchoSocketFactory(
        clock, connections, DEFAULT_MAX_MESSAGE, DEFAULT_PING_INTERVAL, None
    )
    root.putChild(b"echo", WebSocketResource(factory))
    return root


class InstalledTwistedTests(SynchronousTestCase):
    """
    The private names of L{HTTPChannel} that netdemos relies on (listed in
    C{docs/private-names.md}), on the installed Twisted's own channel: should
    Twisted rename one, or stop doing what netdemos relies on, these fail
    rather than the guard silently letting requests through.
    """

    def test_requestLineAndLengthAreKnownWhenAllHeadersAreIn(self) -> None:
        """
        When C{allHeadersReceived} is called, the method and version are in
        C{_command} and C{_version}, the body's length in C{length} (L{None}
        when chunked) and the request's headers in C{requests[-1]}: what the
        guard decides a refusal by.
        """
        requests = [
            b"POST /x HTTP/1.0\r\nHost: a\r\nContent-Length: 5\r\n\r\n",
            b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HEAD / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        ]
        seen = []
        for request in requests:
            channel, _ = recordingChannel()
            channel.dataReceived(request)
            seen += [each for each in channel.seen if each[0] == "headers"]
        self.assertEqual(
            seen,
            [
                ("headers", b"POST", b"HTTP/1.0", 5, [b"a"]),
                ("headers", b"GET", b"HTTP/1.1", None, None),
                ("headers", b"HEAD", b"HTTP/1.1", 0, [b"a", b"b"]),
            ],
        )

    def test_everyBadRequestGoesThroughOneMethod(self) -> None:
        """
        A malformed request line, too many headers and headers too long in
        all go to C{_respondToBadRequestAndDisconnect}, which the guard
        overrides; and C{_receivedHeaderSize} and C{_receivedHeaderCount}
        then say which, as the guard reads them to answer 431 or 400.
        """
        malformed, _ = recordingChannel()
        malformed.dataReceived(b"NONSENSE\r\n\r\n")
        self.assertEqual(malformed.seen[-1][0], "bad")

        many, _ = recordingChannel()
        many.dataReceived(
            b"GET / HTTP/1.1\r\n"
            + b"X: y\r\n" * (many.maxHeaders + 1)
            + b"Host: a\r\n\r\n"
        )
        [(_, _, count)] = [seen for seen in many.seen if seen[0] == "bad"]
        self.assertGreater(count, many.maxHeaders)

        long, _ = recordingChannel()
        line = b"X: " + b"y" * (long.MAX_LENGTH - 10) + b"\r\n"
        lines = long.totalHeadersSize // len(line) + 1
        self.assertLess(lines, long.maxHeaders)
        long.dataReceived(b"GET / HTTP/1.1\r\n" + line * lines + b"Host: a\r\n\r\n")
        [(_, size, _)] = [seen for seen in long.seen if seen[0] == "bad"]
        self.assertGreater(size, long.totalHeadersSize)

    def test_handlingRequestIsTrueWhileARequestIsAnswered(self) -> None:
        """
        C{_handlingRequest} is true from the moment a request is all in until
        it is answered, and false otherwise: the guard starts no header
        deadline for bytes that arrive while a request is answered, and the
        counter's idle timer lets itself pass then.
        """
        resource = Pending()
        channel, transport = recordingChannel(resource)
        self.assertFalse(channel._handlingRequest)
        channel.dataReceived(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        self.assertEqual(resource.handling, [True])
        self.assertTrue(channel._handlingRequest)
        [request] = resource.requests
        request.write(b"ok\n")
        request.finish()
        self.assertFalse(channel._handlingRequest)
        self.assertTrue(transport.value().endswith(b"\r\n\r\n3\r\nok\n\r\n0\r\n\r\n"))

    def test_idleTimeoutIsTurnedOffForARequestAndBackOnAfter(self) -> None:
        """
        To answer a request, L{HTTPChannel} turns the idle timeout off with
        C{setTimeout(None)} from within C{allContentReceived}, and once it is
        answered turns it on again with what that call returned: the
        counter's channel answers that call without stopping its timer.
        """
        resource = Pending()
        channel, _ = recordingChannel(resource)
        channel.seen.clear()
        channel.dataReceived(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        self.assertEqual(channel.seen[-1], ("setTimeout", None, True))
        [request] = resource.requests
        request.write(b"ok\n")
        request.finish()
        self.assertEqual(channel.seen[-1], ("setTimeout", 42, False))

    def test_webSocketHandshakeUpgradesThroughTheChannel(self) -> None:
        """
        Twisted's L{WebSocketResource} hands the connection to the WebSocket
        with the channel's C{_protocolUpgradeForWebsockets}, which the guard
        overrides to stop its timers.
        """
        clock = Clock()
        channel, transport = connect(
            recordingSite(echoResource(clock, Connections()), clock)
        )
        assert isinstance(channel, RecordingChannel)
        channel.dataReceived(handshake("/echo"))
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 101 "))
        [(_, protocol)] = [seen for seen in channel.seen if seen[0] == "upgrade"]
        self.assertEqual(channel.dataReceived, protocol.dataReceived)


class UpgradeTests(SynchronousTestCase):
    def test_upgradeStopsTheHeaderDeadline(self) -> None:
        """
        A WebSocket handshake whose headers came in two reads set a header
        deadline; once the connection is a WebSocket's the channel never
        hears of it again, so the deadline is stopped at the upgrade, and
        nothing of the channel's is left on the clock once the WebSocket
        has gone.
        """
        clock = Clock()
        connections = Connections()
        site = GuardedSite(
            echoResource(clock, connections),
            reactor=clock,
            connections=connections,
            timeout=DEFAULT_IDLE_TIMEOUT,
        )
        channel, transport = connect(site)
        request = handshake("/echo")
        channel.dataReceived(request[:10])
        clock.advance(1)
        channel.dataReceived(request[10:])
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 101 "))
        channel.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(clock.getDelayedCalls(), [])
        self.assertEqual(len(connections), 0)
