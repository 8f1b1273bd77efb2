"""
Tests for L{netdemos.tap}: options, and what L{makeService} listens on.
"""

from __future__ import annotations

from twisted.application.service import IServiceCollection
from twisted.internet.error import CannotListenError
from twisted.internet.testing import MemoryReactorClock
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase

from netdemos import tap
from netdemos.chat import ChatFactory
from netdemos.counter import CounterSite
from netdemos.echo import EchoFactory


def parse(*argv: str) -> tap.Options:
    options = tap.Options()
    options.parseOptions(list(argv))
    return options


def listening(*argv: str) -> tuple[MemoryReactorClock, list[tuple[int, object, str]]]:
    """
    Start the service tree on a L{MemoryReactorClock}; say what it listens on.
    """
    reactor = MemoryReactorClock()
    service = tap.makeService(parse(*argv), reactor)
    service.privilegedStartService()
    service.startService()
    ports: list[tuple[int, object, str]] = [
        (port, factory, interface) for port, factory, _, interface in reactor.tcpServers
    ]
    return reactor, ports


class OptionsTests(SynchronousTestCase):
    def test_defaults(self) -> None:
        options = parse()
        self.assertEqual(options["echo"], ["tcp:1234"])
        self.assertEqual(options["http"], ["tcp:8080"])
        self.assertEqual(options["chat"], ["tcp:1025"])
        self.assertEqual(options["max-line"], 4096)
        self.assertEqual(options["chat-backlog"], 1024 * 1024)
        self.assertIsNone(options["access-log"])

    def test_repeatedOptionReplacesDefaultAndAppends(self) -> None:
        """
        Like C{twistd web --listen}: giving an option drops its default, and
        giving it again adds an endpoint.
        """
        options = parse("--chat=tcp:7000", "--chat", "7001")
        self.assertEqual(options["chat"], ["tcp:7000", "tcp:7001"])
        self.assertEqual(options["echo"], ["tcp:1234"])

    def test_bareNumberMeansTCP(self) -> None:
        self.assertEqual(parse("--http=8000")["http"], ["tcp:8000"])

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
        error = self.assertRaises(UsageError, parse, "--echo=7", "--echo=tcp:7")
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
        ):
            self.assertIn(option, help)
        self.assertGreaterEqual(help.replace("\n", " ").count("e.g."), 6)


class MakeServiceTests(SynchronousTestCase):
    def test_listensOnTheDefaultPorts(self) -> None:
        _, ports = listening()
        kinds = {port: type(factory) for port, factory, _ in ports}
        self.assertEqual(
            kinds, {1234: EchoFactory, 8080: CounterSite, 1025: ChatFactory}
        )

    def test_endpointsWithInterfaces(self) -> None:
        _, ports = listening(
            "--echo=tcp:7:interface=127.0.0.1", "--http=none", "--chat=none"
        )
        self.assertEqual([(p, i) for p, _, i in ports], [(7, "127.0.0.1")])

    def test_chatEndpointsShareOneRoom(self) -> None:
        """
        Several --chat endpoints serve one room: a client on one port talks to
        a client on the other.
        """
        _, ports = listening("--echo=none", "--http=none", "--chat=7000", "--chat=7001")
        factories = [factory for _, factory, _ in ports]
        self.assertEqual(len(factories), 2)
        self.assertIs(factories[0], factories[1])

    def test_optionsReachTheServices(self) -> None:
        _, ports = listening("--max-line=100", "--chat-backlog=2000")
        (chatFactory,) = [f for _, f, _ in ports if isinstance(f, ChatFactory)]
        self.assertEqual(chatFactory.room.maxLine, 100)
        self.assertEqual(chatFactory.room.backlog, 2000)

    def test_childServicesAreNamed(self) -> None:
        service = tap.makeService(parse("--echo=7", "--echo=8"), MemoryReactorClock())
        names = [child.name for child in IServiceCollection(service.listeners)]
        self.assertEqual(
            names, ["echo tcp:7", "echo tcp:8", "http tcp:8080", "chat tcp:1025"]
        )

    def test_portInUseEndsWithOneLineMessage(self) -> None:
        """
        A port that cannot be bound stops startup with a message naming it,
        instead of a traceback.
        """

        class BusyReactor(MemoryReactorClock):
            def listenTCP(self, port, factory, backlog=50, interface=""):  # type: ignore[no-untyped-def]
                raise CannotListenError(interface, port, OSError(98, "Address in use"))

        service = tap.makeService(parse("--http=none", "--chat=none"), BusyReactor())
        error = self.assertRaises(SystemExit, service.privilegedStartService)
        self.assertEqual(
            str(error),
            "netdemos: cannot listen on port 1234 on all interfaces:"
            " [Errno 98] Address in use",
        )
