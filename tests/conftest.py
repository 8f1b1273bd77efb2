"""
Shared test setup.

The tests directory has no C{__init__.py}, so pytest puts C{tests/} (not the
project root) on C{sys.path}: C{import netdemos} then finds the I{installed}
package, which is what C{twistd} runs too.
"""

from __future__ import annotations

import os

import netdemos


def pytest_report_header() -> str:
    return f"netdemos under test: {os.path.dirname(netdemos.__file__)}"


if os.environ.get("CI") and "site-packages" not in netdemos.__file__:
    raise RuntimeError(
        f"CI must test the installed netdemos, not {netdemos.__file__}; run"
        " `pytest` (not `python -m pytest`) after `pip install '.[test]'`"
    )
