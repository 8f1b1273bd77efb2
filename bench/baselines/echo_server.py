"""
The echo server from twistedmatrix.com, as a beginner would run it.

Faithful to the homepage except that the port comes from argv and it binds
127.0.0.1 (type hints added for mypy; they change nothing at run time).
"""

import sys

from twisted.internet import endpoints, protocol, reactor


class Echo(protocol.Protocol):
    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[union-attr]


class EchoFactory(protocol.Factory):
    def buildProtocol(self, addr: object) -> Echo:
        return Echo()


port = sys.argv[1]
endpoints.serverFromString(reactor, f"tcp:{port}:interface=127.0.0.1").listen(
    EchoFactory()
)
reactor.run()
