"""
The twistd dropin for netdemos: ``twistd -n netdemos``.

This file is only a pointer.  L{ServiceMaker} imports C{netdemos.tap} lazily, so
C{twistd --help} stays fast and importing the dropin never touches the reactor.
"""

from twisted.application.service import ServiceMaker

netdemos = ServiceMaker(
    "netdemos",
    "netdemos.tap",
    "Echo (RFC 862), an HTTP request counter and a line-based chat room.",
    "netdemos",
)
