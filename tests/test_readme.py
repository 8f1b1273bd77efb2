"""
The README's recipes, run as a reader would paste them into a shell.

A recipe that the README promises works is a fenced C{```sh} block preceded by
the line C{<!-- readme-test -->}.  The test finds every such block under
L{SECTIONS}' headings and runs each with C{bash -e -o pipefail} (so that any
command that fails, not only the last, fails the test) in its own process
group, in a fresh copy of this working tree: the files C{git} tracks or would
track (not what it ignores), as they are now, edits included.  Each block must
exit 0 within L{BLOCK_TIMEOUT} and leave no process running; whatever is left
is killed.

What differs from a reader's fresh clone, and why:

  - The install blocks are not run, and carry no marker: the clone's C{.venv}
    is a symlink to this interpreter's virtual environment (C{sys.prefix}),
    where netdemos is installed with its test extras (a superset of every
    recipe's), so the test needs no network.  Installing from a clean clone is
    what C{.ci/run} does.
  - Fixed ports become free ones (L{support.running.freePorts}), in the
    blocks and in the clone's C{contrib/haproxy/haproxy.cfg} alike, so that
    the test runs beside anything else.  A C{twistd ... netdemos} command that
    leaves a service at its default port first gets it spelled out
    (C{--http=8080}), then moved like any other port.
  - C{/usr/sbin} is on C{PATH}, where Debian puts C{haproxy}.

The programs a block uses (C{redis-server}, C{haproxy}, ...) are required as
the other end-to-end tests require them: missing, the test fails under C{CI}
and is skipped elsewhere.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from support.backbone import SEARCH_PATH, requireProgram
from support.running import freePorts

from netdemos.options import DEFAULT_PORTS

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MARKER = "<!-- readme-test -->"
SECTIONS = ["Quick start", "TLS", "Several instances"]
PROGRAMS = {
    "curl": "curl",
    "openssl": "openssl",
    "redis-server": "redis-server",
    "haproxy": "haproxy",
}
BLOCK_TIMEOUT = 30.0

# A port, as the recipes and haproxy.cfg name one: after a host, an endpoint
# type, a service option or "port " (not, say, the 2048 of "rsa:2048").
PORT = re.compile(
    "(?:"
    + "|".join(
        f"(?<={re.escape(before)})"
        for before in [
            *("localhost:", "127.0.0.1:", "tcp:", "tcp6:", "ssl:", "port "),
            *(f"--{service}=" for service in DEFAULT_PORTS),
        ]
    )
    + r")(\d{4,5})\b"
)


def sectionText(readme: str, heading: str) -> str:
    """
    The text under the level-two C{heading}, up to the next level-two heading.
    """
    match = re.search(
        rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", readme, re.M | re.S
    )
    assert match, f"README.md has no section {heading!r}"
    return match[1]


def markedBlocks(section: str) -> list[str]:
    """
    The C{```sh} blocks of C{section} that follow L{MARKER}; a marker not
    followed by one is an error, not a block quietly left untested.
    """
    blocks = []
    for after in section.split(MARKER)[1:]:
        match = re.match(r"\s*```sh\n(.*?)^```$", after, re.M | re.S)
        assert match, f"{MARKER} is not followed by a ```sh block:\n{after[:200]}"
        blocks.append(match[1])
    return blocks


def spellOutDefaults(script: str) -> str:
    """
    Give every C{twistd ... netdemos} command an option for each service it
    leaves at its default port, so that the port appears in the text.
    """
    script = script.replace("\\\n", " ")

    def spell(match: re.Match[str]) -> str:
        command = match[0]
        missing = [
            f"--{service}={port}"
            for service, port in DEFAULT_PORTS.items()
            if f"--{service}=" not in command
        ]
        return re.sub(
            r"\bnetdemos\b", " ".join(["netdemos", *missing]), command, count=1
        )

    return re.sub(r"^.*\btwistd\b.*\bnetdemos\b.*$", spell, script, flags=re.M)


def movePorts(texts: list[str]) -> list[str]:
    """
    C{texts} with every port they name replaced by a free one, the same port
    by the same free one throughout.
    """
    ports = sorted({int(port) for text in texts for port in PORT.findall(text)})
    free = dict(zip(ports, freePorts(len(ports)), strict=True))
    return [PORT.sub(lambda m: str(free[int(m[1])]), text) for text in texts]


def cloneWithVenv(destination: Path) -> Path:
    """
    A copy at C{destination} of the files a clone of this working tree would
    have, as they are now (committed or not, but not git-ignored), whose
    C{.venv} is this interpreter's virtual environment.
    """
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=60,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    venv = Path(sys.prefix)
    assert (venv / "bin" / "twistd").exists(), (
        f"{venv} has no bin/twistd: run pytest from the virtual environment"
        " netdemos is installed in"
    )
    (destination / ".venv").symlink_to(venv)
    return destination


def runBlock(script: str, clone: Path, log: Path) -> tuple[int, bool, str]:
    """
    Run C{script} with bash in C{clone}, in a process group of its own.

    @return: its exit status (or -1 when it overran L{BLOCK_TIMEOUT}), whether
        any process of its group was still running after it, and its output.
    """
    environ = {**os.environ, "PATH": SEARCH_PATH}
    with log.open("wb") as output:
        process = subprocess.Popen(
            ["bash", "-e", "-o", "pipefail", "-c", script],
            cwd=clone,
            env=environ,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        status = process.wait(timeout=BLOCK_TIMEOUT)
    except subprocess.TimeoutExpired:
        status = -1
    leftovers = True
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        leftovers = False
    process.wait()
    return status, leftovers, log.read_text(errors="replace")


def test_eachSectionHasARecipeUnderTest() -> None:
    """
    Every section the test covers has at least one marked block: a heading
    renamed, or a marker dropped, would otherwise leave its recipes untested.
    """
    readme = README.read_text()
    for heading in SECTIONS:
        assert markedBlocks(sectionText(readme, heading)), heading


def test_spellOutDefaultsNamesEveryServiceLeftAtItsDefault() -> None:
    """
    A command that sets some services' endpoints gets the others' default
    ports, so that every port it listens on can be moved.
    """
    script = ".venv/bin/twistd -n netdemos \\\n    --http=ssl:8443 &\ncurl x\n"
    assert spellOutDefaults(script) == (
        ".venv/bin/twistd -n netdemos --echo=1234 --chat=1025 --web=8081"
        "      --http=ssl:8443 &\ncurl x\n"
    )


@pytest.mark.parametrize("heading", SECTIONS)
def test_recipeWorksPastedIntoAShell(heading: str, tmp_path: Path) -> None:
    """
    Each marked block of the section, run in order from a fresh clone, exits
    0 and leaves nothing running: a reader who pastes it gets what the README
    says, and is not left with a server in the background.
    """
    blocks = markedBlocks(sectionText(README.read_text(), heading))
    for block in blocks:
        for program, package in PROGRAMS.items():
            if re.search(rf"(^|[\s|&;(]){re.escape(program)}\b", block, re.M):
                requireProgram(program, package)
    clone = cloneWithVenv(tmp_path / "clone")
    haproxyConfig = clone / "contrib/haproxy/haproxy.cfg"
    *scripts, config = movePorts(
        [spellOutDefaults(block) for block in blocks] + [haproxyConfig.read_text()]
    )
    haproxyConfig.write_text(config)
    for number, script in enumerate(scripts, 1):
        status, leftovers, output = runBlock(
            script, clone, tmp_path / f"block-{number}.log"
        )
        where = f"{heading!r}, block {number}:\n{script}\n--- its output:\n{output}"
        assert status == 0, f"exit status {status} in {where}"
        assert not leftovers, f"processes left running by {where}"
