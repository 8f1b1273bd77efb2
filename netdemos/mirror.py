"""
The HTTP mirror of the C{--web} site, a target for testing clients, proxies
and balancers:

  - C{GET /whoami}: what the server saw of the request and its connection,
    as plain text (one C{Key: value} a line) or, asked for, as JSON;
  - C{GET /status/CODE}: an answer with that status, 200 to 599;
  - C{GET /delay/SECONDS}: an answer after that long, at most
    L{MAX_DELAY} seconds, given at once (503) when the server stops.

twisted.web's L{Headers} keeps a request's headers by name, which loses
their order across names; L{MirrorChannel} records each header line as it
was received, for C{/whoami}, in no more memory than the channel's header
limits already allow.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IReactorTime,
    ISSLTransport,
)
from twisted.python.failure import Failure
from twisted.web.http import NO_BODY_CODES, RESPONSES, SERVICE_UNAVAILABLE
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from netdemos import proxy
from netdemos.httpguard import GuardedChannel, ServedRequest

# The longest /delay, in seconds: long enough to test a client's timeout,
# short enough that a crowd of them does not hold the server for long.
MAX_DELAY = 30.0

# A delay as /delay takes it: a decimal number of seconds, not too long to
# read (nor a float's exponent, inf or nan).
_DELAY = re.compile(rb"[0-9]{1,2}(\.[0-9]{1,6})?")

# Bytes a text or JSON value shows as they are: printable ASCII, less the
# backslash, which introduces an escape.
_PLAIN = frozenset(range(0x20, 0x7F)) - {ord("\\")}


def escape(data: bytes) -> str:
    """
    C{data} as printable ASCII: each byte outside it (control characters,
    DEL, anything above 0x7F) as C{\\xNN}, and a backslash as C{\\\\}.

    So a header holding an escape sequence cannot drive a terminal that
    shows C{/whoami}, and a JSON string carries any header's bytes, which
    the escapes give back exactly.
    """
    return "".join(
        chr(byte) if byte in _PLAIN else ("\\\\" if byte == 0x5C else f"\\x{byte:02x}")
        for byte in data
    )


def addressText(address: IAddress) -> str:
    """
    An address as a client would write it: C{HOST:PORT}, C{[HOST]:PORT}
    for IPv6, or a UNIX socket's path.
    """
    if isinstance(address, IPv6Address):
        return f"[{address.host}]:{address.port}"
    if isinstance(address, IPv4Address):
        return f"{address.host}:{address.port}"
    if isinstance(address, UNIXAddress):
        name = address.name
        if isinstance(name, bytes):
            return escape(name)
        return name or "(unnamed)"
    return str(address)


class MirrorRequest(ServedRequest):
    """
    A request that keeps its header lines as they came, and its place on
    its connection.

    @ivar receivedHeaders: each header's name and value, in the order and
        the case received, duplicates kept.
    @ivar number: 1 for the connection's first request, 2 for its second...
    """

    channel: MirrorChannel

    def __init__(self, channel: MirrorChannel, *args: Any, **kwargs: Any) -> None:
        super().__init__(channel, *args, **kwargs)
        self.receivedHeaders: list[tuple[bytes, bytes]] = []
        channel.requestsBegun += 1
        self.number = channel.requestsBegun


class MirrorChannel(GuardedChannel):
    """
    A L{GuardedChannel} that records, in each L{MirrorRequest}, the header
    lines as they came.

    L{HTTPChannel.headerReceived} sees each header line (a folded one
    unfolded) only once its size has counted toward C{totalHeadersSize}, and
    refuses it past C{maxHeaders}: the record costs no more than the headers
    themselves, within the same limits.

    @ivar requestsBegun: the requests begun on this connection so far.
    """

    requestsBegun = 0
    requests: list[MirrorRequest]

    def headerReceived(self, line: bytes) -> bool:
        if not super().headerReceived(line):
            return False
        name, value = line.split(b":", 1)
        self.requests[-1].receivedHeaders.append((name, value.strip(b" \t")))
        return True


def tlsFields(transport: Any) -> Iterator[tuple[str, str | None]]:
    """
    What was negotiated on C{transport}, if it is TLS: the version, the
    cipher, the name the client asked for (SNI) and the application
    protocol (ALPN), as pyOpenSSL's C{Connection} tells them.
    """
    if not ISSLTransport.providedBy(transport):
        return
    # Twisted's TLS transport's handle is pyOpenSSL's Connection.
    connection: Any = transport.getHandle()  # type: ignore[attr-defined]
    servername = connection.get_servername()
    alpn = connection.get_alpn_proto_negotiated()
    yield "tls-version", connection.get_protocol_version_name()
    yield "tls-cipher", connection.get_cipher_name()
    yield "tls-sni", None if servername is None else escape(servername)
    yield "tls-alpn", escape(alpn) if alpn else None


def requestLine(request: MirrorRequest) -> bytes:
    """
    The request line as the client sent it: twisted.web took it apart at
    its two single spaces, and accepts no other whitespace in it.
    """
    return b" ".join((request.method, request.uri, request.clientproto))


def describe(request: MirrorRequest, instance: str, version: str) -> dict[str, Any]:
    """
    What the server saw of C{request} and its connection, as plain data: the
    fields of C{/whoami}, in the order it shows them.  Every text from the
    client is L{escape}d.

    Behind a C{haproxy:} endpoint, C{peer} and C{local} are the balancer's
    connection, and C{proxy-peer} the client the PROXY header names.
    """
    # An ITransport, which names neither getPeer's nor getHost's results.
    transport: Any = request.channel.transport
    balancer = proxy.balancerConnection(transport)
    tcp = transport if balancer is None else balancer
    fields: dict[str, Any] = {
        "instance": instance,
        "version": version,
        "request": escape(requestLine(request)),
        "request-number": request.number,
        "peer": addressText(tcp.getPeer()),
    }
    if balancer is not None:
        fields["proxy-peer"] = addressText(transport.getPeer())
    fields["local"] = addressText(tcp.getHost())
    fields.update(tlsFields(transport))
    fields["headers"] = [
        [escape(name), escape(value)] for name, value in request.receivedHeaders
    ]
    return fields


def asText(fields: dict[str, Any]) -> bytes:
    """
    C{fields} as lines of C{Key: value}, the keys capitalized as HTTP's
    are; each header is a C{Header: NAME: VALUE} line, and a field that has
    no value (no SNI sent, say) reads C{-}.
    """
    lines = []
    for key, value in fields.items():
        label = "-".join(part.capitalize() for part in key.split("-"))
        if key == "headers":
            lines += [f"Header: {name}: {each}" for name, each in value]
        else:
            lines.append(f"{label}: {'-' if value is None else value}")
    return ("\n".join(lines) + "\n").encode("ascii")


def wantsJSON(request: MirrorRequest) -> bool:
    """
    Whether the client asked for JSON: C{?format=json}, or C{application/json}
    among the types it accepts.
    """
    if request.args and request.args.get(b"format") == [b"json"]:
        return True
    for value in request.requestHeaders.getRawHeaders(b"accept", []):
        for mediaRange in value.split(b","):
            if mediaRange.split(b";", 1)[0].strip().lower() == b"application/json":
                return True
    return False


def answer(request: Any, code: int, body: bytes, contentType: bytes) -> None:
    """
    Answer C{request} now: C{code}, with C{body} unless C{request} is a
    C{HEAD} or C{code} is one that has none, and never stored by a cache.
    """
    request.setResponseCode(code)
    request.setHeader(b"cache-control", b"no-store")
    if code not in NO_BODY_CODES:
        request.setHeader(b"content-type", contentType)
        request.setHeader(b"content-length", b"%d" % (len(body),))
    # A HEAD's write sends the headers only: twisted.web drops the body.
    request.write(body)
    request.finish()


def answerText(request: Any, code: int, text: bytes) -> None:
    answer(request, code, text, b"text/plain; charset=utf-8")


class MirrorResource(Resource):
    """
    A leaf of the mirror, answering C{GET} and C{HEAD} alike (twisted.web
    drops the body of a C{HEAD}), itself, without twisted.web's warning for
    a C{HEAD} answered with a body.
    """

    isLeaf = True

    def render_GET(self, request: Any) -> int:
        self.answer(request)
        return NOT_DONE_YET

    render_HEAD = render_GET

    def answer(self, request: Any) -> None:
        raise NotImplementedError()


class WhoAmI(MirrorResource):
    """
    C{/whoami}: the request and its connection, as the server saw them
    (L{describe}).
    """

    def __init__(self, instance: str, version: str) -> None:
        super().__init__()
        self.instance = instance
        self.version = version

    def answer(self, request: Any) -> None:
        fields = describe(request, self.instance, self.version)
        # Caches must keep the two forms apart, should they store either.
        request.setHeader(b"vary", b"Accept")
        if wantsJSON(request):
            body = json.dumps(fields).encode("ascii") + b"\n"
            answer(request, 200, body, b"application/json")
        else:
            answerText(request, 200, asText(fields))


def statusCode(path: list[bytes]) -> int | None:
    """
    The status C{/status/CODE} asks for, or L{None} if it is not one from
    200 to 599.
    """
    if len(path) != 1 or not re.fullmatch(rb"[0-9]{3}", path[0]):
        return None
    code = int(path[0])
    return code if 200 <= code <= 599 else None


class Status(MirrorResource):
    """
    C{/status/CODE}: an answer with status CODE, from 200 to 599, and a
    body that names it (but for 204 and 304, which have none).
    """

    def answer(self, request: Any) -> None:
        code = statusCode(request.postpath)
        if code is None:
            answerText(
                request,
                400,
                b"400 Bad Request: ask for /status/CODE, CODE from 200 to 599\n",
            )
            return
        reason = RESPONSES.get(code, b"Unknown Status")
        answerText(request, code, b"%d %s\n" % (code, reason))


def delaySeconds(path: list[bytes]) -> float | None:
    """
    The delay C{/delay/SECONDS} asks for, or L{None} if it is not a decimal
    number of seconds from 0 to L{MAX_DELAY}.
    """
    if len(path) != 1 or not _DELAY.fullmatch(path[0]):
        return None
    seconds = float(path[0])
    return seconds if seconds <= MAX_DELAY else None


class Delay(MirrorResource):
    """
    C{/delay/SECONDS}: an answer after SECONDS, on the clock given.

    A client that goes away first takes its timer with it.  When the server
    stops, L{cutShort} answers every request still waiting, 503 at once, so
    that a graceful stop does not wait out their delays.
    """

    def __init__(self, clock: IReactorTime) -> None:
        super().__init__()
        self.clock = clock
        self._waiting: dict[Any, IDelayedCall] = {}

    def __len__(self) -> int:
        return len(self._waiting)

    def answer(self, request: Any) -> None:
        seconds = delaySeconds(request.postpath)
        if seconds is None:
            answerText(
                request,
                400,
                b"400 Bad Request: ask for /delay/SECONDS, at most %d seconds\n"
                % (MAX_DELAY,),
            )
            return
        self._waiting[request] = self.clock.callLater(
            seconds, self._answerLate, request, request.postpath[0]
        )
        request.notifyFinish().addErrback(self._clientGone, request)

    def _answerLate(self, request: Any, seconds: bytes) -> None:
        del self._waiting[request]
        answerText(request, 200, b"200 OK: answered after %s seconds\n" % (seconds,))

    def _clientGone(self, reason: Failure, request: Any) -> None:
        call = self._waiting.pop(request, None)
        if call is not None:
            call.cancel()

    def cutShort(self) -> None:
        """
        Answer every request still waiting now: 503, and the connection
        closes.
        """
        waiting, self._waiting = self._waiting, {}
        for request, call in waiting.items():
            call.cancel()
            request.setHeader(b"connection", b"close")
            request.setHeader(b"retry-after", b"1")
            answerText(
                request,
                SERVICE_UNAVAILABLE,
                b"503 Service Unavailable: the server is stopping\n",
            )
