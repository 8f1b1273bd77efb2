"""
The twistd dropin for netdemos: ``twistd -n netdemos``.

This file is only a pointer.  L{ServiceMaker} imports C{netdemos.tap} lazily, so
C{twistd --help} stays fast and importing the dropin never touches the reactor.
"""

from twisted.application.service import ServiceMaker

netdemos = ServiceMaker(
    "netdemos",
    "netdemos.tap",
    "Echo, an HTTP counter, a chat room and its web page.",
    "netdemos",
)
