"""
Helpers for the operator end-to-end tests: start the installed C{twistd
netdemos} with any mix of services, TLS, a metrics port and extra environment;
receive its C{sd_notify} messages; scrape its metrics.

Unlike L{e2e_support.Launcher}, L{OperatorLauncher} waits for the server by
reading its listening sockets from C{/proc}, never by connecting: the tests
here count connections, and a readiness probe would be counted too.

Like L{e2e_support}, nothing here imports Twisted or netdemos.
"""

from __future__ import annotations

import datetime
import http.client
import ipaddress
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from e2e_support import (
    LINE_TIMEOUT,
    LOOPBACK,
    START_TIMEOUT,
    Netdemos,
    ServerExitedError,
    freePorts,
    loopbackEndpoint,
    onFreshPortsUntilBound,
    subprocessEnvironment,
    twistdCommand,
)
from prometheus_client.parser import text_string_to_metric_families

SERVICES = ("echo", "http", "chat")
# Every service the launcher names, on a port or "none": the web service is
# off unless a test asks for it.
ALL_SERVICES = (*SERVICES, "web")


@dataclass(frozen=True)
class Certificate:
    """
    A self-signed certificate for C{localhost} and C{127.0.0.1}, and its key,
    as PEM files.
    """

    keyPath: Path
    certificatePath: Path

    def serverEndpoint(self, port: int) -> str:
        """
        A Twisted C{ssl:} server endpoint on loopback C{port} with this
        certificate.
        """
        return (
            f"ssl:{port}:privateKey={self.keyPath}"
            f":certKey={self.certificatePath}:interface={LOOPBACK}"
        )

    def clientContext(self) -> ssl.SSLContext:
        """
        A client context that trusts only this certificate and checks the
        server's name against it.
        """
        return ssl.create_default_context(cafile=str(self.certificatePath))


def makeCertificate(directory: Path) -> Certificate:
    """
    Write a new key and a self-signed certificate for it into C{directory}.

    It is its own CA (basic constraints, key identifiers), so that OpenSSL
    accepts it as a trust anchor even with strict verification.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    keyId = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address(LOOPBACK)),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(keyId, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(keyId),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    result = Certificate(directory / "key.pem", directory / "cert.pem")
    result.keyPath.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    result.certificatePath.write_bytes(
        certificate.public_bytes(serialization.Encoding.PEM)
    )
    return result


def metricsPort(server: Netdemos) -> int:
    return server.ports["metrics"][0]


def waitUntilListening(server: Netdemos) -> None:
    """
    Wait until the server listens on all its ports, without connecting.

    @raise ServerExitedError: if the server exits first.
    """
    try:
        server.waitUntilOwns({port for each in server.ports.values() for port in each})
    except OSError as e:
        # Its /proc entries vanish as it exits; if it did not, that is news.
        try:
            server.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            raise e from None
        raise ServerExitedError(server.process.returncode, server.output()) from None


class OperatorLauncher:
    """
    Start netdemos servers for one test and stop them all when it ends.
    """

    def __init__(self, workdir: Path, stack: ExitStack) -> None:
        self.workdir = workdir
        self._stack = stack

    def start(
        self,
        services: Sequence[str] = SERVICES,
        metrics: bool = False,
        tls: Certificate | None = None,
        extra: Sequence[str] = (),
        environ: dict[str, str] | None = None,
        waitUntilStarted: Callable[[Netdemos], None] = waitUntilListening,
        openFiles: tuple[int, int] | None = None,
    ) -> Netdemos:
        """
        Start C{twistd -n --pidfile= netdemos} with each of C{services} on a
        free loopback port (over TLS with C{tls}), the others off, and
        C{--metrics} on another port if asked; then call C{waitUntilStarted}.

        @param openFiles: the soft and hard open-file limits (C{ulimit -S -n},
            C{ulimit -H -n}) to start it with; by default, this process's.
        """
        names = [*services, *(["metrics"] if metrics else [])]

        def startOnFreePorts() -> Netdemos:
            ports = {
                name: [port]
                for name, port in zip(names, freePorts(len(names)), strict=True)
            }
            args = []
            for name in ALL_SERVICES:
                if name not in ports:
                    args.append(f"--{name}=none")
                elif tls is not None:
                    args.append(f"--{name}={tls.serverEndpoint(ports[name][0])}")
                else:
                    args.append(f"--{name}={loopbackEndpoint(ports[name][0])}")
            if metrics:
                args.append(f"--metrics={loopbackEndpoint(ports['metrics'][0])}")
            server = self._spawn([*args, *extra], ports, environ or {}, openFiles)
            waitUntilStarted(server)
            return server

        return onFreshPortsUntilBound(startOnFreePorts)

    def _spawn(
        self,
        args: Sequence[str],
        ports: dict[str, list[int]],
        environ: dict[str, str],
        openFiles: tuple[int, int] | None,
    ) -> Netdemos:
        logPath = self.workdir / f"twistd-{time.monotonic_ns()}.out"
        with logPath.open("wb") as log:
            process = subprocess.Popen(
                [
                    *withOpenFileLimit(openFiles),
                    *twistdCommand(),
                    *("-n", "--pidfile=", "netdemos", *args),
                ],
                cwd=self.workdir,
                env={**subprocessEnvironment(), **environ},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        server = Netdemos(process, self.workdir, logPath, ports)
        self._stack.callback(server.stop)
        return server


def withOpenFileLimit(openFiles: tuple[int, int] | None) -> list[str]:
    """
    The start of a command that runs the rest with C{openFiles}, a soft and a
    hard open-file limit: util-linux's C{prlimit}, which then executes it (so
    the process is the command's own).  Nothing if C{openFiles} is L{None}.

    Not C{preexec_fn}, which is unsafe in a process with threads.
    """
    if openFiles is None:
        return []
    prlimit = shutil.which("prlimit")
    assert prlimit is not None, "setting a server's open-file limit needs prlimit"
    soft, hard = openFiles
    return [prlimit, f"--nofile={soft}:{hard}", "--"]


class NotifySocket:
    """
    The systemd end of C{sd_notify}: an C{AF_UNIX} datagram socket that
    collects every message sent to it.

    It lives in a new short temporary directory, because a socket path may
    not be longer than about 100 bytes.
    """

    def __init__(self, stack: ExitStack) -> None:
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        self.path = directory / "notify"
        self._socket = stack.enter_context(
            socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        )
        self._socket.bind(str(self.path))
        self.messages: list[bytes] = []

    def waitFor(self, wanted: bytes, server: Netdemos) -> None:
        """
        Receive messages until one holds the line C{wanted}.

        @raise ExitedBeforeMessageError: if the server exits without sending it.
        """
        deadline = time.monotonic() + START_TIMEOUT
        while not any(wanted in message.splitlines() for message in self.messages):
            # Checked before receiving, so that what the server sent before it
            # exited is still read.
            exited = server.process.poll() is not None
            remaining = deadline - time.monotonic()
            assert remaining > 0, (
                f"no {wanted!r} within {START_TIMEOUT}s; got {self.messages!r}"
            )
            # A short timeout, so that a server that exits is noticed.
            self._socket.settimeout(0 if exited else min(remaining, 0.2))
            try:
                self.messages.append(self._socket.recv(4096))
            except (TimeoutError, BlockingIOError):
                if exited:
                    raise ExitedBeforeMessageError(
                        server, wanted, self.messages
                    ) from None


class ExitedBeforeMessageError(ServerExitedError):
    """
    twistd exited before it sent an C{sd_notify} message a test waited for.
    """

    def __init__(self, server: Netdemos, wanted: bytes, messages: list[bytes]) -> None:
        output = server.output()
        AssertionError.__init__(
            self,
            f"twistd exited with {server.process.returncode} before sending"
            f" {wanted!r}; it sent {messages!r}:\n{output}",
        )
        self.output = output


def readUntilClosed(connection: socket.socket, deadline: float) -> tuple[bytes, str]:
    """
    Read until the peer closes; return what arrived and how it ended, C{"EOF"}
    or C{"reset"}.  Fail if it has not ended by C{deadline}.
    """
    chunks: list[bytes] = []
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"not closed before the deadline; got {chunks!r}"
        connection.settimeout(remaining)
        try:
            data = connection.recv(65536)
        except ConnectionResetError:
            return b"".join(chunks), "reset"
        if not data:
            return b"".join(chunks), "EOF"
        chunks.append(data)


def httpGet(port: int, path: str = "/") -> tuple[int, bytes]:
    """
    GET C{path} on a new connection; return the status and the body.
    """
    connection = http.client.HTTPConnection(LOOPBACK, port, timeout=LINE_TIMEOUT)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def requestNumber(body: bytes) -> int:
    """
    The N in the counter's C{I am request #N} answer.
    """
    prefix = b"I am request #"
    assert body.startswith(prefix) and body.endswith(b"\n"), body
    return int(body[len(prefix) :])


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrapeMetrics(port: int) -> Samples:
    """
    Fetch C{/metrics} and parse it as Prometheus text; return every sample's
    value keyed by its name and labels.
    """
    status, body = httpGet(port, "/metrics")
    assert status == 200, (status, body)
    samples: Samples = {}
    for family in text_string_to_metric_families(body.decode("utf-8")):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def sample(samples: Samples, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    assert key in samples, f"no sample {name}{labels}; have {sorted(samples)}"
    return samples[key]


class TLSLineReader:
    """
    Read CRLF-terminated lines from a TLS socket in the calling thread.

    Not a background thread like L{e2e_support.LineCollector}: an
    C{ssl.SSLSocket} must not be read in one thread while written in another.
    """

    def __init__(self, connection: ssl.SSLSocket) -> None:
        self.connection = connection
        self._buffer = b""

    def readLine(self, timeout: float = LINE_TIMEOUT) -> str:
        deadline = time.monotonic() + timeout
        while b"\r\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no complete line; have {self._buffer!r}"
            self.connection.settimeout(remaining)
            data = self.connection.recv(65536)
            assert data, f"EOF before a complete line; have {self._buffer!r}"
            self._buffer += data
        line, self._buffer = self._buffer.split(b"\r\n", 1)
        return line.decode("utf-8")

    def waitForLine(self, wanted: str, timeout: float = LINE_TIMEOUT) -> list[str]:
        """
        Read lines until C{wanted}; return all the lines read, C{wanted} last.
        """
        deadline = time.monotonic() + timeout
        lines: list[str] = []
        while not lines or lines[-1] != wanted:
            lines.append(self.readLine(deadline - time.monotonic()))
        return lines
