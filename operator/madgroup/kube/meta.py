"""Who owns a MadGroup's children, and the metadata every child carries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from madgroup.kube import naming
from madgroup.spec import API_VERSION, KIND

Manifest = dict[str, Any]


@dataclass(frozen=True)
class Owner:
    """The MadGroup the children belong to."""

    name: str
    namespace: str
    uid: str

    def reference(self) -> dict[str, Any]:
        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


def metadata(owner: Owner, name: str, component: str | None) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": owner.namespace,
        "labels": naming.labels(owner.name, component),
    }
    if owner.uid:
        meta["ownerReferences"] = [owner.reference()]
    return meta


def allowed_hosts(owner: Owner, name: str) -> list[str]:
    """The names a client inside the cluster may use to reach a component's Service."""
    svc = naming.child_name(owner.name, name)
    ns = owner.namespace
    return [svc, f"{svc}.{ns}", f"{svc}.{ns}.svc", f"{svc}.{ns}.svc.cluster.local"]


POD_UID = 10001
CONTAINER_SECURITY_CONTEXT: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
}
"""Every container's securityContext (the MADs', Redis's and the operator's); use a
``copy.deepcopy`` of it so that no two manifests share objects (no YAML anchors)."""


def pod_security_context() -> dict[str, Any]:
    """Every pod's: non-root as the images' user, the default seccomp profile."""
    return {
        "runAsNonRoot": True,
        "runAsUser": POD_UID,
        "runAsGroup": POD_UID,
        "fsGroup": POD_UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
