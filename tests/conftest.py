"""
Shared test setup, and the fixtures of the end-to-end tests.

The tests directory has no C{__init__.py}, so pytest puts C{tests/} (not the
project root) on C{sys.path}: C{import netdemos} then finds the I{installed}
package, which is what C{twistd} runs too, and C{import support} finds the
helpers in C{tests/support/}.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from support.backbone import RedisServer
from support.certificates import Certificate, makeCertificate
from support.clients import Clients
from support.process import Launcher

import netdemos


def pytest_report_header() -> str:
    return f"netdemos under test: {os.path.dirname(netdemos.__file__)}"


if os.environ.get("CI") and "site-packages" not in netdemos.__file__:
    raise RuntimeError(
        f"CI must test the installed netdemos, not {netdemos.__file__}; run"
        " `pytest` (not `python -m pytest`) after `pip install '.[test]'`"
    )


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    """
    What the test opens and starts, closed and stopped in reverse order when
    it ends: clients first, then servers.
    """
    with ExitStack() as stack:
        yield stack


@pytest.fixture
def launcher(tmp_path: Path, stack: ExitStack) -> Launcher:
    return Launcher(tmp_path, stack)


@pytest.fixture
def clients(stack: ExitStack) -> Clients:
    return Clients(stack)


@pytest.fixture
def certificate(tmp_path: Path) -> Certificate:
    return makeCertificate(tmp_path / "tls")


@pytest.fixture
def redis(tmp_path: Path, stack: ExitStack) -> RedisServer:
    """
    A real redis-server of the test's own, on a free port; see L{RedisServer}.
    """
    return RedisServer(tmp_path, stack).start()
