"""A component's autoscaler, and leaving its replica count to it.

With ``autoscaling`` declared, the operator applies a HorizontalPodAutoscaler (autoscaling/v2,
CPU utilisation) and stops applying ``spec.replicas`` on the Deployment: the count is the
autoscaler's, written through the Deployment's scale subresource, and the operator never
writes it back.

Server-side apply makes "stops applying" exact: a field the operator's field manager leaves
out of what it applies is no longer its own, and a field no manager owns is removed (for
``replicas``, reset to 1). So the count is handed over the way Kubernetes documents it
(server-side apply, "transferring ownership"): first a second field manager,
:data:`HANDOVER`, applies the current count alone (without force: if the autoscaler owns
it already, that one keeps it), then the operator applies the Deployment without it. The
count stays; the autoscaler's next write through the scale subresource takes the field
from :data:`HANDOVER`. A new Deployment is created at its starting count and handed over
the same way. Readiness then counts the Deployment's own ``spec.replicas``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from madgroup.kube import naming
from madgroup.kube.api import ApiError, KubeApi
from madgroup.kube.crd import Autoscaling, WithAutoscaling
from madgroup.kube.meta import Manifest, Owner
from madgroup.kube.meta import metadata as _metadata
from madgroup.resolved import ResolvedComponent

HANDOVER = "madgroup-handover"
"""The field manager that holds a Deployment's replica count between the operator letting
it go and the autoscaler's first write."""


def of(part: ResolvedComponent) -> Autoscaling | None:
    """The component's declared autoscaling, or None."""
    settings = part.settings
    return settings.autoscaling if isinstance(settings, WithAutoscaling) else None


def starting_replicas(scaling: Autoscaling, declared: int) -> int:
    """Where a new Deployment starts: the declared replicas, within the autoscaler's range."""
    return min(max(declared, scaling.minReplicas), scaling.maxReplicas)


def autoscaler(owner: Owner, part: ResolvedComponent) -> Manifest | None:
    """The component's HorizontalPodAutoscaler, or None without ``autoscaling``."""
    scaling = of(part)
    if scaling is None:
        return None
    name = naming.child_name(owner.name, part.name)
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(owner, name, part.name),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": scaling.minReplicas,
            "maxReplicas": scaling.maxReplicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": scaling.targetCPUUtilizationPercentage,
                        },
                    },
                }
            ],
        },
    }


def operator_owns_replicas(live: Mapping[str, Any]) -> bool:
    """Whether the operator's applied configuration still holds ``spec.replicas``."""
    for entry in (live.get("metadata") or {}).get("managedFields") or []:
        if (
            entry.get("manager") == naming.MANAGER
            and entry.get("operation") == "Apply"
            and not entry.get("subresource")
            and "f:replicas" in ((entry.get("fieldsV1") or {}).get("f:spec") or {})
        ):
            return True
    return False


def _count_only(manifest: Mapping[str, Any], replicas: int) -> dict[str, Any]:
    meta = manifest["metadata"]
    return {
        "apiVersion": manifest["apiVersion"],
        "kind": manifest["kind"],
        "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
        "spec": {"replicas": replicas},
    }


def apply_workload(
    api: KubeApi,
    path: str,
    manifest: Mapping[str, Any],
    live: Mapping[str, Any] | None,
    start: int,
) -> None:
    """Apply an autoscaled Deployment (``manifest`` has no ``replicas``) so that its count
    is never reset: created at ``start``, and handed over whenever the operator holds it."""
    if live is None:
        api.apply(path, {**manifest, "spec": {**manifest["spec"], "replicas": start}})
        count = start
    elif operator_owns_replicas(live):
        count = int((live.get("spec") or {}).get("replicas") or start)
    else:
        api.apply(path, dict(manifest))
        return
    try:
        api.apply(path, _count_only(manifest, count), manager=HANDOVER, force=False)
    except ApiError as exc:
        if exc.status != 409:  # 409: the autoscaler holds the count already; let it
            raise
    api.apply(path, dict(manifest))
