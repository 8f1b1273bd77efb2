"""
Wiring for C{twistd netdemos}: the service tree the command line asks for.

Nothing here speaks a protocol, nor parses the command line (that is
L{netdemos.options}).  L{makeService} builds one factory per service and
listens with it on each of that service's endpoints, as C{twisted.web.tap}
does.
"""

from __future__ import annotations

from typing import Any

from netdemos import (
    counter,
    counting,
    descriptors,
    echo,
    hangup,
    lifecycle,
    udpecho,
    web,
)
from netdemos.chat import room as chatroom
from netdemos.chat import tcp as chat
from netdemos.chat.member import MemberSettings
from netdemos.listening import listen, listenDatagrams
from netdemos.notify import Notifier
from netdemos.options import SERVICES, Options, reactorOrGlobal

# twistd's ServiceMaker looks for these two names here.
__all__ = ["Options", "makeService"]


def makeService(
    options: Options,
    reactor: Any = None,
    openFiles: descriptors.OpenFileLimit | None = None,
) -> lifecycle.NetdemosService:
    """
    Build the service tree: a factory per service, listening on its endpoints.

    @param openFiles: the open-file limit to raise and fit the connection
        limits to; this process's by default.
    """
    # A signal handler belongs to the whole process: only the server that runs
    # on the global reactor, as under twistd, installs one; a test's
    # MemoryReactor never does.
    handleSignals = reactor is None
    reactor = reactorOrGlobal(reactor)
    if openFiles is None:
        openFiles = descriptors.ProcessOpenFileLimit()

    server = lifecycle.NetdemosService(
        reactor,
        Notifier(),
        shutdownTimeout=options["shutdown-timeout"],
        instance=options["name"],
    )
    if handleSignals:
        # It starts with the others, and its handler stays installed to the
        # end, so that a SIGHUP during the drain is handled, not fatal.
        hangup.HangupService(reactor).setServiceParent(server)
    maxConnections = options["max-connections"]
    link = None
    if options["redis"] is not None:
        from netdemos.redis import RedisLink

        link = RedisLink(options["redis"], reactor, options["redis-prefix"])
        link.setServiceParent(server.backends)
        server.redis = link
    requestCounter = makeCounter(
        options["counter-file"] if options["http"] else None,
        link if options["http"] else None,
        reactor,
    )
    counting.SavedOnStop(requestCounter).setServiceParent(server.backends)
    if options["http"]:
        server.dependencies.append(requestCounter)

    echoFactory = echo.EchoFactory(
        reactor, maxConnections=maxConnections, idleTimeout=options["idle-timeout"]
    )
    site = counter.CounterSite(
        requestCounter,
        accessLog=options["access-log"],
        maxConnections=maxConnections,
        headerTimeout=options["http-header-timeout"],
        reactor=reactor,
        instance=options["name"],
    )
    hub = None
    if link is not None and options["chat"]:
        from netdemos.chat.redishub import RedisHub

        hub = RedisHub(link, reactor, options["name"], maxLine=options["max-line"])
    # One room, whose members come over TCP and over WebSocket alike.
    members = MemberSettings(
        chatroom.ChatRoom(
            reactor,
            memory=options["chat-memory"],
            hub=hub,
            # Flood control lifted, for a load test: readers set the pace.
            backpressure=options["chat-rate"] == 0,
        ),
        reactor,
        maxLine=options["max-line"],
        backlog=options["chat-backlog"],
        rate=options["chat-rate"],
        burst=options["chat-burst"],
        idleTimeout=options["idle-timeout"],
        instance=options["name"],
    )
    chatFactory = chat.ChatFactory(members, maxConnections=maxConnections)

    webSite = web.WebSite(
        members,
        reactor,
        maxConnections=maxConnections,
        maxMessage=options["ws-max-message"],
        pingInterval=options["ws-ping"],
        origins=frozenset(options["web-origin"]),
        idleTimeout=options["idle-timeout"],
        headerTimeout=options["http-header-timeout"],
    )

    factories: dict[str, Any] = {
        "echo": echoFactory,
        "http": site,
        "chat": chatFactory,
        "web": webSite,
    }
    for name in SERVICES:
        if options[name]:
            server.factories[name] = factories[name]
        for description in options[name]:
            listen(
                server, server.listeners, name, description, factories[name], reactor
            )

    if options["echo-udp"]:
        echoes = udpecho.UDPEchoFactory(
            udpecho.SourceLimits(
                reactor, rate=options["echo-udp-rate"], burst=options["echo-udp-burst"]
            )
        )
        server.reporting["echo-udp"] = echoes
        for description in options["echo-udp"]:
            listenDatagrams(
                server, server.listeners, "echo-udp", description, echoes, reactor
            )

    if options["metrics"]:
        from netdemos.metrics import makeAdminSite

        admin = makeAdminSite(server)
        factories["metrics"] = admin
        for description in options["metrics"]:
            listen(server, server.admin, "metrics", description, admin, reactor)

    enabled = [name for name in (*SERVICES, "metrics") if options[name]]
    try:
        descriptors.fitToOpenFileLimit(
            {name: factories[name].connections for name in enabled},
            listeners=sum(len(options[name]) for name in [*enabled, "echo-udp"]),
            openFiles=openFiles,
            ceiling=descriptors.usableOpenFiles(reactor),
        )
    except ValueError as e:
        raise lifecycle.StartupError(f"netdemos: {e}") from e
    return server


def makeCounter(path: str | None, link: Any, clock: Any) -> counting.ICounter:
    """
    The counter the options ask for: in memory, in the file at C{path}, or in
    Redis through C{link}.
    """
    if link is not None:
        return counting.RedisCounter(link, clock)
    if path is None:
        return counting.MemoryCounter()
    try:
        return counting.FileCounter(path)
    except counting.CounterFileError as e:
        raise lifecycle.StartupError(f"netdemos: --counter-file: {e}") from e
