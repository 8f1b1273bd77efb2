"""
Unit tests for L{netdemos.counter}, speaking HTTP over a L{StringTransport}.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from typing import Any

from support.http import HalfCloseableTransport, connect, connectChannel, exchange
from support.transport import PEER, connectProtocol
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver, StringTransport
from twisted.logger import formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http import datetimeToString
from twisted.web.http_headers import Headers
from twisted.web.iweb import IRequest
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site
from zope.interface import implementer

from netdemos import counter
from netdemos.counter import CounterResource, CounterSite
from netdemos.counting import CounterUnavailableError, ICounter, MemoryCounter
from netdemos.httpguard import (
    DEFAULT_HEADER_TIMEOUT,
    DEFAULT_IDLE_TIMEOUT,
    LINGER_BYTES,
    LINGER_SECONDS,
    GuardedSite,
    ServedRequest,
)


def requestFor(path: bytes = b"/", method: bytes = b"GET") -> bytes:
    return method + b" " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def makeSite(**kwargs: object) -> CounterSite:
    return CounterSite(reactor=Clock(), **kwargs)  # type: ignore[arg-type]


class CounterTests(SynchronousTestCase):
    def test_getCountsFromOneOnAnyPath(self) -> None:
        """
        Each GET, whatever its path, takes the next number, starting at 1.
        """
        site = makeSite()
        first = exchange(site, requestFor(b"/"))
        second = exchange(site, requestFor(b"/some/where?x=1"))
        self.assertTrue(first.startswith(b"HTTP/1.1 200 OK\r\n"))
        self.assertTrue(first.endswith(b"\r\n\r\nI am request #1\n"))
        self.assertTrue(second.endswith(b"\r\n\r\nI am request #2\n"))
        self.assertEqual(site.requestCounter.peek(), 2 + 1)

    def test_headersAreTextAndUncached(self) -> None:
        """
        The body is plain UTF-8 text and must not be cached: a cached answer
        would hide the count.
        """
        response = exchange(makeSite(), requestFor())
        self.assertIn(b"\r\nContent-Type: text/plain; charset=utf-8\r\n", response)
        self.assertIn(b"\r\nCache-Control: no-store\r\n", response)
        self.assertIn(b"\r\nContent-Length: 16\r\n", response)

    def test_headSendsHeadersOnlyAndTakesNoNumber(self) -> None:
        """
        HEAD gets GET's headers with no body, and does not move the count;
        nothing is logged (twisted.web warns of a HEAD rendered with a body).
        """
        site = makeSite()
        events = EventLoggingObserver.createWithCleanup(
            self,  # type: ignore[arg-type]
            globalLogPublisher,
        )
        response = exchange(site, requestFor(method=b"HEAD"))
        self.assertEqual([formatEvent(event) for event in events], [])
        self.assertTrue(response.startswith(b"HTTP/1.1 200 OK\r\n"))
        self.assertIn(b"\r\nContent-Length: 16\r\n", response)
        self.assertTrue(response.endswith(b"\r\n\r\n"))
        self.assertTrue(exchange(site, requestFor()).endswith(b"I am request #1\n"))

    def test_otherMethodsAreNotAllowed(self) -> None:
        """
        POST, PUT, DELETE... get 405 with the methods that are allowed.
        """
        site = makeSite()
        for method in (b"POST", b"PUT", b"DELETE", b"OPTIONS", b"BREW"):
            response = exchange(site, requestFor(method=method))
            self.assertTrue(response.startswith(b"HTTP/1.1 405 "), response)
            self.assertIn(b"\r\nAllow: GET, HEAD\r\n", response)
        self.assertEqual(site.requestCounter.peek(), 0 + 1)

    def test_malformedRequestGets400AndServerGoesOn(self) -> None:
        """
        Garbage gets 400 Bad Request, and the next client is served as usual.
        """
        site = makeSite()
        response = exchange(site, b"THIS IS NOT HTTP\r\n\r\n")
        self.assertTrue(response.startswith(b"HTTP/1.1 400 "), response)
        self.assertTrue(exchange(site, requestFor()).endswith(b"I am request #1\n"))

    def test_counterMayStartElsewhere(self) -> None:
        """
        The site uses the counter it is given, so a count can be carried over.
        """
        site = makeSite(counter=MemoryCounter(start=41))
        self.assertTrue(exchange(site, requestFor()).endswith(b"I am request #42\n"))

    def test_closedConnectionsAreNoLongerCounted(self) -> None:
        """
        A connection counts while it is open, and no longer once it has
        closed, whether the server closed it after answering or the client
        went away; a stop then has nothing left to wait for.

        A closed connection still counted would make the active-connections
        figure only grow, the limit in time turn every client away with 503,
        and every stop wait out the whole --shutdown-timeout.
        """
        site = makeSite()
        answered, answeredT = connect(site)
        idle, _ = connect(site)
        self.assertEqual(len(site.connections), 2)
        answered.dataReceived(requestFor())  # with Connection: close
        self.assertTrue(answeredT.disconnecting)
        answered.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(len(site.connections), 1)
        idle.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(len(site.connections), 0)
        self.successResultOf(site.close())

    def test_closedConnectionFreesItsPlaceUnderTheLimit(self) -> None:
        """
        With room for one connection, once the first has closed the next
        client is served, not turned away with 503.
        """
        site = makeSite(maxConnections=1)
        first, _ = connect(site)
        first.connectionLost(Failure(ConnectionDone()))
        self.assertTrue(exchange(site, requestFor()).startswith(b"HTTP/1.1 200 OK"))

    def test_noAccessLogByDefault(self) -> None:
        """
        Without --access-log nothing is logged per request (it costs throughput).
        """
        site = makeSite()
        formatted: list[object] = []

        def formatter(*args: object) -> str:
            formatted.append(args)
            return ""

        site._logFormatter = formatter
        site.startFactory()
        self.addCleanup(site.stopFactory)
        exchange(site, requestFor())
        self.assertEqual(formatted, [])
        logged = makeSite(accessLog="-")
        logged._logFormatter = site._logFormatter
        logged.startFactory()
        self.addCleanup(logged.stopFactory)
        exchange(logged, requestFor())
        self.assertEqual(len(formatted), 1)

    def test_accessLogToFile(self) -> None:
        """
        --access-log=PATH appends one line per request to PATH.
        """
        directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, directory)
        path = os.path.join(directory, "access.log")
        site = makeSite(accessLog=path)
        site.startFactory()
        exchange(site, requestFor(b"/logged"))
        site.stopFactory()
        with open(path, "rb") as f:
            lines = f.read().splitlines()
        self.assertEqual(len(lines), 1)
        self.assertIn(b'"GET /logged HTTP/1.1" 200 16', lines[0])


def statusLine(response: bytes) -> bytes:
    return response.split(b"\r\n", 1)[0]


class RefusalTests(SynchronousTestCase):
    """
    Requests the counter refuses before reading them further: each is answered
    and the connection closed, lingering.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.site = CounterSite(reactor=self.clock)

    def assertRefused(
        self, transport: HalfCloseableTransport, status: bytes, reason: str
    ) -> bytes:
        """
        Check that the connection was answered C{status} and is closing, and
        that the refusal was counted under C{reason}; return the response.
        """
        response: bytes = transport.value()
        self.assertEqual(statusLine(response), b"HTTP/1.1 " + status)
        self.assertIn(b"\r\nConnection: close\r\n", response)
        self.assertTrue(transport.writeClosed)
        self.assertEqual(self.site.refused[reason], 1)
        self.assertEqual(self.site.counterResource.requestsServed, 0)
        return response

    def test_hugeBodyIsRefusedWithoutReadingOrStoringIt(self) -> None:
        """
        A POST declaring a 10^12-byte body gets 405 with C{Allow} as soon as
        its headers are in, and its body goes nowhere: twisted.web would
        spool it to a temporary file, and four such clients filled 4.3 GB of
        disk in 13 s.
        """

        def noTemporaryFiles(*args: Any, **kwargs: Any) -> None:
            raise AssertionError("a request body went to a temporary file")

        self.patch(tempfile, "TemporaryFile", noTemporaryFiles)
        channel, transport = connectChannel(self.site)
        channel.dataReceived(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000000\r\n\r\n"
            + b"x" * 1000
        )
        response = self.assertRefused(transport, b"405 Method Not Allowed", "body")
        self.assertIn(b"\r\nAllow: GET, HEAD\r\n", response)
        self.assertTrue(
            response.endswith(b"\r\n\r\n405 Method Not Allowed: use GET or HEAD\n")
        )
        # What follows is read and dropped: no answer, and no buffer grows.
        transport.clear()
        channel.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + b"x" * 65536)
        self.assertEqual(transport.value(), b"")
        self.assertEqual(channel.clearLineBuffer(), b"")
        self.assertEqual(len(channel.requests), 1)
        self.assertIsNone(channel.requests[0].content)
        self.assertFalse(transport.disconnected)

    def test_getOrHeadWithBodyGets413(self) -> None:
        """
        GET and HEAD with a body, chunked or not, get 413 (HEAD without a
        body in the answer).  C{Content-Length: 0} is no body: such a GET is
        counted and such a POST gets the resource's 405, on a connection that
        stays open.
        """
        requests = [
            (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", True),
            (b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", True),
            (b"HEAD / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n", False),
        ]
        for number, (request, withBody) in enumerate(requests, 1):
            channel, transport = connectChannel(self.site)
            channel.dataReceived(request)
            response = transport.value()
            self.assertEqual(statusLine(response), b"HTTP/1.1 413 Content Too Large")
            self.assertIn(b"\r\nContent-Length: 44\r\n", response)
            self.assertEqual(response.endswith(b"\r\n\r\n"), not withBody, response)
            self.assertTrue(transport.writeClosed)
            self.assertEqual(self.site.refused["body"], number)
        self.assertEqual(self.site.requestCounter.peek(), 0 + 1)

        channel, transport = connectChannel(self.site)
        channel.dataReceived(
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
        )
        response = transport.value()
        self.assertIn(b"I am request #1\n", response)
        self.assertIn(b"HTTP/1.1 405 Method Not Allowed\r\n", response)
        self.assertFalse(transport.writeClosed or transport.disconnecting)
        self.assertEqual(self.site.refused["body"], 3)

    def test_lingerEndsAfterABoundedTimeOrAmount(self) -> None:
        """
        After a refusal the server discards what the client still sends, so
        that closing does not reset the connection before the answer is read;
        but for at most LINGER_SECONDS and LINGER_BYTES, then it aborts.  If
        the client closes first, no timer is left behind.
        """
        channel, transport = connectChannel(self.site)
        channel.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\n")
        self.clock.advance(LINGER_SECONDS - 0.1)
        self.assertFalse(transport.disconnected)
        self.clock.advance(0.1)
        self.assertTrue(transport.disconnected)

        channel, transport = connectChannel(self.site)
        channel.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\n")
        chunk = b"x" * 65536
        for _ in range(LINGER_BYTES // len(chunk)):
            channel.dataReceived(chunk)
        self.assertFalse(transport.disconnected)
        channel.dataReceived(b"x")
        self.assertTrue(transport.disconnected)
        channel.connectionLost()

        channel, transport = connectChannel(self.site)
        channel.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\n")
        self.assertTrue(transport.writeClosed)
        channel.connectionLost()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_oversizeHeadersGet431(self) -> None:
        """
        Headers beyond 16 KiB, in one line or many, get 431, and the
        connection stops buffering them: memory per connection stays bounded.
        """
        longLine = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000
        manyLines = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Many: aaaaaaaaaa\r\n" * 1000
        for number, request in enumerate((longLine, manyLines), 1):
            channel, transport = connectChannel(self.site)
            channel.dataReceived(request)
            self.assertEqual(
                statusLine(transport.value()),
                b"HTTP/1.1 431 Request Header Fields Too Large",
            )
            self.assertTrue(transport.writeClosed)
            channel.dataReceived(b"b" * 100000 + b"\r\n\r\n")
            self.assertEqual(channel.clearLineBuffer(), b"")
            self.assertEqual(self.site.refused["headers"], number)

    def test_http11NeedsExactlyOneHost(self) -> None:
        """
        An HTTP/1.1 request without a Host header, or with two, gets 400 (RFC
        9112 section 3.2); HTTP/1.0 needs none.
        """
        for request in (
            b"GET / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        ):
            channel, transport = connectChannel(self.site)
            channel.dataReceived(request)
            self.assertEqual(statusLine(transport.value()), b"HTTP/1.1 400 Bad Request")
            self.assertTrue(transport.writeClosed)
        self.assertEqual(self.site.refused["host"], 2)
        response = exchange(self.site, b"GET / HTTP/1.0\r\n\r\n")
        self.assertTrue(response.endswith(b"I am request #1\n"), response)

    def test_malformedRequestIsAnsweredBeforeClosing(self) -> None:
        """
        twisted.web's own 400 for a malformed request also closes lingering,
        so the client reads it.
        """
        channel, transport = connectChannel(self.site)
        channel.dataReceived(b"THIS IS NOT HTTP\r\n\r\n")
        self.assertEqual(statusLine(transport.value()), b"HTTP/1.1 400 Bad Request")
        self.assertTrue(transport.writeClosed)
        self.assertFalse(transport.disconnecting)
        self.assertEqual(self.site.refused["malformed"], 1)


class HeaderTimeoutTests(SynchronousTestCase):
    """
    A request's headers must all arrive within the header timeout of its first
    byte, however the client spaces them out.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.site = CounterSite(reactor=self.clock)

    def test_tricklingClientGets408(self) -> None:
        """
        A client sending a byte every 2 s keeps the idle timer (60 s) from ever
        firing; the header deadline answers it 408 at 10 s and closes.
        """
        channel, transport = connectChannel(self.site)
        for byte in b"GET ":
            channel.dataReceived(bytes([byte]))
            self.clock.advance(2)
        self.clock.advance(DEFAULT_HEADER_TIMEOUT - 8 - 0.1)
        self.assertEqual(transport.value(), b"")
        self.clock.advance(0.1)
        self.assertEqual(statusLine(transport.value()), b"HTTP/1.1 408 Request Timeout")
        self.assertTrue(transport.writeClosed)
        self.assertEqual(self.site.refused["timeout"], 1)
        self.clock.advance(LINGER_SECONDS)
        self.assertTrue(transport.disconnected)

    def test_deadlineCountsFromTheFirstByteOfEachRequest(self) -> None:
        """
        Idle time before a request is the idle timeout's business: a request
        sent 50 s after connecting, or after the previous answer, has its own
        10 s, and no more.
        """
        channel, transport = connectChannel(self.site)
        for number in (1, 2):
            self.clock.advance(50)
            channel.dataReceived(b"GET / HTTP/1.1\r\n")
            self.clock.advance(DEFAULT_HEADER_TIMEOUT - 0.1)
            channel.dataReceived(b"Host: x\r\n\r\n")
            self.assertTrue(transport.value().endswith(b"I am request #%d\n" % number))
        self.clock.advance(50)
        channel.dataReceived(b"GET / HTTP/1.1\r\n")
        self.clock.advance(DEFAULT_HEADER_TIMEOUT)
        self.assertIn(b"HTTP/1.1 408 Request Timeout\r\n", transport.value())

    def test_headerTimeoutIsASiteSetting(self) -> None:
        """
        The deadline is the site's C{headerTimeout}.
        """
        site = CounterSite(reactor=self.clock, headerTimeout=1)
        channel, transport = connectChannel(site)
        channel.dataReceived(b"GET / HTTP/1.1\r\n")
        self.clock.advance(1)
        self.assertEqual(statusLine(transport.value()), b"HTTP/1.1 408 Request Timeout")

    def test_oneTimerPerConnectionServesEveryRequest(self) -> None:
        """
        Request after request on one connection, the reactor holds the same
        number of timers (the deadline is one timer per connection, moved
        along), and the deadline still applies to the next request.
        """
        channel, transport = connectChannel(self.site)
        counts = []
        for _ in range(5):
            channel.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            self.clock.advance(1)
            counts.append(len([c for c in self.clock.getDelayedCalls() if c.active()]))
        self.assertEqual(counts, [counts[0]] * 5)
        self.assertTrue(transport.value().endswith(b"I am request #5\n"))
        channel.dataReceived(b"GET / HTTP/1.1\r\n")
        self.clock.advance(DEFAULT_HEADER_TIMEOUT)
        self.assertIn(b"HTTP/1.1 408 Request Timeout\r\n", transport.value())


@implementer(ICounter)
class LaterCounter:
    """
    A counter whose numbers come later, when the test gives them.
    """

    ready = True

    def __init__(self) -> None:
        self.waiting: list[Deferred[int]] = []

    def next(self) -> Deferred[int]:
        self.waiting.append(Deferred())
        return self.waiting[-1]

    def peek(self) -> int:
        return 1

    def save(self) -> None:
        pass


class LaterNumberTests(SynchronousTestCase):
    """
    A counter that answers later (Redis) gets its requests answered then.
    """

    def test_answeredWhenTheNumberComes(self) -> None:
        counter = LaterCounter()
        channel, transport = connect(makeSite(counter=counter))
        channel.dataReceived(requestFor())
        self.assertEqual(transport.value(), b"")
        counter.waiting[0].callback(7)
        response = transport.value()
        self.assertTrue(response.startswith(b"HTTP/1.1 200 OK\r\n"), response)
        self.assertIn(b"\r\nContent-Length: 16\r\n", response)
        self.assertTrue(response.endswith(b"\r\n\r\nI am request #7\n"))

    def test_noNumberIs503WithRetryAfter(self) -> None:
        """
        When the counter cannot give a number, the client is told to retry,
        and where it asked: never given a number from elsewhere.
        """
        counter = LaterCounter()
        channel, transport = connect(makeSite(counter=counter, instance="web-2"))
        channel.dataReceived(requestFor())
        counter.waiting[0].errback(CounterUnavailableError("no Redis"))
        response = transport.value()
        self.assertTrue(response.startswith(b"HTTP/1.1 503 "), response)
        self.assertIn(b"\r\nRetry-After: 1\r\n", response)
        self.assertIn(b"\r\nX-Served-By: web-2\r\n", response)

    def test_clientGoneBeforeItsNumberIsNoError(self) -> None:
        counter = LaterCounter()
        channel, transport = connect(makeSite(counter=counter))
        channel.dataReceived(requestFor())
        channel.connectionLost(Failure(ConnectionDone()))
        counter.waiting[0].callback(3)
        self.assertEqual(transport.value(), b"")
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_aCounterAtHandAnswersInTheSameCall(self) -> None:
        """
        The in-memory counter costs no Deferred: the answer is written before
        dataReceived returns, with no turn of the reactor.
        """
        channel, transport = connect(makeSite())
        channel.dataReceived(requestFor())
        self.assertTrue(transport.value().endswith(b"I am request #1\n"))


class ServedByTests(SynchronousTestCase):
    """
    Behind a load balancer, every response says which instance answered it.
    """

    def test_everyAnswerNamesTheInstance(self) -> None:
        """
        A count, a 405, a refusal before any resource and the 503 of a full
        server all carry C{X-Served-By}.
        """
        # The three exchanges' connections stay open: the next one is the 4th.
        site = makeSite(instance="web-1", maxConnections=3)
        answers = [
            exchange(site, requestFor()),
            exchange(site, requestFor(method=b"POST")),
            exchange(site, b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n"),
        ]
        _, full = connect(site)
        answers.append(full.value())
        for answer in answers:
            self.assertIn(b"\r\nX-Served-By: web-1\r\n", answer)
        self.assertEqual(
            [answer.split(b"\r\n", 1)[0][9:12] for answer in answers],
            [b"200", b"405", b"413", b"503"],
        )


class HTTPLimitTests(SynchronousTestCase):
    def test_overTheLimitGets503(self) -> None:
        site = CounterSite(reactor=Clock(), maxConnections=1)
        first = site.buildProtocol(PEER)
        assert first is not None
        connectProtocol(first)
        extra = site.buildProtocol(PEER)
        assert extra is not None
        transport = connectProtocol(extra)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 503 "))
        self.assertIn(b"\r\nConnection: close\r\n", transport.value())
        self.assertFalse(transport.connected)
        self.assertEqual(site.connections.rejected["limit"], 1)
        self.assertEqual(len(site.connections), 1)

    def test_idleConnectionClosedAfterAMinute(self) -> None:
        """
        An HTTP connection that sends nothing is closed after 60 s, not
        twisted.web's default 12 hours: that blunts slowloris.
        """
        clock = Clock()
        site = CounterSite(reactor=clock)
        channel = site.buildProtocol(PEER)
        assert channel is not None
        transport = connectProtocol(channel)
        transport.abortConnection = transport.loseConnection  # type: ignore[method-assign]
        clock.advance(59)
        self.assertTrue(transport.connected)
        clock.advance(1)
        self.assertFalse(transport.connected)


class Recorder(Resource):
    """
    A leaf that keeps each request it renders, with its body and the
    response headers set before it, and answers at once or, if C{answer} is
    false, later.
    """

    isLeaf = True

    def __init__(self, answer: bool = True) -> None:
        super().__init__()
        self.answer = answer
        self.requests: list[Any] = []
        self.contents: list[Any] = []
        self.headers: list[Headers] = []

    def render_GET(self, request: IRequest) -> bytes | int:
        self.requests.append(request)
        self.contents.append(request.content)
        self.headers.append(request.responseHeaders.copy())
        return b"ok\n" if self.answer else NOT_DONE_YET


class RecordingTransport(StringTransport):
    """
    A L{StringTransport} that keeps each write, and each C{writeSequence}.
    """

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.sequences: list[list[bytes]] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)
        super().write(data)

    def writeSequence(self, data: Iterable[bytes]) -> None:
        self.sequences.append(list(data))
        super().writeSequence(data)


class ReferenceSite(Site):
    """
    twisted.web's own L{Site}, with only L{ServedRequest}'s C{X-Served-By}
    added to its answers: what a counter's answers should be, byte for byte.
    """

    requestFactory = ServedRequest
    servedBy = [b"netdemos"]


def withoutDate(response: bytes) -> bytes:
    return re.sub(rb"\r\nDate: [^\r]*\r\n", b"\r\nDate: (now)\r\n", response)


class ShortcutTests(SynchronousTestCase):
    """
    What the counter skips of twisted.web's work per request (issue 11), and
    that its answers are twisted.web's all the same, byte for byte.
    """

    def test_answersAreTwistedWebsByteForByte(self) -> None:
        """
        Every kind of request the counter answers gets the bytes twisted.web's
        own L{Site} sends for the same resource, headers in the same order,
        apart from the date, with L{ServedRequest}'s C{X-Served-By}: the
        shortcuts change the cost, not the answer.
        """
        requests = [
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET /a/b%20c?d=e HTTP/1.1\r\nHost: x\r\nCookie: f=g\r\n\r\n",
            b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n",
            b"DELETE /x HTTP/1.1\r\nHost: x\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
            b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET * HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET / HTTP/1.0\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n",
        ]
        reference = ReferenceSite(CounterResource(MemoryCounter()), reactor=Clock())
        site = makeSite()
        for request in requests:
            expected = withoutDate(exchange(reference, request))
            self.assertIn(b"\r\nX-Served-By: netdemos\r\n", expected)
            self.assertEqual(withoutDate(exchange(site, request)), expected)
        self.assertEqual(site.requestCounter.peek(), 7)

    def test_laterAnswersAreTwistedWebsByteForByte(self) -> None:
        """
        A number that comes later, and a 503 for one that does not come, are
        answered as twisted.web answers them, C{X-Served-By} included, on a
        kept-alive connection and a closing one.
        """
        requests = [
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        ]
        for request in requests:
            for numberComes in [True, False]:
                answers = []
                counters = [LaterCounter(), LaterCounter()]
                sites = [
                    ReferenceSite(CounterResource(counters[0]), reactor=Clock()),
                    makeSite(counter=counters[1]),
                ]
                for site, later in zip(sites, counters, strict=True):
                    channel, transport = connect(site)
                    channel.dataReceived(request)
                    [waiting] = later.waiting
                    if numberComes:
                        waiting.callback(7)
                    else:
                        waiting.errback(CounterUnavailableError("no Redis"))
                    answers.append(withoutDate(transport.value()))
                expected, response = answers
                self.assertIn(b"\r\nX-Served-By: netdemos\r\n", expected)
                self.assertEqual(response, expected)

    def test_failureIsAnsweredAsTwistedWebAnswersIt(self) -> None:
        """
        A counter that fails gets twisted.web's 500, with the same headers.
        """

        class Broken(MemoryCounter):
            def next(self) -> int:
                raise RuntimeError("no more numbers")

        request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
        reference = ReferenceSite(CounterResource(Broken()), reactor=Clock())
        expected = withoutDate(exchange(reference, request))
        response = withoutDate(exchange(makeSite(counter=Broken()), request))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 2)
        self.assertTrue(expected.startswith(b"HTTP/1.1 500 "), expected)
        self.assertEqual(response, expected)

    def test_dateIsTheSiteClocksFormattedOncePerSecond(self) -> None:
        """
        C{Date} is the time by the site's reactor, formatted once per second
        rather than once per request (it cost 3% of the counter's time).
        """
        formatted: list[float] = []

        def countingDatetimeToString(seconds: float) -> bytes:
            formatted.append(seconds)
            date: bytes = datetimeToString(seconds)
            return date

        self.patch(counter, "datetimeToString", countingDatetimeToString)
        clock = Clock()
        clock.advance(1_000_000_000.25)
        site = CounterSite(reactor=clock)

        def date() -> bytes:
            found = re.search(rb"\r\nDate: ([^\r]*)\r\n", exchange(site, requestFor()))
            assert found is not None
            return found.group(1)

        first = date()
        clock.advance(0.5)
        second = date()
        clock.advance(0.25)
        third = date()
        self.assertEqual([first, second], [datetimeToString(1_000_000_000)] * 2)
        self.assertEqual(third, datetimeToString(1_000_000_001))
        self.assertEqual(formatted, [1_000_000_000, 1_000_000_001])

    def test_serverAndDateAreLeftToTheSite(self) -> None:
        """
        A request on a kept-alive connection does not set C{Server} and
        C{Date} (encoding them cost 5% of the counter's time): the channel
        writes the site's lines, encoded once a second, first in the head.
        """
        site = makeSite()
        recorder = Recorder()
        site.counterResource = recorder  # type: ignore[assignment]
        response = exchange(site, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        [headers] = recorder.headers
        self.assertEqual(list(headers.getAllRawHeaders()), [])
        self.assertTrue(
            response.startswith(b"HTTP/1.1 200 OK\r\n" + site.serverHeaders())
        )
        self.assertTrue(
            site.serverHeaders().startswith(b"X-Served-By: netdemos\r\nServer: ")
        )

    def test_responseIsWrittenInOnePiece(self) -> None:
        """
        The status line, headers and body reach the transport as one string,
        not as twisted.web's sequence of some thirty pieces, which the
        transport would check and count one at a time, and a body after it:
        written through, each write is a send(2).
        """
        site = makeSite()
        channel = site.buildProtocol(PEER)
        assert channel is not None
        transport = RecordingTransport()
        channel.makeConnection(transport)
        channel.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(transport.sequences, [])
        [response] = transport.writes
        self.assertTrue(
            response.startswith(
                b"HTTP/1.1 200 OK\r\nX-Served-By: netdemos\r\nServer: "
            ),
            response,
        )
        self.assertTrue(
            response.endswith(b"\r\nContent-Length: 16\r\n\r\nI am request #1\n"),
            response,
        )

    def test_pipelinedResponsesAreWrittenOneEachInOrder(self) -> None:
        """
        Requests that arrive together are answered in order, each answer one
        write, and each written before the next request is begun; the last,
        which asks to close, is written before the connection closes.
        """
        site = makeSite()
        channel = site.buildProtocol(PEER)
        assert channel is not None
        writtenAtClose: list[int] = []

        class ClosingTransport(RecordingTransport):
            def loseConnection(self) -> None:
                writtenAtClose.append(len(self.writes))
                super().loseConnection()

        transport = ClosingTransport()
        channel.makeConnection(transport)
        request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
        closing = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        channel.dataReceived(request * 3 + closing)
        self.assertEqual(len(transport.writes), 4)
        for number, response in enumerate(transport.writes, start=1):
            self.assertTrue(
                response.endswith(b"I am request #%d\n" % (number,)), response
            )
        self.assertEqual(writtenAtClose, [4])

    def test_requestsShareOneEmptyBody(self) -> None:
        """
        A guarded site refuses every request with a body, so the requests it
        lets through share one empty body, rather than each having a buffer
        made, and closed, for nothing.
        """
        recorder = Recorder()
        site = GuardedSite(recorder, reactor=Clock())
        exchange(site, requestFor())
        exchange(site, requestFor())
        first, second = recorder.contents
        self.assertIs(first, second)
        self.assertEqual(first.read(), b"")

    def test_idleTimerRunsOnFromRequestToRequest(self) -> None:
        """
        The idle timer is one timer for the connection's life, not cancelled
        and made anew for every request (twisted.web turns it off while it
        answers); the connection still closes a minute after the last answer.
        """
        clock = Clock()
        channel, transport = connectChannel(CounterSite(reactor=clock))
        [idleTimer] = clock.getDelayedCalls()
        for _ in range(3):
            channel.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            clock.advance(1)
        self.assertTrue(transport.value().endswith(b"I am request #3\n"))
        self.assertEqual(clock.getDelayedCalls(), [idleTimer])
        clock.advance(DEFAULT_IDLE_TIMEOUT - 1.1)
        self.assertFalse(transport.disconnecting)
        clock.advance(0.1)
        self.assertTrue(transport.disconnecting)

    def test_slowAnswerIsNotTimedOut(self) -> None:
        """
        A request whose answer takes longer than the idle timeout is not cut
        off while it is answered, as with twisted.web's own channel; the idle
        time counts from the answer.  So on any guarded site, and on the
        counter's, whose idle timer runs on while it answers.
        """
        for makeGuarded in [self._guardedSite, self._counterSite]:
            clock = Clock()
            recorder = Recorder(answer=False)
            channel, transport = connectChannel(makeGuarded(recorder, clock))
            channel.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            clock.advance(DEFAULT_IDLE_TIMEOUT * 2)
            self.assertFalse(transport.disconnecting)
            [request] = recorder.requests
            request.write(b"late\n")
            request.finish()
            clock.advance(DEFAULT_IDLE_TIMEOUT - 0.1)
            self.assertFalse(transport.disconnecting)
            clock.advance(0.1)
            self.assertTrue(transport.disconnecting)

    @staticmethod
    def _guardedSite(resource: Resource, clock: Clock) -> GuardedSite:
        return GuardedSite(resource, reactor=clock, timeout=DEFAULT_IDLE_TIMEOUT)

    @staticmethod
    def _counterSite(resource: Resource, clock: Clock) -> GuardedSite:
        site = CounterSite(reactor=clock)
        site.counterResource = resource  # type: ignore[assignment]
        return site

    def test_requestThatComesWholeSetsNoDeadline(self) -> None:
        """
        A request whose headers all come with its first bytes needs no header
        deadline, and none is set: the reactor holds only the idle timer.
        """
        clock = Clock()
        channel, transport = connectChannel(CounterSite(reactor=clock))
        channel.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 2)
        self.assertTrue(transport.value().endswith(b"I am request #2\n"))
        self.assertEqual(len(clock.getDelayedCalls()), 1)
