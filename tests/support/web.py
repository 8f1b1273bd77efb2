"""
Helpers for the web unit tests: a WebSocket client, wsproto's, speaking to a
L{WebSite} over a string transport.  No socket, no real clock.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Message,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)

from netdemos.web import WebSite
from support.chat import Room, RoomTransport

HOST = "127.0.0.1:8081"


class WebSocketClient:
    """
    One client of a L{WebSite}: an HTTP connection that asked for a
    WebSocket at C{path}.

    @ivar status: the handshake's answer: 101, or the refusal's status.
    @ivar texts: the text messages received so far.
    @ivar closeCode: the code of the close frame received, if any.
    """

    def __init__(
        self,
        site: WebSite,
        room: Room,
        path: str = "/chat",
        origin: str | None = None,
        port: int = 50000,
    ) -> None:
        self.peer = IPv4Address("TCP", "127.0.0.1", port)
        self.name = f"127.0.0.1:{port}"
        channel = site.buildProtocol(self.peer)
        assert channel is not None
        self.transport = RoomTransport(room.clock, self.peer)
        self.transport.protocol = channel
        channel.makeConnection(self.transport)
        self.channel = channel
        self.wire = WSConnection(ConnectionType.CLIENT)
        headers = [] if origin is None else [(b"Origin", origin.encode())]
        channel.dataReceived(
            self.wire.send(Request(host=HOST, target=path, extra_headers=headers))
        )
        self.status = 0
        self.texts: list[str] = []
        self.binaries: list[bytes] = []
        self.pings: list[bytes] = []
        self.closeCode: int | None = None
        self._partial: list[Message[Any]] = []
        self.receive()

    def receive(self) -> list[Event]:
        """
        Read what the server wrote (ending the current turn first), and
        return the events it makes.
        """
        data = self.transport.value()
        self.transport.clear()
        self.wire.receive_data(data)
        events = list(self.wire.events())
        for event in events:
            if isinstance(event, AcceptConnection):
                self.status = 101
            elif isinstance(event, RejectConnection):
                self.status = event.status_code
            elif isinstance(event, Message):
                self._partial.append(event)
                if event.message_finished:
                    self._collect()
            elif isinstance(event, Ping):
                self.pings.append(bytes(event.payload))
            elif isinstance(event, CloseConnection):
                self.closeCode = event.code
        return events

    def _collect(self) -> None:
        parts, self._partial = self._partial, []
        if isinstance(parts[0], TextMessage):
            self.texts.append("".join(str(part.data) for part in parts))
        else:
            self.binaries.append(b"".join(part.data for part in parts))

    def takeTexts(self) -> list[str]:
        """
        The text messages received since the last call.
        """
        self.receive()
        texts, self.texts = self.texts, []
        return texts

    def sendFrame(self, event: Event) -> None:
        self.channel.dataReceived(self.wire.send(event))

    def sendFrames(self, *events: Event) -> None:
        """
        Send C{events} as the server would read them from a busy peer: all
        at once, in one read.
        """
        self.channel.dataReceived(b"".join(self.wire.send(event) for event in events))

    def sendText(self, text: str, finished: bool = True) -> None:
        self.sendFrame(TextMessage(data=text, message_finished=finished))

    def sendBytes(self, data: bytes, finished: bool = True) -> None:
        self.sendFrame(BytesMessage(data=data, message_finished=finished))

    @property
    def connected(self) -> bool:
        return bool(self.transport.connected)

    @property
    def aborted(self) -> bool:
        return bool(self.transport.disconnected)


def webSite(room: Room, **kwargs: object) -> WebSite:
    """
    A L{WebSite} for the members of C{room}, on its clock.
    """
    return WebSite(room.settings, room.clock, **kwargs)  # type: ignore[arg-type]
