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
