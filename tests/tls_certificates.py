"""
Certificates for the TLS tests, made with ``cryptography``: a CA, a
server certificate it signs for ``127.0.0.1`` and ``localhost`` (an IP and
a DNS subjectAltName), a client certificate it signs, and a second CA
that has signed nothing of theirs.

Importable by the unit and the integration tests (``tests/`` is on
``sys.path`` through ``tests/conftest.py``): ``from tls_certificates
import make_tls_files``.  Keys are P-256, so a whole set takes a few
milliseconds.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["Authority", "TLSFiles", "make_tls_files"]

_DAY = datetime.timedelta(days=1)


def _name(common_name: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "co2 tests"),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert_pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class Authority:
    """A certificate authority: its key and self-signed certificate."""

    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    @classmethod
    def make(cls, common_name: str) -> Authority:
        """A new CA named ``common_name``, valid from yesterday for a year."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(_name(common_name))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _DAY)
            .not_valid_after(now + 365 * _DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                    encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(key, certificate)

    def issue(
        self, common_name: str, dns: tuple[str, ...] = (), ips: tuple[str, ...] = (), server: bool = True
    ) -> tuple[bytes, bytes]:
        """
        A leaf certificate for ``common_name`` with the given DNS and IP
        subjectAltNames, for a server (or a client); ``(certificate PEM,
        key PEM)``.
        """
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        names: list[x509.GeneralName] = [x509.DNSName(name) for name in dns]
        names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _DAY)
            .not_valid_after(now + 30 * _DAY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False
            )
        )
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return _cert_pem(builder.sign(self.key, hashes.SHA256())), _key_pem(key)


@dataclass(frozen=True)
class TLSFiles:
    """The PEM files :func:`make_tls_files` wrote."""

    directory: Path
    ca: Path
    """The CA certificate that signed the server and client certificates."""
    server_cert: Path
    """For ``127.0.0.1`` (IP subjectAltName) and ``localhost`` (DNS subjectAltName)."""
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path
    """An unrelated CA's certificate: trusting it alone, the server is refused."""


def make_tls_files(directory: Path) -> TLSFiles:
    """Make a CA, its server and client certificates and an unrelated CA, as PEM files in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    authority = Authority.make("co2 test CA")
    other = Authority.make("co2 unrelated CA")
    server_cert, server_key = authority.issue("co2 test server", dns=("localhost",), ips=("127.0.0.1",))
    client_cert, client_key = authority.issue("co2 test client", server=False)
    files = TLSFiles(
        directory=directory,
        ca=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
        other_ca=directory / "other-ca.pem",
    )
    files.ca.write_bytes(_cert_pem(authority.certificate))
    files.other_ca.write_bytes(_cert_pem(other.certificate))
    files.server_cert.write_bytes(server_cert)
    files.server_key.write_bytes(server_key)
    files.client_cert.write_bytes(client_cert)
    files.client_key.write_bytes(client_key)
    return files
