"""The group's private certificate authority and the server certificates it issues.

One CA per group (made once, its key never leaves the directory it is written to); a
certificate for each TLS server of the group (Redis, Grace) naming every host its clients
use. A certificate is issued again when it is missing, names a host no longer listed, was
signed by another CA, or expires within :data:`RENEW_BEFORE`; the CA stays, so clients that
trust it keep trusting the new certificate.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mads.core.files import write_file

CA_CERT = "ca.crt"
CA_KEY = "ca.key"
CA_DAYS = 3650
SERVER_DAYS = 397
RENEW_BEFORE = datetime.timedelta(days=30)


def cert_file(server: str) -> str:
    return f"{server}.crt"


def key_file(server: str) -> str:
    return f"{server}.key"


@dataclass(frozen=True)
class Pair:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def new_ca(group: str) -> Pair:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{group} MAD group CA")])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Pair(cert, key)


def _alt_names(hosts: Iterable[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def issue(ca: Pair, server: str, hosts: Iterable[str]) -> Pair:
    """A server certificate for ``hosts`` (DNS names or IP addresses), signed by ``ca``."""
    hosts = list(hosts)
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, server)]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=SERVER_DAYS))
        .add_extension(x509.SubjectAlternativeName(_alt_names(hosts)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
        .sign(ca.key, hashes.SHA256())
    )
    return Pair(cert, key)


def load_pair(cert_pem: bytes, key_pem: bytes) -> Pair:
    """A certificate and its key from PEM; ValueError when they are not an EC pair."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    key = serialization.load_pem_private_key(key_pem, None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("not an EC private key")
    return Pair(cert, key)


def _load(directory: Path, cert_name: str, key_name: str) -> Pair | None:
    try:
        return load_pair((directory / cert_name).read_bytes(), (directory / key_name).read_bytes())
    except (OSError, ValueError):
        return None


def _hosts_of(cert: x509.Certificate) -> set[str]:
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    found = {str(ip) for ip in names.get_values_for_type(x509.IPAddress)}
    return found | set(names.get_values_for_type(x509.DNSName))


def _still_good(pair: Pair, ca: Pair, hosts: Iterable[str]) -> bool:
    return (
        pair.cert.issuer == ca.cert.subject
        and pair.cert.not_valid_after_utc - RENEW_BEFORE > _now()
        and set(hosts) <= _hosts_of(pair.cert)
    )


def ensure(
    directory: Path,
    group: str,
    servers: Mapping[str, Iterable[str]],
    *,
    renew: bool = False,
    server_dirs: Mapping[str, Path] | None = None,
    owners: Mapping[str, int] | None = None,
) -> list[str]:
    """Make the CA (once) and each server's certificate and key where missing or due (all
    of them with ``renew``); return the file names written. The CA lives in ``directory``;
    a server's files go there too unless ``server_dirs`` names another place (then with a
    copy of the CA's certificate), owned by ``owners[server]`` when running as root. Keys
    are mode 0600 (0400 for another owner), certificates 0644."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    ca = _load(directory, CA_CERT, CA_KEY)
    if ca is None:
        ca = new_ca(group)
        write_file(directory / CA_KEY, ca.key_pem(), 0o600)
        write_file(directory / CA_CERT, ca.cert_pem(), 0o644)
        written += [CA_CERT, CA_KEY]
    for server, hosts in servers.items():
        hosts = list(hosts)
        place = (server_dirs or {}).get(server, directory)
        owner = (owners or {}).get(server)
        if place != directory and copy_ca(directory, place, owner):
            written.append(f"{server}/{CA_CERT}")
        pair = _load(place, cert_file(server), key_file(server))
        if not renew and pair is not None and _still_good(pair, ca, hosts):
            continue
        pair = issue(ca, server, hosts)
        write_file(place / key_file(server), pair.key_pem(), 0o400 if owner else 0o600, owner)
        write_file(place / cert_file(server), pair.cert_pem(), 0o644, owner)
        written += [cert_file(server), key_file(server)]
    return written


def copy_ca(directory: Path, to: Path, owner: int | None = None) -> bool:
    """Put the CA's certificate (never its key) in ``to``; True when it was not there."""
    data = (directory / CA_CERT).read_bytes()
    target = to / CA_CERT
    if target.exists() and target.read_bytes() == data:
        return False
    to.mkdir(parents=True, exist_ok=True)
    write_file(target, data, 0o644, owner)
    return True
