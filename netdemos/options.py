"""
The command line of C{twistd netdemos}: L{Options}, the coercers that check
each value, and the checks that refuse a bad endpoint, counter file or Redis
URL in one line before anything starts.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import platform
import re
import socket
import textwrap
from collections.abc import Callable
from typing import Any

from twisted.internet.endpoints import serverFromString
from twisted.python import usage

import netdemos
import twisted
from netdemos import (
    connections,
    counting,
    datagrams,
    httpguard,
    lifecycle,
    udpecho,
    web,
    websocket,
)
from netdemos.chat import lines, member
from netdemos.chat import room as chatroom

SERVICES = ("echo", "http", "chat", "web")
DEFAULT_PORTS = {"echo": 1234, "http": 8080, "chat": 1025, "web": 8081}

# The largest value of each numeric option, stated in --help.  Each is far
# beyond any sensible setting, so it only stops a typo or a runaway script:
# - a chat line is written and read by people, and each client may hold one
#   part-read line in memory: 1 MiB is some 500 pages of text;
# - 1 GiB of unsent output waiting for one chat client, times a crowd of
#   them, is more memory than any host has;
# - a process cannot hold more than 1,048,576 descriptors on Linux
#   (fs.nr_open, by default), so a million connections per service is past
#   what can ever be open;
# - a million lines a second from one chat client, or a burst of a million,
#   is no limit at all; 0 lifts the rate limit on purpose;
# - a million datagrams a second from one UDP echo source, or a burst of a
#   million, is no limit at all, and lifts it for a load test (all sources
#   together may then have 100 times that echoed, more than any host sends);
# - 64 GiB of unsent output for the whole room is more than a test target's
#   host should ever give it;
# - a WebSocket message of 1 GiB, held whole in memory, times a crowd of
#   clients, is more memory than any host has;
# - an idle timeout (or a WebSocket ping interval) of more than a week is no
#   timeout, which is the default;
# - five minutes to send a request's headers is already a slowloris's dream;
# - a stop that drains for more than an hour holds up every deploy, and
#   systemd gives up after 90 s unless told otherwise.
# The timeouts' lower bound, a millisecond, is there to refuse zero.
MIN_TIMEOUT = 0.001
MAX_LINE_LIMIT = 1024 * 1024
CHAT_BACKLOG_LIMIT = 1024**3
WS_MAX_MESSAGE_LIMIT = 1024**3
MAX_CONNECTIONS_LIMIT = 1_000_000
IDLE_TIMEOUT_LIMIT = 7 * 24 * 3600
HTTP_HEADER_TIMEOUT_LIMIT = 300
SHUTDOWN_TIMEOUT_LIMIT = 3600
CHAT_RATE_LIMIT = 1_000_000
CHAT_BURST_LIMIT = 1_000_000
CHAT_MEMORY_LIMIT = 64 * 1024**3
UDP_RATE_LIMIT = 1_000_000
UDP_BURST_LIMIT = 1_000_000

# An instance's name goes into an HTTP header, a metric's label, the log and
# Redis keys: a host name's letters are safe in all of them.
_INSTANCE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

# What --redis-prefix may be: it starts every key and channel name.
_REDIS_PREFIX = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
DEFAULT_REDIS_PREFIX = "netdemos"

_WHOLE_NUMBER = re.compile(r"[0-9]+")
_DECIMAL_NUMBER = re.compile(r"[0-9]+(\.[0-9]*)?|\.[0-9]+")


def boundedInt(low: int, high: int) -> Callable[[str], int]:
    """
    Make the C{coerce} function of a C{usage.Options} parameter that takes a
    whole number from C{low} to C{high}.

    Only ASCII digits are accepted: C{int()} would also take C{1_000}, C{+5},
    C{" 7 "} and other scripts' digits.  Twisted appends the range to the
    option's C{--help} text, after a full stop.
    """

    def coerce(value: str) -> int:
        try:
            number = int(value) if _WHOLE_NUMBER.fullmatch(value) else None
        except ValueError:  # int() refuses numbers of thousands of digits
            number = None
        if number is None or not low <= number <= high:
            raise ValueError(
                f"{_shorten(value)} is not a whole number from {low} to {high}"
            )
        return number

    coerce.coerceDoc = f"From {low} to {high}."  # type: ignore[attr-defined]
    return coerce


def boundedNumber(low: float, high: float, unit: str) -> Callable[[str], float]:
    """
    Make the C{coerce} function of a C{usage.Options} parameter that takes a
    number of C{unit} from C{low} to C{high}, such as C{30} or C{2.5}: a
    number of seconds, or of lines a second.

    Only decimal numbers are accepted: C{float()} would also take C{inf} and
    C{nan}, which break the reactor's timers, and C{1e3} or C{1_000}.  Twisted
    appends the range to the option's C{--help} text, after a full stop.
    """

    def coerce(value: str) -> float:
        # The range check also refuses a string of digits too long for a float,
        # which float() turns into inf.
        if not (_DECIMAL_NUMBER.fullmatch(value) and low <= float(value) <= high):
            raise ValueError(
                f"{_shorten(value)} is not a number of {unit} from {_number(low)}"
                f" to {_number(high)}"
            )
        return float(value)

    coerce.coerceDoc = f"From {_number(low)} to {_number(high)} {unit}."  # type: ignore[attr-defined]
    return coerce


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def boundedSeconds(low: float, high: float) -> Callable[[str], float]:
    return boundedNumber(low, high, "seconds")


def _shorten(value: str, length: int = 30) -> str:
    return value if len(value) <= length else value[:length] + "..."


def instanceName(value: str) -> str:
    """
    The C{coerce} function of C{--name}: 1 to 64 letters, digits, C{.}, C{_}
    or C{-}, starting with a letter or digit, as a host name is.
    """
    if not _INSTANCE_NAME.fullmatch(value):
        raise ValueError(
            f"{_shorten(value)!r} is not a name: 1 to 64 letters, digits,"
            " '.', '_' or '-', starting with a letter or digit"
        )
    return value


def redisPrefix(value: str) -> str:
    """
    The C{coerce} function of C{--redis-prefix}.
    """
    if not _REDIS_PREFIX.fullmatch(value):
        raise ValueError(
            f"{_shorten(value)!r} is not a prefix: 1 to 64 letters, digits, '.',"
            " '_', ':' or '-', starting with a letter or digit"
        )
    return value


def defaultInstanceName() -> str:
    """
    The host name, as far as it is a valid instance name (a host name may
    hold other characters), or C{netdemos} if nothing of it is.
    """
    name = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:64]
    return name if _INSTANCE_NAME.fullmatch(name) else "netdemos"


def versions() -> str:
    """
    C{netdemos X.Y.Z (Twisted A.B.C, Python D.E.F)}.
    """
    return (
        f"netdemos {netdemos.__version__} (Twisted {twisted.__version__},"
        f" Python {platform.python_version()})"
    )


@functools.cache
def ipFamilies() -> tuple[bool, bool]:
    """
    Whether this host can listen on IPv6, and whether an IPv6 socket there
    takes IPv4 connections too (as IPv4-mapped addresses, Linux's default
    unless C{net.ipv6.bindv6only} is set).
    """
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::", 0))
            v6only = probe.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY)
    except OSError:
        return False, False
    return True, not v6only


def everyAddress(port: int | str) -> list[str]:
    """
    The endpoints for C{port} on every address of both IP families: one
    C{tcp6} endpoint where it takes IPv4 too, C{tcp6} and C{tcp} where it
    does not, and C{tcp} alone on a host without IPv6.
    """
    ipv6, mapped = ipFamilies()
    if not ipv6:
        return [f"tcp:{port}"]
    return [f"tcp6:{port}"] if mapped else [f"tcp6:{port}", f"tcp:{port}"]


def normalizeEndpoints(description: str) -> list[str]:
    """
    Accept a bare port number as shorthand for the port on every address
    (L{everyAddress}).
    """
    return everyAddress(description) if description.isdigit() else [description]


# usage.Options lists options by name, each as --name= alone.  --help lists
# them in these groups instead, each with what it takes.
HELP_GROUPS: list[tuple[str, list[tuple[str, str]]]] = [
    (
        "Services, each on one or more ENDPOINTs (see above)",
        [
            ("echo", "ENDPOINT"),
            ("http", "ENDPOINT"),
            ("chat", "ENDPOINT"),
            ("web", "ENDPOINT"),
            ("echo-udp", "ENDPOINT"),
            ("metrics", "ENDPOINT"),
        ],
    ),
    (
        "UDP echo",
        [("echo-udp-rate", "DATAGRAMS"), ("echo-udp-burst", "DATAGRAMS")],
    ),
    (
        "Chat",
        [
            ("max-line", "BYTES"),
            ("chat-rate", "LINES"),
            ("chat-burst", "LINES"),
            ("chat-backlog", "BYTES"),
            ("chat-memory", "BYTES"),
        ],
    ),
    (
        "Web",
        [("web-origin", "ORIGIN"), ("ws-max-message", "BYTES"), ("ws-ping", "SECONDS")],
    ),
    (
        "HTTP",
        [
            ("http-header-timeout", "SECONDS"),
            ("counter-file", "PATH"),
            ("access-log", "PATH"),
        ],
    ),
    (
        "Several instances",
        [("name", "NAME"), ("redis", "URL"), ("redis-prefix", "PREFIX")],
    ),
    (
        "Operations",
        [
            ("max-connections", "N"),
            ("idle-timeout", "SECONDS"),
            ("shutdown-timeout", "SECONDS"),
            ("version", ""),
            ("help", ""),
        ],
    ),
]

_OPTION_LINE = re.compile(r"  (?:-\w, |    )--([\w-]+)=?")
_DESCRIBED = re.compile(r"(\s+(?:-\w, )?--[\w-]+=?\s+)(.*)")


def groupedUsage(usageText: str, description: str, width: int) -> str:
    """
    Rewrite C{usage.Options}'s usage text: the description first, then the
    options in L{HELP_GROUPS}, each with its metavariable.
    """
    head, rest = usageText.split("Options:\n", 1)
    entries: dict[str, list[str]] = {}
    name = ""
    for line in rest.splitlines():
        found = _OPTION_LINE.match(line)
        if found:
            name = found[1]
            entries[name] = [line]
        elif line.startswith(" ") and name:
            entries[name].append(line)
        else:
            name = ""  # the description, after the options
    lines = [head.rstrip(), "", *textwrap.wrap(description, width)]
    for heading, options in HELP_GROUPS:
        lines += ["", f"{heading}:"]
        for option, metavar in options:
            first, *more = entries.pop(option)
            found = _DESCRIBED.match(first)
            assert found, first
            column, text = len(found[1]), found[2]
            left = f"      --{option}" + (f"={metavar}" if metavar else "")
            if len(left) + 2 <= column:
                lines.append(left.ljust(column) + text)
            else:
                lines += [left, " " * column + text]
            lines += more
    assert not entries, f"options missing from HELP_GROUPS: {sorted(entries)}"
    return "\n".join(lines) + "\n"


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "Serve echo (RFC 862), an HTTP request counter and a line-based chat"
        " room from one process, and the room and echo over WebSocket with a"
        " chat page for browsers.  ENDPOINT is a Twisted endpoint string, such"
        " as tcp:1234, tcp:1234:interface=127.0.0.1, tcp6:1234,"
        " ssl:443:privateKey=key.pem:certKey=cert.pem,"
        " systemd:domain=INET:name=chat or unix:/run/chat.sock; haproxy:ENDPOINT"
        " reads a PROXY protocol header first, for a service behind a balancer;"
        " a bare number N means port N on every address, IPv6 and IPv4 (tcp6:N,"
        " or tcp:N on a host without IPv6), and 'none' switches a service off."
        " Each endpoint option may be given several times to listen on several"
        " endpoints; several --chat and --web endpoints share one room."
    )

    optParameters: list[list[Any]] = [
        [
            "name",
            None,
            None,
            "This instance's name, in every HTTP response's X-Served-By, the"
            " chat welcome, /metrics, the log and the status line; the host"
            " name by default (e.g. --name=web-1).",
            instanceName,
        ],
        [
            "max-line",
            None,
            lines.DEFAULT_MAX_LINE,
            "Longest chat line in bytes; a longer one is discarded and its"
            " sender told (e.g. --max-line=512).",
            boundedInt(1, MAX_LINE_LIMIT),
        ],
        [
            "chat-backlog",
            None,
            member.DEFAULT_BACKLOG,
            "Bytes of unsent output a chat client may have waiting before it is"
            " dropped as too slow (e.g. --chat-backlog=262144).",
            boundedInt(1, CHAT_BACKLOG_LIMIT),
        ],
        [
            "chat-rate",
            None,
            member.DEFAULT_RATE,
            "Lines a second each chat client may send on average, commands"
            " included; faster senders are slowed by pausing their reads. 0"
            " lifts the limit, for load tests (e.g. --chat-rate=0): senders then"
            " wait while a reader is far behind (half its --chat-backlog), and"
            " one that stays so for 5 s is dropped.",
            boundedNumber(0, CHAT_RATE_LIMIT, "lines a second"),
        ],
        [
            "chat-burst",
            None,
            member.DEFAULT_BURST,
            "Lines a chat client may send at once before --chat-rate applies"
            " (e.g. --chat-burst=200).",
            boundedInt(1, CHAT_BURST_LIMIT),
        ],
        [
            "chat-memory",
            None,
            chatroom.DEFAULT_MEMORY,
            "Bytes of unsent output the whole chat room may hold; past it the"
            " clients furthest behind are dropped (e.g. --chat-memory=16777216).",
            boundedInt(1, CHAT_MEMORY_LIMIT),
        ],
        [
            "echo-udp-rate",
            None,
            udpecho.DEFAULT_RATE,
            "Datagrams a second the UDP echo sends back to each source, and"
            f" {udpecho.TOKEN_BYTES} bytes each (a larger one counts as"
            f" several); all sources together get {udpecho.OVERALL} times as"
            " much, and the rest is dropped (e.g. --echo-udp-rate=10).",
            boundedNumber(1, UDP_RATE_LIMIT, "datagrams a second"),
        ],
        [
            "echo-udp-burst",
            None,
            udpecho.DEFAULT_BURST,
            "Datagrams the UDP echo sends back to a source at once before"
            " --echo-udp-rate applies (e.g. --echo-udp-burst=20).",
            boundedInt(1, UDP_BURST_LIMIT),
        ],
        [
            "ws-max-message",
            None,
            websocket.DEFAULT_MAX_MESSAGE,
            "Longest WebSocket message /echo takes, in bytes; a longer one"
            " closes the connection with code 1009 (/chat takes --max-line)"
            " (e.g. --ws-max-message=65536).",
            boundedInt(1, WS_MAX_MESSAGE_LIMIT),
        ],
        [
            "ws-ping",
            None,
            websocket.DEFAULT_PING_INTERVAL,
            "Ping a WebSocket client quiet for this many seconds, and close it"
            " if it is still quiet as long again (e.g. --ws-ping=20).",
            boundedSeconds(MIN_TIMEOUT, IDLE_TIMEOUT_LIMIT),
        ],
        [
            "max-connections",
            None,
            connections.DEFAULT_MAX_CONNECTIONS,
            "Most connections at once, per service; past it echo closes, chat"
            " says '! server full' and HTTP and web answer 503"
            " (e.g. --max-connections=500).  Lowered at startup, with a"
            " warning, to what the open-file limit can hold.",
            boundedInt(1, MAX_CONNECTIONS_LIMIT),
        ],
        [
            "idle-timeout",
            None,
            None,
            # No full stop at the end: Twisted adds one before the range.
            "Close echo, chat and WebSocket clients silent for this many"
            " seconds; off by"
            " default (e.g. --idle-timeout=300). HTTP always closes idle"
            f" connections after {httpguard.DEFAULT_IDLE_TIMEOUT} s",
            boundedSeconds(MIN_TIMEOUT, IDLE_TIMEOUT_LIMIT),
        ],
        [
            "http-header-timeout",
            None,
            httpguard.DEFAULT_HEADER_TIMEOUT,
            "Seconds an HTTP client has, from a request's first byte, to send"
            " all its headers; a slower one gets 408"
            " (e.g. --http-header-timeout=5).",
            boundedSeconds(MIN_TIMEOUT, HTTP_HEADER_TIMEOUT_LIMIT),
        ],
        [
            "shutdown-timeout",
            None,
            lifecycle.DEFAULT_SHUTDOWN_TIMEOUT,
            "On SIGTERM, seconds to let clients finish before dropping them"
            " (e.g. --shutdown-timeout=30).",
            boundedSeconds(MIN_TIMEOUT, SHUTDOWN_TIMEOUT_LIMIT),
        ],
        [
            "counter-file",
            None,
            None,
            "Keep the HTTP request count in this file across restarts"
            " (e.g. --counter-file=/var/lib/netdemos/count).",
        ],
        [
            "redis",
            None,
            None,
            "Share one request count and one chat room with every instance"
            " using this Redis: redis://[:PASSWORD@]HOST[:PORT][/DB] or"
            " unix:///PATH[?db=N]; off by default, for one process alone"
            " (e.g. --redis=redis://127.0.0.1:6379/0).  Needs netdemos[redis].",
        ],
        [
            "redis-prefix",
            None,
            DEFAULT_REDIS_PREFIX,
            "Start of the name of every Redis key and channel, so that several"
            " deployments can share one Redis (e.g. --redis-prefix=staging).",
            redisPrefix,
        ],
        [
            "access-log",
            None,
            None,
            "Log every HTTP request, to this file or '-' for the twistd log;"
            " off by default (e.g. --access-log=/var/log/netdemos/access.log).",
        ],
    ]

    def getUsage(self, width: int | None = None) -> str:
        width = width or int(os.environ.get("COLUMNS", "80"))
        return groupedUsage(super().getUsage(width), self.longdesc, width)

    def __init__(self) -> None:
        super().__init__()
        # For --help only (the options themselves are set by now): docstrings
        # on one line, as textwrap would keep their indentation, and whole
        # numbers shown as whole numbers.
        for name, doc in self.docs.items():
            if doc:
                self.docs[name] = " ".join(doc.split())
        for name, default in self.defaults.items():
            if isinstance(default, float) and default.is_integer():
                self.defaults[name] = int(default)
        for name in (*SERVICES, "metrics"):
            self[name] = []
        self["web-origin"] = []
        self["echo-udp"] = []

    def opt_version(self) -> None:
        """
        Print the versions of netdemos, Twisted and Python, and exit.
        """
        print(versions())
        raise SystemExit(0)

    def opt_echo(self, endpoint: str) -> None:
        """
        Serve echo on ENDPOINT (default 1234; e.g. --echo=tcp:7).
        """
        self["echo"].append(endpoint)

    def opt_http(self, endpoint: str) -> None:
        """
        Serve the HTTP counter on ENDPOINT (default 8080; e.g. --http=8000).
        """
        self["http"].append(endpoint)

    def opt_chat(self, endpoint: str) -> None:
        """
        Serve the chat room on ENDPOINT (default 1025; e.g. --chat=none).
        """
        self["chat"].append(endpoint)

    def opt_web(self, endpoint: str) -> None:
        """
        Serve the chat page, and the chat room and echo over WebSocket (/chat,
        /echo), on ENDPOINT (default 8081; e.g. --web=tcp:80).
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

    def opt_echo_udp(self, endpoint: str) -> None:
        """
        Serve echo over UDP on ENDPOINT: udp:PORT[:interface=ADDRESS] (a bare
        number N is udp:N, every IPv4 address) or systemd:name=NAME.  Off by
        default: anyone can forge a datagram's source, which makes a UDP echo a
        reflector aimed at a victim, or a loop with another echo or chargen; so
        privileged source ports are dropped and each source is rate limited
        (e.g. --echo-udp=udp:1234:interface=127.0.0.1).
        """
        self["echo-udp"].append(endpoint)

    def opt_metrics(self, endpoint: str) -> None:
        """
        Serve /metrics, /livez and /readyz on ENDPOINT; off by default (e.g.
        --metrics=tcp:9100:interface=127.0.0.1).  Needs netdemos[metrics].
        """
        self["metrics"].append(endpoint)

    def postOptions(self) -> None:
        if self["name"] is None:
            self["name"] = defaultInstanceName()
        for name in SERVICES:
            self[name] = self._endpointsFor(name, self[name], str(DEFAULT_PORTS[name]))
        self["metrics"] = self._endpointsFor("metrics", self["metrics"], "none")
        self["echo-udp"] = self._datagramEndpointsFor("echo-udp", self["echo-udp"])
        if self["metrics"] and importlib.util.find_spec("prometheus_client") is None:
            raise usage.UsageError(
                "--metrics needs prometheus-client: pip install 'netdemos[metrics]'"
            )
        if self["counter-file"] is not None:
            checkCounterFile(self["counter-file"])
        if self["redis"] is not None:
            self["redis"] = checkRedis(self["redis"], self["counter-file"])

    def _endpointsFor(self, name: str, given: list[str], default: str) -> list[str]:
        if not given:
            given = [default]
        if "none" in given:
            if len(given) > 1:
                raise usage.UsageError(f"--{name}=none cannot be combined with others")
            return []
        endpoints = [each for bare in given for each in normalizeEndpoints(bare)]
        for description in endpoints:
            checkEndpoint(name, description)
        if len(set(endpoints)) != len(endpoints):
            raise usage.UsageError(f"--{name} names the same endpoint twice")
        return endpoints

    def _datagramEndpointsFor(self, name: str, given: list[str]) -> list[str]:
        if given == ["none"] or not given:
            return []
        if "none" in given:
            raise usage.UsageError(f"--{name}=none cannot be combined with others")
        endpoints = [datagrams.normalizeDatagramEndpoint(each) for each in given]
        for description in endpoints:
            try:
                datagrams.datagramEndpoint(reactorOrGlobal(None), description)
            except ValueError as e:
                raise usage.UsageError(f"--{name}={description}: {e}") from e
        if len(set(endpoints)) != len(endpoints):
            raise usage.UsageError(f"--{name} names the same endpoint twice")
        return endpoints


def reactorOrGlobal(reactor: Any) -> Any:
    """
    C{reactor}, or if it is L{None} the global reactor, imported only now:
    importing it when this module loads would install the default reactor
    before C{twistd --reactor=...} has chosen one.
    """
    if reactor is not None:
        return reactor
    from twisted.internet import reactor as installed

    return installed


def checkEndpoint(name: str, description: str, reactor: Any = None) -> None:
    """
    Parse C{description} as a server endpoint, or explain in one line why not.

    Parsing does not listen (the reactor is only stored in the endpoint), but
    it does check the port number, the options, and for C{ssl:} the key files.
    """
    reactor = reactorOrGlobal(reactor)
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
    Refuse a counter file that cannot be read, does not hold a count, or could
    not be written, before anything else happens, leaving the file as it is.

    @raise lifecycle.StartupError: saying why in one line.  Not a
        L{usage.UsageError}: twistd prints its whole usage text before one of
        those, which says nothing about a file's contents.
    """
    try:
        counting.FileCounter.check(path)
    except counting.CounterFileError as e:
        raise lifecycle.StartupError(f"netdemos: --counter-file: {e}") from e


def checkRedis(url: str, counterFile: str | None) -> Any:
    """
    The L{netdemos.redis.RedisAddress} C{--redis} names, or a one-line
    reason why not.

    @raise lifecycle.StartupError: one line, without the usage text a
        L{usage.UsageError} prints first.
    """
    if counterFile is not None:
        raise lifecycle.StartupError(
            "netdemos: --redis and --counter-file cannot be combined: with"
            " --redis the count lives in Redis"
        )
    if importlib.util.find_spec("txredisapi") is None:
        raise lifecycle.StartupError(
            "netdemos: --redis needs txredisapi: pip install 'netdemos[redis]'"
        )
    from netdemos.redis import RedisURLError, parseRedisURL

    try:
        return parseRedisURL(url)
    except RedisURLError as e:
        raise lifecycle.StartupError(f"netdemos: --redis={e}") from e
