"""
Chat text: split a byte stream into lines with bounded memory, and clean each
line of what must not reach another user's terminal.
"""

from __future__ import annotations

import re

# The longest line a member may send, in bytes, unless --max-line says.
DEFAULT_MAX_LINE = 4096

# C0 controls other than TAB, DEL, and the C1 controls: removed so that nobody
# can move another user's cursor, clear their screen or retitle their terminal.
# (U+0080-U+009F matter too: a UTF-8 terminal may act on U+009B as CSI.)
_CONTROLS = dict.fromkeys([*range(0x00, 0x09), *range(0x0A, 0x20), *range(0x7F, 0xA0)])


def clean(raw: bytes) -> str:
    """
    Turn the bytes of one line into text that is safe to show to others.

    Invalid UTF-8 becomes U+FFFD; control characters are removed.
    """
    return cleanText(raw.decode("utf-8", "replace"))


# The same characters, to find: most text has none, and a search is cheaper
# than a translation.
_ANY_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def cleanText(text: str) -> str:
    """
    Remove from C{text} the control characters L{clean} removes: for text
    that arrives already decoded, as from Redis.
    """
    if _ANY_CONTROL.search(text) is None:
        return text
    return text.translate(_CONTROLS)


class LineBuffer:
    """
    Split a byte stream into lines, with a bound on how long a line may be.

    A line ends with LF; one CR before the LF is dropped.  A line longer than
    C{maxLength} (not counting its CR LF) is discarded whole, up to and
    including its LF, while holding at most C{maxLength + 1} bytes of it.  The
    lines after it, even in the same chunk, are kept.

    Twisted's L{LineReceiver} would instead clear its buffer and treat the rest
    of an over-long line as a new line, and L{LineOnlyReceiver} drops the lines
    after it; hence this small class.
    """

    __slots__ = ("maxLength", "_partial", "_discarding")

    def __init__(self, maxLength: int) -> None:
        self.maxLength = maxLength
        self._partial = b""
        self._discarding = False

    def feed(self, data: bytes) -> list[bytes | None]:
        """
        Add C{data} and return the lines it completes, in order, with L{None}
        in place of each line that was too long.
        """
        if self._discarding:
            end = data.find(b"\n")
            if end == -1:
                return []
            data = data[end + 1 :]
            self._discarding = False
        *complete, self._partial = (self._partial + data).split(b"\n")
        lines: list[bytes | None] = []
        for line in complete:
            if line.endswith(b"\r"):
                line = line[:-1]
            lines.append(line if len(line) <= self.maxLength else None)
        pending = len(self._partial) - self._partial.endswith(b"\r")
        if pending > self.maxLength:
            # Report the line as soon as it is known to be too long, and skip
            # the rest of it as it arrives instead of buffering it.
            self._partial = b""
            self._discarding = True
            lines.append(None)
        return lines
