"""
What each service reports about itself, for C{/metrics}: L{IReportsFigures}.

A service gives its own figures as plain L{Figure}s, read when the metrics
are scraped; so no service imports the Prometheus client (an optional
extra), and L{netdemos.metrics} knows no service, only this interface.  Each
label's values (a refusal's reason, say) are defined beside the code that
counts them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from zope.interface import Interface


@dataclass(frozen=True)
class Figure:
    """
    One figure: a counter (a total so far) or a gauge (a level now).

    @ivar name: the metric's name after C{netdemos_}, such as C{echo_bytes}.
    @ivar labels: the label names and values, in order; figures of one name
        have the same label names.
    """

    name: str
    help: str
    value: float
    labels: tuple[tuple[str, str], ...] = ()
    kind: str = "counter"


class IReportsFigures(Interface):
    """
    A service (its factory or site) that reports figures of its own.
    """

    def figures() -> Iterable[Figure]:
        """
        This service's figures, as they are now.
        """
