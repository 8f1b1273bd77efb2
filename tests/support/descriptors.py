"""
A stand-in for the process's open-file limit, so that tests never change the
test process's own.
"""

from __future__ import annotations


class FakeOpenFileLimit:
    """
    An L{netdemos.descriptors.OpenFileLimit} held in memory.

    @ivar refusal: raised by L{set} if not L{None}, as a sandbox might.
    @ivar calls: each C{(soft, hard)} that L{set} was given.
    """

    def __init__(
        self, soft: int | None, hard: int | None, refusal: Exception | None = None
    ) -> None:
        self.soft, self.hard = soft, hard
        self.refusal = refusal
        self.calls: list[tuple[int, int | None]] = []

    def get(self) -> tuple[int | None, int | None]:
        return self.soft, self.hard

    def set(self, soft: int, hard: int | None) -> None:
        self.calls.append((soft, hard))
        if self.refusal is not None:
            raise self.refusal
        self.soft, self.hard = soft, hard


def plenty() -> FakeOpenFileLimit:
    """
    A limit that holds every default connection limit: what systemd gives.
    """
    return FakeOpenFileLimit(1024, 524288)
