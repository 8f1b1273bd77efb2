"""
The HTTP counter: every C{GET}, on any path, answers C{I am request #N}.

The count lives in the L{CounterSite}, the factory, not in a class attribute of
the resource as in the textbook example, so two sites never share a count by
accident and tests can start from a known number.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger
from twisted.web.http import NOT_ALLOWED, Request
from twisted.web.iweb import IRequest
from twisted.web.resource import Resource
from twisted.web.server import Site

log = Logger()


class RequestCounter:
    """
    Hand out request numbers, 1, 2, 3, ...
    """

    def __init__(self, start: int = 0) -> None:
        self.last = start

    def next(self) -> int:
        """
        Take the next number.
        """
        self.last += 1
        return self.last

    def peek(self) -> int:
        """
        Say which number the next request will get, without taking it.
        """
        return self.last + 1


def _body(number: int) -> bytes:
    return b"I am request #%d\n" % (number,)


class CounterResource(Resource):
    """
    A leaf resource that counts the C{GET} requests it answers.

    C{HEAD} gets the headers a C{GET} would get now but does not take a number:
    it is a safe method, and a health check probing with C{HEAD} should not move
    the count.  Any other method gets C{405 Method Not Allowed} with
    C{Allow: GET, HEAD}; L{Resource.render} does that from C{allowedMethods}.
    """

    isLeaf = True
    allowedMethods = (b"GET", b"HEAD")

    def __init__(self, counter: RequestCounter) -> None:
        super().__init__()
        self._counter = counter

    def render(self, request: IRequest) -> bytes:
        # Resource.render would answer 501, not 405, for methods twisted.web
        # does not know (PUT, DELETE, ...), with an HTML page.
        if request.method not in self.allowedMethods:
            request.setResponseCode(NOT_ALLOWED)
            request.setHeader(b"allow", b", ".join(self.allowedMethods))
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"405 Method Not Allowed: use GET or HEAD\n"
        result: bytes = super().render(request)
        return result

    def render_GET(self, request: IRequest) -> bytes:
        self._setHeaders(request)
        return _body(self._counter.next())

    def render_HEAD(self, request: IRequest) -> bytes:
        # twisted.web sends the Content-Length of this body, and not the body.
        self._setHeaders(request)
        return _body(self._counter.peek())

    @staticmethod
    def _setHeaders(request: IRequest) -> None:
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")


class CounterSite(Site):
    """
    The HTTP factory: a L{Site} that owns the L{RequestCounter}.

    Per-request access logging is off unless asked for: writing a log line per
    request roughly halves throughput, and a load-test target rarely wants it.

    @ivar requestCounter: the shared request counter.
    """

    def __init__(
        self,
        counter: RequestCounter | None = None,
        accessLog: str | None = None,
        **kwargs: Any,
    ) -> None:
        """
        @param accessLog: L{None} for no access log, C{"-"} for the twistd log,
            or the path of a file to append to.
        """
        # Not "counter": Site already uses that name for its session ids.
        self.requestCounter = counter if counter is not None else RequestCounter()
        self._accessLogEnabled = accessLog is not None
        logPath = None if accessLog in (None, "-") else accessLog
        super().__init__(
            CounterResource(self.requestCounter), logPath=logPath, **kwargs
        )

    def log(self, request: Request) -> None:
        if self._accessLogEnabled:
            super().log(request)
