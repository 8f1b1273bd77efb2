"""
The HTTP counter: every C{GET}, on any path, answers C{I am request #N}.

The count lives in an L{ICounter} (see L{netdemos.counting}) owned by the
L{CounterSite}, the factory, not in a class attribute of the resource as in the
textbook example.  This module only speaks HTTP: it never asks where the
numbers come from.

A counter takes no request body, so its connections, L{GuardedChannel}s, refuse
any request that has one without reading it, as well as oversize headers and
headers that come too slowly: a hostile client costs bounded memory and time,
and no disk.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, cast
from urllib.parse import unquote_to_bytes as unquote

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IProtocol,
    ITLSTransport,
)
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import server
from twisted.web.http import (
    NOT_ALLOWED,
    SERVICE_UNAVAILABLE,
    HTTPChannel,
    Request,
    datetimeToString,
)
from twisted.web.http_headers import Headers
from twisted.web.iweb import IRequest
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site
from twisted.web.server import Request as SiteRequest

from netdemos.connections import DEFAULT_MAX_CONNECTIONS, Connections
from netdemos.counting import CounterUnavailableError, ICounter, MemoryCounter

log = Logger()

# twisted.web's default keeps an idle connection 12 hours; a minute is plenty
# for a counter, and blunts slowloris-style clients that trickle a request.
DEFAULT_IDLE_TIMEOUT = 60

# A browser or a load generator sends a request's headers in one packet; even a
# slow mobile link delivers 16 KiB of them in well under a second.  A client
# still trickling its headers after 10 s is holding a connection, not asking.
DEFAULT_HEADER_TIMEOUT = 10.0

# After refusing a request the server stops reading it but goes on draining
# what the client is still sending, so that closing does not reset the
# connection and destroy the answer before the client has read it.  The drain
# is bounded, in bytes and in time, or a client could keep it going forever.
LINGER_BYTES = 1024 * 1024
LINGER_SECONDS = 2.0

# Why a request was refused before it reached the resource: the labels of
# netdemos_http_requests_refused_total.
REFUSAL_REASONS = ("body", "headers", "host", "malformed", "timeout")


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
        # twisted.web sends the Content-Length of this body, and not the body.
        self._setHeaders(request)
        return _body(self._counter.peek())

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


def plainResponse(
    status: bytes, body: bytes, headers: bytes = b"", headOnly: bool = False
) -> bytes:
    """
    A complete C{text/plain} response that closes the connection, written
    without twisted.web's L{Request}: for answering before, or instead of,
    reading a request.

    @param status: the status code and reason, such as C{b"404 Not Found"}.
    @param headers: extra header lines, each ending in CRLF.
    @param headOnly: leave the body out (but not its length), as the answer
        to a C{HEAD}.
    """
    head = (
        b"HTTP/1.1 %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n%s\r\n"
        % (status, len(body), headers)
    )
    return head if headOnly else head + body


class NoBody:
    """
    The body of every request a L{GuardedChannel} lets through: empty.

    One instance serves every request, where twisted.web would make a buffer
    for each: nothing is ever written to it, and closing it, as twisted.web
    does once a request is answered, leaves it as it was.
    """

    def read(self, size: int = -1) -> bytes:
        return b""

    def tell(self) -> int:
        return 0

    def seek(self, offset: int, whence: int = 0) -> int:
        return 0

    def close(self) -> None:
        pass


NO_BODY = NoBody()


class GuardedChannel(HTTPChannel):
    """
    An HTTP/1.1 connection for a site that never needs a request body: a
    hostile client costs it bounded memory and time, and no disk.

    It refuses, answers and closes, before any resource sees the request:
      - a request with a body (C{Content-Length} above 0, or chunked): 413 for
        C{GET} and C{HEAD}, 405 for any other method, without reading the body
        (twisted.web would spool it to a temporary file first);
      - request headers over C{totalHeadersSize} bytes, or a longer line, or
        more than C{maxHeaders} of them: 431;
      - an HTTP/1.1 request without exactly one C{Host} header: 400, as RFC
        9112 requires (HTTP/1.0 needs none);
      - a request whose headers have not all arrived C{site.headerTimeout}
        seconds after its first byte: 408.  The idle timeout alone would not
        do, because each byte restarts it: a client trickling a byte every 20
        seconds would hold the connection forever;
      - whatever twisted.web itself finds malformed: 400, as before.

    Closing after a refusal is a lingering close: answer, shut down the
    sending side, and read and discard what the client still sends, up to
    L{LINGER_BYTES} or L{LINGER_SECONDS}, before closing.  Closing a socket
    with unread data makes the kernel reset the connection, and a client may
    then lose the answer before it reads it.

    One timer per connection serves both deadlines (the headers', then the
    drain's), and a new request moves it only later, which costs the reactor
    nothing until it falls due.  A request whose headers all come in the
    bytes that begin it, as nearly all do, does not touch it.

    @ivar site: the L{GuardedSite}, which holds the header timeout and counts
        the refusals.
    """

    site: GuardedSite

    _receivingHeaders = False
    # HTTPChannel is about to turn the idle timeout off for a request.
    _pausingIdleTimeout = False
    _deadline: IDelayedCall | None = None
    # Bytes still to discard after a refusal; None while no refusal was made.
    _lingerAllowance: int | None = None

    def dataReceived(self, data: bytes) -> None:
        beginsRequest = not (
            self._receivingHeaders
            or self._handlingRequest
            or self._lingerAllowance is not None
        )
        if beginsRequest:
            self._receivingHeaders = True
        super().dataReceived(data)
        if beginsRequest and self._receivingHeaders:
            # These bytes began a request whose headers are not all in yet:
            # its deadline counts from now.  A request that comes whole, as
            # nearly all do, needs no deadline and costs no timer.
            self._startHeaderClock()

    def _startHeaderClock(self) -> None:
        # The new deadline is later than the previous request's, so reset()
        # only notes it (moving a call sooner would search the reactor's
        # whole heap).
        if self._deadline is not None and self._deadline.active():
            self._deadline.reset(self.site.headerTimeout)
        else:
            self._deadline = self.callLater(
                self.site.headerTimeout, self._deadlinePassed
            )

    def _deadlinePassed(self) -> None:
        if self._lingerAllowance is not None:
            self._abort()
        elif self._receivingHeaders:
            self._refuse(
                "timeout",
                b"408 Request Timeout",
                b"408 Request Timeout: the request headers came too slowly\n",
            )
        # Otherwise the request it was set for had its headers in time.

    def allHeadersReceived(self) -> None:
        self._receivingHeaders = False
        # HTTPChannel has parsed the request line into _command and _version,
        # and the body's length into length: None when chunked.
        method = self._command
        if self.length != 0:
            if method in (b"GET", b"HEAD"):
                self._refuse(
                    "body",
                    b"413 Content Too Large",
                    b"413 Content Too Large: send no request body\n",
                    headOnly=method == b"HEAD",
                )
            else:
                self._refuse(
                    "body",
                    b"405 Method Not Allowed",
                    b"405 Method Not Allowed: use GET or HEAD\n",
                    headers=b"Allow: GET, HEAD\r\n",
                )
            return
        hosts = self.requests[-1].requestHeaders.getRawHeaders(b"host")
        if (hosts is None and self._version == b"HTTP/1.1") or (
            hosts is not None and len(hosts) > 1
        ):
            self._refuse(
                "host",
                b"400 Bad Request",
                b"400 Bad Request: an HTTP/1.1 request needs one Host header\n",
            )
            return
        super().allHeadersReceived()

    def allContentReceived(self) -> None:
        # A request refused at its headers is answered already.
        if self._lingerAllowance is None:
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
        if not self._handlingRequest:
            super().timeoutConnection()

    def rawDataReceived(self, data: bytes) -> None:
        if self._lingerAllowance is None:
            super().rawDataReceived(data)
            return
        self._lingerAllowance -= len(data)
        if self._lingerAllowance < 0:
            self._abort()

    def lineLengthExceeded(self, line: bytes) -> None:
        self._refuseOversizeHeaders()

    def _respondToBadRequestAndDisconnect(self) -> None:
        # HTTPChannel's one answer to every bad request: a bare 400, then a
        # close that may reset the connection before the client reads it.
        if (
            self._receivedHeaderSize > self.totalHeadersSize
            or self._receivedHeaderCount > self.maxHeaders
        ):
            self._refuseOversizeHeaders()
        else:
            self._refuse(
                "malformed",
                b"400 Bad Request",
                b"400 Bad Request: this is not an HTTP/1.1 request\n",
            )

    def _refuseOversizeHeaders(self) -> None:
        self._refuse(
            "headers",
            b"431 Request Header Fields Too Large",
            b"431 Request Header Fields Too Large: at most %d bytes\n"
            % (self.totalHeadersSize,),
        )

    def _refuse(
        self,
        reason: str,
        status: bytes,
        body: bytes,
        headers: bytes = b"",
        headOnly: bool = False,
    ) -> None:
        """
        Answer C{status} and close, reading nothing more of the request.

        @param reason: why, one of L{REFUSAL_REASONS}.
        """
        if self._lingerAllowance is not None:
            return  # refused already
        # Counted, not logged: a flood of bad requests must not flood the log.
        self.site.refused[reason] += 1
        self._receivingHeaders = False
        self._lingerAllowance = LINGER_BYTES
        # From here the linger deadline governs, not the idle timeout.
        self.setTimeout(None)
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = self.callLater(LINGER_SECONDS, self._deadlinePassed)
        # Whatever else arrives goes to rawDataReceived, to be discarded.
        self.setRawMode()
        assert self.transport is not None
        self.transport.write(
            plainResponse(status, body, headers + self.site.servedByHeader, headOnly)
        )
        self._stopSending()

    def _stopSending(self) -> None:
        # ITransport names less than stream transports offer.
        transport: Any = self.transport
        # A transport sends its FIN only once no producer is registered.
        transport.unregisterProducer()
        if ITLSTransport.providedBy(transport):
            # TLS's own close, a close_notify, reads on until the client's.
            transport.loseConnection()
        elif hasattr(transport, "loseWriteConnection"):
            transport.loseWriteConnection()
        else:
            transport.loseConnection()

    def _abort(self) -> None:
        transport: Any = self.transport
        transport.abortConnection()

    def writeHeaders(
        self, version: bytes, code: bytes, reason: bytes, headers: Headers
    ) -> None:
        """
        Write a response's status line and headers, as one string.

        L{HTTPChannel.writeHeaders} hands the transport a sequence of some
        thirty pieces, which the transport checks and counts one by one, in
        Python; joining them first is one call to C{join}.

        A response without a C{Date} header, which twisted.web's requests
        always set, gets the site's L{GuardedSite.serverHeaders} first.
        """
        lines = [version, b" ", code, b" ", reason, b"\r\n"]
        if not headers.hasHeader(b"Date"):
            lines.append(self.site.serverHeaders())
        for name, values in headers.getAllRawHeaders():
            for value in values:
                lines += (name, b": ", value, b"\r\n")
        lines.append(b"\r\n")
        assert self.transport is not None
        self.transport.write(b"".join(lines))

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        super().connectionLost(reason)

    def _protocolUpgradeForWebsockets(self, protocol: IProtocol) -> None:
        # The connection becomes a WebSocket's (see netdemos.web), and this
        # channel never hears of it again, not even connectionLost: the
        # headers' deadline, met already, must not outlive it.
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        # Nor must the idle timer, which HTTPChannel turned off for the
        # request but this channel keeps running (see setTimeout).
        self._pausingIdleTimeout = False
        self.setTimeout(None)
        super()._protocolUpgradeForWebsockets(protocol)


class CountedChannel(GuardedChannel):
    """
    A L{GuardedChannel} that its site counts while it is open.
    """

    site: CounterSite

    def connectionMade(self) -> None:
        super().connectionMade()
        self.site.connections.add(self)
        # Every request asks its channel for both addresses, and a TCP
        # getHost() is a getsockname() system call: ask once per connection.
        assert self.transport is not None
        self._host = self.transport.getHost()
        self._peer = self.transport.getPeer()

    def getHost(self) -> IAddress:
        return self._host

    def getPeer(self) -> IAddress:
        return self._peer

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.site.connections.remove(self)
        super().connectionLost(reason)


class ServiceUnavailable(Protocol):
    """
    Answer 503 at once, without reading the request: the server is full.

    @ivar headers: header lines to add, each ending in CRLF.
    """

    def __init__(self, headers: bytes = b"") -> None:
        self.headers = headers

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(
            plainResponse(
                b"503 Service Unavailable",
                b"503 Service Unavailable: too many connections\n",
                b"Retry-After: 1\r\n" + self.headers,
            )
        )
        self.transport.loseConnection()


class ServedRequest(SiteRequest):
    """
    A request whose response says which instance served it, in
    C{X-Served-By}: behind a load balancer, the one header that tells which
    of several servers answered.
    """

    channel: GuardedChannel

    def process(self) -> None:
        self.responseHeaders.setRawHeaders(b"x-served-by", self.channel.site.servedBy)
        super().process()


class GuardedSite(Site):
    """
    A L{Site} for resources that take no request body, served over
    L{GuardedChannel}s.

    @ivar headerTimeout: seconds a request has, from its first byte, to send
        all its headers.
    @ivar refused: requests refused before any resource saw them, by reason
        (see L{REFUSAL_REASONS}).
    @ivar servedBy: the value of C{X-Served-By} on every response, once
        encoded; and L{servedByHeader}, that header line for answers written
        without a L{Request}.
    """

    # Not Twisted's "Starting factory" line: the banner says where it listens.
    noisy = False

    # Plain HTTP/1.1 channels: this gives up twisted.web's HTTP/2 negotiation,
    # which only applies to TLS with the h2 package anyway.
    protocol = GuardedChannel  # type: ignore[assignment]
    # A class attribute, not a default argument, so that a subclass's own
    # request class (CounterSite's) wins.
    requestFactory = ServedRequest

    def __init__(
        self,
        resource: Any,
        headerTimeout: float = DEFAULT_HEADER_TIMEOUT,
        instance: str = "netdemos",
        maxConnections: int = DEFAULT_MAX_CONNECTIONS,
        connections: Connections | None = None,
        **kwargs: Any,
    ) -> None:
        """
        @param instance: the name of this instance, for C{X-Served-By}.
        @param maxConnections: most connections at once; past it, 503.
        @param connections: the registry to count them in, if others share it
            (the web site's WebSockets do); by default a new one.
        """
        self.connections = (
            connections if connections is not None else Connections(maxConnections)
        )
        super().__init__(resource, **kwargs)
        self.headerTimeout = headerTimeout
        self.refused: Counter[str] = Counter()
        self.servedBy = [instance.encode("ascii")]
        self.servedByHeader = b"X-Served-By: %s\r\n" % (self.servedBy[0],)

    def buildProtocol(  # type: ignore[override]
        self, addr: IAddress | None
    ) -> Protocol | None:
        # A full server answers 503 at once, without reading the request.
        # (Twisted's stubs expect an HTTP channel.)
        if self.connections.rejectIfFull():
            return ServiceUnavailable(self.servedByHeader)
        channel: Protocol | None = super().buildProtocol(addr)
        return channel

    def serverHeaders(self) -> bytes:
        """
        The C{X-Served-By}, C{Server} and C{Date} header lines for a response
        whose request did not set them: none here, as L{ServedRequest}s always
        do.
        """
        return b""

    def getContentFile(self, length: int | None) -> NoBody:
        """
        Where twisted.web keeps a request's body: nowhere, because a
        L{GuardedChannel} refuses every request that has a body before it
        reads any (and so before twisted.web asks for a file, which for a long
        body would be a temporary file on disk).
        """
        return NO_BODY


class CounterRequest(ServedRequest):
    """
    A request to a L{CounterSite}: a L{ServedRequest}, with C{process} cut
    down to what a site of one leaf needs.
    """

    channel: CountedChannel

    def process(self) -> None:
        """
        Render the site's one resource.

        This is L{ServedRequest.process} less what the counter does not need:
        no walk down a tree of resources (one leaf answers every path), no
        encoders (the counter offers none), and no C{X-Served-By}, C{Server}
        and C{Date} headers to encode for each request: the channel writes the
        site's, encoded once a second (L{CounterSite.serverHeaders}), first,
        where L{ServedRequest} and twisted.web put them.
        """
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

    protocol = CountedChannel
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
