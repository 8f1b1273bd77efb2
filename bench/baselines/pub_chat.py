"""
The "pub" chat server from twistedmatrix.com.

Faithful to the homepage, with one fix the brief asks for: the prefix names
the sender by its peer address (the homepage uses C{getHost()}, which is the
server's own address).  As there, the prefix is formatted and encoded again
for every recipient.
"""

import sys

from twisted.internet import endpoints, protocol, reactor
from twisted.protocols import basic


class PubProtocol(basic.LineReceiver):
    def __init__(self, factory: "PubFactory") -> None:
        self.factory = factory

    def connectionMade(self) -> None:
        self.factory.clients.add(self)

    def connectionLost(self, reason: object = None) -> None:
        self.factory.clients.remove(self)

    def lineReceived(self, line: bytes) -> None:
        for c in self.factory.clients:
            # The homepage's own .format(); mypy cannot know transport is set.
            peer = self.transport.getPeer()  # type: ignore[union-attr]
            source = "<{}> ".format(peer).encode("ascii")  # noqa: UP032
            c.sendLine(source + line)


class PubFactory(protocol.Factory):
    def __init__(self) -> None:
        self.clients: set[PubProtocol] = set()

    def buildProtocol(self, addr: object) -> PubProtocol:
        return PubProtocol(self)


port = sys.argv[1]
endpoints.serverFromString(reactor, f"tcp:{port}:interface=127.0.0.1").listen(
    PubFactory()
)
reactor.run()
