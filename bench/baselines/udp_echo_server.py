"""
The plainest Twisted UDP echo: a DatagramProtocol that writes each datagram
back, as a beginner would write it, with no limits.  The port comes from argv
and it binds 127.0.0.1.
"""

import sys

from twisted.internet import protocol, reactor


class Echo(protocol.DatagramProtocol):
    def datagramReceived(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.write(data, addr)  # type: ignore[union-attr]


reactor.listenUDP(int(sys.argv[1]), Echo(), interface="127.0.0.1")  # type: ignore[attr-defined]
reactor.run()
