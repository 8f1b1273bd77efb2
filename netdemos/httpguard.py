"""
Hardened HTTP/1.1 for sites that take no request body: a L{GuardedSite} over
L{GuardedChannel}s, which refuse bodies, oversize headers and slow headers
before any resource sees the request, close lingering, and answer 503 when the
site is full.  A hostile client costs bounded memory and time, and no disk.

The counter (L{netdemos.counter}), the C{--web} site (L{netdemos.web}) and the
metrics site (L{netdemos.metrics}) are all guarded sites.  L{GuardedChannel}
overrides a few of L{HTTPChannel}'s private names; each is listed, with the
test that checks it against the installed Twisted, in C{docs/private-names.md}.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IProtocol,
    ITLSTransport,
)
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel
from twisted.web.server import Request as SiteRequest
from twisted.web.server import Site
from zope.interface import implementer

from netdemos.connections import DEFAULT_MAX_CONNECTIONS, Connections
from netdemos.figures import Figure, IReportsFigures

# twisted.web's default keeps an idle connection 12 hours; a minute is plenty
# for these sites, and blunts slowloris-style clients that trickle a request.
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

    The site counts the channel in its connections while it is open.

    @ivar site: the L{GuardedSite}, which holds the header timeout, counts the
        refusals and the connections.
    """

    site: GuardedSite

    _receivingHeaders = False
    _deadline: IDelayedCall | None = None
    # Bytes still to discard after a refusal; None while no refusal was made.
    _lingerAllowance: int | None = None

    def connectionMade(self) -> None:
        super().connectionMade()
        self.site.connections.add(self)

    def dataReceived(self, data: bytes) -> None:
        # Bytes that come while a request is answered (HTTPChannel's private
        # _handlingRequest) are the next request's, which HTTPChannel holds
        # back until then.
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
            super().allContentReceived()

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

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.site.connections.remove(self)
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        super().connectionLost(reason)

    def _protocolUpgradeForWebsockets(self, protocol: IProtocol) -> None:
        # Twisted's WebSocketResource calls this private hook: the connection
        # becomes a WebSocket's (see netdemos.web), and this channel never
        # hears of it again, not even connectionLost.  The headers' deadline,
        # met already, must not outlive it.
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        super()._protocolUpgradeForWebsockets(protocol)


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


@implementer(IReportsFigures)
class GuardedSite(Site):
    """
    A L{Site} for resources that take no request body, served over
    L{GuardedChannel}s.

    @ivar connections: its live connections, and their limit.
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

    # The service it serves, and why it may refuse a request, for /metrics.
    serviceName = "http"
    refusalReasons: tuple[str, ...] = REFUSAL_REASONS

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

    def figures(self) -> Iterator[Figure]:
        for reason in self.refusalReasons:
            yield Figure(
                "http_requests_refused",
                "HTTP requests refused before they were served.",
                self.refused[reason],
                (("service", self.serviceName), ("reason", reason)),
            )

    def getContentFile(self, length: int | None) -> NoBody:
        """
        Where twisted.web keeps a request's body: nowhere, because a
        L{GuardedChannel} refuses every request that has a body before it
        reads any (and so before twisted.web asks for a file, which for a long
        body would be a temporary file on disk).
        """
        return NO_BODY
