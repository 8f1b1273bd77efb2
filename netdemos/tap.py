"""
Wiring for C{twistd netdemos}: command-line options, and the service tree.

Nothing here speaks a protocol.  L{Options} parses and checks the endpoint
strings; L{makeService} builds one factory per service and listens with it on
each of that service's endpoints, as C{twisted.web.tap} does.
"""

from __future__ import annotations

from typing import Any

from twisted.application import strports
from twisted.application.service import IService, MultiService
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IProtocolFactory
from twisted.python import usage

from netdemos import chat, counter, echo

SERVICES = ("echo", "http", "chat")
DEFAULT_ENDPOINTS = {"echo": "tcp:1234", "http": "tcp:8080", "chat": "tcp:1025"}


def _positiveInt(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError(f"{value} is not a positive whole number")
    return number


def normalizeEndpoint(description: str) -> str:
    """
    Accept a bare port number as shorthand for C{tcp:PORT}.
    """
    return f"tcp:{description}" if description.isdigit() else description


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "Serve echo (RFC 862), an HTTP request counter and a line-based chat"
        " room from one process.  ENDPOINT is a Twisted endpoint string, such"
        " as tcp:1234, tcp:1234:interface=127.0.0.1, tcp6:1234,"
        " ssl:443:privateKey=key.pem:certKey=cert.pem or unix:/run/chat.sock;"
        " a bare number N means tcp:N, and 'none' switches a service off."
        " Each endpoint option may be given several times to listen on several"
        " endpoints; several --chat endpoints share one room."
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
            "access-log",
            None,
            None,
            "Log every HTTP request, to this file or '-' for the twistd log;"
            " off by default (e.g. --access-log=/var/log/netdemos/access.log).",
        ],
    ]

    def __init__(self) -> None:
        super().__init__()
        for name in SERVICES:
            self[name] = []

    def opt_echo(self, endpoint: str) -> None:
        """
        Serve echo on ENDPOINT (default tcp:1234; e.g. --echo=tcp:7:interface=::).
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

    def postOptions(self) -> None:
        for name in SERVICES:
            self[name] = self._endpointsFor(name, self[name])

    def _endpointsFor(self, name: str, given: list[str]) -> list[str]:
        if not given:
            return [DEFAULT_ENDPOINTS[name]]
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


def checkEndpoint(name: str, description: str) -> None:
    """
    Parse C{description} as a server endpoint, or explain in one line why not.

    Parsing does not listen; the reactor is only stored in the endpoint.
    """
    from twisted.internet import reactor

    try:
        serverFromString(reactor, description)
    except (ValueError, TypeError, KeyError, ImportError, OSError) as e:
        reason = str(e) or type(e).__name__
        raise usage.UsageError(f"--{name}={description}: {reason}") from e


class NetdemosService(MultiService):
    """
    The netdemos service tree: one L{StreamServerEndpointService} per endpoint.

    A port that cannot be bound ends C{twistd} with a one-line message naming
    the endpoint, rather than a traceback or a half-working server.
    """

    def privilegedStartService(self) -> None:
        try:
            super().privilegedStartService()
        except CannotListenError as e:
            raise SystemExit(f"netdemos: cannot listen on {_describe(e)}") from e


def _describe(error: CannotListenError) -> str:
    interface = error.interface or "all interfaces"
    return f"port {error.port} on {interface}: {error.socketError}"


def makeService(options: Options, reactor: Any = None) -> IService:
    """
    Build the service tree: a factory per service, listening on its endpoints.
    """
    if reactor is None:
        from twisted.internet import reactor as _reactor

        reactor = _reactor

    room = chat.ChatRoom(
        reactor,
        maxLine=options["max-line"],
        backlog=options["chat-backlog"],
    )
    factories: dict[str, IProtocolFactory] = {
        "echo": echo.EchoFactory(),
        "http": counter.CounterSite(accessLog=options["access-log"], reactor=reactor),
        "chat": chat.ChatFactory(room),
    }

    top = NetdemosService()
    for name in SERVICES:
        for description in options[name]:
            child = strports.service(description, factories[name], reactor=reactor)
            child.setName(f"{name} {description}")
            child.setServiceParent(top)
    return top
