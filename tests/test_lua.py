"""
The Lua scripts netdemos runs in Redis (C{netdemos/lua/}) are files of their
own: each compiles in a real Redis, and none is left unused.
"""

from __future__ import annotations

import re
from importlib.resources import files
from pathlib import Path

from support.backbone import RedisServer

from netdemos import counting
from netdemos.chat import redishub

SCRIPTS = {
    "counter-take.lua": counting.TAKE_SCRIPT,
    "counter-raise.lua": counting.RAISE_SCRIPT,
    "room-publish.lua": redishub.PUBLISH_SCRIPT,
    "room-register.lua": redishub.REGISTER_SCRIPT,
    "room-heartbeat.lua": redishub.HEARTBEAT_SCRIPT,
    "room-unregister.lua": redishub.UNREGISTER_SCRIPT,
}


def installedScripts() -> set[str]:
    folder = files("netdemos") / "lua"
    return {each.name for each in folder.iterdir() if each.name.endswith(".lua")}


def test_everyScriptIsInstalledAndUsed() -> None:
    """
    The wheel carries the scripts (package data), and each is what a
    command sends; C{room.lua} is the preamble of the room's.
    """
    assert installedScripts() == {*SCRIPTS, "room.lua"}
    preamble = (files("netdemos") / "lua" / "room.lua").read_text()
    for name, script in SCRIPTS.items():
        if name.startswith("room-"):
            assert script.startswith(preamble), name


def test_eachScriptCompilesInRedis(redis: RedisServer) -> None:
    """
    C{SCRIPT LOAD} compiles each script without running it: a syntax error
    in one fails here, not when an instance first needs it.
    """
    for name, script in SCRIPTS.items():
        reply = redis.command("SCRIPT", "LOAD", script)
        loaded = re.fullmatch(rb"\$40\r\n[0-9a-f]{40}\r\n", reply or b"")
        assert loaded, (name, reply)


def test_noPythonModuleHoldsLua() -> None:
    """
    Lua lives in C{.lua} files, where it can be read and linted as Lua.
    """
    package = Path(counting.__file__).parent
    holding = [
        str(module.relative_to(package))
        for module in package.rglob("*.py")
        if "redis.call(" in module.read_text()
    ]
    assert holding == []
