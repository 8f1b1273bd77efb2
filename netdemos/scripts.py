"""
The Lua scripts netdemos runs in Redis, kept as package data in
C{netdemos/lua/} (as the chat page's files are in C{netdemos/static/}): files
that can be read, linted and tested as Lua, not strings inside Python.
"""

from __future__ import annotations

from importlib.resources import files


def luaScript(*names: str) -> str:
    """
    The text of the Lua files C{names} in C{netdemos/lua/}, one after the
    other: a preamble that several scripts share, then the script.
    """
    folder = files("netdemos") / "lua"
    return "".join((folder / name).read_text(encoding="utf-8") for name in names)
