"""
Benchmarks for netdemos: each service under load, against the naive Twisted
homepage example it improves on, and an asyncio peer that shows the load
generator's own ceiling.  Run C{python -m bench --help}.
"""

import sys
from pathlib import Path

# The benchmarks start the real twistd netdemos as the end-to-end tests do,
# with the suite's own helpers (tests/support/running.py): test code, which
# the installed package does not ship.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
