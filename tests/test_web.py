"""
Tests for L{netdemos.web}, L{netdemos.websocket} and L{netdemos.chat.websocket}:
the page, the Origin check, and the WebSocket members of the room and echo,
driven through Twisted's own WebSocket server over string transports.
"""

from __future__ import annotations

from collections.abc import Iterable

from support.chat import Room, received
from support.http import connect, exchange, get
from support.web import HOST, WebSocketClient, webSite
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http import datetimeToString
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong
from wsproto.frame_protocol import FrameProtocol, Opcode
from zope.interface.verify import verifyObject

from netdemos import websocket
from netdemos.chat import member
from netdemos.chat import websocket as chatsocket
from netdemos.chat.room import IMember
from netdemos.chat.websocket import ChatSocket
from netdemos.httpguard import GuardedChannel
from netdemos.web import CONTENT_SECURITY_POLICY, EchoSocket
from netdemos.websocket import (
    CLOSE_GRACE_SECONDS,
    CappedBuffer,
    capMessages,
)


def member_(client: WebSocketClient) -> ChatSocket:
    """
    The server's end of C{client}'s chat WebSocket.
    """
    (socket,) = [
        each
        for each in client.channel.site.connections.live  # type: ignore[attr-defined]
        if isinstance(each, ChatSocket) and each.transport is client.transport
    ]
    return socket


class PageTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.room = Room(maxLine=100)
        self.site = webSite(self.room)

    def test_pageAndFilesCarryTheSecurityHeaders(self) -> None:
        """
        C{/} is the page, told the longest line the room takes; it and its
        script come with a Content-Security-Policy that allows only the
        page's own script, style and connections, and with C{nosniff}.

        The policy is what stops an injected line from running script, even
        if the page's escaping failed.
        """
        page = get(self.site, b"/")
        head, body = page.split(b"\r\n\r\n", 1)
        self.assertTrue(head.startswith(b"HTTP/1.1 200 "), head)
        self.assertIn(b"Content-Type: text/html; charset=utf-8", head)
        self.assertIn(
            b"Content-Security-Policy: " + CONTENT_SECURITY_POLICY.encode(), head
        )
        self.assertIn(b"X-Content-Type-Options: nosniff", head)
        self.assertIn(b'data-max-line="100"', body)
        self.assertIn(b'<script src="chat.js"', body)
        script = get(self.site, b"/chat.js")
        self.assertIn(b"Content-Type: text/javascript; charset=utf-8", script)
        self.assertIn(b"X-Content-Type-Options: nosniff", script)
        self.assertIn(b"textContent", script)
        self.assertNotIn(b"innerHTML", script.split(b"\r\n\r\n", 1)[1])

    def test_policyAllowsOnlyThePagesOwn(self) -> None:
        """
        Nothing but the page's origin may provide script, style or a
        connection; no inline script runs, and the page cannot be framed.
        """
        directives = dict(
            directive.strip().split(" ", 1)
            for directive in CONTENT_SECURITY_POLICY.split(";")
        )
        self.assertEqual(directives["default-src"], "'none'")
        for name in ("script-src", "style-src", "connect-src"):
            self.assertEqual(directives[name], "'self'")
        self.assertEqual(directives["frame-ancestors"], "'none'")

    def test_plainGetOfAWebSocketAddressIs426(self) -> None:
        """
        A link followed to C{/chat} is told to upgrade, without Twisted
        logging an error for it.
        """
        response = get(self.site, b"/chat")
        self.assertTrue(response.startswith(b"HTTP/1.1 426 Upgrade Required"))
        self.assertIn(b"Upgrade: websocket", response)


# When the cache tests' site loads its files: a time with a fraction, which
# an HTTP date has not.
LOADED = 1_780_000_000.75
PAGE_FILES = (b"/", b"/chat.js", b"/chat.css", b"/icon.svg")


def parseResponse(response: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
    """
    The status, the headers (by lower-case name) and the body of one
    complete response.
    """
    head, body = response.split(b"\r\n\r\n", 1)
    statusLine, *lines = head.split(b"\r\n")
    headers = dict(line.split(b": ", 1) for line in lines)
    return (
        int(statusLine.split()[1]),
        {name.lower(): value for name, value in headers.items()},
        body,
    )


class CacheTests(SynchronousTestCase):
    """
    The page's files carry validators, and a browser whose copy is current
    is answered 304 with no body: C{Cache-Control: no-cache} has it ask
    every time, and without a validator every asking was a full download.
    """

    def setUp(self) -> None:
        clock = Clock()
        clock.advance(LOADED)
        self.room = Room(maxLine=100, clock=clock)
        self.site = webSite(self.room)
        self.lastModified = datetimeToString(int(LOADED))

    def request(
        self, path: bytes, *headers: bytes, method: bytes = b"GET"
    ) -> tuple[int, dict[bytes, bytes], bytes]:
        """
        C{method path} with these header lines, on a new connection.
        """
        lines = b"".join(header + b"\r\n" for header in headers)
        return parseResponse(
            exchange(
                self.site,
                b"%s %s HTTP/1.1\r\nHost: x\r\n%s\r\n" % (method, path, lines),
            )
        )

    def etagOf(self, path: bytes) -> bytes:
        return self.request(path)[1][b"etag"]

    def test_everyFileHasAStrongETagOfItsContentAndLastModified(self) -> None:
        """
        Each file's C{ETag} is a strong tag of its content (the page's as
        the options made it): the same on every request and on a site
        loaded at another time, and another for other content.  Its
        C{Last-Modified} is when the site loaded it, in whole seconds.

        A tag of the content is the same on every instance that serves the
        same bytes, and changes when they change.
        """
        later = webSite(Room(maxLine=100, clock=Clock()))
        tags = set()
        for path in PAGE_FILES:
            status, headers, _ = self.request(path)
            self.assertEqual(status, 200, path)
            self.assertRegex(headers[b"etag"], rb'^"[^"]+"$')
            self.assertEqual(headers[b"last-modified"], self.lastModified)
            self.assertEqual(headers[b"cache-control"], b"no-cache")
            self.assertEqual(self.etagOf(path), headers[b"etag"])
            self.assertEqual(
                parseResponse(get(later, path))[1][b"etag"], headers[b"etag"]
            )
            tags.add(headers[b"etag"])
        self.assertEqual(len(tags), len(PAGE_FILES))
        otherPage = webSite(Room(maxLine=200))
        self.assertNotEqual(
            parseResponse(get(otherPage, b"/"))[1][b"etag"], self.etagOf(b"/")
        )

    def test_matchingIfNoneMatchIs304WithoutBody(self) -> None:
        """
        C{If-None-Match} naming the file's tag, anywhere in a list, on any
        of several lines, weak or strong, or C{*}, is answered 304: no body,
        no C{Content-Length} or C{Content-Type}, and the validators,
        C{Cache-Control}, C{X-Served-By} and security headers of a 200.
        """
        for path in PAGE_FILES:
            etag = self.etagOf(path)
            for header in (
                b"If-None-Match: " + etag,
                b'If-None-Match: "other", ' + etag,
                b'If-None-Match: "other",' + etag + b',"more"',
                b"If-None-Match: W/" + etag,
                b"If-None-Match: *",
            ):
                status, headers, body = self.request(path, header)
                self.assertEqual((status, body), (304, b""), header)
                self.assertEqual(headers[b"etag"], etag)
                self.assertEqual(headers[b"last-modified"], self.lastModified)
                self.assertEqual(headers[b"cache-control"], b"no-cache")
                self.assertEqual(headers[b"x-served-by"], b"chat-1")
                self.assertIn(b"content-security-policy", headers)
                self.assertNotIn(b"content-length", headers)
                self.assertNotIn(b"content-type", headers)
            status, _, _ = self.request(
                path, b'If-None-Match: "other"', b"If-None-Match: W/" + etag
            )
            self.assertEqual(status, 304)

    def test_otherTagsAre200(self) -> None:
        """
        A list that does not name the file's tag, or that is not a list of
        tags, gets the file.
        """
        etag = self.etagOf(b"/chat.js")
        for value in (b'"other"', b'W/"other", "more"', etag.strip(b'"'), b""):
            status, headers, body = self.request(
                b"/chat.js", b"If-None-Match: " + value
            )
            self.assertEqual(status, 200, value)
            self.assertEqual(headers[b"content-length"], b"%d" % (len(body),))
            self.assertIn(b"textContent", body)

    def test_ifModifiedSinceNotEarlierThanLastModifiedIs304(self) -> None:
        """
        Without C{If-None-Match}, C{If-Modified-Since} at or after
        C{Last-Modified} is answered 304, and an earlier one, or one that is
        not a date, with the file: never with an error.
        """
        for since, expected in (
            (self.lastModified, 304),
            (datetimeToString(int(LOADED) + 3600), 304),
            (self.lastModified + b"; length=4656", 304),
            (datetimeToString(int(LOADED) - 1), 200),
            (b"yesterday", 200),
            (b"", 200),
            (b";", 200),
            (self.lastModified + b", " + self.lastModified, 200),
        ):
            status, _, body = self.request(b"/chat.css", b"If-Modified-Since: " + since)
            self.assertEqual(status, expected, since)
            self.assertEqual(body == b"", expected == 304, since)

    def test_ifNoneMatchTakesPrecedenceOverIfModifiedSince(self) -> None:
        """
        With both, If-None-Match decides (RFC 9110, 13.2.2): a tag that does
        not match gets the file even if the date would have got a 304, and
        one that matches gets a 304 even if the date is earlier.
        """
        etag = self.etagOf(b"/")
        later = b"If-Modified-Since: " + datetimeToString(int(LOADED) + 3600)
        earlier = b"If-Modified-Since: " + datetimeToString(int(LOADED) - 3600)
        self.assertEqual(self.request(b"/", b'If-None-Match: "old"', later)[0], 200)
        self.assertEqual(self.request(b"/", b"If-None-Match: " + etag, earlier)[0], 304)

    def test_headHasTheHeadersOfGetAndIsConditionalToo(self) -> None:
        """
        C{HEAD} gets a C{GET}'s headers, its length included, and no body;
        a conditional one gets the 304 a C{GET} would; and nothing is logged
        for it.
        """
        observer = EventLoggingObserver.createWithCleanup(
            self,  # type: ignore[arg-type]
            globalLogPublisher,
        )
        status, getHeaders, body = self.request(b"/chat.js")
        status, headers, headBody = self.request(b"/chat.js", method=b"HEAD")
        self.assertEqual((status, headBody), (200, b""))
        for name in (b"etag", b"last-modified", b"content-type", b"content-length"):
            self.assertEqual(headers[name], getHeaders[name], name)
        self.assertEqual(headers[b"content-length"], b"%d" % (len(body),))
        status, headers, headBody = self.request(
            b"/chat.js", b"If-None-Match: " + getHeaders[b"etag"], method=b"HEAD"
        )
        self.assertEqual((status, headBody), (304, b""))
        self.assertNotIn(b"content-length", headers)
        self.assertEqual([formatEvent(event) for event in observer], [])

    def test_connectionServesAfterA304(self) -> None:
        """
        A 304 ends where its headers do: the next request on the same
        connection is answered in full.
        """
        channel, transport = connect(self.site)
        etag = self.etagOf(b"/chat.css")
        channel.dataReceived(
            b"GET /chat.css HTTP/1.1\r\nHost: x\r\nIf-None-Match: %s\r\n\r\n"
            b"GET /chat.css HTTP/1.1\r\nHost: x\r\n\r\n" % (etag,)
        )
        notModified, full = transport.value().split(b"HTTP/1.1 ")[1:]
        self.assertTrue(notModified.startswith(b"304 "), notModified)
        self.assertTrue(notModified.endswith(b"\r\n\r\n"), notModified)
        status, headers, body = parseResponse(b"HTTP/1.1 " + full)
        self.assertEqual(status, 200)
        self.assertEqual(b"%d" % (len(body),), headers[b"content-length"])
        self.assertFalse(transport.disconnecting)


class LimitTests(SynchronousTestCase):
    def test_fullSiteAnswers503(self) -> None:
        """
        Past C{--max-connections}, HTTP and WebSocket alike, a new connection
        is answered 503 at once, and counted as rejected.
        """
        room = Room()
        site = webSite(room, maxConnections=2)
        WebSocketClient(site, room, port=50001)
        WebSocketClient(site, room, "/echo", port=50002)
        self.assertTrue(get(site, b"/").startswith(b"HTTP/1.1 503 "))
        self.assertEqual(site.connections.rejected["limit"], 1)


class OriginTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.room = Room()
        self.site = webSite(self.room, origins=frozenset({"https://chat.example"}))

    def test_foreignOriginIsRefused(self) -> None:
        """
        A handshake from another site's page gets 403 and never reaches the
        room: otherwise any page a user visits could chat, or read the room,
        in their name (cross-site WebSocket hijacking).
        """
        for path in ("/chat", "/echo"):
            client = WebSocketClient(
                self.site, self.room, path, origin="https://evil.example"
            )
            self.assertEqual(client.status, 403)
        self.assertEqual(len(self.room.room), 0)
        for connection in self.site.connections.live:
            self.assertIsInstance(connection, GuardedChannel)

    def test_ownOriginListedOriginsAndNoOriginAreLetIn(self) -> None:
        """
        The page's own origin (same host and port), an origin given with
        C{--web-origin}, and a client that sends no Origin (not a browser)
        are all let in.
        """
        for port, origin in enumerate(
            [f"http://{HOST}", f"HTTPS://{HOST.upper()}", "https://chat.example", None]
        ):
            client = WebSocketClient(
                self.site, self.room, origin=origin, port=50000 + port
            )
            self.assertEqual(client.status, 101, origin)
        self.assertEqual(len(self.room.room), 4)

    def test_refusalsAreCountedNotLogged(self) -> None:
        """
        A page from another origin, trying again and again, is refused each
        time; the refusals are counted for /metrics, and nothing is logged.
        """
        observer = EventLoggingObserver.createWithCleanup(
            self,  # type: ignore[arg-type]
            globalLogPublisher,
        )
        for _ in range(3):
            client = WebSocketClient(
                self.site, self.room, origin="https://evil.example"
            )
            self.assertEqual(client.status, 403)
        self.assertEqual(self.site.refused["origin"], 3)
        self.assertEqual([formatEvent(event) for event in observer], [])


class ChatSocketTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.room = Room(maxLine=100, backlog=1000)
        self.site = webSite(self.room)

    def connect(self, port: int = 50000) -> WebSocketClient:
        client = WebSocketClient(self.site, self.room, port=port)
        self.assertEqual(client.status, 101)
        [welcome] = client.takeTexts()
        self.assertTrue(welcome.startswith(f"* welcome, you are {client.name} ("))
        return client

    def test_webAndTCPMembersShareOneRoom(self) -> None:
        """
        A browser's line reaches a TCP client as C{<NAME> TEXT} CR LF, and a
        TCP client's line reaches the browser as one text message without
        CR LF: one room, each member encoding for its own wire.
        """
        browser = self.connect()
        tcp, tcpT = self.room.connect()
        self.assertEqual(browser.takeTexts(), [f"* {tcp.name} joined (2 in the room)"])
        received(tcpT)
        verifyObject(IMember, member_(browser))

        browser.sendText("hello from the page")
        self.assertEqual(
            received(tcpT), [f"<{browser.name}> hello from the page".encode()]
        )
        tcp.dataReceived(b"hello from nc\n")
        self.assertEqual(
            browser.takeTexts(),
            [f"<{browser.name}> hello from the page", f"<{tcp.name}> hello from nc"],
        )

    def test_aMessageOfSeveralLinesIsSeveralLines(self) -> None:
        """
        Line feeds split a message into lines (a CR before each is dropped),
        each relayed on its own; a final line feed adds no empty line.
        """
        browser = self.connect()
        browser.sendText("one\r\ntwo\nthree\n")
        self.assertEqual(
            browser.takeTexts(),
            [f"<{browser.name}> {word}" for word in ("one", "two", "three")],
        )

    def test_commandsAndNickRulesAreTheTCPChats(self) -> None:
        """
        C{/nick}, C{/who} and the nick rules work as they do over TCP: they
        are the same code.
        """
        browser = self.connect()
        _, tcpT = self.room.connect()
        browser.takeTexts()
        browser.sendText("/nick alice")
        self.assertEqual(browser.takeTexts(), ["* you are now alice"])
        self.assertIn(f"* {browser.name} is now alice".encode(), received(tcpT))
        browser.sendText("/nick no spaces allowed")
        browser.sendText("/who")
        self.assertEqual(
            browser.takeTexts(),
            [
                "! usage: /nick NAME, 1-32 letters, digits, _ or -",
                "* in the room (2): 127.0.0.1:40001, alice",
            ],
        )

    def test_messageOverMaxLineClosesWith1009HoldingAtMostTheCap(self) -> None:
        """
        A message longer than C{--max-line}, sent in fragments, closes the
        connection with 1009 as soon as it passes the limit, and the server
        never holds more of it than the limit.

        Twisted reassembles fragments without a bound: a peer sending
        continuation frames forever would otherwise take all memory.
        """
        browser = self.connect()
        socket = member_(browser)
        buffer = socket.websocket._textBuffer  # type: ignore[attr-defined]
        for _ in range(4):
            browser.sendText("x" * 25, finished=False)
        self.assertEqual(len(buffer._data), 100)
        self.assertIsNone(browser.closeCode)
        browser.sendText("x", finished=False)
        browser.receive()
        self.assertEqual(browser.closeCode, 1009)
        self.assertEqual(len(buffer._data), 0)
        self.assertEqual(len(self.room.room), 0)

    def test_textIsCountedInUTF8Bytes(self) -> None:
        """
        The limit is in bytes, as C{--max-line} is: 34 three-byte characters
        (102 bytes) are over a limit of 100.
        """
        browser = self.connect()
        browser.sendText("\u20ac" * 33)
        self.assertEqual(browser.takeTexts(), [f"<{browser.name}> " + "\u20ac" * 33])
        browser.sendText("\u20ac" * 34)
        browser.receive()
        self.assertEqual(browser.closeCode, 1009)

    def test_binaryMessageClosesWith1003(self) -> None:
        """
        Chat is text: a binary message closes with 1003 (unsupported data).
        """
        browser = self.connect()
        browser.sendBytes(b"\x00\x01")
        browser.receive()
        self.assertEqual(browser.closeCode, 1003)
        self.assertEqual(len(self.room.room), 0)

    def test_floodIsSlowedByPausingReads(self) -> None:
        """
        Past the burst, a browser's lines wait and its TCP reads are paused
        (flood control is the TCP chat's); nothing it sent is lost.
        """
        browser = self.connect()
        for n in range(member.DEFAULT_BURST + 5):
            browser.sendText(str(n))
        self.assertEqual(browser.transport.producerState, "paused")
        self.assertEqual(len(browser.takeTexts()), member.DEFAULT_BURST)
        self.room.clock.advance(1)
        self.assertEqual(len(browser.takeTexts()), 5)
        self.assertEqual(browser.transport.producerState, "producing")

    def test_slowReaderIsDroppedOthersKeepReceiving(self) -> None:
        """
        A browser that stops reading is dropped past C{--chat-backlog}, as a
        TCP client is: its member is the producer of its transport.
        """
        slow = self.connect()
        _, talkerT = self.room.connect()
        socket = member_(slow)
        self.assertIs(slow.transport.producer, socket)
        socket.pauseProducing()  # its transport's send buffer is full
        for _ in range(20):
            self.room.room.say(socket, "x" * 80)
            self.room.clock.advance(0)
        self.assertIn(
            f"* {slow.name} was dropped (too slow)".encode(), received(talkerT)
        )
        self.assertEqual(self.room.room.clientsDropped["slow"], 1)

    def test_pongsToAReaderThatIsBehindCountAndDropIt(self) -> None:
        """
        A browser that floods pings and does not read is dropped past
        C{--chat-backlog}, as one that does not read the room is: Twisted
        answers every ping itself, and those answers wait in the same
        transport as the room's lines, so they count toward the backlog.
        Those already read are answered without error, and the close frame
        follows them.
        """
        flooder = self.connect()
        _, talkerT = self.room.connect()
        flooder.takeTexts()  # the talker joined
        socket = member_(flooder)
        socket.pauseProducing()  # its transport's send buffer is full
        flooder.sendFrames(*[Ping(b"p" * 125)] * 3)
        self.assertEqual(socket.unsent, member.TRANSPORT_BUFFER + 3 * 127)
        flooder.sendFrames(*[Ping(b"p" * 125)] * 20)
        self.assertEqual(self.room.room.clientsDropped["slow"], 1)
        self.assertIn(
            f"* {flooder.name} was dropped (too slow)".encode(), received(talkerT)
        )
        events = flooder.receive()
        self.assertEqual(sum(isinstance(event, Pong) for event in events), 23)
        self.assertEqual(
            flooder.texts,
            [
                "! disconnected: more than 1000 bytes of output were waiting for you"
                " to read"
            ],
        )
        self.assertIsInstance(events[-1], CloseConnection)
        self.assertFalse(flooder.connected)

    def test_aPingAfterAClosingMessageInOneReadIsAnswered(self) -> None:
        """
        A ping read together with a message that closes the connection is
        answered, and the close frame follows: before, Twisted's answer
        raised, since wsproto sends nothing after a close frame, and the
        connection was lost with an error logged.
        """
        browser = self.connect()
        browser.sendFrames(BytesMessage(b"x"), Ping(b"after"))
        events = browser.receive()
        self.assertEqual([type(event) for event in events], [Pong, CloseConnection])
        self.assertEqual(browser.closeCode, 1003)
        self.assertFalse(browser.connected)

    def test_aBatchIsFramedOnceForEveryMember(self) -> None:
        """
        What the room says in a turn is framed once, not once per member:
        a server's frames are not masked, so they are the same bytes for all.
        """
        browsers = [self.connect(port) for port in (50001, 50002, 50003)]
        for browser in browsers:
            browser.takeTexts()
        framed: list[bytes] = []

        def textFrames(payloads: Iterable[bytes]) -> bytes:
            payloads = list(payloads)
            framed.extend(payloads)
            return websocket.textFrames(payloads)

        self.patch(chatsocket, "textFrames", textFrames)
        browsers[0].sendText("one line for all")
        for browser in browsers:
            self.assertEqual(
                browser.takeTexts(), [f"<{browsers[0].name}> one line for all"]
            )
        self.assertEqual(framed, [f"<{browsers[0].name}> one line for all".encode()])

    def test_idleMemberIsToldAndClosed(self) -> None:
        room = Room()
        room.settings.idleTimeout = 5
        site = webSite(room)
        browser = WebSocketClient(site, room)
        browser.takeTexts()
        room.clock.advance(5)
        self.assertEqual(browser.takeTexts(), ["! idle for 5 seconds; disconnecting"])
        self.assertEqual(browser.closeCode, 1000)
        self.assertFalse(browser.connected)

    def test_connectionIsCountedOnceAndForgotten(self) -> None:
        """
        The HTTP connection that became a WebSocket is counted once, as the
        WebSocket, and no longer once it is gone: Twisted never tells the HTTP
        channel that it closed.
        """
        browser = self.connect()
        self.assertEqual(self.site.connections.total, 1)
        self.assertEqual(self.site.connections.live, {member_(browser)})
        browser.sendText("/quit")
        self.assertEqual(browser.takeTexts(), ["* bye"])
        self.assertEqual(browser.closeCode, 1000)
        self.assertFalse(browser.connected)
        self.assertEqual(len(self.site.connections), 0)
        self.assertEqual(self.room.clock.getDelayedCalls(), [])

    def test_stopTellsMembersAndWaitsForThem(self) -> None:
        """
        Stopping tells browsers the server is going away, closes them, and
        fires once they are gone.
        """
        browser = self.connect()
        closed = self.site.close()
        self.assertEqual(browser.takeTexts(), ["* server shutting down"])
        self.assertEqual(browser.closeCode, 1001)
        self.assertIsNone(self.successResultOf(closed))


class HeartbeatTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.room = Room()
        self.site = webSite(self.room, pingInterval=30.0)
        self.client = WebSocketClient(self.site, self.room, "/echo")

    def test_quietPeerIsPingedAndClosedIfItDoesNotAnswer(self) -> None:
        """
        After 30 s of quiet a peer is pinged (proxies cut idle connections),
        and one that has not answered 30 s later is gone: aborted.
        """
        self.room.clock.advance(29)
        self.client.receive()
        self.assertEqual(self.client.pings, [])
        self.room.clock.advance(1)
        self.client.receive()
        self.assertEqual(self.client.pings, [b""])
        self.room.clock.advance(30)
        self.assertTrue(self.client.aborted)
        self.assertEqual(len(self.site.connections), 0)

    def test_answeringPeerStays(self) -> None:
        for _ in range(3):
            self.room.clock.advance(30)
            self.client.receive()
            self.client.sendFrame(Pong(b""))
        self.assertEqual(len(self.client.pings), 3)
        self.assertTrue(self.client.connected)

    def test_aPeerThatSpeaksIsNotPinged(self) -> None:
        for _ in range(5):
            self.room.clock.advance(20)
            self.client.sendText("still here")
        self.client.receive()
        self.assertEqual(self.client.pings, [])


class EchoSocketTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.room = Room()
        self.site = webSite(self.room, maxMessage=1000)
        self.client = WebSocketClient(self.site, self.room, "/echo")
        self.assertEqual(self.client.status, 101)

    def test_textComesBackAsTextBinaryAsBinary(self) -> None:
        self.client.sendText("h\u00e9llo")
        self.client.sendBytes(b"\x00\xff")
        self.client.sendText("in ", finished=False)
        self.client.sendText("pieces")
        self.client.receive()
        self.assertEqual(self.client.texts, ["h\u00e9llo", "in pieces"])
        self.assertEqual(self.client.binaries, [b"\x00\xff"])

    def test_transportIsItsOwnProducer(self) -> None:
        """
        Backpressure as for TCP echo: when the client does not read, the
        transport stops reading from it.
        """
        (socket,) = self.site.connections.live
        assert isinstance(socket, EchoSocket)
        self.assertIs(self.client.transport.producer, self.client.transport)

    def test_overlongMessageClosesWith1009(self) -> None:
        self.client.sendBytes(b"x" * 1000)
        self.client.sendBytes(b"x" * 600, finished=False)
        self.client.sendBytes(b"x" * 600, finished=False)
        self.client.receive()
        self.assertEqual(self.client.binaries, [b"x" * 1000])
        self.assertEqual(self.client.closeCode, 1009)

    def test_peerThatDoesNotTakeTheCloseIsAborted(self) -> None:
        """
        A peer that does not read our close frame cannot keep the connection
        open: it is aborted after a grace period.
        """
        self.client.transport.loseConnection = lambda: None  # type: ignore[method-assign]
        self.client.sendBytes(b"x" * 1001)
        self.room.clock.advance(0)  # the end of the turn: the close frame goes
        self.room.clock.advance(CLOSE_GRACE_SECONDS)
        self.assertTrue(self.client.aborted)

    def test_peersCloseUnregistersTheProducer(self) -> None:
        """
        When the peer closes, Twisted answers and closes the transport; the
        producer is unregistered first, because a TLS transport with a
        producer never closes (and a TCP one not while it is paused).
        """
        self.client.sendFrame(CloseConnection(1000))
        self.client.receive()
        self.assertEqual(self.client.closeCode, 1000)
        self.assertIsNone(self.client.transport.producer)
        self.assertFalse(self.client.connected)
        self.assertEqual(len(self.site.connections), 0)

    def test_idleEchoIsClosed(self) -> None:
        room = Room()
        site = webSite(room, idleTimeout=5.0)
        client = WebSocketClient(site, room, "/echo")
        room.clock.advance(4)
        client.sendText("not idle yet")
        room.clock.advance(4)
        self.assertTrue(client.connected)
        room.clock.advance(1)
        client.receive()
        self.assertEqual(client.closeCode, 1000)
        self.assertFalse(client.connected)

    def test_stopClosesWithGoingAway(self) -> None:
        closed = self.site.close()
        self.client.receive()
        self.assertEqual(self.client.closeCode, 1001)
        self.successResultOf(closed)


class FrameTests(SynchronousTestCase):
    def test_textFramesOfEverySize(self) -> None:
        """
        Frames of each length encoding (7 bits, 16 bits, 64 bits) are what
        a client's WebSocket parser reads as those messages.
        """
        payloads = [b"", b"a" * 125, b"b" * 126, b"c" * 65535, b"d" * 65536]
        parser = FrameProtocol(client=True, extensions=[])
        parser.receive_bytes(websocket.textFrames(payloads))
        frames = list(parser.received_frames())
        self.assertEqual([frame.opcode for frame in frames], [Opcode.TEXT] * 5)
        self.assertTrue(all(frame.message_finished for frame in frames))
        self.assertEqual(
            [frame.payload for frame in frames], [p.decode() for p in payloads]
        )


class CapTests(SynchronousTestCase):
    def test_cappedBufferHoldsOneMessageAtATime(self) -> None:
        calls: list[int] = []
        buffer = CappedBuffer(4, lambda: calls.append(1), text=True)
        buffer.add("\u00e9")
        buffer.add("ab")
        self.assertEqual(buffer.done(), "\u00e9ab")
        buffer.add("abcd")
        self.assertEqual(buffer.done(), "abcd")
        self.assertEqual(calls, [])
        buffer.add("abcde")
        buffer.add("a")
        self.assertEqual(calls, [1])
        self.assertEqual(buffer.done(), "")

    def test_withoutTwistedsBuffersThereIsNoServing(self) -> None:
        """
        Should Twisted's reassembly buffers go, connections are refused
        rather than served without a cap.
        """
        error = self.assertRaises(RuntimeError, capMessages, object(), 10, print)
        self.assertIn("_textBuffer", str(error))
