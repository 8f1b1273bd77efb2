"""
The HTTP counter: every C{GET}, on any path, answers C{I am request #N}.

The count lives in an L{ICounter} (see L{netdemos.counting}) owned by the
L{CounterSite}, the factory, not in a class attribute of the resource as in the
textbook example.  This module only speaks HTTP: it never asks where the
numbers come from.

A counter takes no request body, so its site is a L{GuardedSite} (see
L{netdemos.httpguard}), whose connections refuse any request that has one
without reading it, as well as oversize headers and headers that come too
slowly.  What is the counter's own is its resource, and the work per request
that its site and channel spare it, a load-test target, without changing a
byte of its answers.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, cast
from urllib.parse import unquote_to_bytes as unquote

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IAddress
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import server
from twisted.web.http import (
    NOT_ALLOWED,
    SERVICE_UNAVAILABLE,
    Request,
    datetimeToString,
)
from twisted.web.http_headers import Headers
from twisted.web.iweb import IRequest
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from netdemos.connections import DEFAULT_MAX_CONNECTIONS
from netdemos.counting import CounterUnavailableError, ICounter, MemoryCounter
from netdemos.figures import Figure
from netdemos.httpguard import (
    DEFAULT_HEADER_TIMEOUT,
    DEFAULT_IDLE_TIMEOUT,
    GuardedChannel,
    GuardedSite,
    ServedRequest,
)

log = Logger()


def _body(number: int) -> bytes:
    return b"I am request #%d\n" % (number,)


class CounterResource(Resource):
    """
    A leaf resource that counts the C{GET} requests it answers.

    C{HEAD} gets the headers a C{GET} would get now but does not take a number:
    it is a safe method, and a health check probing with C{HEAD} should not move
    the count.  Any other method gets C{405 Method Not Allowed} with
    C{Allow: GET, HEAD}.

    @ivar requestsServed: requests answered by this process, of any method.
    """

    isLeaf = True
    allowedMethods = (b"GET", b"HEAD")

    def __init__(self, counter: ICounter) -> None:
        super().__init__()
        self._counter = counter
        self.requestsServed = 0

    def render(self, request: IRequest) -> bytes | int:
        # Not Resource.render: it would answer 501, not 405, for the methods
        # twisted.web does not know (PUT, DELETE, ...), with an HTML page.
        self.requestsServed += 1
        if request.method == b"GET":
            return self.render_GET(request)
        if request.method == b"HEAD":
            return self.render_HEAD(request)
        request.setResponseCode(NOT_ALLOWED)
        request.setHeader(b"allow", b", ".join(self.allowedMethods))
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return b"405 Method Not Allowed: use GET or HEAD\n"

    def render_GET(self, request: IRequest) -> bytes | int:
        self._setHeaders(request)
        number = self._counter.next()
        if isinstance(number, int):
            # The counters at hand answer here, in the same call: no Deferred
            # for them, as a Deferred per request costs throughput.
            return _body(number)
        number.addCallbacks(
            answerWithNumber,
            answerUnavailable,
            callbackArgs=(request,),
            errbackArgs=(request,),
        )
        return NOT_DONE_YET

    def render_HEAD(self, request: IRequest) -> bytes:
        # The Content-Length a GET would have, and no body: given one,
        # twisted.web would drop it, but log a warning for every HEAD.
        self._setHeaders(request)
        request.setHeader(b"content-length", b"%d" % len(_body(self._counter.peek())))
        return b""

    @staticmethod
    def _setHeaders(request: IRequest) -> None:
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")


def answerWithNumber(number: int, request: IRequest) -> None:
    """
    Answer C{request} with the number it waited for.
    """
    _answerLater(request, _body(number))


def answerUnavailable(reason: Failure, request: IRequest) -> None:
    """
    Answer C{request}, which waited for a number in vain, 503.
    """
    reason.trap(CounterUnavailableError)
    request.setResponseCode(SERVICE_UNAVAILABLE)
    # A load balancer, or a client, tries again a second later; by then the
    # instance's /readyz has told the balancer to send it elsewhere.
    request.setHeader(b"retry-after", b"1")
    _answerLater(request, b"503 Service Unavailable: no request number to give now\n")


def _answerLater(request: IRequest, body: bytes) -> None:
    # A request whose client has gone has no channel any more; its number,
    # if it got one, is skipped, never handed out again.  (Checked here
    # rather than with notifyFinish(), a Deferred more per request.)
    if cast(Request, request).channel is None:
        return
    request.setHeader(b"content-length", b"%d" % (len(body),))
    request.write(body)
    request.finish()


class CounterChannel(GuardedChannel):
    """
    A L{GuardedChannel} that spares the counter, a load-test target, a few of
    twisted.web's costs per request, none of which changes a byte of what it
    sends:
      - its addresses are asked for once per connection, not once per
        request: a TCP C{getHost()} is a C{getsockname()} system call;
      - its idle timer runs on while a request is answered (see
        L{setTimeout}), rather than being cancelled and made anew each time;
      - a response's head is written as one string (see L{writeHeaders}),
        with the site's C{X-Served-By}, C{Server} and C{Date} lines, encoded
        once a second;
      - a response answered while its request is processed (all of them, but
        with C{--redis}) reaches the transport as one write, head and body
        together (see L{holdWrites}).
    """

    site: CounterSite

    # What this request's answer has written so far, while it is held.
    _held: list[bytes] | None = None

    # HTTPChannel is about to turn the idle timeout off for a request.
    _pausingIdleTimeout = False

    def connectionMade(self) -> None:
        super().connectionMade()
        # Every request asks its channel for both addresses, and a TCP
        # getHost() is a getsockname() system call: ask once per connection.
        assert self.transport is not None
        self._host = self.transport.getHost()
        self._peer = self.transport.getPeer()

    def getHost(self) -> IAddress:
        return self._host

    def getPeer(self) -> IAddress:
        return self._peer

    def allContentReceived(self) -> None:
        self._pausingIdleTimeout = True
        try:
            super().allContentReceived()
        finally:
            self._pausingIdleTimeout = False

    def setTimeout(self, period: float | None) -> float | None:
        """
        Change the idle timeout, as L{TimeoutMixin.setTimeout} does, except
        when L{HTTPChannel} turns it off to answer a request.

        HTTPChannel turns the idle timeout off while a request is answered,
        and on again after: a cancelled timer and a new one for every
        request, which the reactor must insert into its heap, and later sift
        out.  Instead the timer runs on, and should it fall due while a
        request is being answered, L{timeoutConnection} lets it pass; turning
        the timeout on again then starts a new one.
        """
        if period is None and self._pausingIdleTimeout:
            self._pausingIdleTimeout = False
            return self.timeOut
        previous: float | None = super().setTimeout(period)
        return previous

    def timeoutConnection(self) -> None:
        # HTTPChannel's private _handlingRequest: a request is being answered.
        if not self._handlingRequest:
            super().timeoutConnection()

    def holdWrites(self) -> None:
        """
        Hold what is written until L{sendHeld}: the transport writes through
        (L{netdemos.writethrough}), so a head and a body written apart would
        be two sends, where one does.
        """
        self._held = []

    def sendHeld(self) -> None:
        """
        Write what was held, as one, and stop holding.
        """
        held, self._held = self._held, None
        if held and self.transport is not None:
            self.transport.write(b"".join(held))

    def write(self, data: bytes) -> None:
        if self._held is not None:
            self._held.append(data)
        else:
            super().write(data)

    def writeSequence(self, iovec: Iterable[bytes]) -> None:
        if self._held is not None:
            self._held.extend(iovec)
        else:
            super().writeSequence(iovec)

    def requestDone(self, request: Request) -> None:
        # Before HTTPChannel goes on to the next pipelined request, or
        # closes: the answer is complete, and must go first.
        self.sendHeld()
        super().requestDone(request)

    def writeHeaders(
        self, version: bytes, code: bytes, reason: bytes, headers: Headers
    ) -> None:
        """
        Write a response's status line and headers, as one string.

        L{HTTPChannel.writeHeaders} hands the transport a sequence of some
        thirty pieces, which the transport checks and counts one by one, in
        Python; joining them first is one call to C{join}.

        A response without a C{Date} header (a L{CounterRequest} on a
        kept-alive connection sets none) gets the site's
        L{CounterSite.serverHeaders} first.
        """
        lines = [version, b" ", code, b" ", reason, b"\r\n"]
        if not headers.hasHeader(b"Date"):
            lines.append(self.site.serverHeaders())
        for name, values in headers.getAllRawHeaders():
            for value in values:
                lines += (name, b": ", value, b"\r\n")
        lines.append(b"\r\n")
        self.write(b"".join(lines))


class CounterRequest(ServedRequest):
    """
    A request to a L{CounterSite}: a L{ServedRequest}, with C{process} cut
    down to what a site of one leaf needs.
    """

    channel: CounterChannel

    def process(self) -> None:
        """
        Render the site's one resource.

        This is L{ServedRequest.process} less what the counter does not need:
        no walk down a tree of resources (one leaf answers every path), no
        encoders (the counter offers none), and no C{X-Served-By}, C{Server}
        and C{Date} headers to encode for each request: the channel writes the
        site's, encoded once a second (L{CounterSite.serverHeaders}), first,
        where L{ServedRequest} and twisted.web put them.

        What it writes is held (L{CounterChannel.holdWrites}) until the
        request is done, or, for an answer that waits for Redis, until this
        returns.
        """
        # Twisted deletes self.channel once the request is done.
        channel = self.channel
        channel.holdWrites()
        try:
            self._process()
        finally:
            channel.sendHeld()

    def _process(self) -> None:
        site = self.channel.site
        self.site = site
        self.sitepath: list[bytes] = []
        self.prepath = []
        self.postpath = list(map(unquote, self.path[1:].split(b"/")))
        if not self.channel.persistent:
            # HTTPChannel has already set this answer's Connection: close,
            # and ServedRequest and twisted.web set theirs after it.
            self.responseHeaders.setRawHeaders(b"x-served-by", site.servedBy)
            self.setHeader(b"Server", server.version)
            self.setHeader(b"Date", site.date())
        if self.path == b"*":
            self._answerAsterisk()
            return
        try:
            self.render(site.counterResource)
        except BaseException:
            self.processingFailed(Failure())

    def _answerAsterisk(self) -> None:
        # "OPTIONS *" asks about the server, not a resource (RFC 9110, section
        # 9.3.7): answered as twisted.web answers it, and any other method 405.
        if self.method != b"OPTIONS":
            self.setResponseCode(NOT_ALLOWED)
            self.setHeader(b"Allow", b"OPTIONS")
        self.setHeader(b"Content-Length", b"0")
        self.finish()


class CounterSite(GuardedSite):
    """
    The HTTP factory: a L{GuardedSite} that owns the L{ICounter} and
    counts its connections.

    Per-request access logging is off unless asked for: writing a log line per
    request roughly halves throughput, and a load-test target rarely wants it.

    @ivar requestCounter: the shared request counter.
    @ivar counterResource: the resource answering every request.
    """

    protocol = CounterChannel
    requestFactory = CounterRequest

    def __init__(
        self,
        counter: ICounter | None = None,
        accessLog: str | None = None,
        maxConnections: int = DEFAULT_MAX_CONNECTIONS,
        timeout: float = DEFAULT_IDLE_TIMEOUT,
        headerTimeout: float = DEFAULT_HEADER_TIMEOUT,
        **kwargs: Any,
    ) -> None:
        """
        @param accessLog: L{None} for no access log, C{"-"} for the twistd log,
            or the path of a file to append to.
        @param timeout: seconds an HTTP connection may stay idle.
        @param headerTimeout: seconds a request has, from its first byte, to
            send all its headers.
        """
        # Not "counter": Site already uses that name for its session ids.
        self.requestCounter = counter if counter is not None else MemoryCounter()
        self.counterResource = CounterResource(self.requestCounter)
        self._accessLogEnabled = accessLog is not None
        self._second: int | None = None
        self._date = self._serverHeaders = b""
        logPath = None if accessLog in (None, "-") else accessLog
        super().__init__(
            self.counterResource,
            headerTimeout=headerTimeout,
            maxConnections=maxConnections,
            logPath=logPath,
            timeout=timeout,
            **kwargs,
        )

    def figures(self) -> Iterator[Figure]:
        yield Figure(
            "http_requests",
            "HTTP requests answered by this process.",
            self.counterResource.requestsServed,
        )
        yield from super().figures()

    def serverHeaders(self) -> bytes:
        """
        The C{X-Served-By}, C{Server} and C{Date} header lines of a response
        sent now, which L{ServedRequest.process} would set on each request:
        encoded once per second of the site's reactor, rather than once per
        request.
        """
        now = int(self.reactor.seconds())
        if now != self._second:
            self._second = now
            self._date = datetimeToString(now)
            self._serverHeaders = b"%sServer: %s\r\nDate: %s\r\n" % (
                self.servedByHeader,
                server.version,
                self._date,
            )
        return self._serverHeaders

    def date(self) -> bytes:
        """
        The C{Date} header of a response sent now, formatted once a second.
        """
        self.serverHeaders()
        return self._date

    def log(self, request: Request) -> None:
        if self._accessLogEnabled:
            super().log(request)

    def close(self) -> Deferred[None]:
        """
        Close every connection once its responses are sent.

        Responses are rendered as soon as a request has arrived, so closing
        after the write buffer drains completes every answered request.
        """
        return self.connections.closeAll()
