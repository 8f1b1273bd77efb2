"""
What every WebSocket connection netdemos serves has in common, on top of
Twisted's own server (C{twisted.web.websocket}, on wsproto).

A WebSocket starts as an HTTP request: once C{WebSocketResource} has answered
it, the TCP connection belongs to the WebSocket.  L{WebSocketConnection} takes
it over from the HTTP channel (its place in the count of live connections,
and its producer), caps the size of the messages it reassembles, pings a quiet
peer and closes one that does not answer.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import Request
from twisted.web.websocket import WebSocketTransport

from netdemos.connections import Connections

log = Logger()

# Close codes, from RFC 6455 section 7.4.1.
NORMAL_CLOSURE = 1000
GOING_AWAY = 1001
UNSUPPORTED_DATA = 1003
MESSAGE_TOO_BIG = 1009

# Largest message /echo takes: the browser WebSocket echo services people test
# with take about this much, and it bounds what one connection holds.
DEFAULT_MAX_MESSAGE = 1024 * 1024

# A peer quiet this long is pinged, and closed if it is still quiet as long
# again.  Proxies and load balancers cut idle connections after a minute or so
# (nginx's proxy_read_timeout, AWS's idle timeout: 60 s); a ping every 30 s
# keeps them open, and finds peers that vanished without a FIN.
DEFAULT_PING_INTERVAL = 30.0

# How long a peer gets to take our close frame and close its end before the
# connection is aborted; one that is not reading would never do so.
CLOSE_GRACE_SECONDS = 5.0


class WebSocketConnection:
    """
    The server end of one WebSocket connection, for a subclass to give its
    messages a meaning.

    It provides Twisted's C{WebSocketProtocol} as a subclass extends it:
    C{negotiationStarted}, C{negotiationFinished}, C{pongReceived} and
    C{connectionLost} are here, C{textMessageReceived} and
    C{bytesMessageReceived} are the subclass's, which should call L{heard}.

    @ivar transport: the byte stream under the WebSocket (TCP or TLS); what
        the HTTP channel had.
    @ivar websocket: where messages are sent, once negotiation has started,
        until a close frame is sent or answered (C{_closeSent}).
    """

    websocket: WebSocketTransport
    transport: Any

    def __init__(
        self,
        request: Request,
        clock: IReactorTime,
        connections: Connections,
        maxMessage: int,
        pingInterval: float,
    ) -> None:
        self._channel = request.channel
        self.transport = request.channel.transport
        self._clock = clock
        self._connections = connections
        self.maxMessage = maxMessage
        self._pingInterval = pingInterval
        self._lastHeard = clock.seconds()
        self._pingedAt: float | None = None
        self._checkCall: IDelayedCall | None = None
        self._closeCall: IDelayedCall | None = None
        self._closeTimeout: IDelayedCall | None = None
        self._closeSent = False
        self._transportClosing = False

    # WebSocketProtocol

    def negotiationStarted(self, websocket: WebSocketTransport) -> None:
        self.websocket = websocket
        capMessages(websocket, self.maxMessage, self.messageTooBig)
        # Twisted closes the transport itself on the peer's close frame, but
        # leaves our producer registered, and a transport with a producer does
        # not close (over TLS never; over TCP not while it is paused).  So it
        # closes through us.
        websocket.transport = _TransportFor(self)  # type: ignore[attr-defined]

    def negotiationFinished(self) -> None:
        """
        The handshake is answered, and the connection is the WebSocket's now.
        """
        # Twisted leaves the HTTP channel registered as the transport's
        # producer and counted as the live connection; it will hear nothing
        # more, not even connectionLost.
        self._connections.replace(self._channel, self)
        self.transport.unregisterProducer()
        self._checkCall = self._clock.callLater(self._pingInterval, self._checkPeer)

    def pongReceived(self, payload: bytes) -> None:
        self.heard()

    def connectionLost(self, reason: Failure) -> None:
        self._connections.remove(self)
        for call in (self._checkCall, self._closeCall, self._closeTimeout):
            if call is not None and call.active():
                call.cancel()

    # Liveness

    def heard(self) -> None:
        """
        The peer has said something, so it is there: no ping for a while.
        """
        self._lastHeard = self._clock.seconds()
        self._pingedAt = None

    def _checkPeer(self) -> None:
        if self._closeSent:
            # Closing already: the close timeout sees to a peer that hangs.
            return
        now = self._clock.seconds()
        if self._pingedAt is not None:
            log.info(
                "websocket: {peer} did not answer a ping in {seconds:g} s; closing",
                peer=self.transport.getPeer(),
                seconds=self._pingInterval,
            )
            self.transport.abortConnection()
            return
        quiet = now - self._lastHeard
        if quiet < self._pingInterval:
            delay = self._pingInterval - quiet
        else:
            self.websocket.ping()
            self._pingedAt = now
            delay = self._pingInterval
        self._checkCall = self._clock.callLater(delay, self._checkPeer)

    # Closing

    def messageTooBig(self) -> None:
        """
        The peer sent a message over L{maxMessage} bytes: close with 1009.
        """
        log.info(
            "websocket: {peer} sent a message over {limit} bytes; closing",
            peer=self.transport.getPeer(),
            limit=self.maxMessage,
        )
        self.closeWith(MESSAGE_TOO_BIG)

    def closeWith(self, code: int) -> None:
        """
        Send a close frame with C{code} at the end of this turn, then close
        the connection once what was sent has been written, or after
        L{CLOSE_GRACE_SECONDS} if the peer does not read it.
        """
        if self._closeSent:
            return
        self._closeSent = True
        # Twisted handles every frame of one read in a loop, and answers a ping
        # that follows our close frame there by raising (wsproto sends nothing
        # more once it has sent one); so the frame waits until that read is
        # handled, which is at most one read's worth of answers later.
        self._closeCall = self._clock.callLater(0, self._sendClose, code)

    def _sendClose(self, code: int) -> None:
        self._closeCall = None
        if not self._transportClosing:
            # The frame, then closeTransport.
            self.websocket.loseConnection(code)

    def closeTransport(self) -> None:
        """
        Close the transport once what was written to it is sent, whoever
        asks: we after our close frame, or Twisted after answering the peer's
        (or after telling it that its frames made no sense).  From then on
        nothing more is sent.
        """
        if self._transportClosing:
            return
        self._closeSent = self._transportClosing = True
        self._closeTimeout = self._clock.callLater(
            CLOSE_GRACE_SECONDS, self.transport.abortConnection
        )
        # A transport with a producer does not close until it unregisters.
        self.transport.unregisterProducer()
        self.transport.loseConnection()

    def loseConnection(self) -> None:
        """
        Close because the server is going away (netdemos is stopping).
        """
        self.closeWith(GOING_AWAY)

    def write(self, data: bytes) -> None:
        """
        Write C{data} to the transport.  Every byte the WebSocket sends comes
        through here, Twisted's own frames (its answers to pings, say) as well
        as a subclass's, for a subclass to count them.
        """
        self.transport.write(data)


def textFrames(payloads: Iterable[bytes]) -> bytes:
    """
    Text messages as a server sends them: one unfragmented, unmasked frame
    each (RFC 6455 section 5.2), for payloads that are valid UTF-8.

    A server's frames are not masked, so the same message is the same bytes
    for every client: what is sent to many can be framed once.
    """
    frames: list[bytes] = []
    for payload in payloads:
        size = len(payload)
        if size < 126:
            header = struct.pack("!BB", 0x81, size)
        elif size < 65536:
            header = struct.pack("!BBH", 0x81, 126, size)
        else:
            header = struct.pack("!BBQ", 0x81, 127, size)
        frames += (header, payload)
    return b"".join(frames)


class CappedBuffer:
    """
    Where Twisted's WebSocket protocol reassembles a message from its frames,
    holding at most C{cap} bytes of it (as UTF-8, for text).

    Past the cap it keeps nothing more of the message and calls C{tooBig}.
    Every piece goes into one C{bytearray}, so that a message sent one byte
    per frame costs no more memory than one sent whole.
    """

    def __init__(self, cap: int, tooBig: Callable[[], None], text: bool) -> None:
        self._cap = cap
        self._tooBig = tooBig
        self._text = text
        self._data = bytearray()
        self._over = False

    def add(self, new: str | bytes | bytearray) -> None:
        if self._over:
            return
        piece = new.encode("utf-8") if isinstance(new, str) else new
        if len(self._data) + len(piece) > self._cap:
            # Once is enough: the connection is closing, and what is left of
            # this message, and any that follow, is discarded.
            self._over = True
            self._data = bytearray()
            self._tooBig()
            return
        self._data += piece

    def done(self) -> str | bytearray:
        """
        The whole message, and start on the next; empty once over the cap.
        """
        data, self._data = self._data, bytearray()
        return data.decode("utf-8") if self._text else data


def capMessages(
    websocket: WebSocketTransport, cap: int, tooBig: Callable[[], None]
) -> None:
    """
    Make C{websocket}, Twisted's WebSocket protocol, hold at most C{cap}
    bytes of a message as it reassembles it, and call C{tooBig} rather than
    hold more.

    Twisted (26.10) reassembles a fragmented message in a buffer with no
    bound, so a peer sending continuation frames forever would take all
    memory; and it has no public way to set one.  Its two buffers are
    attributes of the protocol that C{negotiationStarted} is given, and this
    replaces them with L{CappedBuffer}s.  They are private to Twisted:
    C{tests/test_web.py} drives the installed Twisted's own protocol to check
    that it still works this way, and this raises rather than serve without
    a cap if they are gone.
    """
    for name, text in (("_textBuffer", True), ("_bytesBuffer", False)):
        if not hasattr(websocket, name):
            raise RuntimeError(
                f"cannot cap WebSocket messages: Twisted's protocol has no {name}"
            )
        setattr(websocket, name, CappedBuffer(cap, tooBig, text))


class _TransportFor:
    """
    The transport Twisted's WebSocket protocol writes to: the connection's
    own, except that what is written goes through the L{WebSocketConnection},
    and closing it is the connection's to do.
    """

    def __init__(self, connection: WebSocketConnection) -> None:
        self._connection = connection

    def write(self, data: bytes) -> None:
        self._connection.write(data)

    def loseConnection(self) -> None:
        self._connection.closeTransport()
