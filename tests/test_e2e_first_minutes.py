"""
End-to-end tests of what a newcomer meets first: a banner that says where to
connect, both IP families by default, and C{--version}.
"""

from __future__ import annotations

import re
from pathlib import Path

from support.clients import Clients, httpGet
from support.process import Launcher, runTwistd
from support.running import freePorts, netdemosCommand, serviceArguments

import netdemos
import twisted


def test_bannerSaysWhereEachServiceListensAndHowToTryIt(
    launcher: Launcher, clients: Clients
) -> None:
    """
    Once every listener is up, the log says, for each service, where it
    listens and how to try it, with the port the kernel chose for C{tcp:0};
    and none of Twisted's "Starting factory" lines.  A bare port number
    listens on both families: an IPv4 and an IPv6 client are both served,
    and the room names the IPv4 one as on an IPv4 socket.
    """
    [chatPort] = freePorts(1, "::")
    command = netdemosCommand(
        serviceArguments(
            {"http": ["tcp:0:interface=127.0.0.1"], "chat": [str(chatPort)]}
        )
    )
    server = launcher.spawn(command, {"chat": [chatPort]})
    output = server.waitUntilLogged("netdemos: ready (")
    banner = output[output.index("netdemos: ready (") :]
    found = re.search(
        r"\]\s+http\s+tcp:0:interface=127\.0\.0\.1\s+"
        r"curl http://127\.0\.0\.1:(\d+)/\n",
        banner,
    )
    assert found, banner
    assert re.search(
        rf"\]\s+chat\s+tcp6:{chatPort}\s+nc localhost {chatPort}\n", banner
    )
    assert "Starting factory" not in output
    assert httpGet(int(found[1]))[1].startswith(b"I am request #1")

    ipv4 = clients.chatUser(chatPort, host="127.0.0.1")
    ipv6 = clients.chatUser(chatPort, host="::1")
    assert ipv4.name == f"127.0.0.1:{ipv4.localPort}"
    assert ipv6.name == f"[::1]:{ipv6.localPort}"
    ipv4.send(b"hello over IPv4\n")
    ipv6.inbox.waitForLine(f"<127.0.0.1:{ipv4.localPort}> hello over IPv4")
    server.assertNoErrorsLogged()


def test_versionNamesNetdemosTwistedAndPython(tmp_path: Path) -> None:
    result = runTwistd(tmp_path, ["netdemos", "--version"])
    assert result.returncode == 0, result.stdout
    assert result.stdout.startswith(
        f"netdemos {netdemos.__version__} (Twisted {twisted.__version__}, Python 3."
    ), result.stdout


def test_twistdHelpNamesEveryService(tmp_path: Path) -> None:
    result = runTwistd(tmp_path, ["--help"])
    [line] = [each for each in result.stdout.splitlines() if "netdemos" in each]
    for service in ("Echo", "HTTP", "chat", "web"):
        assert service in line, line
