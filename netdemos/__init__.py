"""
netdemos: echo (over TCP and UDP), an HTTP counter, a chat room and its web
page, served by one twistd plugin.

Each service lives in its own module (L{netdemos.echo}, L{netdemos.udpecho},
L{netdemos.counter}, L{netdemos.chat}, L{netdemos.web});
L{netdemos.options} reads the command line and L{netdemos.tap} wires them to
endpoints for C{twistd}.  C{docs/tour.md} is the map, and
C{docs/private-names.md} lists every private name of Twisted's (or
txredisapi's) that netdemos relies on, each with its test.
"""

__version__ = "1.0.0"
