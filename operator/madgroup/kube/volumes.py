"""Growing a stateful component's volume when its declared ``storage.size`` rises.

A StatefulSet's ``volumeClaimTemplates`` cannot be changed, and the claims it made are not
changed by a new template anyway. So growth goes the way Kubernetes documents it for
StatefulSets: each existing claim's ``spec.resources.requests.storage`` is raised (its
StorageClass must allow expansion: ``allowVolumeExpansion: true``; the storage driver then
grows the volume, and the filesystem when a pod mounts it), then the StatefulSet is deleted
with ``propagationPolicy: Orphan`` — its pods keep running, its claims stay — and the next
pass creates it again with the new template, which adopts the same pods and claims.

Every step is derived from what is observed, so a pass that stops half-way is finished by
the next one: a claim already at the size is left alone, a StatefulSet still being deleted
is waited for. A smaller size is refused (the CRD's transition rule says so first, in the
same words); a claim whose StorageClass does not allow expansion stops the group with a
message, and nothing is changed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from madgroup.kube import crd, naming, objects, quantities
from madgroup.kube.api import KubeApi
from madgroup.resolved import ResolvedComponent
from madgroup.spec import InvalidSpecError
from madgroup.spec.model import field_name

ORPHAN = "Orphan"


class VolumeCannotGrowError(InvalidSpecError):
    """The declared size needs a claim expanded that its StorageClass does not allow."""

    reason = "VolumeNotExpandable"


@dataclass(frozen=True)
class Growth:
    """A component whose claims must grow to ``size``: ``claims`` (API paths) still ask for
    less."""

    component: str
    size: str
    claims: tuple[str, ...]


def _quantity(value: str) -> Decimal:
    return quantities.value(value)


def _template_size(live: Mapping[str, Any]) -> str | None:
    """The size the live StatefulSet's claim template asks for."""
    for template in (live.get("spec") or {}).get("volumeClaimTemplates") or []:
        size = (((template.get("spec") or {}).get("resources") or {}).get("requests") or {}).get(
            "storage"
        )
        if size is not None:
            return str(size)
    return None


def _claim_size(claim: Mapping[str, Any]) -> str | None:
    requests = ((claim.get("spec") or {}).get("resources") or {}).get("requests") or {}
    size = requests.get("storage")
    return None if size is None else str(size)


def where(part: ResolvedComponent) -> str:
    """The declaration's field, for messages."""
    return f"spec.{field_name(part.name)}.storage.size"


def same_size(manifest: dict[str, Any], live: Mapping[str, Any] | None) -> None:
    """Write the live template's spelling of the size into the desired StatefulSet when both
    are the same quantity (``1024Mi`` is ``1Gi``): the template cannot change, and spelling
    is no drift."""
    if live is None or manifest.get("kind") != "StatefulSet":
        return
    current = _template_size(live)
    for template in manifest["spec"].get("volumeClaimTemplates") or []:
        requests = template["spec"]["resources"]["requests"]
        if current is not None and _quantity(requests["storage"]) == _quantity(current):
            requests["storage"] = current


def growth(
    api: KubeApi, owner: objects.Owner, part: ResolvedComponent, live: Mapping[str, Any] | None
) -> Growth | None:
    """What growing the component's volume to its declared size takes, or None when it is
    at that size. Raises :class:`InvalidSpecError` for a smaller size and
    :class:`VolumeCannotGrowError` for a claim whose StorageClass cannot expand it."""
    storage = objects.storage_of(part)
    if storage is None or live is None or not part.component.stateful:
        return None
    current = _template_size(live)
    if current is None:
        return None
    wanted = _quantity(storage.size)
    if wanted < _quantity(current):
        raise InvalidSpecError(f"{where(part)}: {crd.shrink_message(current, storage.size)}")
    if wanted == _quantity(current):
        return None
    claims: list[str] = []
    for name in objects.claim_names(owner, part):
        path = naming.PVC.path(owner.namespace, name)
        claim = api.get(path)
        if claim is None or (claim.get("status") or {}).get("phase") != "Bound":
            continue  # a claim not bound yet cannot be expanded; nothing stored on it either
        size = _claim_size(claim)
        if size is not None and _quantity(size) >= wanted:
            continue
        _expandable(api, part, name, claim, current, storage.size)
        claims.append(path)
    return Growth(part.name, storage.size, tuple(claims))


def _expandable(
    api: KubeApi,
    part: ResolvedComponent,
    name: str,
    claim: Mapping[str, Any],
    current: str,
    size: str,
) -> None:
    """Refuse, in one line, a claim whose StorageClass does not allow expansion."""
    cls = (claim.get("spec") or {}).get("storageClassName")

    def refusal(why: str) -> VolumeCannotGrowError:
        return VolumeCannotGrowError(
            f"{where(part)}: cannot grow from {current} to {size}: PersistentVolumeClaim "
            f"{name} {why}; nothing was changed"
        )

    if not cls:
        raise refusal("has no StorageClass to expand it")
    found = api.get(naming.storage_class_path(cls))
    if found is None:
        raise refusal(f"names StorageClass {cls}, which does not exist")
    if found.get("allowVolumeExpansion") is not True:
        raise refusal(
            f"is of StorageClass {cls}, which does not allow volume expansion "
            "(allowVolumeExpansion)"
        )


def grow(api: KubeApi, growth: Growth, workload_path: str) -> None:
    """Raise the claims' requests, then delete the StatefulSet and leave its pods and claims
    (the next pass creates it with the new template)."""
    for path in growth.claims:
        api.patch(path, {"spec": {"resources": {"requests": {"storage": growth.size}}}})
    api.delete(workload_path, propagation=ORPHAN)


def deleting(live: Mapping[str, Any] | None) -> bool:
    """Whether a live object is on its way out (then it is waited for, not applied)."""
    return live is not None and bool((live.get("metadata") or {}).get("deletionTimestamp"))
