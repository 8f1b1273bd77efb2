"""
The "I am request #N" web server from twistedmatrix.com.

Faithful to the homepage: it never calls startLogging, so nothing is printed,
but L{Site} still formats a combined-log line for every request and hands it
to the legacy log, whose events are kept in the log beginner's in-memory
buffer.  That per-request cost is part of what a beginner actually runs.
"""

import sys

from twisted.internet import endpoints, reactor
from twisted.web import resource, server


class Counter(resource.Resource):
    isLeaf = True
    numberRequests = 0

    def render_GET(self, request: server.Request) -> bytes:
        self.numberRequests += 1
        request.setHeader(b"content-type", b"text/plain")
        content = f"I am request #{self.numberRequests}\n"
        return content.encode("ascii")


port = sys.argv[1]
endpoints.serverFromString(reactor, f"tcp:{port}:interface=127.0.0.1").listen(
    server.Site(Counter())
)
reactor.run()
