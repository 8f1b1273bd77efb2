"""
A chat room on a running netdemos with a client that never reads, for the
end-to-end tests of how the room drops a client that falls behind.
"""

from __future__ import annotations

from collections.abc import Mapping

from support.clients import Clients
from support.process import Launcher

MB = 1024 * 1024

# The chat backlog SlowClientRoom's server has: unsent bytes a member may have
# waiting before it is dropped.
CHAT_BACKLOG = 65536


class SlowClientRoom:
    """
    A chat server with a small backlog and three clients: C{reader} and
    C{sender} read everything, C{slow} never reads and has a small receive
    window.
    """

    batchSize = 500
    # With ~100-byte lines, the kernel's buffers for the slow client fill and
    # its backlog passes 64 KiB after a few MB: this only stops a runaway loop.
    maxLines = 100_000

    def __init__(
        self,
        launcher: Launcher,
        clients: Clients,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        # Flood control would slow the sender long before the backlog fills:
        # this is a test of the backlog, so loosen it as far as it goes.  (Not
        # lifted: then the room would hold the sender back for the slow
        # client, as a load test wants, and its backlog would never fill.)
        self.server = launcher.start(
            ["chat"],
            extra=[
                f"--chat-backlog={CHAT_BACKLOG}",
                "--chat-rate=1000000",
                "--chat-burst=1000000",
            ],
            environ=environ,
        )
        port = self.server.chatPort
        self.reader = clients.chatUser(port)
        self.sender = clients.chatUser(port)
        self.slow = clients.chatUser(port, reading=False, receiveBuffer=4096)
        joined = f"* {self.slow.name} joined (3 in the room)"
        self.reader.inbox.waitForLine(joined)
        self.sender.inbox.waitForLine(joined)
        self.dropNotice = f"* {self.slow.name} was dropped (too slow)"
        self.sent: list[str] = []
        self._readerPosition = self._senderPosition = 0

    def sendBatch(self) -> None:
        """
        Send a batch of numbered lines in one write, and wait until both
        reading clients have it.

        Waiting keeps the reading clients from ever being the slow ones,
        however busy this machine is.
        """
        start = len(self.sent)
        batch = [f"line {start + i:07d} {'p' * 90}" for i in range(self.batchSize)]
        self.sender.send("".join(text + "\n" for text in batch).encode())
        self.sent.extend(batch)
        last = f"<{self.sender.name}> {batch[-1]}"
        self._readerPosition = self.reader.inbox.waitForLine(last, self._readerPosition)
        self._senderPosition = self.sender.inbox.waitForLine(last, self._senderPosition)

    def sendUntilSlowClientIsDropped(self) -> None:
        while self.dropNotice not in self.reader.inbox.snapshot():
            assert len(self.sent) < self.maxLines, (
                f"{self.slow.name} was not dropped after {len(self.sent)} lines"
            )
            self.sendBatch()

    def checkSlowClientIsDroppedAndOthersGetEveryLine(self) -> None:
        """
        Send until the slow client is dropped, and one more batch; check that
        the reader got every line, in order, the sender the notice of the drop
        once, that the room now holds the two of them, and that the server's
        memory grew by less than 32 MB.
        """
        rssBefore = self.server.rssBytes()
        self.sendUntilSlowClientIsDropped()
        linesBeforeDrop = len(self.sent)
        self.sendBatch()
        rssGrowth = self.server.rssBytes() - rssBefore
        print(
            f"slow client dropped after {linesBeforeDrop} lines"
            f" ({linesBeforeDrop * 100 / MB:.1f} MB); server RSS grew"
            f" {rssGrowth / MB:.1f} MB"
        )

        said = f"<{self.sender.name}> "
        relayed = [
            line[len(said) :]
            for line in self.reader.inbox.snapshot()
            if line.startswith(said)
        ]
        assert relayed == self.sent
        assert self.sender.inbox.snapshot().count(self.dropNotice) == 1
        self.reader.send(b"/who\n")
        both = sorted([self.reader.name, self.sender.name])
        self.reader.inbox.waitForLine(f"* in the room (2): {', '.join(both)}")
        assert rssGrowth < 32 * MB, f"server RSS grew {rssGrowth / MB:.1f} MB"
        self.server.assertNoErrorsLogged()
