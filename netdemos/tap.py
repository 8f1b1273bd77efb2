"""
Wiring for C{twistd netdemos}: command-line options, and the service tree.

Nothing here speaks a protocol.  L{Options} parses and checks the command line;
L{makeService} builds one factory per service and listens with it on each of
that service's endpoints, as C{twisted.web.tap} does.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

from twisted.application import strports
from twisted.internet.endpoints import serverFromString
from twisted.python import usage

from netdemos import counter, descriptors, echo, lifecycle, limits, web, websocket
from netdemos.chat import room as chatroom
from netdemos.chat import tcp as chat
from netdemos.notify import Notifier

SERVICES = ("echo", "http", "chat", "web")
DEFAULT_ENDPOINTS = {
    "echo": "tcp:1234",
    "http": "tcp:8080",
    "chat": "tcp:1025",
    "web": "tcp:8081",
}

# Twisted listens with a backlog of 50; a burst of connections beyond that is
# dropped by the kernel and the clients retry after 1 s, 3 s, ...  Endpoints
# that do not set backlog= themselves get this instead.
DEFAULT_LISTEN_BACKLOG = 1024
_BACKLOG_TYPES = ("tcp", "tcp6", "ssl", "unix")


def _positiveInt(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError(f"{value} is not a positive whole number")
    return number


def _rate(value: str) -> float:
    number = float(value)
    if not 0 <= number < float("inf"):
        raise ValueError(f"{value} is not a rate: use 0 (no limit) or more")
    return number


def _seconds(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise ValueError(f"{value} is not a positive number of seconds")
    return number


def normalizeEndpoint(description: str) -> str:
    """
    Accept a bare port number as shorthand for C{tcp:PORT}.
    """
    return f"tcp:{description}" if description.isdigit() else description


def withListenBacklog(description: str) -> str:
    """
    Add C{backlog=DEFAULT_LISTEN_BACKLOG} to a listening endpoint that takes one
    and does not set it.
    """
    kind = description.split(":", 1)[0]
    if kind in _BACKLOG_TYPES and "backlog=" not in description:
        return f"{description}:backlog={DEFAULT_LISTEN_BACKLOG}"
    return description


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "Serve echo (RFC 862), an HTTP request counter and a line-based chat"
        " room from one process, and the room and echo over WebSocket with a"
        " chat page for browsers.  ENDPOINT is a Twisted endpoint string, such"
        " as tcp:1234, tcp:1234:interface=127.0.0.1, tcp6:1234,"
        " ssl:443:privateKey=key.pem:certKey=cert.pem,"
        " systemd:domain=INET:name=chat or unix:/run/chat.sock;"
        " a bare number N means tcp:N, and 'none' switches a service off."
        " Each endpoint option may be given several times to listen on several"
        " endpoints; several --chat and --web endpoints share one room."
    )

    optParameters: list[list[Any]] = [
        [
            "max-line",
            None,
            chat.DEFAULT_MAX_LINE,
            "Longest chat line in bytes; a longer one is discarded and its"
            " sender told (e.g. --max-line=512).",
            _positiveInt,
        ],
        [
            "chat-backlog",
            None,
            chat.DEFAULT_BACKLOG,
            "Bytes of unsent output a chat client may have waiting before it is"
            " dropped as too slow (e.g. --chat-backlog=262144).",
            _positiveInt,
        ],
        [
            "chat-rate",
            None,
            chat.DEFAULT_RATE,
            "Lines a second each chat client may send on average, commands"
            " included; faster senders are slowed by pausing their reads, and 0"
            " lifts the limit, for load tests (e.g. --chat-rate=0).",
            _rate,
        ],
        [
            "chat-burst",
            None,
            chat.DEFAULT_BURST,
            "Lines a chat client may send at once before --chat-rate applies"
            " (e.g. --chat-burst=200).",
            _positiveInt,
        ],
        [
            "chat-memory",
            None,
            chatroom.DEFAULT_MEMORY,
            "Bytes of unsent output the whole chat room may hold; past it the"
            " clients furthest behind are dropped (e.g. --chat-memory=16777216).",
            _positiveInt,
        ],
        [
            "ws-max-message",
            None,
            websocket.DEFAULT_MAX_MESSAGE,
            "Longest WebSocket message /echo takes, in bytes; a longer one"
            " closes the connection with code 1009 (/chat takes --max-line)"
            " (e.g. --ws-max-message=65536).",
            _positiveInt,
        ],
        [
            "ws-ping",
            None,
            websocket.DEFAULT_PING_INTERVAL,
            "Ping a WebSocket client quiet for this many seconds, and close it"
            " if it is still quiet as long again (e.g. --ws-ping=20).",
            _seconds,
        ],
        [
            "max-connections",
            None,
            limits.DEFAULT_MAX_CONNECTIONS,
            "Most connections at once, per service; past it echo closes, chat"
            " says '! server full' and HTTP and web answer 503"
            " (e.g. --max-connections=500).  Lowered at startup, with a"
            " warning, to what the open-file limit can hold.",
            _positiveInt,
        ],
        [
            "idle-timeout",
            None,
            None,
            "Close echo, chat and WebSocket clients silent for this many"
            " seconds; off by"
            " default (e.g. --idle-timeout=300). HTTP always closes idle"
            f" connections after {counter.DEFAULT_IDLE_TIMEOUT} s.",
            _seconds,
        ],
        [
            "shutdown-timeout",
            None,
            lifecycle.DEFAULT_SHUTDOWN_TIMEOUT,
            "On SIGTERM, seconds to let clients finish before dropping them"
            " (e.g. --shutdown-timeout=30).",
            _seconds,
        ],
        [
            "counter-file",
            None,
            None,
            "Keep the HTTP request count in this file across restarts"
            " (e.g. --counter-file=/var/lib/netdemos/count).",
        ],
        [
            "access-log",
            None,
            None,
            "Log every HTTP request, to this file or '-' for the twistd log;"
            " off by default (e.g. --access-log=/var/log/netdemos/access.log).",
        ],
    ]

    def __init__(self) -> None:
        super().__init__()
        for name in (*SERVICES, "metrics"):
            self[name] = []
        self["web-origin"] = []

    def opt_echo(self, endpoint: str) -> None:
        """
        Serve echo on ENDPOINT (default tcp:1234; e.g. --echo=tcp6:7).
        """
        self["echo"].append(endpoint)

    def opt_http(self, endpoint: str) -> None:
        """
        Serve the HTTP counter on ENDPOINT (default tcp:8080; e.g. --http=8000).
        """
        self["http"].append(endpoint)

    def opt_chat(self, endpoint: str) -> None:
        """
        Serve the chat room on ENDPOINT (default tcp:1025; e.g. --chat=none).
        """
        self["chat"].append(endpoint)

    def opt_web(self, endpoint: str) -> None:
        """
        Serve the chat page, and the chat room and echo over WebSocket (/chat,
        /echo), on ENDPOINT (default tcp:8081; e.g. --web=tcp:80).
        """
        self["web"].append(endpoint)

    def opt_web_origin(self, origin: str) -> None:
        """
        Let pages from ORIGIN, as well as the page's own, open /chat and /echo
        (e.g. --web-origin=https://chat.example.com); others get 403.
        """
        try:
            self["web-origin"].append(web.normalizeOrigin(origin))
        except ValueError as e:
            raise usage.UsageError(f"--web-origin={origin}: {e}") from e

    def opt_metrics(self, endpoint: str) -> None:
        """
        Serve /metrics, /livez and /readyz on ENDPOINT; off by default (e.g.
        --metrics=tcp:9100:interface=127.0.0.1).  Needs netdemos[metrics].
        """
        self["metrics"].append(endpoint)

    def postOptions(self) -> None:
        for name in SERVICES:
            self[name] = self._endpointsFor(name, self[name], DEFAULT_ENDPOINTS[name])
        self["metrics"] = self._endpointsFor("metrics", self["metrics"], "none")
        if self["metrics"] and importlib.util.find_spec("prometheus_client") is None:
            raise usage.UsageError(
                "--metrics needs prometheus-client: pip install 'netdemos[metrics]'"
            )
        if self["counter-file"] is not None:
            checkCounterFile(self["counter-file"])

    def _endpointsFor(self, name: str, given: list[str], default: str) -> list[str]:
        if not given:
            given = [default]
        if "none" in given:
            if len(given) > 1:
                raise usage.UsageError(f"--{name}=none cannot be combined with others")
            return []
        endpoints = [normalizeEndpoint(each) for each in given]
        for description in endpoints:
            checkEndpoint(name, description)
        if len(set(endpoints)) != len(endpoints):
            raise usage.UsageError(f"--{name} names the same endpoint twice")
        return endpoints


def checkEndpoint(name: str, description: str, reactor: Any = None) -> None:
    """
    Parse C{description} as a server endpoint, or explain in one line why not.

    Parsing does not listen (the reactor is only stored in the endpoint), but
    it does check the port number, the options, and for C{ssl:} the key files.
    """
    if reactor is None:
        from twisted.internet import reactor as _reactor

        reactor = _reactor

    if description.startswith("ssl:") and not _haveTLS():
        raise usage.UsageError(
            f"--{name}={description}: TLS needs pyOpenSSL and service_identity:"
            " pip install 'netdemos[tls]'"
        )
    try:
        serverFromString(reactor, description)
    except Exception as e:
        # Twisted's parsers raise ValueError, TypeError, KeyError, OSError or
        # OpenSSL's errors; whichever it is, say it on one line.
        reason = " ".join(str(e).split()) or type(e).__name__
        raise usage.UsageError(f"--{name}={description}: {reason}") from e


def _haveTLS() -> bool:
    return all(
        importlib.util.find_spec(module) is not None
        for module in ("OpenSSL", "service_identity")
    )


def checkCounterFile(path: str) -> None:
    """
    Refuse a counter file that cannot be read or could not be written.
    """
    try:
        counter.readCount(path)
    except counter.CounterFileError as e:
        raise usage.UsageError(f"--counter-file: {e}") from e
    directory = os.path.dirname(os.path.abspath(path))
    if not os.access(directory, os.W_OK | os.X_OK):
        raise usage.UsageError(f"--counter-file: cannot write in {directory}")


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
    if reactor is None:
        from twisted.internet import reactor as _reactor

        reactor = _reactor
    if openFiles is None:
        openFiles = descriptors.ProcessOpenFileLimit()

    server = lifecycle.NetdemosService(
        reactor, Notifier(), shutdownTimeout=options["shutdown-timeout"]
    )
    maxConnections = options["max-connections"]
    requestCounter = makeCounter(options["counter-file"] if options["http"] else None)
    server.onStopped.append(requestCounter.save)

    echoFactory = echo.EchoFactory(
        reactor, maxConnections=maxConnections, idleTimeout=options["idle-timeout"]
    )
    site = counter.CounterSite(
        requestCounter,
        accessLog=options["access-log"],
        maxConnections=maxConnections,
        reactor=reactor,
    )
    chatFactory = chat.ChatFactory(
        chatroom.ChatRoom(reactor, memory=options["chat-memory"]),
        reactor,
        maxLine=options["max-line"],
        backlog=options["chat-backlog"],
        rate=options["chat-rate"],
        burst=options["chat-burst"],
        maxConnections=maxConnections,
        idleTimeout=options["idle-timeout"],
    )

    webSite = web.WebSite(
        chatFactory,
        reactor,
        maxConnections=maxConnections,
        maxMessage=options["ws-max-message"],
        pingInterval=options["ws-ping"],
        origins=frozenset(options["web-origin"]),
        idleTimeout=options["idle-timeout"],
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
            listen(server.listeners, name, description, factories[name], reactor)

    if options["metrics"]:
        from netdemos.metrics import makeAdminSite

        admin = makeAdminSite(
            server,
            echoFactory if options["echo"] else None,
            site if options["http"] else None,
            chatFactory if options["chat"] else None,
            webSite if options["web"] else None,
        )
        factories["metrics"] = admin
        for description in options["metrics"]:
            listen(server.admin, "metrics", description, admin, reactor)

    enabled = [name for name in (*SERVICES, "metrics") if options[name]]
    try:
        descriptors.fitToOpenFileLimit(
            {name: factories[name].connections for name in enabled},
            listeners=sum(len(options[name]) for name in enabled),
            openFiles=openFiles,
            ceiling=descriptors.usableOpenFiles(reactor),
        )
    except ValueError as e:
        raise SystemExit(f"netdemos: {e}") from e
    return server


def makeCounter(path: str | None) -> counter.RequestCounter:
    if path is None:
        return counter.RequestCounter()
    try:
        return counter.PersistentCounter(path)
    except counter.CounterFileError as e:
        raise SystemExit(f"netdemos: --counter-file: {e}") from e


def listen(
    parent: Any, name: str, description: str, factory: Any, reactor: Any
) -> None:
    """
    Listen with C{factory} on C{description}, under C{parent}; watch the port
    for accept failures, counted in C{factory.connections}.
    """
    child = strports.service(withListenBacklog(description), factory, reactor=reactor)
    child.endpoint = descriptors.WatchedEndpoint(
        child.endpoint, name, factory.connections, reactor
    )
    child.setName(f"{name} {description}")
    child.setServiceParent(parent)
