"""
Tests for L{netdemos.connections}: the registry of live connections.
"""

from __future__ import annotations

from twisted.internet.protocol import Protocol
from twisted.trial.unittest import SynchronousTestCase

from netdemos.connections import Connections


class Closeable(Protocol):
    def loseConnection(self) -> None:
        assert self.transport is not None
        self.transport.loseConnection()


class ConnectionsTests(SynchronousTestCase):
    def test_fullOnlyAtTheLimitAndRejectionsCounted(self) -> None:
        connections = Connections(limit=2)
        first, second = Closeable(), Closeable()
        self.assertFalse(connections.rejectIfFull())
        connections.add(first)
        connections.add(second)
        self.assertTrue(connections.rejectIfFull())
        self.assertTrue(connections.rejectIfFull())
        self.assertEqual(connections.rejected["limit"], 2)
        connections.remove(first)
        self.assertFalse(connections.rejectIfFull())
        self.assertEqual((len(connections), connections.total), (1, 2))

    def test_whenEmptyFiresWhenTheLastOneGoes(self) -> None:
        connections = Connections()
        self.assertIsNone(self.successResultOf(connections.whenEmpty()))
        protocol = Closeable()
        connections.add(protocol)
        d = connections.whenEmpty()
        self.assertNoResult(d)
        connections.remove(protocol)
        self.successResultOf(d)
