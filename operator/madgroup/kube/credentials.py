"""The Secrets the operator generates for a group: the administrator's password, each bus
user's, and the group's internal credential. Each is made once from a CSPRNG and never
rendered onto an existing Secret (that would change a credential under running pods)."""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass

from madgroup import topology
from madgroup.kube import naming
from madgroup.kube.crd import KubeMadGroupSpec
from madgroup.kube.meta import Manifest, Owner, metadata
from madgroup.spec import SecretKeyRef
from mads.core import tls

PASSWORD_KEY = "password"
TOKEN_KEY = "token"


@dataclass(frozen=True)
class GeneratedSecret:
    """A Secret with one fresh random value under ``key``."""

    name: str
    key: str

    def ref(self) -> SecretKeyRef:
        return SecretKeyRef(name=self.name, key=self.key)

    def values(self, ca: tls.Pair | None = None) -> dict[str, bytes]:
        """What the Secret holds (``ca``: the group's CA, for a certificate signed by it)."""
        del ca
        return {self.key: secrets.token_urlsafe(32).encode()}

    secret_type = "Opaque"

    def manifest(self, owner: Owner, ca: tls.Pair | None = None) -> Manifest:
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": metadata(owner, self.name, topology.bus().name),
            "type": self.secret_type,
            "data": {k: base64.b64encode(v).decode() for k, v in self.values(ca).items()},
        }


def admin_secret(owner: Owner) -> GeneratedSecret:
    return GeneratedSecret(naming.password_secret_name(owner.name), PASSWORD_KEY)


def bus_secret(owner: Owner, user: str) -> GeneratedSecret:
    return GeneratedSecret(naming.bus_secret_name(owner.name, user), PASSWORD_KEY)


def internal_secret(owner: Owner) -> GeneratedSecret:
    return GeneratedSecret(naming.internal_token_secret_name(owner.name), TOKEN_KEY)


def metrics_secret(owner: Owner) -> GeneratedSecret:
    return GeneratedSecret(naming.metrics_token_secret_name(owner.name), TOKEN_KEY)


def password_ref(owner: Owner, spec: KubeMadGroupSpec) -> SecretKeyRef:
    """Where the Redis password lives: the user's Secret, or the one the operator generates."""
    return spec.password() or admin_secret(owner).ref()


def bus_password_ref(owner: Owner, spec: KubeMadGroupSpec, user: str) -> SecretKeyRef:
    return spec.bus_password(user) or bus_secret(owner, user).ref()


def generated(owner: Owner, spec: KubeMadGroupSpec) -> list[GeneratedSecret]:
    """The administrator's password and each MAD's bus password unless the spec references
    a Secret of its own, the group's internal credential and its metrics credential."""
    found = [] if spec.password() is not None else [admin_secret(owner)]
    found += [bus_secret(owner, u) for u in topology.bus_users() if spec.bus_password(u) is None]
    found += [internal_secret(owner), metrics_secret(owner)]
    return found
