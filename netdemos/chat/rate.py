"""
A token bucket: how flood control decides whether a line may go now.
"""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime


class TokenBucket:
    """
    A rate with a burst: L{take} succeeds C{burst} times at once, then C{rate}
    times a second on average.  A rate of 0 means no limit.
    """

    __slots__ = ("_clock", "rate", "burst", "_tokens", "_stamp")

    def __init__(self, clock: IReactorTime, rate: float, burst: int) -> None:
        self._clock = clock
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._stamp = clock.seconds()

    def take(self) -> bool:
        """
        Take one token if there is one; say whether there was.
        """
        if not self.rate:
            return True
        now = self._clock.seconds()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        # (A hair under 1 counts: float rounding must not leave a client one
        # ulp short of a token forever.)
        if self._tokens < 1 - 1e-9:
            return False
        self._tokens -= 1
        return True

    def wait(self) -> float:
        """
        Seconds until the next token, after a L{take} that failed.
        """
        # At least a millisecond: a clock at 1.7e9 s cannot add much less.
        return max((1 - self._tokens) / self.rate, 0.001)
