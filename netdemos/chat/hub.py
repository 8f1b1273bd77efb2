"""
Where the room's events travel, and who is in the room: one interface,
L{IHub}, and one implementation per reach.

  - L{LocalHub}: one process; every event is heard in the call that made it.
  - L{netdemos.chat.redishub.RedisHub}: every instance on one Redis; events
    go through one Redis channel, and every instance hears them in the order
    Redis delivers them.

The room publishes what happens (a line said, a join, a departure, a rename)
and acts only when the hub calls it back: so with either hub, every member on
every instance sees the same events in the same order, its own included.
Presence, who is in the room under which name, lives here too, so that
C{/who} and nick uniqueness have one source of truth.
"""

from __future__ import annotations

from zope.interface import Interface, implementer


class IHubListener(Interface):
    """
    What a hub tells its room, in hub order.
    """

    def heard(line: str) -> None:
        """
        Someone said C{line} (already formatted, C{<NAME> TEXT}).
        """

    def joined(name: str, crowd: int, here: bool) -> None:
        """
        C{name} joined; the room now holds C{crowd}.  C{here}: it is a member
        of this instance.
        """

    def left(name: str, why: str, crowd: int) -> None:
        """
        C{name} left (C{why}, e.g. "left"); C{crowd} counts it still.
        """

    def renamed(old: str, new: str, crowd: int, here: bool) -> None:
        """
        C{old} is now called C{new}.  C{here}: it is a member of this
        instance.
        """

    def nameRefused(name: str, previous: str | None) -> None:
        """
        A member of this instance took C{name} at the same time as one on
        another instance, which got it first: the local one must give it up,
        going back to C{previous} (after a rename) or to a new name.
        """

    def linkChanged(whole: bool, crowd: int) -> None:
        """
        This instance was cut off from the others (C{whole} false), or is
        back with them: tell its members.
        """


class IHub(Interface):
    """
    The room's events, and who is in the room, across as many instances as
    share the hub.
    """

    def attach(room: IHubListener) -> None:
        """
        Call C{room} back with every event, in hub order.
        """

    def say(line: str) -> None:
        """
        Publish a line for everyone.
        """

    def join(name: str) -> None:
        """
        A member of this instance joined as C{name}.
        """

    def leave(name: str, why: str) -> None:
        """
        The member of this instance called C{name} left.
        """

    def rename(old: str, new: str) -> None:
        """
        The member of this instance called C{old} is now C{new}.
        """

    def isTaken(name: str) -> bool:
        """
        Whether someone, on any instance, is called C{name}, whatever its case.
        """

    def names() -> list[str]:
        """
        Everyone in the room, on every instance, sorted.
        """

    def count() -> int:
        """
        How many are in the room, on every instance.
        """

    def close() -> None:
        """
        This instance is going away, with all its members.
        """


class Attached:
    """
    What every hub starts with: the room it calls back, once attached.
    """

    _room: IHubListener | None = None

    @property
    def room(self) -> IHubListener:
        assert self._room is not None, "attach() the room first"
        return self._room

    def attach(self, room: IHubListener) -> None:
        self._room = room


@implementer(IHub)
class LocalHub(Attached):
    """
    The hub of a room served by one process: each event is heard at once, in
    the call that published it.
    """

    def __init__(self) -> None:
        self._names: dict[str, str] = {}

    def say(self, line: str) -> None:
        self.room.heard(line)

    def join(self, name: str) -> None:
        self._names[name.casefold()] = name
        self.room.joined(name, len(self._names), True)

    def leave(self, name: str, why: str) -> None:
        self._names.pop(name.casefold(), None)
        self.room.left(name, why, len(self._names) + 1)

    def rename(self, old: str, new: str) -> None:
        del self._names[old.casefold()]
        self._names[new.casefold()] = new
        self.room.renamed(old, new, len(self._names), True)

    def isTaken(self, name: str) -> bool:
        return name.casefold() in self._names

    def names(self) -> list[str]:
        return sorted(self._names.values())

    def count(self) -> int:
        return len(self._names)

    def close(self) -> None:
        self._names.clear()
