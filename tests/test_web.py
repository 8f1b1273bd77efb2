"""
Tests for L{netdemos.web}, L{netdemos.websocket} and L{netdemos.chat.websocket}:
the page, the Origin check, and the WebSocket members of the room and echo,
driven through Twisted's own WebSocket server over string transports.
"""

from __future__ import annotations

from collections.abc import Iterable

from support.chat import Room, received
from support.http import get
from support.web import HOST, WebSocketClient, webSite
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong
from wsproto.frame_protocol import FrameProtocol, Opcode
from zope.interface.verify import verifyObject

from netdemos import websocket
from netdemos.chat import member
from netdemos.chat import websocket as chatsocket
from netdemos.chat.room import IMember
from netdemos.chat.websocket import ChatSocket
from netdemos.counter import CountedChannel
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
            self.assertIsInstance(connection, CountedChannel)

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
        room.factory.idleTimeout = 5
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
