"""
Checks of the systemd units in C{contrib/systemd}.

C{systemd-analyze} checks them as systemd would load them, where it is
installed; the rest reads them as text and needs no systemd at all.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

from support.running import twistdCommand
from support.systemd import (
    DATAGRAM_SOCKETS,
    INSTANCE_SOCKETS,
    SERVICE,
    SOCKETS,
    UNITS,
    readUnit,
)
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from netdemos.connections import DEFAULT_MAX_CONNECTIONS
from netdemos.descriptors import planDescriptors
from netdemos.options import DEFAULT_PORTS

INSTALLED_TWISTD = "/opt/netdemos/bin/twistd"


def systemdEndpoints(execStart: str) -> dict[str, dict[str, str]]:
    """
    Map each C{--SERVICE=systemd:...} option in C{execStart} to its arguments,
    e.g. C{{"echo": {"domain": "INET6", "name": "echo"}}}.
    """
    endpoints = {}
    for word in shlex.split(execStart):
        option, _, value = word.partition("=")
        kind, _, arguments = value.partition(":")
        if option.startswith("--") and kind == "systemd":
            pairs = (each.split("=", 1) for each in arguments.split(":"))
            endpoints[option[2:]] = {key: value for key, value in pairs}
    return endpoints


def listenFamily(listenStream: str) -> str:
    """
    The address family systemd gives a C{ListenStream=} socket, as Twisted's
    C{domain=} names it.  A bare port means IPv6 (dual-stack), per
    systemd.socket(5).
    """
    if listenStream.startswith("/") or listenStream.startswith("@"):
        return "UNIX"
    if listenStream.startswith("[") or listenStream.isdigit():
        return "INET6"
    return "INET"


def unitsForVerifying(directory: Path, names: list[str] | None = None) -> list[Path]:
    """
    Copy the units into C{directory}, with C{ExecStart} pointing at the
    C{twistd} the tests run with: C{systemd-analyze verify} fails a unit
    whose program does not exist, and C{/opt/netdemos} is only on servers.
    """
    # The twistd script, or else the Python that runs it.
    program = twistdCommand()[0]
    copies = []
    for name in names or [SERVICE, *SOCKETS.values(), *DATAGRAM_SOCKETS.values()]:
        text = (UNITS / name).read_text().replace(INSTALLED_TWISTD, program)
        (directory / name).write_text(text)
        copies.append(directory / name)
    return copies


def systemdAnalyze(*args: str) -> subprocess.CompletedProcess[str]:
    executable = shutil.which("systemd-analyze")
    if executable is None:
        # In CI a missing tool fails; .ci/run installs systemd.
        if os.environ.get("CI"):
            raise AssertionError("systemd-analyze is not installed (package systemd)")
        raise SkipTest("systemd-analyze is not installed")
    return subprocess.run(
        [executable, "--no-pager", *args],
        # Diagnostics to stderr, even where a journal is listening.
        env={**os.environ, "SYSTEMD_LOG_TARGET": "console", "SYSTEMD_LOG_COLOR": "0"},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


class SystemdAnalyzeTests(SynchronousTestCase):
    def verifiableUnits(self) -> list[str]:
        directory = tempfile.TemporaryDirectory()
        self.addCleanup(directory.cleanup)
        return [str(path) for path in unitsForVerifying(Path(directory.name))]

    def test_unitsVerify(self) -> None:
        """
        C{systemd-analyze verify} accepts every unit without a complaint.

        Most mistakes (a misspelt key, a bad value) are only warnings that
        systemd ignores the line, leaving the exit status 0, so any message
        naming a netdemos unit fails the test too.
        """
        result = systemdAnalyze("verify", "--man=no", *self.verifiableUnits())
        complaints = [line for line in result.stderr.splitlines() if "netdemos" in line]
        self.assertEqual(
            (result.returncode, complaints),
            (0, []),
            f"systemd-analyze verify:\n{result.stdout}{result.stderr}",
        )

    def test_sandboxExposureStaysLow(self) -> None:
        """
        The sandboxing stays in place: C{systemd-analyze security} rates the
        service's exposure at most 2.0 of 10 (it is 1.1 as shipped).
        """
        service = self.verifiableUnits()[0]
        result = systemdAnalyze("security", "--offline=yes", "--threshold=20", service)
        self.assertEqual(
            result.returncode, 0, f"systemd-analyze security:\n{result.stdout}"
        )


class UnitConsistencyTests(SynchronousTestCase):
    def test_everySocketIsAdoptedWithItsFamily(self) -> None:
        """
        Each service adopts, by name, a socket whose address family is the
        C{domain=} it names.  systemd cannot check this, and a mismatch is not
        an error: Twisted would read client addresses with the wrong layout and
        report garbage.
        """
        service = readUnit(SERVICE)
        endpoints = systemdEndpoints(service["Service"]["ExecStart"])
        self.assertEqual(sorted(endpoints), sorted(SOCKETS))
        for name, socketUnit in SOCKETS.items():
            socketSection = readUnit(socketUnit)["Socket"]
            self.assertEqual(socketSection["FileDescriptorName"], name)
            self.assertEqual(endpoints[name]["name"], name)
            self.assertEqual(
                endpoints[name]["domain"],
                listenFamily(socketSection["ListenStream"]),
                f"{socketUnit} ListenStream={socketSection['ListenStream']}",
            )

    def test_serviceStartsWithItsSockets(self) -> None:
        """
        Every socket activates the service, and the service requires and is
        ordered after every socket, so it never starts without one to adopt.
        """
        unit = readUnit(SERVICE)["Unit"]
        for socketUnit in SOCKETS.values():
            self.assertEqual(readUnit(socketUnit)["Socket"]["Service"], SERVICE)
            self.assertIn(socketUnit, unit["Requires"].split())
            self.assertIn(socketUnit, unit["After"].split())

    def test_openFileLimitHoldsEveryDefaultConnectionLimit(self) -> None:
        """
        C{LimitNOFILE=} leaves room for every service's default
        C{--max-connections} and what netdemos keeps besides, so that under
        systemd netdemos never has to lower them.  Without it a service
        starts with systemd's soft limit of 1024.
        """
        openFiles = readUnit(SERVICE)["Service"]["LimitNOFILE"]
        soft, _, hard = openFiles.partition(":")
        wanted = {name: DEFAULT_MAX_CONNECTIONS for name in SOCKETS}
        plan = planDescriptors(
            wanted, int(soft), int(hard or soft), listeners=len(SOCKETS)
        )
        self.assertEqual((plan.openFiles, plan.limits), (int(soft), wanted))

    def test_defaultPorts(self) -> None:
        """
        The sockets listen on the ports twistd netdemos uses by default, so
        the documentation's port numbers hold either way.
        """
        ports = {
            name: readUnit(socketUnit)["Socket"]["ListenStream"].rsplit(":", 1)[-1]
            for name, socketUnit in SOCKETS.items()
        }
        self.assertEqual(
            {name: int(port) for name, port in ports.items()}, DEFAULT_PORTS
        )

    def test_theUDPEchoSocketIsOffered(self) -> None:
        """
        The UDP echo's socket is a datagram socket on the TCP echo's port,
        named as its comment tells operators to adopt it; and, the UDP echo
        being off by default, the service does not require it.
        """
        [(name, socketUnit)] = DATAGRAM_SOCKETS.items()
        text = (UNITS / socketUnit).read_text()
        socketSection = readUnit(socketUnit)["Socket"]
        self.assertNotIn("ListenStream", socketSection)
        port = socketSection["ListenDatagram"].rsplit(":", 1)[-1]
        self.assertEqual(int(port), DEFAULT_PORTS["echo"])
        self.assertEqual(socketSection["FileDescriptorName"], name)
        self.assertEqual(socketSection["Service"], SERVICE)
        self.assertIn(f"--{name}=systemd:name={name}", text)
        unit = readUnit(SERVICE)
        self.assertNotIn(socketUnit, unit["Unit"]["Requires"].split())
        self.assertNotIn(f"--{name}=", unit["Service"]["ExecStart"])

    def test_reloadSendsSighup(self) -> None:
        """
        C{systemctl reload netdemos} sends SIGHUP to the main process, which
        netdemos takes as "reopen the log file and keep serving"; without
        C{ExecReload=}, systemd would refuse to reload the unit.
        """
        service = readUnit(SERVICE)["Service"]
        self.assertEqual(
            shlex.split(service["ExecReload"]), ["/bin/kill", "-HUP", "$MAINPID"]
        )


TEMPLATE = "netdemos@.service"


class InstancesTemplateTests(SynchronousTestCase):
    """
    C{netdemos@.service}: several processes on one host, each with sockets
    of its own on the same ports, and through Redis one count and one room.
    """

    def instanceUnit(self) -> str:
        """
        The template as instance 1, in a temporary directory, with the
        C{twistd} the tests run with: C{systemd-analyze} checks an instance.
        """
        directory = tempfile.TemporaryDirectory()
        self.addCleanup(directory.cleanup)
        # With the socket templates it requires, which systemd-analyze
        # instantiates from the same directory.
        copy, *_ = unitsForVerifying(
            Path(directory.name), [TEMPLATE, *INSTANCE_SOCKETS.values()]
        )
        instance = copy.with_name("netdemos@1.service")
        copy.rename(instance)
        return str(instance)

    def test_instanceVerifies(self) -> None:
        result = systemdAnalyze("verify", "--man=no", self.instanceUnit())
        complaints = [line for line in result.stderr.splitlines() if "netdemos" in line]
        self.assertEqual(
            (result.returncode, complaints),
            (0, []),
            f"systemd-analyze verify:\n{result.stdout}{result.stderr}",
        )

    def test_instanceSandboxExposureStaysLow(self) -> None:
        result = systemdAnalyze(
            "security", "--offline=yes", "--threshold=20", self.instanceUnit()
        )
        self.assertEqual(
            result.returncode, 0, f"systemd-analyze security:\n{result.stdout}"
        )

    def test_everyInstanceHasSocketsOfItsOwn(self) -> None:
        """
        Each instance is handed four sockets of its own (C{Sockets=}), one
        instance of each socket template, and adopts each by name with the
        family it has, as netdemos.service does; it starts after them.
        """
        unit = readUnit(TEMPLATE)
        service = unit["Service"]
        own = [each.replace("@.", "@%i.") for each in INSTANCE_SOCKETS.values()]
        self.assertEqual(sorted(service["Sockets"].split()), sorted(own))
        for socketUnit in own:
            self.assertIn(socketUnit, unit["Unit"]["Requires"].split())
            self.assertIn(socketUnit, unit["Unit"]["After"].split())
        self.assertEqual(
            systemdEndpoints(service["ExecStart"]),
            systemdEndpoints(readUnit(SERVICE)["Service"]["ExecStart"]),
        )

    def test_instanceSocketsShareEachPortThroughReusePort(self) -> None:
        """
        Every instance's socket for a service listens where netdemos.service's
        does, with C{ReusePort=yes}, so that the sockets of all instances can
        be bound to one port and the kernel spreads connections over them; a
        connection to a stopped instance starts that instance.
        """
        for name, template in INSTANCE_SOCKETS.items():
            socketSection = readUnit(template)["Socket"]
            single = readUnit(SOCKETS[name])["Socket"]
            self.assertEqual(socketSection["ReusePort"], "yes", template)
            self.assertEqual(socketSection["FileDescriptorName"], name)
            self.assertEqual(socketSection["Service"], "netdemos@%i.service")
            for key in ("ListenStream", "BindIPv6Only"):
                self.assertEqual(socketSection[key], single[key], template)

    def test_instancesShareRedisAndAreNamedApart(self) -> None:
        """
        The instances count and chat through one Redis, so no counter file
        (netdemos refuses both), and each names itself after its instance.
        """
        words = shlex.split(readUnit(TEMPLATE)["Service"]["ExecStart"])
        options = dict(
            word.split("=", 1)
            for word in words
            if word.startswith("--") and "=" in word
        )
        self.assertTrue(options["--redis"].startswith("redis://"))
        self.assertNotIn("--counter-file", options)
        self.assertIn("%i", options["--name"])
