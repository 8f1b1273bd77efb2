"""
The log events a unit test emits, collected for it to assert on.
"""

from __future__ import annotations

from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase


def logged(case: SynchronousTestCase) -> EventLoggingObserver:
    """
    Collect the events logged during this test.
    """
    return EventLoggingObserver.createWithCleanup(
        case,  # type: ignore[arg-type]
        globalLogPublisher,
    )
