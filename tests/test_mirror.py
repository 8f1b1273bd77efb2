"""
Tests for L{netdemos.mirror}, the web site's HTTP mirror: C{/whoami},
C{/status/CODE} and C{/delay/SECONDS}, over string transports and a
L{Clock}.
"""

from __future__ import annotations

import json

from support.chat import Room
from support.http import connect, exchange, get
from support.web import webSite
from test_proxy import connectThroughBalancer
from twisted.internet.address import IPv4Address
from twisted.trial.unittest import SynchronousTestCase

from netdemos import __version__
from netdemos.mirror import MAX_DELAY, escape
from netdemos.proxy import HeaderFirstFactory
from netdemos.web import CONTENT_SECURITY_POLICY


def split(response: bytes) -> tuple[bytes, bytes]:
    head, body = response.split(b"\r\n\r\n", 1)
    return head, body


def textFields(body: bytes) -> list[tuple[str, str]]:
    """
    The C{Key: value} lines of a text C{/whoami}.
    """
    return [
        (key, value)
        for key, value in (line.split(": ", 1) for line in body.decode().splitlines())
    ]


def unescape(text: str) -> bytes:
    """
    Undo L{escape}: the bytes the client sent.
    """
    return text.encode("ascii").decode("unicode_escape").encode("latin-1")


def request(path: bytes, *headers: bytes) -> bytes:
    return b"GET %s HTTP/1.1\r\nHost: x\r\n%s\r\n" % (
        path,
        b"".join(header + b"\r\n" for header in headers),
    )


class WhoAmITests(SynchronousTestCase):
    def setUp(self) -> None:
        self.room = Room(instance="web-7")
        self.site = webSite(self.room)

    def test_headersInTheOrderReceivedDuplicatesKept(self) -> None:
        """
        The headers come back in the order the client sent them, in its
        case, a repeated name as often as it came: twisted.web's Headers
        would group C{x-b} with C{X-B} and lose where each stood.
        """
        response = exchange(
            self.site,
            request(b"/whoami", b"X-B: 1", b"Accept: */*", b"x-b: 2", b"X-B: 1"),
        )
        head, body = split(response)
        self.assertTrue(head.startswith(b"HTTP/1.1 200 OK"), head)
        self.assertIn(b"Content-Type: text/plain; charset=utf-8", head)
        fields = textFields(body)
        self.assertEqual(
            [value for key, value in fields if key == "Header"],
            ["Host: x", "X-B: 1", "Accept: */*", "x-b: 2", "X-B: 1"],
        )
        self.assertEqual(
            dict(fields[:5]),
            {
                "Instance": "web-7",
                "Version": __version__,
                "Request": "GET /whoami HTTP/1.1",
                "Request-Number": "1",
                "Peer": "192.168.1.1:54321",
            },
        )
        self.assertIn(("Local", "10.0.0.1:12345"), fields)

    def test_textEscapesControlCharacters(self) -> None:
        """
        A header holding a terminal's escape sequence, or any byte outside
        printable ASCII, shows as C{\\xNN}: C{curl} of C{/whoami} cannot
        drive the terminal that shows it.
        """
        _, body = split(
            exchange(self.site, request(b"/whoami", b"X-Evil: \x1b[2J\x07\xc3\xa9\\"))
        )
        self.assertIn(b"Header: X-Evil: \\x1b[2J\\x07\\xc3\\xa9\\\\\n", body)
        self.assertTrue(all(0x20 <= byte < 0x7F for byte in body.replace(b"\n", b"")))

    def test_jsonParsesWhateverTheHeaderBytes(self) -> None:
        """
        With C{?format=json} the answer is JSON that parses whatever bytes
        the headers held, and the escapes give those bytes back.
        """
        odd = b'\x01\x7f\xff\xfe"quoted" \\back\\ \xc3\xa9 \x1b]0;title\x07'
        head, body = split(
            exchange(
                self.site, request(b"/whoami?format=json", odd.join((b"X-Odd: ", b"")))
            )
        )
        self.assertIn(b"Content-Type: application/json", head)
        fields = json.loads(body)
        self.assertEqual(fields["instance"], "web-7")
        self.assertEqual(fields["request"], "GET /whoami?format=json HTTP/1.1")
        self.assertEqual(
            [(unescape(name), unescape(value)) for name, value in fields["headers"]],
            [(b"Host", b"x"), (b"X-Odd", odd)],
        )

    def test_jsonWhenAccepted(self) -> None:
        """
        C{Accept: application/json}, among other types or with parameters,
        asks for JSON too; C{Vary: Accept} says the answer depends on it.
        """
        for accept in (b"application/json", b"text/html, Application/JSON;q=0.9"):
            head, body = split(
                exchange(self.site, request(b"/whoami", b"Accept: " + accept))
            )
            self.assertIn(b"Vary: Accept", head)
            self.assertEqual(json.loads(body)["request-number"], 1)
        _, body = split(exchange(self.site, request(b"/whoami", b"Accept: text/*")))
        self.assertTrue(body.startswith(b"Instance: web-7\n"), body)

    def test_requestNumberCountsOnTheConnection(self) -> None:
        """
        Each request on a kept-alive connection has its number on it; a new
        connection starts again from 1.
        """
        channel, transport = connect(self.site)
        for _ in range(3):
            channel.dataReceived(request(b"/whoami?format=json"))
        numbers = [
            json.loads(answer.split(b"\r\n\r\n", 1)[1].split(b"\n", 1)[0])[
                "request-number"
            ]
            for answer in transport.value().split(b"HTTP/1.1 200 OK")[1:]
        ]
        self.assertEqual(numbers, [1, 2, 3])
        _, body = split(get(self.site, b"/whoami?format=json"))
        self.assertEqual(json.loads(body)["request-number"], 1)

    def test_carriesTheSitesHeadersAndNoStore(self) -> None:
        """
        The mirror's answers are the site's, with its CSP and
        C{X-Served-By}, and no cache keeps them.
        """
        for path in (b"/whoami", b"/status/418", b"/delay/x"):
            head, _ = split(get(self.site, path))
            self.assertIn(
                b"Content-Security-Policy: " + CONTENT_SECURITY_POLICY.encode(), head
            )
            self.assertIn(b"X-Content-Type-Options: nosniff", head)
            self.assertIn(b"X-Served-By: web-7", head)
            self.assertIn(b"Cache-Control: no-store", head)
            self.assertNotIn(b"no-cache", head)

    def test_headIsGetWithoutBody(self) -> None:
        """
        A C{HEAD} has the C{GET}'s headers, its length included, and no
        body.
        """
        response = exchange(self.site, b"HEAD /whoami HTTP/1.1\r\nHost: x\r\n\r\n")
        head, body = split(response)
        self.assertEqual(body, b"")
        self.assertIn(b"Content-Length: ", head)

    def test_behindAProxyBothAddresses(self) -> None:
        """
        On a C{haproxy:} endpoint the client the PROXY header names is
        C{Proxy-Peer}, beside the balancer's connection as TCP saw it.
        """
        transport = connectThroughBalancer(
            HeaderFirstFactory(self.site, self.room.clock)
        )
        transport.protocol.dataReceived(
            b"PROXY TCP4 203.0.113.9 10.1.1.1 40404 8081\r\n"
            + request(b"/whoami", b"Connection: close")
        )
        fields = dict(textFields(split(transport.value())[1]))
        balancer = transport.getPeer()
        assert isinstance(balancer, IPv4Address)
        self.assertEqual(fields["Peer"], f"{balancer.host}:{balancer.port}")
        self.assertEqual(fields["Proxy-Peer"], "203.0.113.9:40404")
        self.assertNotEqual(fields["Peer"], fields["Proxy-Peer"])

    def test_escapeKeepsPrintableAsciiAndEscapesTheRest(self) -> None:
        self.assertEqual(escape(b"a b~"), "a b~")
        self.assertEqual(
            escape(b"\\\x00\x1f\x7f\x80\xff"), "\\\\\\x00\\x1f\\x7f\\x80\\xff"
        )


def status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


class StatusTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.site = webSite(Room())

    def test_answersTheCodeAskedFor(self) -> None:
        """
        C{/status/CODE} answers CODE, 200 to 599, with a body naming it.
        """
        for code, reason in ((200, b"OK"), (404, b"Not Found"), (599, b"Unknown")):
            head, body = split(get(self.site, b"/status/%d" % (code,)))
            self.assertEqual(status(head), code)
            self.assertTrue(body.startswith(b"%d %s" % (code, reason)), body)

    def test_codesWithoutBodyHaveNone(self) -> None:
        """
        204 and 304 have no body, nor a length that says there is one.
        """
        for code in (204, 304):
            channel, transport = connect(self.site)
            channel.dataReceived(request(b"/status/%d" % (code,)))
            channel.dataReceived(request(b"/status/200"))
            first, second = transport.value().split(b"\r\n\r\n", 1)
            self.assertEqual(status(first), code)
            self.assertNotIn(b"\r\nContent-Length:", first)
            self.assertNotIn(b"\r\nContent-Type:", first)
            self.assertEqual(status(second), 200)

    def test_anythingElseIs400(self) -> None:
        """
        A code outside 200 to 599, or not a code, is a bad request.
        """
        for path in (
            b"/status/199",
            b"/status/600",
            b"/status/20",
            b"/status/abc",
            b"/status/2000",
            b"/status",
            b"/status/",
            b"/status/200/1",
        ):
            self.assertEqual(status(get(self.site, path)), 400, path)


class DelayTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.room = Room()
        self.clock = self.room.clock
        self.site = webSite(self.room)

    def test_answersAfterTheDelayOnTheClockGiven(self) -> None:
        """
        C{/delay/1.5} answers 1.5 seconds later, by the site's clock.
        """
        channel, transport = connect(self.site)
        channel.dataReceived(request(b"/delay/1.5"))
        self.clock.advance(1.4)
        self.assertEqual(transport.value(), b"")
        self.clock.advance(0.1)
        head, body = split(transport.value())
        self.assertEqual(status(head), 200)
        self.assertIn(b"Cache-Control: no-store", head)
        self.assertEqual(body, b"200 OK: answered after 1.5 seconds\n")

    def test_boundsAre0To30Seconds(self) -> None:
        """
        At most L{MAX_DELAY} seconds, in decimal; more, or anything else,
        is 400 at once.
        """
        self.assertEqual(MAX_DELAY, 30)
        for path in (b"/delay/0", b"/delay/30", b"/delay/30.000"):
            channel, transport = connect(self.site)
            channel.dataReceived(request(path))
            self.clock.advance(30)
            self.assertEqual(status(transport.value()), 200, path)
        for path in (
            b"/delay/30.001",
            b"/delay/31",
            b"/delay/-1",
            b"/delay/1e1",
            b"/delay/nan",
            b"/delay/inf",
            b"/delay/",
            b"/delay",
            b"/delay/1/2",
            b"/delay/" + b"1" * 400,
        ):
            self.assertEqual(status(get(self.site, path)), 400, path)
        self.assertEqual(len(self.site.delays), 0)

    def test_clientGoneCancelsTheTimer(self) -> None:
        """
        A client that leaves before its answer takes its timer with it.
        """
        channel, transport = connect(self.site)
        channel.dataReceived(request(b"/delay/30"))
        self.assertEqual(len(self.site.delays), 1)
        before = len(self.clock.getDelayedCalls())
        channel.connectionLost(Exception("gone"))  # type: ignore[arg-type]
        self.assertEqual(len(self.site.delays), 0)
        self.assertEqual(len(self.clock.getDelayedCalls()), before - 1)

    def test_stoppingAnswersAtOnce503(self) -> None:
        """
        When the server stops, a request waiting out its delay is answered
        503 at once, and its connection closed: a graceful stop does not
        wait out 30 seconds for it.
        """
        channel, transport = connect(self.site)
        channel.dataReceived(request(b"/delay/30"))
        closed = self.site.close()
        head, body = split(transport.value())
        self.assertEqual(status(head), 503)
        self.assertIn(b"Connection: close", head)
        self.assertEqual(body, b"503 Service Unavailable: the server is stopping\n")
        self.assertTrue(transport.disconnecting)
        channel.connectionLost(Exception("closed"))  # type: ignore[arg-type]
        self.successResultOf(closed)
        self.assertEqual(len(self.site.delays), 0)
