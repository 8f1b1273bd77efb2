"""
A self-signed TLS certificate, made afresh for a test.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from support.running import LOOPBACK


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
