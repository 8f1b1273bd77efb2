"""
The one place that turns C{--redis=URL} into connections to Redis.

L{parseRedisURL} reads the URL; a L{RedisLink} holds this instance's two
connections (one for commands, one for pub/sub, which Redis requires to be
separate), made and remade by txredisapi, whose connections are
C{twisted.application.internet.ClientService}s with a backoff policy.  The
link says when it is up and when it is down, to whoever watches it: the
counter and the chat hub turn that into readiness and notices.  Nothing else
in netdemos imports txredisapi.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import txredisapi
from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail, gatherResults, succeed
from twisted.internet.endpoints import HostnameEndpoint, UNIXClientEndpoint
from twisted.internet.interfaces import IDelayedCall, IStreamClientEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import Attribute, Interface, implementer

log = Logger()

DEFAULT_PORT = 6379

# Reconnecting: the first retry after 0.1 s, then backing off to one a second.
# Redis is a local service or close to one, and a retry costs it a connect; a
# retry a second brings an instance back within about a second of Redis, which
# is what an operator restarting Redis expects (the balancer waits on /readyz).
RECONNECT_INITIAL_DELAY = 0.1
RECONNECT_MAX_DELAY = 1.0

# A Redis that does not answer a command within this long is treated as gone:
# its connection is aborted and remade.  Loopback or LAN round trips take well
# under a millisecond; a second is a hung server, not a slow one.
REPLY_TIMEOUT = 1.0
CONNECT_TIMEOUT = 1.0

# What is read from Redis and cannot be used is logged at most this often.
BAD_MESSAGE_LOG_INTERVAL = 1.0


class RedisURLError(ValueError):
    """
    A C{--redis} URL that cannot be used; the message says why, in one line.
    """


@dataclass(frozen=True)
class RedisAddress:
    """
    Where Redis is: a host and port, or a UNIX socket's path; and which
    database, with which password.
    """

    host: str | None = None
    port: int = DEFAULT_PORT
    path: str | None = None
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    def endpoint(self, reactor: Any) -> IStreamClientEndpoint:
        """
        A client endpoint that connects to this address with C{reactor}.
        """
        if self.path is not None:
            return UNIXClientEndpoint(reactor, self.path, timeout=CONNECT_TIMEOUT)
        assert self.host is not None
        return HostnameEndpoint(reactor, self.host, self.port, timeout=CONNECT_TIMEOUT)

    def __str__(self) -> str:
        # For the log: never the password.
        if self.path is not None:
            return f"unix://{self.path}?db={self.db}"
        host = f"[{self.host}]" if self.host and ":" in self.host else self.host
        return f"redis://{host}:{self.port}/{self.db}"


def parseRedisURL(url: str) -> RedisAddress:
    """
    Read C{redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]} or
    C{unix:///PATH[?db=N]}.

    @raise RedisURLError: saying in one line what is wrong.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise RedisURLError(f"{redacted(url)}: {e}") from e
    url = redacted(url)
    if parts.scheme == "redis":
        if not parts.hostname:
            raise RedisURLError(f"{url}: no host (redis://HOST[:PORT][/DB])")
        if parts.query or parts.fragment:
            raise RedisURLError(f"{url}: a redis:// URL takes no ?query or #fragment")
        return RedisAddress(
            host=parts.hostname,
            port=DEFAULT_PORT if port is None else port,
            db=_database(url, parts.path.lstrip("/") or "0"),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )
    if parts.scheme == "unix":
        if parts.netloc or not parts.path:
            raise RedisURLError(f"{url}: a UNIX socket is unix:///PATH[?db=N]")
        try:
            query = parse_qs(parts.query, strict_parsing=bool(parts.query))
        except ValueError as e:
            raise RedisURLError(f"{url}: {e}") from e
        if set(query) - {"db", "password"} or any(len(v) > 1 for v in query.values()):
            raise RedisURLError(f"{url}: the query may only give db=N and password=")
        return RedisAddress(
            path=parts.path,
            db=_database(url, query.get("db", ["0"])[0]),
            password=query.get("password", [None])[0],
        )
    raise RedisURLError(f"{url}: not a redis:// or unix:// URL")


def redacted(url: str) -> str:
    """
    C{url} with its password, if any, replaced by C{***}: fit for a log.
    """
    return re.sub(r"^([a-z]+://[^/@]*?:)[^@/]*@", r"\1***@", url)


def _database(url: str, text: str) -> int:
    # Redis numbers its databases from 0, 16 of them unless configured.
    if not re.fullmatch(r"[0-9]{1,5}", text):
        raise RedisURLError(f"{url}: the database must be a number, not {text!r}")
    return int(text)


class RedisUnavailableError(Exception):
    """
    There is no connection to Redis now.
    """


def isErrorReply(reason: Failure) -> bool:
    """
    Whether C{reason} is Redis answering a command with an error (OOM,
    WRONGTYPE, READONLY, a failing script...), as opposed to no answer.
    """
    return reason.check(txredisapi.ResponseError) is not None


class IRedisLink(Interface):
    """
    This instance's link to Redis: the few commands netdemos uses, pub/sub,
    and whether the link is up.
    """

    up = Attribute("True while Redis can be used: connected, and subscribed.")
    prefix = Attribute(
        "The start of every key and channel name: --redis-prefix in braces, a"
        " Redis Cluster hash tag, so that every key lands in one hash slot."
    )
    untaggedPrefix = Attribute(
        "--redis-prefix as it is: the start of the names netdemos used before"
        " its keys had a hash tag."
    )
    failing = Attribute(
        "True while Redis answers commands with errors: since an error reply,"
        " until the next command succeeds."
    )

    def badMessage(channel: str, why: str) -> None:
        """
        Something read from C{channel} could not be used (C{why}): count it,
        and log it at most once a second.
        """

    def watch(onUp: Callable[[], object], onDown: Callable[[], object]) -> None:
        """
        Call C{onUp} each time the link comes up, C{onDown} each time it goes
        down (once per change, not per failed retry).
        """

    def subscribe(channel: str, received: Callable[[object], object]) -> None:
        """
        Call C{received} with each message published on C{channel}, in the
        order Redis delivers them, from now on and after every reconnection.
        A message is whatever another program published: text, or a number
        or bytes as txredisapi reads it; C{received} must check it.
        """

    def publish(channel: str, message: str) -> Deferred[int]:
        """
        Publish C{message} on C{channel}.
        """

    def get(key: str) -> Deferred[object]:
        """
        The value at C{key}, or L{None}.
        """

    def incrby(key: str, amount: int) -> Deferred[int]:
        """
        Add C{amount} to the counter at C{key}; fire with the new value.
        """

    def evaluate(
        script: str, keys: Sequence[str], args: Sequence[Any]
    ) -> Deferred[Any]:
        """
        Run a Lua C{script}, atomically, as C{EVAL} does.
        """


@implementer(IRedisLink)
class RedisLink(Service):
    """
    Connections to one Redis, kept up for as long as the service runs.

    Commands are sent only while the link is up, and fail at once with
    L{RedisUnavailableError} while it is down, rather than waiting in txredisapi's
    queue for a connection: a caller that cannot get an answer now must
    answer its own client now (a 503, a local room).
    """

    def __init__(self, address: RedisAddress, reactor: Any, prefix: str) -> None:
        self.address = address
        self.prefix = f"{{{prefix}}}"
        self.untaggedPrefix = prefix
        self._reactor = reactor
        self._commands = _WatchedFactory(self, address)
        self._subscriber = _WatchedSubscriberFactory(self, address)
        self._channels: dict[str, Callable[[object], object]] = {}
        self._watchers: list[tuple[Callable[[], object], Callable[[], object]]] = []
        self.up = False
        self.failing = False
        # Error replies, by command; messages that could not be used.
        self.errors: Counter[str] = Counter()
        self.badMessages = 0
        self._unreportedBad = 0
        self._lastBad = ("", "")
        self._quietUntil: IDelayedCall | None = None

    # Service

    def startService(self) -> None:
        super().startService()
        log.info("redis: connecting to {address}", address=str(self.address))
        self._commands.startConnecting(self.address.endpoint(self._reactor))
        if self._channels:
            self._subscriber.startConnecting(self.address.endpoint(self._reactor))

    def stopService(self) -> Deferred[None]:
        super().stopService()
        stopping = [self._commands.disconnect()]
        if self._channels:
            stopping.append(self._subscriber.disconnect())
        return gatherResults(stopping, consumeErrors=True).addBoth(lambda _: None)

    # IRedisLink

    def watch(self, onUp: Callable[[], object], onDown: Callable[[], object]) -> None:
        self._watchers.append((onUp, onDown))

    def subscribe(self, channel: str, received: Callable[[object], object]) -> None:
        self._channels[channel] = received

    def publish(self, channel: str, message: str) -> Deferred[int]:
        return self._call("publish", channel, message)

    def get(self, key: str) -> Deferred[object]:
        return self._call("get", key)

    def incrby(self, key: str, amount: int) -> Deferred[int]:
        return self._call("incrby", key, amount)

    def evaluate(
        self, script: str, keys: Sequence[str], args: Sequence[Any]
    ) -> Deferred[Any]:
        return self._call("eval", script, list(keys), list(args))

    def _call(self, command: str, *args: Any) -> Deferred[Any]:
        connection = self._commands.live()
        if connection is None or not self.up:
            return fail(RedisUnavailableError(f"no connection to {self.address}"))
        result: Deferred[Any] = getattr(connection, command)(*args)
        return result.addCallbacks(
            self._succeeded, self._failed, errbackArgs=(command,)
        )

    def _succeeded(self, result: object) -> object:
        if self.failing:
            self.failing = False
            log.info(
                "redis: {address} answers commands again",
                address=str(self.address),
            )
        return result

    def _failed(self, reason: Failure, command: str) -> Failure:
        # One line for a run of errors: a full Redis refuses every write, and
        # a log line each would fill the disk as well.
        if isErrorReply(reason):
            self.errors[command] += 1
            if not self.failing:
                self.failing = True
                log.warn(
                    "redis: {address} answered {command} with an error: {error};"
                    " until a command succeeds, errors are counted"
                    " (netdemos_redis_errors_total), not logged",
                    address=str(self.address),
                    command=command.upper(),
                    error=reason.getErrorMessage(),
                )
        return reason

    def badMessage(self, channel: str, why: str) -> None:
        self.badMessages += 1
        self._unreportedBad += 1
        self._lastBad = (channel, why)
        if self._quietUntil is None:
            self._reportBad()

    def _reportBad(self) -> None:
        if not self._unreportedBad:
            self._quietUntil = None
            return
        channel, why = self._lastBad
        log.warn(
            "redis: dropped {count} message(s) on {channel} that netdemos"
            " cannot use (the last: {why}); is another program publishing"
            " there?",
            count=self._unreportedBad,
            channel=channel,
            why=why,
        )
        self._unreportedBad = 0
        self._quietUntil = self._reactor.callLater(
            BAD_MESSAGE_LOG_INTERVAL, self._reportBad
        )

    # Told by the factories

    def _changed(self) -> None:
        up = self._commands.live() is not None and (
            not self._channels or self._subscriber.subscribed
        )
        if up == self.up:
            return
        self.up = up
        if up:
            log.info("redis: connected to {address}", address=str(self.address))
        elif self.running:
            log.warn("redis: lost {address}; reconnecting", address=str(self.address))
        else:
            log.info("redis: disconnected from {address}", address=str(self.address))
        for onUp, onDown in list(self._watchers):
            (onUp if up else onDown)()

    def _received(self, channel: str, message: object) -> None:
        # Called from inside txredisapi's reply parser: an exception raised
        # here would corrupt its reading of the replies that follow.
        receiver = self._channels.get(channel)
        if receiver is None:
            return
        try:
            receiver(message)
        except Exception:
            log.failure("redis: error handling a message on {channel}", channel=channel)
            self.badMessage(channel, "it could not be handled")


class _WatchedFactory(txredisapi.RedisFactory):
    """
    txredisapi's factory for one command connection, with netdemos's backoff
    and timeouts, that tells its link when the connection comes and goes.
    """

    # Not a "Starting factory" line at each reconnection.
    noisy = False

    initialDelay = RECONNECT_INITIAL_DELAY
    maxDelay = RECONNECT_MAX_DELAY

    def __init__(self, link: RedisLink, address: RedisAddress) -> None:
        super().__init__(
            str(address),
            address.db,
            1,
            isLazy=True,
            password=address.password,
            username=address.username,
            replyTimeout=REPLY_TIMEOUT,
        )
        self.link = link
        _ignoreFirstConnection(self)

    def stopTrying(self) -> Deferred[None]:
        return _keepTrying(self, self.link)

    def live(self) -> Any:
        """
        The connection, if it is up; else L{None}.
        """
        for connection in self.pool:
            if connection.connected:
                return connection
        return None

    def addConnection(self, connection: Any) -> None:
        super().addConnection(connection)
        self.link._changed()

    def delConnection(self, connection: Any) -> None:
        super().delConnection(connection)
        self.link._changed()


class _Subscriber(txredisapi.SubscriberProtocol):
    """
    The pub/sub connection: subscribes to its link's channels once connected
    (again after each reconnection), and hands it every message.
    """

    factory: _WatchedSubscriberFactory

    def messageReceived(
        self, pattern: str | None, channel: str, message: object
    ) -> None:
        # txredisapi hands over a message as text, or as a number if it
        # looks like one, or as bytes if it is not UTF-8.
        self.factory.link._received(channel, message)


class _WatchedSubscriberFactory(txredisapi.SubscriberFactory):
    """
    txredisapi's factory for the pub/sub connection; the link counts it up
    only once Redis has confirmed the subscription, so that nothing published
    after the link says it is up is missed.
    """

    # Not a "Starting factory" line at each reconnection.
    noisy = False

    protocol = _Subscriber
    initialDelay = RECONNECT_INITIAL_DELAY
    maxDelay = RECONNECT_MAX_DELAY

    def __init__(self, link: RedisLink, address: RedisAddress) -> None:
        super().__init__(isLazy=True)
        _ignoreFirstConnection(self)
        self.link = link
        self.dbid = address.db
        self.password = address.password
        self.username = address.username
        self.subscribed = False

    def stopTrying(self) -> Deferred[None]:
        return _keepTrying(self, self.link)

    def addConnection(self, connection: Any) -> None:
        super().addConnection(connection)
        if connection not in self.pool:
            return
        subscribing: Deferred[Any] = connection.subscribe(list(self.link._channels))

        def confirmed(_: object) -> None:
            if connection in self.pool:
                self.subscribed = True
                self.link._changed()

        subscribing.addCallbacks(confirmed, lambda _: None)

    def delConnection(self, connection: Any) -> None:
        super().delConnection(connection)
        self.subscribed = False
        self.link._changed()


def _keepTrying(factory: txredisapi.RedisFactory, link: RedisLink) -> Deferred[None]:
    """
    What C{factory.stopTrying} does for a factory of C{link}: nothing while
    the link runs.

    txredisapi stops reconnecting for good when a new connection's C{AUTH}
    or C{SELECT} fails, even for want of an answer within the reply timeout:
    a Redis paused (or slow) just as the instance reconnects would leave the
    instance without Redis until restarted.  netdemos closes that connection
    (txredisapi does) and keeps trying, with backoff, until the link itself
    is stopped.  C{tests/test_redis.py} checks this against the installed
    txredisapi.
    """
    if link.running:
        return succeed(None)
    stopping: Deferred[None] = txredisapi.RedisFactory.stopTrying(factory)
    return stopping


def _ignoreFirstConnection(factory: txredisapi.RedisFactory) -> None:
    """
    txredisapi fires C{factory.deferred} with the first connection, or fails
    it with the first error; netdemos follows the link's ups and downs
    instead, so a first connection that fails is not an unhandled error.
    """
    if factory.deferred is not None:
        factory.deferred.addErrback(lambda _: None)
