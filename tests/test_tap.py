"""
Tests for L{netdemos.tap}: options, and what L{makeService} listens on.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any

from support.certificates import makeCertificate
from support.datagrams import DatagramReactor
from support.descriptors import FakeOpenFileLimit, plenty
from twisted.application.service import IServiceCollection
from twisted.internet.error import CannotListenError
from twisted.internet.testing import MemoryReactorClock
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase

from netdemos import listening as endpoints
from netdemos import options as cli
from netdemos import tap
from netdemos.chat.tcp import ChatFactory
from netdemos.counter import CounterSite
from netdemos.counting import MAX_COUNT, MemoryCounter, RedisCounter
from netdemos.descriptors import WatchedEndpoint
from netdemos.echo import EchoFactory
from netdemos.hangup import HangupService
from netdemos.lifecycle import StartupError
from netdemos.redis import RedisAddress, RedisLink
from netdemos.udpecho import UDPEcho
from netdemos.web import WebSite


def parse(*argv: str) -> tap.Options:
    options = tap.Options()
    options.parseOptions(list(argv))
    return options


def makeService(options: tap.Options, reactor: Any) -> Any:
    """
    L{tap.makeService}, with an open-file limit that is not this process's.
    """
    return tap.makeService(options, reactor, openFiles=plenty())


def listening(*argv: str) -> tuple[MemoryReactorClock, list[tuple[int, object, str]]]:
    """
    Start the service tree on a L{MemoryReactorClock}; say what it listens on.
    """
    reactor = MemoryReactorClock()
    service = makeService(parse(*argv), reactor)
    service.privilegedStartService()
    service.startService()
    ports: list[tuple[int, object, str]] = [
        (port, factory, interface) for port, factory, _, interface in reactor.tcpServers
    ]
    return reactor, ports


class OptionsTests(SynchronousTestCase):
    def test_defaults(self) -> None:
        options = parse()
        self.assertEqual(options["echo"], cli.everyAddress(1234))
        self.assertEqual(options["http"], cli.everyAddress(8080))
        self.assertEqual(options["chat"], cli.everyAddress(1025))
        self.assertEqual(options["web"], cli.everyAddress(8081))
        self.assertEqual(options["web-origin"], [])
        self.assertEqual(options["ws-max-message"], 1024 * 1024)
        self.assertEqual(options["ws-ping"], 30)
        self.assertEqual(options["max-line"], 4096)
        self.assertEqual(options["chat-backlog"], 1024 * 1024)
        self.assertIsNone(options["access-log"])

    def test_repeatedOptionReplacesDefaultAndAppends(self) -> None:
        """
        Like C{twistd web --listen}: giving an option drops its default, and
        giving it again adds an endpoint.
        """
        options = parse("--chat=tcp:7000", "--chat", "7001")
        self.assertEqual(options["chat"], ["tcp:7000", *cli.everyAddress(7001)])
        self.assertEqual(options["echo"], cli.everyAddress(1234))

    def test_bareNumberMeansEveryAddressOfBothFamilies(self) -> None:
        """
        A bare port number, and so every default, listens on IPv6 and IPv4:
        one C{tcp6} socket where it takes IPv4 connections too (Linux's
        default), one of each where it does not, C{tcp} without IPv6.
        """
        for families, expected in [
            ((True, True), ["tcp6:8000"]),
            ((True, False), ["tcp6:8000", "tcp:8000"]),
            ((False, False), ["tcp:8000"]),
        ]:
            self.patch(cli, "ipFamilies", lambda families=families: families)
            self.assertEqual(parse("--http=8000")["http"], expected)
            self.assertEqual(
                parse()["web"], [each.replace("8000", "8081") for each in expected]
            )

    def test_thisHostsFamilies(self) -> None:
        """
        L{cli.ipFamilies} finds what this host has: in CI, which runs the
        dual-stack end-to-end tests, IPv6 that takes IPv4 as well.
        """
        ipv6, mapped = cli.ipFamilies()
        if os.environ.get("CI") == "true":
            self.assertEqual((ipv6, mapped), (True, True))
        with socket.socket(socket.AF_INET6) as probe:
            if ipv6:
                probe.bind(("::", 0))
            else:
                self.assertRaises(OSError, probe.bind, ("::", 0))

    def test_noneSwitchesServiceOff(self) -> None:
        self.assertEqual(parse("--echo=none")["echo"], [])

    def test_noneWithOthersIsAnError(self) -> None:
        error = self.assertRaises(UsageError, parse, "--echo=none", "--echo=7")
        self.assertIn("--echo=none cannot be combined", str(error))

    def test_badEndpointNamesTheValue(self) -> None:
        """
        A bad endpoint is refused while parsing, with a message that names it.
        """
        for bad in ("tcp:notaport", "nosuchtype:1", "tcp:1:bogus=1", "tcp:"):
            error = self.assertRaises(UsageError, parse, "--chat=" + bad)
            self.assertIn(f"--chat={bad}", str(error))
            self.assertNotIn("\n", str(error))

    def test_sameEndpointTwiceIsAnError(self) -> None:
        error = self.assertRaises(UsageError, parse, "--echo=7", "--echo=7")
        self.assertIn("same endpoint twice", str(error))

    def test_limitsMustBePositive(self) -> None:
        for option in ("--max-line", "--chat-backlog"):
            self.assertRaises(UsageError, parse, f"{option}=0")
            self.assertRaises(UsageError, parse, f"{option}=lots")
        self.assertEqual(parse("--max-line=512")["max-line"], 512)

    def test_helpDocumentsEveryOptionWithAnExample(self) -> None:
        help = str(tap.Options())
        for option in (
            "--echo=",
            "--http=",
            "--chat=",
            "--max-line=",
            "--chat-backlog=",
            "--access-log=",
            "--web=",
            "--web-origin=",
            "--ws-max-message=",
            "--ws-ping=",
        ):
            self.assertIn(option, help)
        self.assertGreaterEqual(help.replace("\n", " ").count("e.g."), 6)


class MakeServiceTests(SynchronousTestCase):
    def test_listensOnTheDefaultPorts(self) -> None:
        _, ports = listening()
        kinds = {port: type(factory) for port, factory, _ in ports}
        self.assertEqual(
            kinds,
            {1234: EchoFactory, 8080: CounterSite, 1025: ChatFactory, 8081: WebSite},
        )

    def test_endpointsWithInterfaces(self) -> None:
        _, ports = listening(
            "--echo=tcp:7:interface=127.0.0.1",
            "--http=none",
            "--chat=none",
            "--web=none",
        )
        self.assertEqual([(p, i) for p, _, i in ports], [(7, "127.0.0.1")])

    def test_chatEndpointsShareOneRoom(self) -> None:
        """
        Several --chat endpoints serve one room: a client on one port talks to
        a client on the other.
        """
        _, ports = listening(
            "--echo=none", "--http=none", "--chat=7000", "--chat=7001", "--web=none"
        )
        factories = [factory for _, factory, _ in ports]
        self.assertEqual(len(factories), 2)
        self.assertIs(factories[0], factories[1])

    def test_optionsReachTheServices(self) -> None:
        _, ports = listening("--max-line=100", "--chat-backlog=2000")
        (chatFactory,) = [f for _, f, _ in ports if isinstance(f, ChatFactory)]
        self.assertEqual(chatFactory.settings.maxLine, 100)
        self.assertEqual(chatFactory.settings.backlog, 2000)

    def test_instanceNameReachesEveryService(self) -> None:
        """
        C{--name} is what the status line, the chat welcome and every HTTP
        response name; without it, the host name.
        """
        service = makeService(parse("--name=web-1"), MemoryReactorClock())
        self.assertEqual(service.instance, "web-1")
        self.assertEqual(service.factories["chat"].settings.instance, "web-1")
        self.assertEqual(service.factories["http"].servedBy, [b"web-1"])
        self.assertEqual(parse()["name"], cli.defaultInstanceName())
        self.assertEqual(
            cli.defaultInstanceName(), re.sub(r"[^\w.-]", "-", socket.gethostname())
        )

    def test_badInstanceNamesAreRefused(self) -> None:
        """
        A name goes into an HTTP header, metric labels and Redis keys: nothing
        that could break one of them gets through.
        """
        for bad in ("", "-web", "web 1", "web\r\nX-Evil: 1", "w" * 65, "wéb"):
            self.assertRaises(UsageError, parse, f"--name={bad}")
        self.assertEqual(parse("--name=" + "w" * 64)["name"], "w" * 64)

    def test_childServicesAreNamed(self) -> None:
        self.patch(cli, "ipFamilies", lambda: (True, True))
        service = makeService(parse("--echo=tcp:7", "--echo=8"), MemoryReactorClock())
        names = [child.name for child in IServiceCollection(service.listeners)]
        self.assertEqual(
            names,
            [
                "echo tcp:7",
                "echo tcp6:8",
                "http tcp6:8080",
                "chat tcp6:1025",
                "web tcp6:8081",
            ],
        )

    def test_onlyTheGlobalReactorGetsASighupHandler(self) -> None:
        """
        Under twistd, which passes no reactor, the service tree handles
        SIGHUP; given a reactor, as in these tests, it installs no signal
        handler, which would outlive the test.
        """
        options = parse("--http=none", "--chat=none")
        withGiven = tap.makeService(options, MemoryReactorClock())
        self.assertEqual(
            [s for s in withGiven if isinstance(s, HangupService)],
            [],
        )
        from twisted.internet import reactor

        withGlobal = tap.makeService(options)
        [handler] = [s for s in withGlobal if isinstance(s, HangupService)]
        self.assertIs(handler.reactor, reactor)

    def test_portInUseEndsWithOneLineMessage(self) -> None:
        """
        A port that cannot be bound stops startup with a message naming it,
        instead of a traceback.
        """

        class BusyReactor(MemoryReactorClock):
            def listenTCP(self, port, factory, backlog=50, interface=""):  # type: ignore[no-untyped-def]
                raise CannotListenError(interface, port, OSError(98, "Address in use"))

        service = makeService(
            parse("--echo=tcp:1234", "--http=none", "--chat=none"), BusyReactor()
        )
        error = self.assertRaises(SystemExit, service.privilegedStartService)
        # twistd reports an Exception to a daemon's waiting parent; see
        # StartupError.
        self.assertIsInstance(error, Exception)
        self.assertEqual(
            str(error),
            "netdemos: cannot listen for echo tcp:1234: [Errno 98] Address in use",
        )


class OperatorOptionsTests(SynchronousTestCase):
    def test_listenBacklogDefaultsHigherThanTwisted(self) -> None:
        """
        Twisted's listen backlog of 50 makes a burst of connects stall on SYN
        retries; endpoints that do not say otherwise get 1024.
        """
        reactor, _ = listening("--echo=tcp:7:backlog=5", "--chat=none")
        backlogs = {port: backlog for port, _, backlog, _ in reactor.tcpServers}
        self.assertEqual(
            backlogs,
            {
                7: 5,
                8080: endpoints.DEFAULT_LISTEN_BACKLOG,
                8081: endpoints.DEFAULT_LISTEN_BACKLOG,
            },
        )
        self.assertEqual(endpoints.withListenBacklog("unix:/x"), "unix:/x:backlog=1024")
        self.assertEqual(
            endpoints.withListenBacklog("systemd:domain=INET:name=e"),
            "systemd:domain=INET:name=e",
        )

    def test_listenBacklogDefaultReachesEveryKindOfListener(self) -> None:
        """
        The default backlog of 1024 reaches tcp6, unix and ssl listeners, a
        bare port and the metrics listener alike, and an explicit C{backlog=}
        on any of them is kept.

        A burst of connects stalls on SYN retries whatever kind of endpoint it
        hits, and an operator who chose a backlog must get that one.
        """
        directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, directory)
        certificate = makeCertificate(Path(directory))
        sockets = os.path.join(directory, "sockets")
        reactor, _ = listening(
            "--echo=tcp6:7001",
            "--echo=tcp6:7002:backlog=7",
            "--http=8000",
            f"--http={certificate.serverEndpoint(8443)}:backlog=9",
            f"--chat=unix:{sockets}/chat",
            f"--chat=unix:{sockets}/chat-too:backlog=11",
            f"--chat={certificate.serverEndpoint(6697)}",
            "--web=none",
            "--metrics=tcp:9100:interface=127.0.0.1",
        )
        tcp = {port: backlog for port, _, backlog, _ in reactor.tcpServers}
        self.assertEqual(tcp, {7001: 1024, 7002: 7, 8000: 1024, 9100: 1024})
        unix = {path: backlog for path, _, backlog, _, _ in reactor.unixServers}
        self.assertEqual(unix, {f"{sockets}/chat": 1024, f"{sockets}/chat-too": 11})
        ssl = {port: backlog for port, _, _, backlog, _ in reactor.sslServers}
        self.assertEqual(ssl, {8443: 9, 6697: 1024})

    def test_limitsAndTimeoutsReachTheServices(self) -> None:
        _, ports = listening(
            "--max-connections=7", "--idle-timeout=30", "--shutdown-timeout=2.5"
        )
        factories: dict[type, Any] = {type(f): f for _, f, _ in ports}
        self.assertEqual(factories[EchoFactory].connections.limit, 7)
        self.assertEqual(factories[EchoFactory].idleTimeout, 30)
        self.assertEqual(factories[ChatFactory].settings.idleTimeout, 30)
        self.assertEqual(factories[CounterSite].connections.limit, 7)
        self.assertEqual(factories[CounterSite].timeOut, 60)
        self.assertEqual(factories[WebSite].connections.limit, 7)

    def test_badNumbersAreRefused(self) -> None:
        for option in (
            "--idle-timeout=0",
            "--shutdown-timeout=-1",
            "--max-connections=none",
            "--idle-timeout=soon",
        ):
            self.assertRaises(UsageError, parse, option)

    def test_numbersHaveUpperBounds(self) -> None:
        """
        Each numeric option takes values up to its bound and refuses the next
        one, saying the range: a typo such as an extra three zeros must not
        ask for gigabytes per client or a timer in the year 3000.
        """
        for option, highest, tooHigh in [
            ("max-line", "1048576", "1048577"),
            ("chat-backlog", "1073741824", "1073741825"),
            ("max-connections", "1000000", "1000001"),
            ("idle-timeout", "604800", "604800.5"),
            ("http-header-timeout", "300", "300.001"),
            ("shutdown-timeout", "3600", "3600.001"),
            ("echo-udp-rate", "1000000", "1000000.5"),
            ("echo-udp-burst", "1000000", "1000001"),
        ]:
            self.assertEqual(parse(f"--{option}={highest}")[option], int(highest))
            error = self.assertRaises(UsageError, parse, f"--{option}={tooHigh}")
            self.assertIn(f"{tooHigh} is not a", str(error))
            self.assertIn(f"to {highest}", str(error))
        error = self.assertRaises(UsageError, parse, "--max-line=" + "1" * 5000)
        self.assertIn("1111... is not a whole number from 1 to 1048576", str(error))

    def test_numbersAreSpelledPlainly(self) -> None:
        """
        Only plain ASCII numbers are taken: C{float()} reads C{inf} and C{nan},
        which break the reactor's timers, and C{int()} and C{float()} read
        underscores, signs, spaces and other scripts' digits.
        """
        for option in (
            "--idle-timeout=inf",
            "--idle-timeout=nan",
            "--shutdown-timeout=infinity",
            "--shutdown-timeout=1e3",
            "--max-line=1_000",
            "--max-line=+512",
            "--max-line= 512",
            "--max-connections=\u0661\u0662",
            "--max-line=100000000000000000000",
        ):
            self.assertRaises(UsageError, parse, option)
        self.assertEqual(parse("--idle-timeout=.5")["idle-timeout"], 0.5)
        self.assertEqual(parse("--shutdown-timeout=2.")["shutdown-timeout"], 2.0)

    def test_helpStatesEachRange(self) -> None:
        help = " ".join(str(tap.Options()).split())
        for expected in (
            "[default: 4096]. From 1 to 1048576.",
            "[default: 1048576]. From 1 to 1073741824.",
            "[default: 10000]. From 1 to 1000000.",
            "after 60 s. From 0.001 to 604800 seconds.",
            "gets 408 (e.g. --http-header-timeout=5). [default: 10]. From 0.001"
            " to 300 seconds.",
            "[default: 5]. From 0.001 to 3600 seconds.",
            "[default: 10]. From 0 to 1000000 lines a second.",
        ):
            self.assertIn(expected, help)

    def test_helpGroupsTheOptionsAfterTheDescription(self) -> None:
        """
        C{--help} says what netdemos is first, then lists the options in
        groups, each with what it takes; every option is in one group, and
        each line's text starts in one column.
        """
        help = cli.Options().getUsage(width=80)
        headings = [
            line for line in help.splitlines() if line.endswith(":") and line[:1] != " "
        ]
        self.assertEqual(
            [heading.split(",")[0].rstrip(":") for heading in headings],
            [
                "Services",
                "UDP echo",
                "Chat",
                "Web",
                "HTTP",
                "Several instances",
                "Operations",
            ],
        )
        self.assertLess(help.index("Serve echo (RFC 862)"), help.index(headings[0]))
        listed = re.findall(r"^      --([\w-]+)(=[A-Z]+)?", help, re.M)
        self.assertEqual(
            sorted(name for name, _ in listed),
            sorted(name for _, options in cli.HELP_GROUPS for name, _ in options),
        )
        self.assertIn(("chat-rate", "=LINES"), listed)
        self.assertIn(("version", ""), listed)
        self.assertIn("      --echo=ENDPOINT         Serve echo on ENDPOINT", help)
        self.assertNotIn("  /echo", help)  # a docstring's indentation

    def test_boundedNumbersForNewOptions(self) -> None:
        """
        The helpers other options use: the bounds are inclusive, and the
        error says the range.
        """
        count = cli.boundedInt(2, 10)
        self.assertEqual((count("2"), count("10")), (2, 10))
        for bad in ("1", "11", "", "2.0"):
            error = self.assertRaises(ValueError, count, bad)
            self.assertEqual(str(error), f"{bad} is not a whole number from 2 to 10")
        seconds = cli.boundedSeconds(0.5, 60)
        self.assertEqual((seconds("0.5"), seconds("60")), (0.5, 60.0))
        error = self.assertRaises(ValueError, seconds, "61")
        self.assertEqual(str(error), "61 is not a number of seconds from 0.5 to 60")

    def test_metricsListensOnItsOwnEndpoint(self) -> None:
        reactor = MemoryReactorClock()
        options = parse("--metrics=tcp:9100:interface=127.0.0.1")
        service = makeService(options, reactor)
        service.privilegedStartService()
        ports = {
            port: type(factory).__name__ for port, factory, _, _ in reactor.tcpServers
        }
        self.assertEqual(ports[9100], "QuietSite")
        self.assertEqual(len(ports), 5)

    def test_connectionLimitsFitTheOpenFileLimit(self) -> None:
        """
        Under a hard open-file limit of 1024 the services get 222 connections
        each and the admin site its 16, rather than 10,000 each that the
        process could never hold.
        """
        reactor = MemoryReactorClock()
        options = parse("--metrics=9100")
        service = tap.makeService(
            options, reactor, openFiles=FakeOpenFileLimit(1024, 1024)
        )
        service.privilegedStartService()
        factories: dict[str, Any] = {
            type(factory).__name__: factory for _, factory, _, _ in reactor.tcpServers
        }
        self.assertEqual(
            {name: factory.connections.limit for name, factory in factories.items()},
            {
                "EchoFactory": 222,
                "CounterSite": 222,
                "ChatFactory": 222,
                "WebSite": 222,
                "QuietSite": 16,
            },
        )

    def test_openFileLimitTooLowEndsWithOneLine(self) -> None:
        error = self.assertRaises(
            SystemExit,
            tap.makeService,
            parse(),
            MemoryReactorClock(),
            openFiles=FakeOpenFileLimit(64, 64),
        )
        self.assertIn("netdemos: the open-file limit 64 leaves no", str(error))

    def test_everyListenerIsWatchedForAcceptFailures(self) -> None:
        service = makeService(parse("--metrics=9100"), MemoryReactorClock())
        children = [*service.listeners, *service.admin]
        self.assertEqual(len(children), 5)
        for child in children:
            self.assertIsInstance(child.endpoint, WatchedEndpoint)

    def test_webOptionsReachTheSite(self) -> None:
        """
        The WebSocket limits and the extra origins reach the web site, and
        its chat members are in the TCP chat's room.
        """
        _, ports = listening(
            "--ws-max-message=5000",
            "--ws-ping=12",
            "--web-origin=HTTPS://Chat.Example",
            "--web-origin=http://localhost:3000/",
        )
        factories: dict[type, Any] = {type(f): f for _, f, _ in ports}
        site = factories[WebSite]
        self.assertIs(site.room, factories[ChatFactory].room)
        echo = site.resource.children[b"echo"]
        self.assertEqual(echo.factory.maxMessage, 5000)
        self.assertEqual(echo.factory.pingInterval, 12)
        self.assertTrue(echo.allows("https://chat.example", None))
        self.assertTrue(echo.allows("http://localhost:3000", None))
        self.assertFalse(echo.allows("https://other.example", None))

    def test_webOriginMustBeAnOrigin(self) -> None:
        """
        An origin is a scheme, a host and maybe a port: a URL with a path, or
        no scheme, would never match what browsers send, so it is refused.
        """
        for bad in ("chat.example.com", "https://chat.example.com/chat", "ftp://x"):
            error = self.assertRaises(UsageError, parse, f"--web-origin={bad}")
            self.assertIn(f"--web-origin={bad}", str(error))

    def test_metricsWithoutTheLibrarySaysWhatToInstall(self) -> None:
        self.patch(cli.importlib.util, "find_spec", lambda name: None)
        error = self.assertRaises(UsageError, parse, "--metrics=9100")
        self.assertIn("pip install 'netdemos[metrics]'", str(error))

    def test_tlsWithoutTheLibrarySaysWhatToInstall(self) -> None:
        self.patch(cli, "_haveTLS", lambda: False)
        error = self.assertRaises(
            UsageError, parse, "--http=ssl:8443:privateKey=k.pem:certKey=c.pem"
        )
        self.assertIn("pip install 'netdemos[tls]'", str(error))
        self.assertIn("--http=ssl:8443", str(error))

    def test_missingKeyFileNamesTheValue(self) -> None:
        error = self.assertRaises(
            UsageError, parse, "--chat=ssl:6697:privateKey=/nonexistent.pem"
        )
        self.assertIn("--chat=ssl:6697:privateKey=/nonexistent.pem", str(error))
        self.assertNotIn("\n", str(error))

    def counterFile(self, content: str) -> str:
        """
        Write C{content} to a counter file in a new directory; return its path.
        """
        directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, directory)
        path = os.path.join(directory, "count")
        with open(path, "w") as f:
            f.write(content)
        return path

    def test_badCounterFileIsRefusedInOneLine(self) -> None:
        """
        A counter file that is not a count, or cannot be written, stops
        startup with a L{StartupError}: one line, exit status 1, no traceback,
        and not twistd's usage text, which is no help with a file.
        """
        path = self.counterFile("1_000\n")
        directory = os.path.dirname(path)
        error = self.assertRaises(StartupError, parse, f"--counter-file={path}")
        self.assertEqual(
            str(error),
            f"netdemos: --counter-file: {path} does not hold a request count"
            " (only ASCII digits and a final newline): b'1_000\\n'",
        )
        missingDir = os.path.join(directory, "missing", "count")
        error = self.assertRaises(StartupError, parse, f"--counter-file={missingDir}")
        self.assertIn("cannot write in", str(error))

    def test_counterFileWithNoNumberLeftIsRefusedInOneLine(self) -> None:
        """
        A count that parses but leaves no number to hand out is refused when
        the service is made, the same way as a bad file.
        """
        path = self.counterFile(f"{MAX_COUNT}\n")
        options = parse(f"--counter-file={path}")
        error = self.assertRaises(
            StartupError, tap.makeService, options, MemoryReactorClock()
        )
        self.assertEqual(
            str(error),
            f"netdemos: --counter-file: {path} holds {MAX_COUNT}, the largest"
            " count: no number is left",
        )

    def test_counterFileIsSavedOnStop(self) -> None:
        path = self.counterFile("41\n")
        reactor = MemoryReactorClock()
        service = makeService(parse(f"--counter-file={path}"), reactor)
        service.privilegedStartService()
        service.startService()
        site = service.factories["http"]
        assert isinstance(site, CounterSite)
        self.assertEqual(site.requestCounter.next(), 42)
        self.successResultOf(service.stopService())
        with open(path) as f:
            self.assertEqual(f.read(), "42\n")

    def test_httpHeaderTimeoutReachesTheSite(self) -> None:
        """
        --http-header-timeout sets the counter's header deadline, 10 s by
        default.
        """
        for argv, expected in (([], 10.0), (["--http-header-timeout=2.5"], 2.5)):
            _, ports = listening(*argv)
            sites = [f for _, f, _ in ports if isinstance(f, CounterSite)]
            self.assertEqual([site.headerTimeout for site in sites], [expected])


class HelpExamplesTests(SynchronousTestCase):
    def test_everyExampleInTheHelpParses(self) -> None:
        """
        The examples in C{--help} are what people copy: each one must parse.
        """
        texts = [str(parameter[3]) for parameter in tap.Options.optParameters]
        texts += [
            getattr(tap.Options, f"opt_{name}").__doc__ or ""
            for name in (
                "echo",
                "http",
                "chat",
                "web",
                "web_origin",
                "metrics",
                "echo_udp",
            )
        ]
        examples = re.findall(r"e\.g\. (--[\w-]+=[^\s)]+)", " ".join(texts))
        # Nearly every option has one: a regular expression gone wrong would
        # find none and pass.
        self.assertGreaterEqual(len(examples), len(tap.Options.optParameters))
        for example in examples:
            if example.startswith("--counter-file="):
                continue  # names a directory this machine need not have
            parse(example)


class UDPEchoOptionTests(SynchronousTestCase):
    """
    C{--echo-udp}: off unless asked for, as a UDP echo is a reflector; its
    endpoints and limits reach the service.
    """

    def start(self, *argv: str) -> tuple[DatagramReactor, Any]:
        reactor = DatagramReactor()
        service = makeService(parse(*argv), reactor)
        service.privilegedStartService()
        service.startService()
        return reactor, service

    def test_offByDefault(self) -> None:
        reactor, service = self.start()
        self.assertEqual(reactor.udpServers, [])
        self.assertEqual(service.reporting, {})
        self.assertEqual(parse("--echo-udp=none")["echo-udp"], [])

    def test_listensOnEachEndpointWithOneSharedFactory(self) -> None:
        reactor, service = self.start(
            "--echo-udp=7", r"--echo-udp=udp:8:interface=\:\:1"
        )
        servers = [
            (port, interface, size) for port, _, interface, size in reactor.udpServers
        ]
        # The largest datagram is read whole: Twisted reads 8192 bytes unless told.
        self.assertEqual(servers, [(7, "", 65535), (8, "::1", 65535)])
        [first, second] = [protocol for _, protocol, _, _ in reactor.udpServers]
        assert isinstance(first, UDPEcho) and isinstance(second, UDPEcho)
        self.assertIs(first._factory, second._factory)
        self.assertIs(service.reporting["echo-udp"], first._factory)
        names = [child.name for child in IServiceCollection(service.listeners)]
        self.assertIn("echo-udp udp:7", names)
        self.assertEqual(
            [(each.service, each.description) for each in service.listening][-2:],
            [("echo-udp", "udp:7"), ("echo-udp", r"udp:8:interface=\:\:1")],
        )

    def test_limitsReachTheService(self) -> None:
        reactor, _ = self.start(
            "--echo-udp=7", "--echo-udp-rate=2.5", "--echo-udp-burst=3"
        )
        protocol = reactor.udpServers[0][1]
        assert isinstance(protocol, UDPEcho)
        limits = protocol._factory.limits
        self.assertEqual((limits._each.interval, limits._each.burst), (0.4, 3))

    def test_badEndpointsAreRefusedInOneLine(self) -> None:
        for argv, message in [
            (["--echo-udp=tcp:7"], "--echo-udp=tcp:7: not udp:PORT"),
            (["--echo-udp=7", "--echo-udp=udp:7"], "names the same endpoint twice"),
            (["--echo-udp=7", "--echo-udp=none"], "cannot be combined"),
            (["--echo-udp=systemd:name=nope"], "no socket named 'nope'"),
        ]:
            error = self.assertRaises(UsageError, parse, *argv)
            self.assertIn(message, str(error))

    def test_portInUseEndsWithOneLineMessage(self) -> None:
        class BusyReactor(DatagramReactor):
            def listenUDP(self, port, protocol, interface="", maxPacketSize=8192):  # type: ignore[no-untyped-def]
                raise CannotListenError(interface, port, OSError(98, "Address in use"))

        service = makeService(parse("--echo-udp=1234"), BusyReactor())
        error = self.assertRaises(StartupError, service.privilegedStartService)
        self.assertEqual(
            str(error),
            "netdemos: cannot listen for echo-udp udp:1234: [Errno 98] Address in use",
        )

    def test_theRateCannotBeLifted(self) -> None:
        """
        Unlike --chat-rate, 0 does not lift the limit: a UDP echo without
        one is a reflector.
        """
        self.assertRaises(UsageError, parse, "--echo-udp-rate=0")
        self.assertRaises(UsageError, parse, "--echo-udp-burst=0")


class RedisOptionTests(SynchronousTestCase):
    """
    C{--redis}: a URL that cannot be used stops startup in one line, and a
    good one puts the count and its readiness in Redis's hands.
    """

    def test_badURLsAreRefusedInOneLine(self) -> None:
        for url, reason in [
            ("http://localhost", "not a redis:// or unix:// URL"),
            ("redis://localhost:99999", "Port out of range"),
            ("redis://localhost:http", "Port could not be cast"),
            ("redis://", "no host"),
            ("redis://localhost/x", "the database must be a number"),
            ("unix://", "a UNIX socket is unix:///PATH"),
            ("unix:///run/redis.sock?db=x", "the database must be a number"),
            ("unix:///run/redis.sock?color=red", "may only give db=N"),
        ]:
            error = self.assertRaises(StartupError, parse, f"--redis={url}")
            message = str(error)
            self.assertTrue(message.startswith(f"netdemos: --redis={url}"), message)
            self.assertIn(reason, message)
            self.assertNotIn("\n", message)

    def test_aPasswordIsNeverShownInAnError(self) -> None:
        error = self.assertRaises(
            StartupError, parse, "--redis=redis://:s3cret@localhost:99999"
        )
        self.assertNotIn("s3cret", str(error))
        self.assertIn("redis://:***@localhost:99999", str(error))

    def test_redisAndCounterFileAreRefusedTogether(self) -> None:
        """
        With --redis the count lives in Redis: a counter file as well would be
        a second count that nobody reads.
        """
        error = self.assertRaises(
            StartupError, parse, "--redis=redis://localhost", "--counter-file=n"
        )
        self.assertIn("--redis and --counter-file cannot be combined", str(error))

    def test_badPrefixIsRefused(self) -> None:
        for bad in ("", ":x", "a b", "p" * 65):
            self.assertRaises(UsageError, parse, f"--redis-prefix={bad}")
        self.assertEqual(parse()["redis-prefix"], "netdemos")

    def test_countInRedisAndNotReadyUntilItIsReached(self) -> None:
        """
        With --redis the HTTP count is a L{RedisCounter} on a link among the
        server's backends, with the URL's address and the prefix; the server
        is not ready until that counter is.
        """
        options = parse(
            "--redis=redis://:pw@redis.example:6380/2", "--redis-prefix=staging"
        )
        service = makeService(options, MemoryReactorClock())
        (link,) = [each for each in service.backends if isinstance(each, RedisLink)]
        self.assertEqual(
            link.address,
            RedisAddress(host="redis.example", port=6380, db=2, password="pw"),
        )
        self.assertEqual(link.prefix, "{staging}")
        self.assertEqual(link.untaggedPrefix, "staging")
        counter = service.factories["http"].requestCounter
        self.assertIsInstance(counter, RedisCounter)
        self.assertEqual(counter.key, "{staging}:count")
        service._serving = True
        self.assertFalse(service.ready)
        counter.ready = True
        self.assertTrue(service.ready)

    def test_withoutRedisNothingChanges(self) -> None:
        service = makeService(parse(), MemoryReactorClock())
        self.assertEqual([each for each in service if isinstance(each, RedisLink)], [])
        counter = service.factories["http"].requestCounter
        self.assertIsInstance(counter, MemoryCounter)
