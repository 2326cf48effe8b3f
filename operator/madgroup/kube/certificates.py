"""TLS on Kubernetes: the group's CA and a certificate per TLS server (Redis, Grace), as
Secrets in cert-manager's layout (``ca.crt``, ``tls.crt``, ``tls.key``).

Without an issuer the operator makes them: a CA Secret (``<group>-ca``, made once, mounted
by no pod) and each server's Secret issued from it. With ``spec.tls.issuerRef`` it applies
cert-manager ``Certificate`` objects instead, which write the same Secrets (the issuer must
put ``ca.crt`` in them: a CA or self-signed issuer). The pods mount the same names either
way: a server its own Secret, every other MAD on the bus only the bus Secret's ``ca.crt``.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from madgroup import topology
from madgroup.errors import MadGroupError
from madgroup.kube import naming
from madgroup.kube.crd import KubeMadGroupSpec
from madgroup.kube.credentials import GeneratedSecret
from madgroup.kube.meta import Manifest, Owner, allowed_hosts, metadata
from mads.core import tls

CA_KEY = "ca.crt"
CERT_KEY = "tls.crt"
KEY_KEY = "tls.key"
TLS_DIR = "/run/madgroup-tls"
VOLUME = "tls"
REVISION_ANNOTATION = "madgroup.io/tls-revision"
"""On a pod template of a server that reads its certificate only at start (Redis): which
certificate it runs with, so a renewed one rolls it."""


class NoCertificateAuthority(MadGroupError, LookupError):
    """A server's Secret cannot be issued before the group's CA Secret exists."""


@dataclass(frozen=True)
class CaSecret(GeneratedSecret):
    """The group's private CA: made once, read only by the operator."""

    secret_type = "kubernetes.io/tls"

    def values(self, ca: tls.Pair | None = None) -> dict[str, bytes]:
        pair = tls.new_ca(self.name)
        return {CERT_KEY: pair.cert_pem(), KEY_KEY: pair.key_pem()}


@dataclass(frozen=True)
class ServerSecret(GeneratedSecret):
    """One TLS server's certificate and key, signed by the group's CA, and the CA's
    certificate (what its clients check it against)."""

    server: str = ""
    hosts: tuple[str, ...] = ()
    secret_type = "kubernetes.io/tls"

    def values(self, ca: tls.Pair | None = None) -> dict[str, bytes]:
        if ca is None:
            raise NoCertificateAuthority(self.name)
        pair = tls.issue(ca, self.server, self.hosts)
        return {CA_KEY: ca.cert_pem(), CERT_KEY: pair.cert_pem(), KEY_KEY: pair.key_pem()}


def hosts(owner: Owner, server: str) -> tuple[str, ...]:
    """What a server's certificate names: its Service in every DNS form, and loopback (the
    pod's own probes and tools)."""
    return (*allowed_hosts(owner, server), "localhost", "127.0.0.1")


def ca_secret(owner: Owner) -> CaSecret:
    return CaSecret(naming.ca_secret_name(owner.name), CERT_KEY)


def server_secret(owner: Owner, server: str) -> ServerSecret:
    return ServerSecret(
        naming.tls_secret_name(owner.name, server),
        CA_KEY,
        server=server,
        hosts=hosts(owner, server),
    )


def generated(owner: Owner, spec: KubeMadGroupSpec) -> list[GeneratedSecret]:
    """The TLS Secrets the operator makes itself (none when cert-manager issues them), the
    CA first: every server's is issued from it."""
    if not spec.tls.enabled or spec.tls.issuerRef is not None:
        return []
    return [ca_secret(owner), *(server_secret(owner, name) for name in topology.tls_servers())]


def load_ca(live: Mapping[str, Any]) -> tls.Pair:
    """The CA from its live Secret."""
    data = live.get("data") or {}
    return tls.load_pair(base64.b64decode(data[CERT_KEY]), base64.b64decode(data[KEY_KEY]))


def certificate(owner: Owner, spec: KubeMadGroupSpec, server: str) -> Manifest:
    """A cert-manager Certificate writing ``server``'s Secret."""
    issuer = spec.tls.issuerRef
    assert issuer is not None
    return {
        "apiVersion": naming.CERTIFICATE.api_version,
        "kind": naming.CERTIFICATE.kind,
        "metadata": metadata(owner, naming.tls_secret_name(owner.name, server), server),
        "spec": {
            "secretName": naming.tls_secret_name(owner.name, server),
            "dnsNames": [h for h in hosts(owner, server) if h != "127.0.0.1"],
            "ipAddresses": ["127.0.0.1"],
            "usages": ["server auth", "client auth"],
            "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
            "issuerRef": {"name": issuer.name, "kind": issuer.kind, "group": issuer.group},
        },
    }


def certificates(owner: Owner, spec: KubeMadGroupSpec, name: str) -> list[Manifest]:
    """The Certificate a component's step applies, when cert-manager issues them."""
    comp = topology.component(name)
    if not spec.tls.enabled or spec.tls.issuerRef is None or not topology.serves_tls(comp):
        return []
    return [certificate(owner, spec, name)]


def files() -> topology.TlsFiles:
    """Where a pod finds the files of the Secret it mounts."""
    return topology.TlsFiles(
        ca=f"{TLS_DIR}/{CA_KEY}", cert=f"{TLS_DIR}/{CERT_KEY}", key=f"{TLS_DIR}/{KEY_KEY}"
    )


def uses_tls(spec: KubeMadGroupSpec, comp: topology.Component) -> bool:
    """Whether ``comp`` mounts TLS files: a server, or a MAD on the bus."""
    return spec.tls.enabled and (topology.serves_tls(comp) or (comp.is_mad and comp.uses_bus))


def volume(owner: Owner, spec: KubeMadGroupSpec, comp: topology.Component) -> dict[str, Any]:
    """The pod's TLS volume: a server's own Secret, else only the bus Secret's CA."""
    if topology.serves_tls(comp):
        source: dict[str, Any] = {"secretName": naming.tls_secret_name(owner.name, comp.name)}
    else:
        source = {
            "secretName": naming.tls_secret_name(owner.name, topology.bus().name),
            "items": [{"key": CA_KEY, "path": CA_KEY}],
        }
    source["defaultMode"] = 0o440
    return {"name": VOLUME, "secret": source}


def revision(live_secret: Mapping[str, Any] | None) -> str | None:
    """Which certificate a live server Secret holds (a digest of the public certificate)."""
    if not live_secret:
        return None
    cert = (live_secret.get("data") or {}).get(CERT_KEY)
    return hashlib.sha256(cert.encode()).hexdigest()[:16] if cert else None
