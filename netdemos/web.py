"""
The C{--web} site: the chat page, and the chat room and echo over WebSocket.

  - C{GET /}: the page, with its script and style (C{netdemos/static/}: no
    CDN, no build step, no framework), each with an C{ETag} and a
    C{Last-Modified}, so that a browser's revalidation is a bodiless 304;
  - C{/chat}: a WebSocket into the room the TCP chat clients are in
    (L{netdemos.chat.websocket});
  - C{/echo}: WebSocket echo, text back as text and binary as binary;
  - C{/whoami}, C{/status/CODE}, C{/delay/SECONDS}: the HTTP mirror
    (L{netdemos.mirror}), a target for testing clients and balancers.

A browser opens a WebSocket to any address a page asks it to, and sends the
cookies it has for it; so a handshake whose C{Origin} is another site's is
refused with 403 (cross-site WebSocket hijacking), and every response carries
a Content-Security-Policy under which the page runs only its own script and
style and connects only to its own origin.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from hashlib import sha256
from importlib.resources import files
from typing import Any
from urllib.parse import urlsplit

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import NOT_MODIFIED, datetimeToString, stringToDatetime
from twisted.web.http import Request as HTTPRequest
from twisted.web.iweb import IRequest
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request
from twisted.web.websocket import WebSocketResource
from wsproto import ConnectionType
from wsproto.handshake import H11Handshake
from wsproto.utilities import RemoteProtocolError

from netdemos import __version__
from netdemos.chat.member import MemberSettings
from netdemos.chat.websocket import ChatSocketFactory
from netdemos.connections import (
    DEFAULT_MAX_CONNECTIONS,
    ClockedTimeoutMixin,
    Connections,
)
from netdemos.httpguard import (
    DEFAULT_HEADER_TIMEOUT,
    DEFAULT_IDLE_TIMEOUT,
    REFUSAL_REASONS,
    GuardedSite,
)
from netdemos.mirror import Delay, MirrorChannel, MirrorRequest, Status, WhoAmI
from netdemos.websocket import (
    DEFAULT_MAX_MESSAGE,
    DEFAULT_PING_INTERVAL,
    NORMAL_CLOSURE,
    WebSocketConnection,
)

log = Logger()

# The page may run only its own script and style, show only its own icon, and
# connect only to its own origin ('self' covers ws: and wss: there, per CSP
# Level 3); it may not be framed, nor have its base URL or form target moved.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self';"
    " connect-src 'self'; base-uri 'none'; form-action 'none';"
    " frame-ancestors 'none'"
)

SECURITY_HEADERS = {
    b"content-security-policy": CONTENT_SECURITY_POLICY.encode("ascii"),
    b"x-content-type-options": b"nosniff",
    b"referrer-policy": b"no-referrer",
    # The files are small: have browsers ask each time, so a new version of
    # netdemos never meets an old script; the page's files answer the asking
    # with 304 when the browser's copy is current (StaticFile).
    b"cache-control": b"no-cache",
}

# What the page is made of, served from the package.
_STATIC = {
    b"": ("index.html", "text/html; charset=utf-8"),
    b"chat.js": ("chat.js", "text/javascript; charset=utf-8"),
    b"chat.css": ("chat.css", "text/css; charset=utf-8"),
    b"icon.svg": ("icon.svg", "image/svg+xml"),
}


def normalizeOrigin(origin: str) -> str:
    """
    An origin as browsers send it in C{Origin}: C{scheme://host[:port]},
    lower case.

    @raise ValueError: if C{origin} is not an http(s) origin (a path, say).
    """
    parts = urlsplit(origin.strip().lower())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{origin} is not an origin such as https://example.com")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"{origin} is an address, not an origin: drop the path")
    return f"{parts.scheme}://{parts.netloc}"


def isSameOrigin(origin: str, host: str | None) -> bool:
    """
    Whether C{origin} is the origin of a page served with this C{Host}.

    Only the host and port are compared: behind a proxy that ends TLS, the
    page's scheme is https while this server sees http.
    """
    return host is not None and urlsplit(origin.lower()).netloc == host.lower()


# Why the web site refuses a request: any guarded site's reasons, a WebSocket
# handshake that is not one, and a page from another origin.
WEB_REFUSALS = (*REFUSAL_REASONS, "handshake", "origin")


class WebSocketEntry(WebSocketResource):
    """
    A WebSocket endpoint that a browser may open only from the page's own
    origin or from one given with C{--web-origin}.

    A handshake without C{Origin} is let in: browsers always send it, and a
    client that does not (a script, C{websocat}) is no browser to hijack.
    """

    def __init__(
        self, factory: ChatSocketFactory | EchoSocketFactory, origins: frozenset[str]
    ) -> None:
        super().__init__(factory)
        self._origins = origins

    def render_GET(self, request: Request) -> bytes | int:
        upgrade = request.getHeader(b"upgrade") or b""
        if upgrade.lower() != b"websocket":
            # Twisted would log an error for each of these; it is only a
            # browser or crawler that followed a link.
            request.setResponseCode(426, b"Upgrade Required")
            request.setHeader(b"upgrade", b"websocket")
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"426 Upgrade Required: this address speaks WebSocket\n"
        # Refusals are counted, not logged: one client can send thousands.
        origin = request.getHeader(b"origin")
        if origin is not None and not self.allows(
            origin.decode("latin-1"), request.getHeader(b"host")
        ):
            return refuse(request, 403, "origin", b"WebSocket from another origin")
        if not isHandshake(request):
            return refuse(request, 400, "handshake", b"not a WebSocket handshake")
        return super().render_GET(request)

    def allows(self, origin: str, host: bytes | None) -> bool:
        return origin.lower() in self._origins or isSameOrigin(
            origin, None if host is None else host.decode("latin-1")
        )


class EchoSocket(WebSocketConnection, ClockedTimeoutMixin):
    """
    WebSocket echo: each message goes back as it came, text as text and
    binary as binary.

    Backpressure as for TCP echo: the transport is its own producer, so when
    the client does not read what comes back, it is not read from either.
    """

    def __init__(self, factory: EchoSocketFactory, request: Request) -> None:
        super().__init__(
            request,
            factory.clock,
            factory.connections,
            factory.maxMessage,
            factory.pingInterval,
        )
        self._factory = factory
        self.clock = factory.clock

    def negotiationFinished(self) -> None:
        super().negotiationFinished()
        self.transport.registerProducer(self.transport, True)
        self.setTimeout(self._factory.idleTimeout)

    def textMessageReceived(self, message: str) -> None:
        self._echo(self.websocket.sendTextMessage, message)

    def bytesMessageReceived(self, data: bytes | bytearray) -> None:
        self._echo(self.websocket.sendBytesMessage, bytes(data))

    def _echo(self, send: Callable[[Any], None], message: str | bytes) -> None:
        if self._closeSent:
            return
        self.heard()
        self.resetTimeout()
        send(message)

    def timeoutConnection(self) -> None:
        log.info("web: closing echo for {peer}, idle", peer=self.transport.getPeer())
        self.closeWith(NORMAL_CLOSURE)

    def connectionLost(self, reason: Failure) -> None:
        self.setTimeout(None)
        super().connectionLost(reason)


class EchoSocketFactory:
    """
    Build an L{EchoSocket} for each WebSocket handshake on C{/echo}.
    """

    def __init__(
        self,
        clock: IReactorTime,
        connections: Connections,
        maxMessage: int,
        pingInterval: float,
        idleTimeout: float | None,
    ) -> None:
        self.clock = clock
        self.connections = connections
        self.maxMessage = maxMessage
        self.pingInterval = pingInterval
        self.idleTimeout = idleTimeout

    def buildProtocol(self, request: Request) -> EchoSocket:
        return EchoSocket(self, request)


# An entity tag in If-None-Match, weak (W/"...") or strong ("...").
_ENTITY_TAG = re.compile(rb'(?:W/)?"[^"]*"')


def entityTag(data: bytes) -> bytes:
    """
    A strong entity tag for C{data}: 128 bits of its SHA-256, so that every
    instance serving the same bytes gives the same tag.
    """
    return b'"%s"' % (sha256(data).hexdigest()[:32].encode("ascii"),)


def anyTagMatches(etag: bytes, fieldValues: list[bytes]) -> bool:
    """
    Whether the C{If-None-Match} field values name C{etag}, or are C{*}.

    Tags are compared weakly, as RFC 9110 (13.1.2) has it for C{GET} and
    C{HEAD}: C{W/"x"} matches C{"x"}.  The values are lists, on one line or
    several.
    """
    opaque = etag.removeprefix(b"W/")
    for value in fieldValues:
        if value.strip() == b"*":
            return True
        for tag in _ENTITY_TAG.findall(value):
            if tag.removeprefix(b"W/") == opaque:
                return True
    return False


def isNotModifiedSince(lastModified: int, fieldValues: list[bytes]) -> bool:
    """
    Whether C{If-Modified-Since} gives a date no earlier than
    C{lastModified}; a field that is not exactly one date is ignored, as
    RFC 9110 (13.1.3) asks.
    """
    if len(fieldValues) != 1:
        return False
    # Old browsers add "; length=N", which twisted.web drops too.
    date = fieldValues[0].split(b";", 1)[0]
    try:
        since = stringToDatetime(date)
    except (ValueError, IndexError):
        # IndexError: a blank date.
        return False
    return bool(since >= lastModified)


def isNotModified(request: IRequest, etag: bytes, lastModified: int) -> bool:
    """
    Whether the client's copy of a representation with these validators is
    current, so that C{request}, a C{GET} or C{HEAD}, is answered 304.

    C{If-None-Match} decides when present, and C{If-Modified-Since} only
    without it (RFC 9110, 13.2.2).  twisted.web's L{HTTPRequest.setETag} and
    L{HTTPRequest.setLastModified} would do this, but the one splits the
    list only at spaces (so that the first of C{"a", "b"} is C{"a",}),
    compares strongly and reads only the last C{If-None-Match} line, and the
    other decides by C{If-Modified-Since} even beside C{If-None-Match}, and
    fails with a 500 on a blank date.
    """
    headers = request.requestHeaders
    tags = headers.getRawHeaders(b"if-none-match")
    if tags is not None:
        return anyTagMatches(etag, tags)
    dates = headers.getRawHeaders(b"if-modified-since")
    return dates is not None and isNotModifiedSince(lastModified, dates)


class StaticFile(Resource):
    """
    One file of the page, held in memory, with its validators: an C{ETag} of
    its content and a C{Last-Modified} of when it was loaded.  A browser
    asking whether its copy is current is answered 304, with no body.

    @ivar etag: the file's strong entity tag (L{entityTag}).
    @ivar lastModified: when it was loaded, in whole seconds since the epoch.
    """

    isLeaf = True

    def __init__(self, data: bytes, contentType: str, lastModified: int) -> None:
        super().__init__()
        self._data = data
        self._contentType = contentType.encode("ascii")
        self._contentLength = b"%d" % (len(data),)
        self.etag = entityTag(data)
        self.lastModified = lastModified
        self._lastModifiedDate = datetimeToString(lastModified)

    def render_GET(self, request: IRequest) -> bytes | int:
        if self._answeredNotModified(request):
            return NOT_DONE_YET
        request.setHeader(b"content-type", self._contentType)
        return self._data

    def render_HEAD(self, request: IRequest) -> bytes | int:
        # The headers of a GET, without its body.  (Left to twisted.web, a
        # HEAD renders the GET, and logs a warning as it drops the body.)
        if self._answeredNotModified(request):
            return NOT_DONE_YET
        request.setHeader(b"content-type", self._contentType)
        request.setHeader(b"content-length", self._contentLength)
        return b""

    def _answeredNotModified(self, request: IRequest) -> bool:
        """
        Give the response the file's validators; if the client's copy is
        current, answer 304 and return C{True}.
        """
        request.setHeader(b"etag", self.etag)
        request.setHeader(b"last-modified", self._lastModifiedDate)
        if not isNotModified(request, self.etag, self.lastModified):
            return False
        request.setResponseCode(NOT_MODIFIED)
        # Finished here, because for an empty body twisted.web would send
        # Content-Length: 0, and a 304 may give only the length its 200
        # would have (RFC 9110, 8.6).  Nor is there a Content-Type: the
        # client has the representation (15.4.5).
        request.write(b"")
        request.finish()
        return True


def renderPage(maxLine: int, loaded: float) -> Resource:
    """
    The page and its files, under one resource; the page is told the longest
    line the room takes, so that it can refuse a longer one before sending.

    @param loaded: when the files are loaded, in seconds since the epoch:
        their C{Last-Modified}.  Not the files' own times, because the page
        is made from its file and the options, which may change whenever
        netdemos restarts.
    """
    static = files("netdemos") / "static"
    root = Resource()
    # HTTP dates are in whole seconds; rounded up, Last-Modified would be
    # later than the Date of a response sent in the same second.
    lastModified = int(loaded)
    for path, (name, contentType) in _STATIC.items():
        data = (static / name).read_bytes()
        if name == "index.html":
            data = data.replace(b"{{maxLine}}", b"%d" % (maxLine,))
        root.putChild(path, StaticFile(data, contentType, lastModified))
    return root


def isHandshake(request: Request) -> bool:
    """
    Whether C{request} is a WebSocket opening handshake wsproto accepts.

    Twisted's L{WebSocketResource} answers any other with 400 too, but logs
    an error for each, so that one client sending bad handshakes on a
    kept-alive connection fills the log; this checks first, with the same
    wsproto, and netdemos counts the refusal instead.
    """
    headers = [
        (name, value)
        for name, values in request.requestHeaders.getAllRawHeaders()
        for value in values
    ]
    try:
        H11Handshake(ConnectionType.SERVER).initiate_upgrade_connection(
            headers, request.path
        )
    except RemoteProtocolError:
        return False
    return True


def refuse(request: Request, code: int, reason: str, why: bytes) -> bytes:
    """
    Answer C{request} with C{code} and C{why}, counting it in its site's
    refusals (C{netdemos_http_requests_refused_total}) as C{reason}.
    """
    site = request.site
    if isinstance(site, GuardedSite):
        site.refused[reason] += 1
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    return b"%d %s: %s\n" % (code, request.code_message, why)


class WebSite(GuardedSite):
    """
    The web factory: a L{GuardedSite} serving the page, C{/chat}, C{/echo}
    and the mirror, and counting its connections, HTTP and WebSocket alike.
    Its HTTP side is guarded as the counter's is: a WebSocket handshake is a
    C{GET} without a body.

    @ivar connections: the live connections, whether still HTTP or upgraded.
    @ivar delays: C{/delay}, which the server answers at once when it stops.
    """

    serviceName = "web"
    refusalReasons = WEB_REFUSALS
    # Channels that record each request's header lines, for /whoami.
    protocol = MirrorChannel
    requestFactory = MirrorRequest

    def __init__(
        self,
        chat: MemberSettings,
        clock: IReactorTime,
        maxConnections: int = DEFAULT_MAX_CONNECTIONS,
        maxMessage: int = DEFAULT_MAX_MESSAGE,
        pingInterval: float = DEFAULT_PING_INTERVAL,
        origins: frozenset[str] = frozenset(),
        idleTimeout: float | None = None,
        headerTimeout: float = DEFAULT_HEADER_TIMEOUT,
    ) -> None:
        """
        @param chat: the room, and the settings of its members.
        @param maxMessage: the longest message C{/echo} takes, in bytes.
        @param pingInterval: seconds of quiet before a WebSocket is pinged.
        @param origins: origins other than its own whose pages may open a
            WebSocket, as L{normalizeOrigin} writes them.
        @param idleTimeout: seconds of silence before a WebSocket is closed,
            or L{None} to let idle ones stay.
        @param headerTimeout: seconds a request has, from its first byte, to
            send all its headers.
        """
        self.room = chat.room
        # Made here, not by GuardedSite: the WebSocket endpoints count in it too.
        connections = Connections(maxConnections)
        root = renderPage(chat.maxLine, clock.seconds())
        root.putChild(
            b"chat",
            WebSocketEntry(ChatSocketFactory(chat, connections, pingInterval), origins),
        )
        root.putChild(
            b"echo",
            WebSocketEntry(
                EchoSocketFactory(
                    clock, connections, maxMessage, pingInterval, idleTimeout
                ),
                origins,
            ),
        )
        self.delays = Delay(clock)
        root.putChild(b"whoami", WhoAmI(chat.instance, __version__))
        root.putChild(b"status", Status())
        root.putChild(b"delay", self.delays)
        super().__init__(
            root,
            headerTimeout=headerTimeout,
            instance=chat.instance,
            connections=connections,
            timeout=DEFAULT_IDLE_TIMEOUT,
            reactor=clock,
        )

    def getResourceFor(self, request: IRequest) -> Resource:
        for name, value in SECURITY_HEADERS.items():
            request.setHeader(name, value)
        resource: Resource = super().getResourceFor(request)
        return resource

    def log(self, request: HTTPRequest) -> None:
        # A page load is a handful of requests; the access log is the HTTP
        # counter's (--access-log).
        pass

    def close(self) -> Deferred[None]:
        """
        Tell the room's members the server is going away, answer the delayed
        requests now, and close every connection, WebSocket or HTTP; fire
        once all are gone.
        """
        self.room.close()
        self.delays.cutShort()
        return self.connections.closeAll()
