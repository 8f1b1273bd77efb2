"""
Fast reference servers, to show the load generator is not the bottleneck.

Each does the least its protocol allows with plain asyncio: the echo peer
writes back what it reads, the HTTP peer answers every request head with a
canned response, the chat peer relays lines to everyone, unchanged, in one
write per member per turn of the event loop.  If the generator drives one of
these faster than it drives netdemos, the figure for netdemos measures
netdemos and not the generator ("generator ceiling").

Run as C{python -m bench.peers echo|http|chat PORT}.
"""

from __future__ import annotations

import asyncio
import sys

_RESPONSE = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 17\r\n\r\n"
    b"I am request #42\n"
)


class EchoPeer(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


class HttpPeer(asyncio.Protocol):
    """
    Answer each request head (ended by a blank line) with the same response.

    Keeps only the last three bytes between reads, so a head split across
    reads is still counted once; bodies are not expected.
    """

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.tail = b""

    def data_received(self, data: bytes) -> None:
        data = self.tail + data
        heads = data.count(b"\r\n\r\n")
        self.tail = data[-3:]
        if heads:
            self.transport.write(_RESPONSE * heads)


class Relay:
    """
    The chat peer's room: lines read during one turn of the event loop go to
    every member in one write at the end of the turn (as netdemos does).
    """

    def __init__(self) -> None:
        self.members: set[ChatPeer] = set()
        self.pending: list[bytes] = []

    def say(self, lines: bytes) -> None:
        if not self.pending:
            asyncio.get_running_loop().call_soon(self.flush)
        self.pending.append(lines)

    def flush(self) -> None:
        data, self.pending = b"".join(self.pending), []
        for member in self.members:
            member.transport.write(data)


class ChatPeer(asyncio.Protocol):
    """
    Relay every complete line to every connection, the sender included.
    """

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.partial = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.relay.members.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.relay.members.discard(self)

    def data_received(self, data: bytes) -> None:
        data = self.partial + data
        end = data.rfind(b"\n") + 1
        self.partial = data[end:]
        if end:
            self.relay.say(data[:end])


class UDPEchoPeer(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(data, addr)  # type: ignore[attr-defined]


async def serve(kind: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    if kind == "echo-udp":
        await loop.create_datagram_endpoint(UDPEchoPeer, ("127.0.0.1", port))
        await asyncio.Event().wait()
    relay = Relay()
    factories = {
        "echo": EchoPeer,
        "http": HttpPeer,
        "chat": lambda: ChatPeer(relay),
    }
    server = await loop.create_server(factories[kind], "127.0.0.1", port, backlog=4096)
    await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1], int(sys.argv[2])))
