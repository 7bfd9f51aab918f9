"""
TLS for the connections a node makes: AMP links to ``ssl:`` peers and
``https://`` classic peers, each checking the server's certificate chain
and that it names the host dialled; and the file paths of ``ssl:``
endpoint strings, which the config reads relative to its own directory.

Twisted's own ``ssl:`` client string checks the chain only when given
``caCertsDir`` or ``hostname``, and the host name only when given
``hostname``; so co2 builds ``ssl:`` client endpoints itself, from the
same parameters, and always checks both.  Which certificates are
trusted, first that applies:

1. the ``caCertsDir`` of the peer's string (every ``*.pem`` file in it);
2. the node's ``tls_ca`` setting (a PEM file of one or more CA certificates);
3. the platform's trust store (:func:`twisted.internet.ssl.platformTrust`).

A connection is never left unverified.  Loading the files is done when
the endpoint is made, so a bad file is a ``ValueError`` naming it then,
not a failed connection later.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from OpenSSL.crypto import FILETYPE_PEM
from twisted.internet import endpoints
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.ssl import (
    Certificate,
    KeyPair,
    PrivateCertificate,
    optionsForClientTLS,
    platformTrust,
    trustRootFromCertificates,
)
from twisted.web.client import BrowserLikePolicyForHTTPS

if TYPE_CHECKING:
    from twisted.internet._sslverify import IOpenSSLTrustRoot  # not exported elsewhere

__all__ = [
    "ca_certificates", "client_endpoint", "endpoint_files", "join_parameters", "parameters", "resolve_paths",
    "web_policy",
]

_SSL = "ssl"

# Parameters of ``ssl:`` strings that name files, and for a server the
# name of each positional parameter (Twisted's ``_parseSSL`` signature).
_SERVER_FILES = frozenset({"privateKey", "certKey", "extraCertChain", "dhParameters"})
_SERVER_POSITIONS = (
    "port", "privateKey", "certKey", "sslmethod", "interface", "backlog", "extraCertChain", "dhParameters",
)
_SERVER_DEFAULT_KEY = "server.pem"
_CLIENT_FILES = frozenset({"certKey", "privateKey", "caCertsDir"})
_CLIENT_PARAMETERS = frozenset({"host", "port", "timeout", "bindAddress", "hostname"}) | _CLIENT_FILES

_PEM_CERTIFICATE = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)


# Endpoint strings

Parameter = tuple[str | None, str]
"""One ``:``-separated part of an endpoint string: ``(name, value)``, name None when positional."""


def parameters(description: str) -> list[Parameter]:
    """
    Split an endpoint string as Twisted does: ``:`` separates parameters,
    the first ``=`` of one separates its name from its value, and a
    backslash makes the next character plain.  The first parameter is the
    endpoint kind.  Raises ``ValueError`` for a trailing backslash.
    """
    result: list[Parameter] = []
    name: str | None = None
    current: list[str] = []
    chars = iter(description)
    for char in chars:
        if char == "\\":
            escaped = next(chars, None)
            if escaped is None:
                raise ValueError(f"{description!r} ends with a backslash")
            current.append(escaped)
        elif char == ":":
            result.append((name, "".join(current)))
            name, current = None, []
        elif char == "=" and name is None:
            name, current = "".join(current), []
        else:
            current.append(char)
    result.append((name, "".join(current)))
    return result


def _escape(text: str, specials: str) -> str:
    return "".join("\\" + c if c in specials else c for c in text)


_NAME_SPECIALS = "\\:="
# A value after its name ends at the next ":"; an "=" in it is plain.
_VALUE_SPECIALS = "\\:"


def _joined(name: str | None, value: str) -> str:
    if name is None:
        return _escape(value, _NAME_SPECIALS)
    return _escape(name, _NAME_SPECIALS) + "=" + _escape(value, _VALUE_SPECIALS)


def join_parameters(params: list[Parameter]) -> str:
    """The endpoint string of ``params``: the inverse of :func:`parameters`."""
    return ":".join(_joined(name, value) for name, value in params)


def _is_ssl(params: list[Parameter]) -> bool:
    return params[0][0] is None and params[0][1].lower() == _SSL


def _file_parameters(params: list[Parameter], server: bool) -> Iterator[tuple[int, str]]:
    """``(index in params, parameter name)`` of each parameter naming a file."""
    files = _SERVER_FILES if server else _CLIENT_FILES
    position = 0
    for index, (name, _) in enumerate(params[1:], 1):
        if name is None:
            name = _SERVER_POSITIONS[position] if server and position < len(_SERVER_POSITIONS) else None
            position += 1
        if name in files:
            yield index, name


def _has_private_key(params: list[Parameter]) -> bool:
    return any(name == "privateKey" for _, name in _file_parameters(params, server=True))


def endpoint_files(description: str, server: bool) -> list[tuple[str, str]]:
    """
    ``(parameter, path)`` for each file or directory an ``ssl:`` endpoint
    string names, as written (for a server without ``privateKey``,
    Twisted's default ``server.pem``); empty for other kinds.
    """
    params = parameters(description)
    if not _is_ssl(params):
        return []
    found = [(name, params[index][1]) for index, name in _file_parameters(params, server)]
    if server and not _has_private_key(params):
        found.append(("privateKey", _SERVER_DEFAULT_KEY))
    return found


def resolve_paths(description: str, base: str, server: bool) -> str:
    """
    ``description`` with the relative paths of an ``ssl:`` endpoint
    string made absolute from the directory ``base`` (a server without
    ``privateKey`` gets ``base/server.pem``, Twisted's default, spelt
    out).  Absolute paths and other kinds of endpoint are left as they are,
    so the string is returned unchanged when nothing is relative.
    """
    params = parameters(description)
    if not _is_ssl(params):
        return description
    changed = False
    for index, _ in _file_parameters(params, server):
        name, value = params[index]
        if value and not os.path.isabs(value):
            params[index] = (name, os.path.normpath(os.path.join(base, value)))
            changed = True
    if server and not _has_private_key(params):
        params.append(("privateKey", os.path.join(base, _SERVER_DEFAULT_KEY)))
        changed = True
    return join_parameters(params) if changed else description


# Certificates


def _named(what: str, path: str) -> str:
    return f"{what} {path}" if what else path


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ValueError(f"{_named(what, path)}: cannot read: {e.strerror or e}") from None


def ca_certificates(path: str, what: str = "tls_ca") -> list[Certificate]:
    """
    Every certificate in the PEM file ``path``.  Raises ``ValueError``
    naming ``what`` (the setting or parameter, if not empty) and the file
    when it cannot be read, holds no certificate, or holds one that cannot
    be parsed.
    """
    blocks = _PEM_CERTIFICATE.findall(_read(path, what))
    if not blocks:
        raise ValueError(f"{_named(what, path)}: holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
    certificates = []
    for number, block in enumerate(blocks, 1):
        try:
            certificates.append(Certificate.loadPEM(block))
        except Exception as e:  # pyOpenSSL raises its own Error with a list of reasons
            raise ValueError(f"{_named(what, path)}: certificate {number} cannot be read: {e}") from None
    return certificates


def _directory_certificates(path: str) -> list[Certificate]:
    """Every certificate in the ``*.pem`` files of the directory ``path`` (Twisted's ``caCertsDir``)."""

    if not os.path.isdir(path):
        raise ValueError(f"caCertsDir {path}: not a directory")
    certificates: list[Certificate] = []
    for name in sorted(os.listdir(path)):
        file = os.path.join(path, name)
        if name.lower().endswith(".pem") and os.path.isfile(file):
            # A key or other file beside the certificates is passed over.
            if _PEM_CERTIFICATE.search(_read(file, "caCertsDir")):
                certificates.extend(ca_certificates(file, "caCertsDir"))
    if not certificates:
        raise ValueError(f"caCertsDir {path}: no certificate in its .pem files")
    return certificates


def _trust(tls_ca: str | None, ca_dir: str | None) -> IOpenSSLTrustRoot:

    if ca_dir is not None:
        return trustRootFromCertificates(_directory_certificates(ca_dir))
    if tls_ca is not None:
        return trustRootFromCertificates(ca_certificates(tls_ca))
    return platformTrust()


def _client_certificate(cert_path: str | None, key_path: str | None) -> PrivateCertificate | None:
    """The certificate this node shows the server, from ``certKey`` (and ``privateKey``)."""

    if cert_path is None:
        if key_path is not None:
            raise ValueError("privateKey is given without certKey (the client certificate)")
        return None
    cert_pem = _read(cert_path, "certKey")
    key_pem = cert_pem if key_path is None else _read(key_path, "privateKey")
    try:
        certificate = Certificate.loadPEM(cert_pem)
    except Exception as e:  # pyOpenSSL's Error
        raise ValueError(f"certKey {cert_path}: not a PEM certificate: {e}") from None
    try:
        key = KeyPair.load(key_pem, FILETYPE_PEM)
    except Exception as e:
        raise ValueError(f"privateKey {key_path or cert_path}: not a PEM private key: {e}") from None
    try:
        return PrivateCertificate.fromCertificateAndKeyPair(certificate, key)
    except Exception:  # twisted.internet.ssl.VerifyError
        raise ValueError(
            f"privateKey {key_path or cert_path}: is not the key of certKey {cert_path}"
        ) from None


def _host_and_port(args: list[str], kwargs: dict[str, str]) -> tuple[str, int]:
    """Host and port given by name or position, as Twisted's client strings allow."""
    host, port = kwargs.get("host"), kwargs.get("port")
    if len(args) == 2:
        host, port = args
    elif len(args) == 1:
        if host is None:
            host = args[0]
        else:
            port = args[0]
    elif args:
        raise ValueError(f"too many positional parameters: {':'.join(args)!r}")
    if not host:
        raise ValueError("no host")
    try:
        number = int(port or "")
    except ValueError:
        raise ValueError(f"port {port!r} is not a number") from None
    if not 0 < number < 65536:
        raise ValueError(f"port {number} is out of range")
    return host, number


def client_endpoint(reactor: Any, description: str, tls_ca: str | None = None) -> IStreamClientEndpoint:
    """
    The endpoint a link to the peer ``description`` connects through.

    An ``ssl:`` string (``host``, ``port``, ``timeout``, ``bindAddress``,
    and ``certKey``/``privateKey`` for a client certificate, ``caCertsDir``,
    ``hostname``) gives a TLS endpoint that checks the server's
    certificate chain against ``caCertsDir``, else the PEM file ``tls_ca``,
    else the platform's trust; and that the certificate names ``hostname``
    (by default the host dialled: a DNS name, or an IP address matched
    against the certificate's IP subjectAltNames).  Any other string is
    Twisted's ``clientFromString``.  Raises ``ValueError`` for a string
    or a file that cannot be used, naming it.
    """
    params = parameters(description)
    if not _is_ssl(params):
        return endpoints.clientFromString(reactor, description)

    args = [value for name, value in params[1:] if name is None]
    kwargs = {name: value for name, value in params[1:] if name is not None}
    unknown = sorted(set(kwargs) - _CLIENT_PARAMETERS)
    if unknown:
        raise ValueError(
            f"ssl: takes no {', '.join(unknown)} (it takes {', '.join(sorted(_CLIENT_PARAMETERS))})"
        )
    host, port = _host_and_port(args, kwargs)
    try:
        timeout = float(kwargs.get("timeout", "30"))
    except ValueError:
        raise ValueError(f"timeout {kwargs['timeout']!r} is not a number") from None
    bind = kwargs.get("bindAddress")
    options = optionsForClientTLS(
        kwargs.get("hostname") or host,
        trustRoot=_trust(tls_ca, kwargs.get("caCertsDir")),
        clientCertificate=_client_certificate(kwargs.get("certKey"), kwargs.get("privateKey")),
    )
    tcp = endpoints.HostnameEndpoint(
        reactor, host, port, timeout=timeout, bindAddress=None if bind is None else (bind, 0)
    )
    # The clock given: TLS batches small writes for one turn of this reactor.
    return endpoints.wrapClientTLS(options, tcp, clock=reactor)


def web_policy(tls_ca: str | None = None) -> BrowserLikePolicyForHTTPS | None:
    """
    The policy an HTTP client uses for ``https://`` peers: one trusting
    the CA certificates in ``tls_ca``, or None (Twisted's default, which
    trusts the platform's store) when it is not set.  Both check the host
    name.  Raises ``ValueError`` for a ``tls_ca`` that cannot be used.
    """
    if tls_ca is None:
        return None
    return BrowserLikePolicyForHTTPS(trustRoot=trustRootFromCertificates(ca_certificates(tls_ca)))
