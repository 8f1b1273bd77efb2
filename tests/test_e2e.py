"""
End-to-end tests: the installed C{twistd -n netdemos}, run as a subprocess on
free loopback ports, spoken to by plain socket clients.

They check what the unit tests cannot: that the plugin is found, that real TCP
flow control really bounds memory, and that the services behave over the wire.
"""

from __future__ import annotations

import http.client
import random
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from support import LINE_TIMEOUT
from support.clients import (
    ChatUser,
    Clients,
    Echoed,
    connect,
    echoThroughHalfClose,
    pushWithoutReading,
    rawHTTP,
)
from support.process import (
    Launcher,
    Netdemos,
    installedPython,
    runNetdemos,
    runTwistd,
)
from support.rooms import CHAT_BACKLOG, SlowClientRoom
from support.running import LOOPBACK, loopbackEndpoint

from netdemos.chat.member import BEHIND_LIMIT

MB = 1024 * 1024


# Echo


def test_echoReturnsEveryByteAfterHalfCloseThenEOF(launcher: Launcher) -> None:
    """
    A client that sends 20,000,000 bytes and then shuts down its sending side
    gets every byte back, in order, and then EOF.

    This is what C{nc -N} piping a file through echo does; an echo that closed
    the connection on the client's EOF would lose whatever it had read but not
    yet sent back.
    """
    server = launcher.start(["echo"])
    payload = random.Random(862).randbytes(20_000_000)
    # A small receive window keeps the server's send buffers full, so that
    # when it reads the EOF it still holds echo it has not sent: the case
    # half-close handling is for.  With a large window the kernel would have
    # taken everything already and even a plain close would lose nothing.
    with connect(server.echoPort, receiveBuffer=8192) as connection:
        echoed = echoThroughHalfClose(connection, payload)
    assert echoed == Echoed(len(payload), None)
    server.assertNoErrorsLogged()


def test_echoPushesBackOnClientThatNeverReads(launcher: Launcher) -> None:
    """
    A client that sends without ever reading is throttled by TCP flow control
    and the server's memory stays flat.

    Without backpressure the server would read everything and buffer the echo
    in memory: any client could grow it without limit just by not reading.
    """
    server = launcher.start(["echo"])
    rssBefore = server.rssBytes()

    target = 300 * MB
    start = time.monotonic()
    with socket.create_connection((LOOPBACK, server.echoPort)) as connection:
        pushed = pushWithoutReading(connection, target)
        elapsed = time.monotonic() - start
        rssGrowth = server.rssBytes() - rssBefore

    report = (
        f"pushed {pushed / MB:.1f} MB of {target / MB:.0f} MB tried in"
        f" {elapsed:.1f}s; server RSS grew {rssGrowth / MB:.1f} MB"
    )
    print(report)
    assert pushed < 64 * MB, f"the client was not pushed back: {report}"
    assert rssGrowth < 64 * MB, f"server memory grew: {report}"
    server.assertNoErrorsLogged()


# Chat


def test_withFloodControlLiftedReadersThatKeepUpAreKept(
    launcher: Launcher, clients: Clients
) -> None:
    """
    Load-test mode (C{--chat-rate=0}): one client sends 20,000 lines of 500
    bytes (ten times the backlog) as fast as TCP takes them, and it and two
    others read as fast as a Python thread can.  Nobody is dropped, and each
    gets every line, in order: the sender is held back while a reader is
    behind, instead of outrunning them.

    Then a client joins that never reads: it holds the room back for no
    longer than L{BEHIND_LIMIT} before it is dropped, and the others go on.

    Before, both readers were dropped as too slow after about 2,000 lines.
    """
    server = launcher.start(["chat"], extra=["--chat-rate=0"])
    readers = [clients.chatUser(server.chatPort) for _ in range(3)]
    sender = readers[-1]
    for reader in readers:
        reader.waitForCrowd(3)

    def sendAndCheck(first: int, count: int) -> None:
        lines = [f"{n:06d} {'x' * 490}" for n in range(first, first + count)]
        sender.send("".join(f"{line}\n" for line in lines).encode())
        said = f"<{sender.name}> "
        for reader in readers:
            reader.inbox.waitForLine(said + lines[-1], timeout=60)
            heard = [
                line[len(said) :]
                for line in reader.inbox.snapshot()
                if line.startswith(said)
            ]
            assert heard[-count:] == lines, reader.name

    sendAndCheck(0, 20_000)
    assert not [line for line in readers[0].inbox.snapshot() if "dropped" in line]

    stalled = clients.chatUser(server.chatPort, reading=False, receiveBuffer=4096)
    readers[0].inbox.waitForLine(f"* {stalled.name} joined (4 in the room)")
    started = time.monotonic()
    sendAndCheck(20_000, 2_000)
    held = time.monotonic() - started
    print(f"2,000 lines with a client that does not read took {held:.1f} s")
    dropped = f"* {stalled.name} was dropped (too slow)"
    readers[0].inbox.waitForLine(dropped)
    assert held < BEHIND_LIMIT + LINE_TIMEOUT, held
    assert [line for line in readers[0].inbox.snapshot() if "dropped" in line] == [
        dropped
    ]
    server.assertNoErrorsLogged()


def test_slowChatClientIsDroppedAndOthersGetEveryLine(
    launcher: Launcher, clients: Clients
) -> None:
    """
    A client that does not read is dropped once its unsent output passes the
    backlog limit; meanwhile a reading client gets every line, in order, and
    the notice of the drop; and the server's memory stays bounded.

    One stalled reader must neither grow server memory without limit nor make
    the others lose lines or wait.
    """
    SlowClientRoom(launcher, clients).checkSlowClientIsDroppedAndOthersGetEveryLine()


def test_droppedChatClientGetsExplanationThenCleanClose(
    launcher: Launcher, clients: Clients
) -> None:
    """
    A client dropped as too slow that then reads gets what was queued for it,
    a line explaining why it was dropped, and then an orderly close (EOF), not
    a reset after the grace period.

    The grace period exists so a dropped client can read its last line; a
    client that does read it should see the connection end cleanly, at once,
    rather than be held open for seconds and then get a connection-reset error
    (which can also throw away data it has not read yet).
    """
    room = SlowClientRoom(launcher, clients)
    room.sendUntilSlowClientIsDropped()

    start = time.monotonic()
    received = bytearray()
    connection = room.slow.connection
    outcome = "EOF"
    try:
        while True:
            remaining = start + 4 - time.monotonic()
            if remaining <= 0:
                outcome = "no EOF within 4s"
                break
            connection.settimeout(remaining)
            data = connection.recv(65536)
            if not data:
                break
            received += data
    except TimeoutError:
        outcome = "no EOF within 4s"
    except OSError as e:
        outcome = f"{e!r}"
    elapsed = time.monotonic() - start

    explanation = (
        b"! disconnected: more than %d bytes of output were waiting for you"
        b" to read\r\n" % (CHAT_BACKLOG,)
    )
    assert bytes(received).endswith(explanation), bytes(received[-200:])
    assert outcome == "EOF", (
        f"after reading {len(received)} bytes including the explanation, the"
        f" dropped client got {outcome} after {elapsed:.2f}s instead of EOF"
    )


def test_overlongLineIsDroppedAndConnectionKept(
    launcher: Launcher, clients: Clients
) -> None:
    """
    A line over --max-line is discarded and its sender told, the connection
    stays open, and a normal line sent in the same write still gets through.

    A limit that closed the connection, or lost the lines around the long one,
    would punish a client for one bad line; no limit at all would let one line
    fill server memory.
    """
    server = launcher.start(["chat"], extra=["--max-line=100"])
    port = server.chatPort
    alice = clients.chatUser(port)
    bob = clients.chatUser(port)
    alice.inbox.waitForLine(f"* {bob.name} joined (2 in the room)")

    alice.send(b"z" * 101 + b"\n" + b"y" * 5000 + b"\nstill here\n")

    first = alice.inbox.waitForLine("! line too long: over 100 bytes, discarded")
    second = alice.inbox.waitForLine(
        "! line too long: over 100 bytes, discarded", first + 1
    )
    alice.inbox.waitForLine(f"<{alice.name}> still here", second + 1)
    bob.inbox.waitForLine(f"<{alice.name}> still here")

    # Still connected and heard after the long lines.
    alice.send(b"and again\n")
    bob.inbox.waitForLine(f"<{alice.name}> and again")
    assert not any("zz" in line or "yy" in line for line in bob.inbox.snapshot())
    assert not alice.inbox.eof
    server.assertNoErrorsLogged()


def chatPair(
    launcher: Launcher, clients: Clients
) -> tuple[Netdemos, ChatUser, ChatUser]:
    """
    Start a chat-only server with two users in the room, the first having
    seen the second join.
    """
    server = launcher.start(["chat"])
    first = clients.chatUser(server.chatPort)
    second = clients.chatUser(server.chatPort)
    first.inbox.waitForLine(f"* {second.name} joined (2 in the room)")
    return server, first, second


def test_lfAndCrlfClientsHearEachOtherInCrlf(
    launcher: Launcher, clients: Clients
) -> None:
    """
    A client ending lines with LF (like nc) and one ending them with CRLF (like
    telnet) hear each other, every line the server sends ends with CRLF, and a
    line is labelled with the sender's own address, C{127.0.0.1:PORT}.

    Chat must work with the tools people actually use, and a name built from
    the wrong end of the connection (the server's address) would give every
    client the same name.
    """
    server, lf, crlf = chatPair(launcher, clients)
    port = server.chatPort
    assert lf.name == f"127.0.0.1:{lf.connection.getsockname()[1]}"
    assert lf.localPort != port and crlf.localPort != port

    lf.send(b"hello from nc\n")
    crlf.inbox.waitForLine(f"<{lf.name}> hello from nc")
    crlf.send(b"hello from telnet\r\n")
    lf.inbox.waitForLine(f"<{crlf.name}> hello from telnet")
    crlf.send(b"/quit\r\n")
    crlf.inbox.waitForEOF()
    lf.inbox.waitForLine(f"* {crlf.name} left")

    for user in (lf, crlf):
        raw = bytes(user.inbox.raw)
        assert raw.count(b"\n") == raw.count(b"\r\n"), raw
        assert b"\r\r" not in raw, raw
    assert (
        f"<{lf.name}> hello from nc\r\n<{crlf.name}> hello from telnet\r\n".encode()
        in bytes(lf.inbox.raw)
    )
    assert f"<{LOOPBACK}:{port}>" not in lf.inbox.raw.decode()
    server.assertNoErrorsLogged()


def test_linesCannotSpoofOtherNamesOrSendControlCharacters(
    launcher: Launcher, clients: Clients
) -> None:
    """
    Every line, including each of several sent in one write, is prefixed with
    its sender's name, and control characters are removed before relaying.

    Otherwise a client could forge C{<admin> ...} lines, or clear and retitle
    other users' terminals with escape sequences.
    """
    server, mallory, victim = chatPair(launcher, clients)

    mallory.send(b"a\n<admin> b\n")
    mallory.send(b"x\x1b[2J\x1b]0;pwned\x07y\xc2\x9bz\x00\x7f\r\x08w\n")
    mallory.send(b"done\n")
    end = victim.inbox.waitForLine(f"<{mallory.name}> done")

    lines = victim.inbox.snapshot()[: end + 1]
    assert f"<{mallory.name}> a" in lines
    assert f"<{mallory.name}> <admin> b" in lines
    assert f"<{mallory.name}> x[2J]0;pwnedyzw" in lines
    assert not any(line.startswith("<admin>") for line in lines), lines
    raw = bytes(victim.inbox.raw)
    controls = {byte for byte in raw if byte < 0x20 or byte == 0x7F} - {0x0D, 0x0A}
    assert not controls, raw
    assert "\x9b" not in raw.decode("utf-8"), raw
    server.assertNoErrorsLogged()


def test_nickWhoAndJoinLeaveNotices(launcher: Launcher, clients: Clients) -> None:
    """
    /nick renames and tells the room, a nick already taken (in any case) is
    refused, /who lists the room, and joins and leaves are announced.

    These are the room's whole user interface; a taken nick that was accepted
    would let one client impersonate another.
    """
    server, alice, bob = chatPair(launcher, clients)
    port = server.chatPort

    alice.send(b"/nick alice\n")
    alice.inbox.waitForLine("* you are now alice")
    bob.inbox.waitForLine(f"* {alice.name} is now alice")

    bob.send(b"/nick ALICE\n")
    bob.inbox.waitForLine("! the nick ALICE is taken")
    bob.send(b"/nick bob\n")
    bob.inbox.waitForLine("* you are now bob")
    alice.inbox.waitForLine(f"* {bob.name} is now bob")

    alice.send(b"/who\n")
    alice.inbox.waitForLine("* in the room (2): alice, bob")
    bob.send(b"hi\n")
    alice.inbox.waitForLine("<bob> hi")

    carol = clients.chatUser(port)
    alice.inbox.waitForLine(f"* {carol.name} joined (3 in the room)")
    carol.close()
    alice.inbox.waitForLine(f"* {carol.name} left")
    bob.close()
    alice.inbox.waitForLine("* bob left")
    alice.send(b"/who\n")
    alice.inbox.waitForLine("* in the room (1): alice")
    server.assertNoErrorsLogged()


def test_chatEndpointsShareOneRoom(launcher: Launcher, clients: Clients) -> None:
    """
    Clients on two --chat endpoints of one server are in the same room.

    The help promises it, and it is what lets one room be served on, say, IPv4
    and IPv6 or TCP and a UNIX socket.
    """
    server = launcher.start({"chat": 2})
    first, second = server.ports["chat"]
    one = clients.chatUser(first)
    two = clients.chatUser(second)
    one.inbox.waitForLine(f"* {two.name} joined (2 in the room)")

    one.send(b"from the first port\n")
    two.inbox.waitForLine(f"<{one.name}> from the first port")
    two.send(b"from the second port\n")
    one.inbox.waitForLine(f"<{two.name}> from the second port")
    server.assertNoErrorsLogged()


def test_noneSwitchesServicesOff(launcher: Launcher) -> None:
    """
    With --echo=none --http=none the server listens on the chat port and on
    nothing else.

    A service that still listened on its default port (0.0.0.0:1234 or :8080)
    would be open to the network against the operator's wishes.
    """
    server = launcher.start(["chat"])  # echo and http are "none"
    assert server.listeningPorts() == {server.chatPort}


# HTTP


def test_httpCountsGetsAndAnswersHeadPostAndGarbage(launcher: Launcher) -> None:
    """
    GET answers C{I am request #1}, then #2; HEAD has headers but no body and
    takes no number; POST gets 405 with C{Allow: GET, HEAD}; a malformed
    request gets 400 and the server goes on serving.

    That is the counter's contract with load testers and health checks.
    """
    server = launcher.start(["http"])
    port = server.httpPort

    connection = http.client.HTTPConnection(LOOPBACK, port, timeout=LINE_TIMEOUT)
    for number, path in ((1, "/"), (2, "/any/path?x=1")):
        connection.request("GET", path)
        response = connection.getresponse()
        assert response.status == 200
        assert response.read() == b"I am request #%d\n" % (number,)

    head = rawHTTP(port, b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    headers, _, body = head.partition(b"\r\n\r\n")
    assert headers.startswith(b"HTTP/1.1 200 "), head
    assert body == b"", head

    connection.request("POST", "/", body=b"x=1")
    response = connection.getresponse()
    response.read()
    assert response.status == 405
    assert response.getheader("Allow") == "GET, HEAD"
    connection.close()

    garbage = rawHTTP(port, b"THIS IS NOT A REQUEST LINE\r\n\r\n")
    assert garbage.startswith(b"HTTP/1.1 400 "), garbage

    connection = http.client.HTTPConnection(LOOPBACK, port, timeout=LINE_TIMEOUT)
    connection.request("GET", "/")
    assert connection.getresponse().read() == b"I am request #3\n"
    connection.close()
    server.assertNoErrorsLogged()


# Starting up


def test_badEndpointExitsWithOneLineMessage(tmp_path: Path) -> None:
    """
    An endpoint that does not parse ends twistd with a non-zero status and a
    one-line message naming it, not a traceback.

    An operator's typo should be explained, not buried in a stack dump.
    """
    result = runNetdemos(tmp_path, {"echo": ["tcp:notaport"]})
    assert result.returncode != 0, result.stdout
    assert any("--echo=tcp:notaport" in line for line in result.stdout.splitlines())
    assert "Traceback" not in result.stdout, result.stdout


@contextmanager
def portInUse() -> Iterator[int]:
    """
    A loopback port this process listens on, for as long as the block runs.
    """
    with socket.socket() as taken:
        taken.bind((LOOPBACK, 0))
        taken.listen()
        yield taken.getsockname()[1]


def test_busyPortExitsWithMessageNamingIt(tmp_path: Path) -> None:
    """
    A port that is already in use ends twistd with a non-zero status and a
    message naming the port, not a traceback or a half-working server.

    Otherwise a second instance would seem to start while serving nothing.
    """
    with portInUse() as port:
        result = runNetdemos(tmp_path, {"echo": [loopbackEndpoint(port)]})
    assert result.returncode != 0, result.stdout
    assert f"cannot listen for echo {loopbackEndpoint(port)}" in result.stdout, (
        result.stdout
    )
    assert "Address already in use" in result.stdout, result.stdout
    assert "Traceback" not in result.stdout, result.stdout


@pytest.mark.parametrize(
    "endpoint", ["tcp:99999:interface=127.0.0.1", "unix:/nonexistent/dir/sock"]
)
def test_endpointThatCannotListenExitsWithOneLineMessage(
    tmp_path: Path, endpoint: str
) -> None:
    """
    An endpoint that parses but cannot listen (a port out of range, a UNIX
    socket in a missing directory) also ends twistd with one line naming it,
    not a traceback.
    """
    result = runNetdemos(tmp_path, {"echo": [endpoint]})
    assert result.returncode == 1, result.stdout
    assert f"netdemos: cannot listen for echo {endpoint}: " in result.stdout, (
        result.stdout
    )
    assert "Traceback" not in result.stdout, result.stdout


def test_busyPortInDaemonModeEndsTheParentToo(tmp_path: Path) -> None:
    """
    Daemonized (no -n), a busy port still ends twistd at once: the parent,
    which waits for the daemon to report, exits non-zero with the message, and
    the pid file is removed.

    A plain SystemExit in the daemon would skip twistd's report to its parent,
    which would then wait forever.
    """
    pidfile = tmp_path / "twistd.pid"
    with portInUse() as port:
        result = runNetdemos(
            tmp_path,
            {"echo": [loopbackEndpoint(port)]},
            twistdOptions=[
                f"--pidfile={pidfile}",
                f"--logfile={tmp_path / 'twistd.log'}",
            ],
        )
    assert result.returncode == 1, result.stdout
    # twistd cuts the daemon's report to 100 bytes; the log has all of it,
    # written by the daemon, which may still be at it when the parent exits.
    assert "cannot listen for echo tcp:" in result.stdout, result.stdout
    logPath = tmp_path / "twistd.log"
    wanted = f"cannot listen for echo {loopbackEndpoint(port)}"
    deadline = time.monotonic() + LINE_TIMEOUT
    while wanted not in (log := logPath.read_text()):
        assert time.monotonic() < deadline, log
        time.sleep(0.02)  # a polling interval
    assert "Address already in use" in log, log
    while pidfile.exists():
        assert time.monotonic() < deadline, "the daemon left its pid file"
        time.sleep(0.02)  # a polling interval


def test_twistdFindsTheInstalledPlugin(tmp_path: Path) -> None:
    """
    C{twistd --help}, run away from the source tree, lists netdemos.

    The plugin is only usable if the installed dropin is found by twistd's
    plugin discovery, not just the copy in the source tree.
    """
    result = runTwistd(tmp_path, ["--help"])
    assert result.returncode == 0, result.stdout
    commands = [line.split()[:1] for line in result.stdout.splitlines()]
    assert ["netdemos"] in commands, result.stdout


def test_distributionShipsNoTwistedInitOrDropinCache(tmp_path: Path) -> None:
    """
    The installed distribution contains the dropin but neither
    C{twisted/__init__.py}, C{twisted/plugins/__init__.py} nor a
    C{dropin.cache}.

    Installing any of those would overwrite Twisted's own files; uninstalling
    netdemos would then break Twisted.
    """
    files = installedPython(
        tmp_path,
        "import importlib.metadata, json;"
        "files = importlib.metadata.files('netdemos');"
        "print(json.dumps(None if files is None else [str(f) for f in files]))",
    )
    assert files is not None, "the installed netdemos has no RECORD"
    assert "twisted/plugins/netdemos_plugin.py" in files, files
    assert "twisted/__init__.py" not in files, files
    assert "twisted/plugins/__init__.py" not in files, files
    assert not [name for name in files if name.endswith("dropin.cache")], files


def test_distributionShipsNoTestCodeAndItsLuaScripts(tmp_path: Path) -> None:
    """
    The installed package is the server: the helpers that run it for the
    tests and benchmarks stay in C{tests/support/}; the Lua scripts it runs
    in Redis ship, as package data.
    """
    files = installedPython(
        tmp_path,
        "import importlib.metadata, json;"
        "print(json.dumps([str(f) for f in importlib.metadata.files('netdemos')]))",
    )
    assert [name for name in files if "testing" in name or "/tests/" in name] == []
    assert "netdemos/lua/room-publish.lua" in files, files
