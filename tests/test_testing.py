"""
Tests for L{netdemos.testing}, the helpers the end-to-end tests and the
benchmarks run twistd with.
"""

from __future__ import annotations

from pathlib import Path

from support.process import installedPython


def test_importsNothingOfTwisted(tmp_path: Path) -> None:
    """
    Importing L{netdemos.testing} in a fresh Python loads no module of
    Twisted.

    The test and benchmark processes must see netdemos only as its clients
    do, and a reactor imported there would be a second, unused one.
    """
    program = "import json, sys, netdemos.testing; print(json.dumps(list(sys.modules)))"
    loaded = installedPython(tmp_path, program)
    assert "netdemos.testing" in loaded
    assert [name for name in loaded if name.split(".")[0] == "twisted"] == []
