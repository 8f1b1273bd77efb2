"""
Tests for L{support.running}, the helpers the end-to-end tests and the
benchmarks run twistd with.
"""

from __future__ import annotations

from pathlib import Path

from support.process import installedPython
from support.running import SERVICES

from netdemos import options as cli


def test_importsNothingOfTwisted(tmp_path: Path) -> None:
    """
    Importing L{support.running} in a fresh Python loads no module of
    Twisted.

    The test and benchmark processes must see netdemos only as its clients
    do, and a reactor imported there would be a second, unused one.
    """
    tests = Path(__file__).resolve().parent
    program = (
        f"import json, sys; sys.path.insert(0, {str(tests)!r});"
        " import support.running; print(json.dumps(list(sys.modules)))"
    )
    loaded = installedPython(tmp_path, program)
    assert "support.running" in loaded
    assert [name for name in loaded if name.split(".")[0] == "twisted"] == []


def test_theServicesAreNetdemossOwn() -> None:
    """
    L{support.running} names the services itself, so as to import nothing of
    the server; they are the ones the plugin serves.
    """
    assert SERVICES == cli.SERVICES
