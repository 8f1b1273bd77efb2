"""
The UDP echo service (RFC 862 section 2): each datagram goes back to its
source as one datagram of the same bytes, and nowhere else.

A naive UDP echo is a reflector: anyone can forge a datagram's source address,
so the echo can be aimed at a victim, or at another echo or chargen service to
start a loop that never ends.  This one never sends more than it received,
drops datagrams from privileged ports (as BSD inetd's C{check_loop} does) and
from its own address, and limits what each source, and all of them together,
may have echoed: see L{SourceLimits}.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import DatagramProtocol
from zope.interface import implementer

from netdemos.figures import Figure, IReportsFigures

DEFAULT_RATE = 100.0
DEFAULT_BURST = 200

# What each source may have echoed is counted in tokens: a datagram costs
# one, or one for each TOKEN_BYTES it holds if that is more; so the default
# 100 datagrams a second also allow 200 KiB a second.
TOKEN_BYTES = 2048

# All sources together may have OVERALL times what one may.
OVERALL = 100

# The sources whose allowance is remembered, least recently heard from
# forgotten first: some 160 bytes each, about 5 MiB in all.  At the default
# rates no more than 20,000 sources can be spending their allowance at once
# (the overall 10,000 tokens a second, for the 2 s a burst takes to refill),
# so a source is only forgotten once it no longer matters.
MAX_SOURCES = 32_768

# Datagrams from these ports are dropped: they belong to services (echo is
# 7, chargen 19, DNS 53...), which a reply could start a loop with.
PRIVILEGED_PORTS = 1024

# Why each datagram was, or was not, echoed; the label of the figures.
ECHOED = "echoed"
DROPPED_PORT = "dropped_port"
DROPPED_SELF = "dropped_self"
DROPPED_RATE = "dropped_rate"
UNSENT = "unsent"
RESULTS = (ECHOED, DROPPED_PORT, DROPPED_SELF, DROPPED_RATE, UNSENT)

_EVERY_ADDRESS = ("0.0.0.0", "::", "")


class Allowance:
    """
    A rate and a burst, as the generic cell rate algorithm (GCRA) keeps them:
    a single number, the time at which the spender's tokens would all be back,
    instead of a token count and a time stamp.  It behaves exactly as
    L{netdemos.chat.rate.TokenBucket} does; one float per source is what lets
    L{SourceLimits} remember tens of thousands of them.
    """

    __slots__ = ("burst", "interval", "tolerance", "setBack")

    def __init__(self, rate: float, burst: float) -> None:
        self.burst = burst
        # A token is back this long after it was spent.
        self.interval = 1.0 / rate
        # A spender may be this far ahead of now: its burst.  (A hair over
        # counts as within: float rounding must not leave a source one ulp
        # short forever.)
        self.tolerance = burst * self.interval * (1 + 1e-9)
        # Further ahead than this, only a clock set back could have put it.
        self.setBack = 2 * self.tolerance


class SourceLimits:
    """
    How much each source, and all of them together, may have echoed: a rate
    and a burst in tokens per source (see L{TOKEN_BYTES}), and L{OVERALL}
    times as much for all.

    The table of sources is a least-recently-used cache of at most
    C{maxSources}, so a flood from forged addresses costs bounded memory; a
    source forgotten starts again with a full burst, which the overall limit
    still bounds.
    """

    def __init__(
        self,
        clock: IReactorTime,
        rate: float = DEFAULT_RATE,
        burst: int = DEFAULT_BURST,
        maxSources: int = MAX_SOURCES,
    ) -> None:
        self._now = clock.seconds
        self._each = Allowance(rate, burst)
        self._all = Allowance(rate * OVERALL, burst * OVERALL)
        self._allFull = 0.0
        self._sources: OrderedDict[str, float] = OrderedDict()
        self.maxSources = maxSources

    def __len__(self) -> int:
        return len(self._sources)

    def allow(self, source: str, size: int) -> bool:
        """
        Whether a datagram of C{size} bytes from C{source} (an address) may be
        echoed now; if so, its tokens are spent.

        Each allowance is the time at which its tokens are all back: spending
        moves it later by the tokens' worth of time, from now if it was in
        the past (or, after a clock set back, implausibly far ahead), and is
        refused if that would put it further ahead than the burst allows.
        This runs for every datagram, so it is written out, not in calls.
        """
        now = self._now()
        each, all = self._each, self._all
        tokens = 1.0 if size <= TOKEN_BYTES else min(size / TOKEN_BYTES, each.burst)
        sources = self._sources
        full = sources.get(source)
        if full is not None:
            sources.move_to_end(source)
        start = now if full is None or not 0 < full - now <= each.setBack else full
        own = start + tokens * each.interval
        if own - now > each.tolerance:
            return False
        allFull = self._allFull
        if not 0 < allFull - now <= all.setBack:
            allFull = now
        overall = allFull + tokens * all.interval
        if overall - now > all.tolerance:
            return False
        self._allFull = overall
        if full is None and len(sources) >= self.maxSources:
            sources.popitem(last=False)
        sources[source] = own
        return True


@implementer(IReportsFigures)
class UDPEchoFactory:
    """
    What every UDP echo port shares: the limits, and the counts of datagrams
    and bytes by what became of them.

    Twisted has no factory for datagram protocols (a port has one protocol
    for its whole life), but the part is the same as a stream factory's:
    L{buildProtocol} makes the protocol for each port and hands it the shared
    state.
    """

    def __init__(self, limits: SourceLimits) -> None:
        self.limits = limits
        self.datagrams = dict.fromkeys(RESULTS, 0)
        self.bytes = dict.fromkeys(RESULTS, 0)

    def buildProtocol(self) -> UDPEcho:
        return UDPEcho(self)

    def figures(self) -> Iterator[Figure]:
        for result in RESULTS:
            labels = (("result", result),)
            yield Figure(
                "udp_datagrams",
                "UDP echo datagrams received, by what became of them.",
                self.datagrams[result],
                labels,
            )
            yield Figure(
                "udp_bytes",
                "UDP echo bytes received, by what became of them.",
                self.bytes[result],
                labels,
            )
        yield Figure(
            "udp_sources",
            "Sources the UDP echo remembers the rate of (at most"
            f" {self.limits.maxSources}).",
            len(self.limits),
            kind="gauge",
        )


class UDPEcho(DatagramProtocol):
    """
    Echo the datagrams one port receives, each to its source, within the
    limits; count each, and log none, as a flood would flood the log.
    """

    transport: Any
    # Not Twisted's "Starting protocol" line: the banner says where it listens.
    noisy = False

    def __init__(self, factory: UDPEchoFactory) -> None:
        self._factory = factory
        self._allow = factory.limits.allow
        self._datagrams = factory.datagrams
        self._bytes = factory.bytes
        self._host = ""
        self._port = 0

    def startProtocol(self) -> None:
        own = self.transport.getHost()
        self._host, self._port = own.host, own.port

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        host, port = addr
        if port < PRIVILEGED_PORTS:
            result = DROPPED_PORT
        elif port == self._port and (
            host == self._host or self._host in _EVERY_ADDRESS
        ):
            result = DROPPED_SELF
        elif not self._allow(host, len(datagram)):
            result = DROPPED_RATE
        else:
            try:
                self.transport.write(datagram, addr)
                result = ECHOED
            except OSError:
                # The send buffer is full, or a firewall said no: a lost
                # datagram, which UDP allows.
                result = UNSENT
        self._datagrams[result] += 1
        self._bytes[result] += len(datagram)
