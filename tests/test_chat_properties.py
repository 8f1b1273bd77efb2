"""
Property-based tests of the chat line handling: whatever bytes arrive, split
however the network splits them, the room relays the same safe lines.
"""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st
from support.chat import Room, received

from netdemos.chat.lines import LineBuffer

MAX_LINE = 16

# Bytes that make the interesting cases likely: line ends, controls, UTF-8.
alphabet = st.sampled_from(
    [
        b"a",
        b"b",
        b" ",
        b"\n",
        b"\r",
        b"\x1b",
        b"\x00",
        b"\x7f",
        b"\xc2\x9b",
        b"\xff",
        "é".encode(),
        b"/",
        b"<",
        b">",
        b"\t",
    ]
)
streams = st.lists(alphabet, max_size=120).map(b"".join)

# Split points, as fractions of the stream, so they apply to any length.
splits = st.lists(st.floats(min_value=0, max_value=1), max_size=10)

# A line relayed to others: a prefix, then no control character but TAB.
_SAFE_LINE = re.compile(rb"[^\x00-\x08\x0a-\x1f\x7f]*")


def chunked(data: bytes, fractions: list[float]) -> list[bytes]:
    cuts = sorted({int(f * len(data)) for f in fractions} | {0, len(data)})
    return [data[a:b] for a, b in zip(cuts, cuts[1:], strict=False)]


def relay(chunks: list[bytes]) -> tuple[list[bytes], list[bytes]]:
    """
    Feed C{chunks} from one client; return what it and a listener received.
    """
    room = Room(maxLine=MAX_LINE)
    sender, senderT = room.connect()
    _, listenerT = room.connect()
    received(senderT), received(listenerT)
    for chunk in chunks:
        sender.dataReceived(chunk)
    return received(senderT), received(listenerT)


@settings(max_examples=400, deadline=None)
@given(streams, splits)
def test_splittingNeverChangesTheLines(data: bytes, fractions: list[float]) -> None:
    """
    Lines do not depend on how TCP happened to cut the stream into reads.
    """
    whole = LineBuffer(MAX_LINE).feed(data)
    pieces = LineBuffer(MAX_LINE)
    split = [line for chunk in chunked(data, fractions) for line in pieces.feed(chunk)]
    assert split == whole


@settings(max_examples=400, deadline=None)
@given(streams, splits)
def test_relayedLinesAreTheSameHoweverSplit(
    data: bytes, fractions: list[float]
) -> None:
    """
    Everybody receives the same lines whether the data came in one read or many.
    """
    assert relay(chunked(data, fractions)) == relay([data])


@settings(max_examples=400, deadline=None)
@given(streams, splits)
def test_nothingLongOrControlReachesOthers(data: bytes, fractions: list[float]) -> None:
    """
    No relayed text is longer than the limit, and no control character other
    than TAB (nor a C1 control) ever reaches another client.
    """
    _, lines = relay(chunked(data, fractions))
    prefix = b"<127.0.0.1:40001> "
    for line in lines:
        assert _SAFE_LINE.fullmatch(line), line
        assert "\x9b" not in line.decode("utf-8")
        assert line.startswith(prefix), line
        assert len(line) - len(prefix) <= MAX_LINE * 3  # U+FFFD is 3 bytes
        text = line[len(prefix) :].decode("utf-8")
        assert len(text) <= MAX_LINE
