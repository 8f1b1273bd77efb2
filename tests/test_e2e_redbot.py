"""
End-to-end: REDbot, lint for HTTP, finds nothing to warn about in what the
installed C{twistd -n netdemos} serves over HTTP: the chat page and its files
(C{--web}), and the counter (C{--http}).
"""

from __future__ import annotations

from support.process import Launcher
from support.redbot import lint
from support.running import LOOPBACK

# What the page is made of: the page, its script, its style and its icon.
PAGE_FILES = ("/", "/chat.js", "/chat.css", "/icon.svg")


def test_redbotFindsNothingToWarnAboutInThePageOrTheCounter(
    launcher: Launcher,
) -> None:
    """
    REDbot notes no WARN or BAD in any of the page's files or in the
    counter's answer, and finds that the page's files answer its
    C{If-None-Match} and C{If-Modified-Since} probes with 304.

    The files are served C{Cache-Control: no-cache}, so that a browser asks
    each time; without a validator, each asking downloaded them again, which
    is what REDbot warned of.
    """
    server = launcher.start(services=["web", "http"])
    web = [f"http://{LOOPBACK}:{server.webPort}{path}" for path in PAGE_FILES]
    counter = f"http://{LOOPBACK}:{server.httpPort}/"
    reports = lint([*web, counter])
    failing = [str(note) for report in reports for note in report.failing()]
    assert not failing, "REDbot warns:\n" + "\n".join(failing)
    for report in reports:
        assert report.status == 200, report
    for report in reports[: len(web)]:
        assert {"INM_304", "IMS_304"} <= report.noteIds(), report
    server.assertNoErrorsLogged()
