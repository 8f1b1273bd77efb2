"""
Tests for L{netdemos.testing}, the helpers the end-to-end tests and the
benchmarks run twistd with.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from netdemos.testing import childEnvironment


def test_importsNothingOfTwisted(tmp_path: Path) -> None:
    """
    Importing L{netdemos.testing} in a fresh Python loads no module of
    Twisted.

    The test and benchmark processes must see netdemos only as its clients
    do, and a reactor imported there would be a second, unused one.
    """
    # Isolated (-I), from elsewhere: the installed netdemos, not the tree's.
    program = "import json, sys, netdemos.testing; print(json.dumps(list(sys.modules)))"
    listing = subprocess.run(
        [sys.executable, "-I", "-c", program],
        cwd=tmp_path,
        env=childEnvironment(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    loaded = json.loads(listing.stdout)
    assert "netdemos.testing" in loaded
    assert [name for name in loaded if name.split(".")[0] == "twisted"] == []
