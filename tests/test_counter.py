"""
Unit tests for L{netdemos.counter}, speaking HTTP over a L{StringTransport}.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from http_support import connect, exchange
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from netdemos.counter import CounterSite, RequestCounter


def requestFor(path: bytes = b"/", method: bytes = b"GET") -> bytes:
    return method + b" " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def makeSite(**kwargs: object) -> CounterSite:
    return CounterSite(reactor=Clock(), **kwargs)  # type: ignore[arg-type]


class CounterTests(SynchronousTestCase):
    def test_getCountsFromOneOnAnyPath(self) -> None:
        """
        Each GET, whatever its path, takes the next number, starting at 1.
        """
        site = makeSite()
        first = exchange(site, requestFor(b"/"))
        second = exchange(site, requestFor(b"/some/where?x=1"))
        self.assertTrue(first.startswith(b"HTTP/1.1 200 OK\r\n"))
        self.assertTrue(first.endswith(b"\r\n\r\nI am request #1\n"))
        self.assertTrue(second.endswith(b"\r\n\r\nI am request #2\n"))
        self.assertEqual(site.requestCounter.last, 2)

    def test_headersAreTextAndUncached(self) -> None:
        """
        The body is plain UTF-8 text and must not be cached: a cached answer
        would hide the count.
        """
        response = exchange(makeSite(), requestFor())
        self.assertIn(b"\r\nContent-Type: text/plain; charset=utf-8\r\n", response)
        self.assertIn(b"\r\nCache-Control: no-store\r\n", response)
        self.assertIn(b"\r\nContent-Length: 16\r\n", response)

    def test_headSendsHeadersOnlyAndTakesNoNumber(self) -> None:
        """
        HEAD gets GET's headers with no body, and does not move the count.
        """
        site = makeSite()
        response = exchange(site, requestFor(method=b"HEAD"))
        self.assertTrue(response.startswith(b"HTTP/1.1 200 OK\r\n"))
        self.assertIn(b"\r\nContent-Length: 16\r\n", response)
        self.assertTrue(response.endswith(b"\r\n\r\n"))
        self.assertTrue(exchange(site, requestFor()).endswith(b"I am request #1\n"))

    def test_otherMethodsAreNotAllowed(self) -> None:
        """
        POST, PUT, DELETE... get 405 with the methods that are allowed.
        """
        site = makeSite()
        for method in (b"POST", b"PUT", b"DELETE", b"OPTIONS", b"BREW"):
            response = exchange(site, requestFor(method=method))
            self.assertTrue(response.startswith(b"HTTP/1.1 405 "), response)
            self.assertIn(b"\r\nAllow: GET, HEAD\r\n", response)
        self.assertEqual(site.requestCounter.last, 0)

    def test_malformedRequestGets400AndServerGoesOn(self) -> None:
        """
        Garbage gets 400 Bad Request, and the next client is served as usual.
        """
        site = makeSite()
        response = exchange(site, b"THIS IS NOT HTTP\r\n\r\n")
        self.assertTrue(response.startswith(b"HTTP/1.1 400 "), response)
        self.assertTrue(exchange(site, requestFor()).endswith(b"I am request #1\n"))

    def test_counterMayStartElsewhere(self) -> None:
        """
        The site uses the counter it is given, so a count can be carried over.
        """
        site = makeSite(counter=RequestCounter(start=41))
        self.assertTrue(exchange(site, requestFor()).endswith(b"I am request #42\n"))

    def test_closedConnectionsAreNoLongerCounted(self) -> None:
        """
        A connection counts while it is open, and no longer once it has
        closed, whether the server closed it after answering or the client
        went away; a stop then has nothing left to wait for.

        A closed connection still counted would make the active-connections
        figure only grow, the limit in time turn every client away with 503,
        and every stop wait out the whole --shutdown-timeout.
        """
        site = makeSite()
        answered, answeredT = connect(site)
        idle, _ = connect(site)
        self.assertEqual(len(site.connections), 2)
        answered.dataReceived(requestFor())  # with Connection: close
        self.assertTrue(answeredT.disconnecting)
        answered.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(len(site.connections), 1)
        idle.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(len(site.connections), 0)
        self.successResultOf(site.close())

    def test_closedConnectionFreesItsPlaceUnderTheLimit(self) -> None:
        """
        With room for one connection, once the first has closed the next
        client is served, not turned away with 503.
        """
        site = makeSite(maxConnections=1)
        first, _ = connect(site)
        first.connectionLost(Failure(ConnectionDone()))
        self.assertTrue(exchange(site, requestFor()).startswith(b"HTTP/1.1 200 OK"))

    def test_noAccessLogByDefault(self) -> None:
        """
        Without --access-log nothing is logged per request (it costs throughput).
        """
        site = makeSite()
        formatted: list[object] = []

        def formatter(*args: object) -> str:
            formatted.append(args)
            return ""

        site._logFormatter = formatter
        site.startFactory()
        self.addCleanup(site.stopFactory)
        exchange(site, requestFor())
        self.assertEqual(formatted, [])
        logged = makeSite(accessLog="-")
        logged._logFormatter = site._logFormatter
        logged.startFactory()
        self.addCleanup(logged.stopFactory)
        exchange(logged, requestFor())
        self.assertEqual(len(formatted), 1)

    def test_accessLogToFile(self) -> None:
        """
        --access-log=PATH appends one line per request to PATH.
        """
        directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, directory)
        path = os.path.join(directory, "access.log")
        site = makeSite(accessLog=path)
        site.startFactory()
        exchange(site, requestFor(b"/logged"))
        site.stopFactory()
        with open(path, "rb") as f:
            lines = f.read().splitlines()
        self.assertEqual(len(lines), 1)
        self.assertIn(b'"GET /logged HTTP/1.1" 200 16', lines[0])
