"""One reconcile pass over one MadGroup, and its ordered teardown.

A pass reads the group and its children, asks :mod:`madgroup.rollout` what to do, applies
at most the gating component's objects, and publishes status. Every decision is derived
from what is observed, never from memory, so a restarted operator picks up exactly where
the previous one stopped and deterministic names make duplicates impossible.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from madgroup import rollout, spec, topology
from madgroup.errors import MadGroupError
from madgroup.kube import autoscaling, certificates, crd, naming, objects, volumes
from madgroup.kube.api import ApiError, KubeApi
from madgroup.kube.credentials import GeneratedSecret
from madgroup.resolved import ResolvedComponent, resolve

ORDER = topology.COMPONENT_NAMES


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass
class Outcome:
    applied: list[str] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    status_written: bool = False
    ready: bool = False


def group_path(namespace: str, name: str) -> str:
    return f"/apis/{spec.API_VERSION}/namespaces/{namespace}/{crd.PLURAL}/{name}"


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def contains(live: Any, desired: Any) -> bool:
    """Whether ``live`` holds every field of ``desired`` with the same value (the server
    may add defaults; those are not drift)."""
    if isinstance(desired, Mapping):
        return isinstance(live, Mapping) and all(
            k in live and contains(live[k], v) for k, v in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(live, list)
            and len(live) == len(desired)
            and all(contains(a, b) for a, b in zip(live, desired, strict=True))
        )
    return bool(live == desired)


def _path(manifest: Mapping[str, Any]) -> str:
    meta = manifest["metadata"]
    return naming.KINDS[manifest["kind"]].path(meta["namespace"], meta["name"])


def _generated(
    owner: objects.Owner, desired: crd.KubeMadGroupSpec, name: str
) -> list[GeneratedSecret]:
    """The Secrets the operator generates, made with component ``name``: all of them with
    Redis (its ACL file needs every bus password, and it starts first)."""
    if topology.component(name).is_mad:
        return []
    return objects.generated_secrets(owner, desired)


def _secret_path(owner: objects.Owner, secret: GeneratedSecret) -> str:
    return naming.SECRET.path(owner.namespace, secret.name)


WORKLOADS = ("Deployment", "StatefulSet")


@dataclass
class _Seen:
    observed: rollout.Observed
    stale: list[dict[str, Any]]
    image: str
    workload: dict[str, Any] | None = None
    """The live Deployment or StatefulSet, as observed."""
    growth: volumes.Growth | None = None
    """Its volume's growth to the declared size, when it is due."""


def _in_sync(part: ResolvedComponent, manifest: Mapping[str, Any], live: Any) -> bool:
    """Whether a live object is as desired. An autoscaled Deployment whose count the
    operator still holds is not: the count must be handed over (:mod:`.autoscaling`)."""
    if live is None or not contains(live, manifest) or volumes.deleting(live):
        return False
    return not (
        manifest["kind"] == "Deployment"
        and autoscaling.of(part) is not None
        and autoscaling.operator_owns_replicas(live)
    )


def _tls_revisions(
    api: KubeApi, owner: objects.Owner, desired: crd.KubeMadGroupSpec
) -> dict[str, str]:
    """Which certificate each TLS server's live Secret holds."""
    if not desired.tls.enabled:
        return {}
    found = {}
    for server in topology.tls_servers():
        live = api.get(
            naming.SECRET.path(owner.namespace, naming.tls_secret_name(owner.name, server))
        )
        revision = certificates.revision(live)
        if revision is not None:
            found[server] = revision
    return found


def _observe(
    api: KubeApi,
    owner: objects.Owner,
    desired: crd.KubeMadGroupSpec,
    part: ResolvedComponent,
    revisions: dict[str, str],
) -> _Seen:
    name = part.name
    manifests = objects.component_objects(owner, desired, part, revisions)
    stale: list[dict[str, Any]] = []
    workload_live: dict[str, Any] | None = None
    for manifest in manifests:
        live = api.get(_path(manifest))
        if manifest["kind"] in WORKLOADS:
            workload_live = live
            volumes.same_size(manifest, live)
            if live is not None:
                stale += [
                    {"kind": kind, "delete": path, "propagation": "Background"}
                    for kind, path in objects.retired(owner, part, live)
                ]
        if not _in_sync(part, manifest, live):
            stale.append(manifest)
    wanted = part.settings.replicas
    scaling = autoscaling.of(part)
    if scaling is not None:
        # The autoscaler's count: what the Deployment itself asks for (where it starts, before
        # it exists).
        wanted = autoscaling.starting_replicas(scaling, wanted)
        if workload_live is not None:
            wanted = int((workload_live.get("spec") or {}).get("replicas", wanted))
    missing = [
        g for g in _generated(owner, desired, name) if api.get(_secret_path(owner, g)) is None
    ]
    left = [path for path in objects.superseded(owner, part) if api.get(path) is not None]
    stale[:0] = [{"kind": "Secret", "generate": g} for g in missing]
    stale[:0] = [{"kind": _kind_of(path), "delete": path} for path in left]
    ready = 0
    rolled_out = False
    stuck = None
    if workload_live is not None:
        status = workload_live.get("status") or {}
        generation = (workload_live.get("metadata") or {}).get("generation")
        seen_generation = status.get("observedGeneration")
        ready = int(status.get("readyReplicas") or 0)
        # Rolled out: the controller saw the latest template, every pod runs it, and no pod
        # of an older one is left — while a Deployment rolls, its old pod still counts in
        # readyReplicas (maxUnavailable 0), so "ready" alone would pass an unready update.
        rolled_out = (
            (generation is None or (seen_generation or 0) >= generation)
            and int(status.get("updatedReplicas") or 0) >= wanted
            and int(status.get("replicas") or 0) <= wanted
        )
        for cond in status.get("conditions") or []:
            if cond.get("type") == "Progressing" and cond.get("reason") == (
                "ProgressDeadlineExceeded"
            ):
                stuck = cond.get("message") or "progress deadline exceeded"
    observed = rollout.Observed(
        in_sync=not stale,
        ready_replicas=ready,
        desired_replicas=wanted,
        rolled_out=rolled_out,
        stuck=stuck,
    )
    return _Seen(observed, stale, part.image, workload_live)


def _kind_of(path: str) -> str:
    """The kind an API path names (``.../statefulsets/x`` -> ``StatefulSet``)."""
    plural = path.rsplit("/", 2)[-2]
    return next(k.kind for k in naming.KINDS.values() if k.plural == plural)


def _create_secret(api: KubeApi, owner: objects.Owner, secret: GeneratedSecret) -> None:
    ca = None
    if isinstance(secret, certificates.ServerSecret):  # issued from the group's CA
        live_ca = api.get(_secret_path(owner, certificates.ca_secret(owner)))
        ca = certificates.load_ca(live_ca) if live_ca is not None else None
    try:
        api.create(naming.SECRET.path(owner.namespace), secret.manifest(owner, ca))
    except ApiError as exc:
        if exc.status != 409:  # created meanwhile: keep that one
            raise


def _apply(
    api: KubeApi,
    owner: objects.Owner,
    desired: crd.KubeMadGroupSpec,
    part: ResolvedComponent,
    seen: _Seen,
) -> list[str]:
    """Delete what the component has under its declaration no more (the workload of
    another kind), create its missing Secrets, then apply its stale objects. A new TLS
    Secret changes what the workload pins, so the objects are rendered again after it."""
    done = []
    stale = seen.stale
    for gone in [m for m in stale if "delete" in m]:
        if api.delete(gone["delete"], propagation=gone.get("propagation", "Foreground")):
            done.append(f"deleted {gone['kind']}")
    stale = [m for m in stale if "delete" not in m]
    made = [m["generate"] for m in stale if isinstance(m.get("generate"), GeneratedSecret)]
    for secret in made:
        _create_secret(api, owner, secret)
        done.append("Secret")
    if made:
        revisions = _tls_revisions(api, owner, desired)
        fresh = objects.component_objects(owner, desired, part, revisions)
        stale = []
        for manifest in fresh:
            live = api.get(_path(manifest))
            volumes.same_size(manifest, live)
            if not _in_sync(part, manifest, live):
                stale.append(manifest)
    for manifest in stale:
        if "generate" in manifest or "delete" in manifest:
            continue
        if manifest["kind"] in WORKLOADS:
            done += _apply_workload(api, part, manifest, seen)
            continue
        api.apply(_path(manifest), manifest)
        done.append(manifest["kind"])
    return done


def _apply_workload(
    api: KubeApi, part: ResolvedComponent, manifest: dict[str, Any], seen: _Seen
) -> list[str]:
    """Apply the component's Deployment or StatefulSet: an autoscaled Deployment without
    taking its count back, a StatefulSet whose volume grows by recreating it
    (:mod:`.volumes`), one being deleted not at all (the next pass creates it)."""
    path = _path(manifest)
    live = api.get(path)
    if volumes.deleting(live):
        return []
    growing = seen.growth
    if growing is not None and live is not None:
        volumes.grow(api, growing, path)
        return [f"PersistentVolumeClaim x{len(growing.claims)}", "deleted StatefulSet"]
    scaling = autoscaling.of(part)
    if manifest["kind"] == "Deployment" and scaling is not None:
        start = autoscaling.starting_replicas(scaling, part.settings.replicas)
        autoscaling.apply_workload(api, path, manifest, live, start)
    else:
        api.apply(path, manifest)
    return [manifest["kind"]]


def _missing_secrets(api: KubeApi, namespace: str, desired: crd.KubeMadGroupSpec) -> str | None:
    for where, ref in spec.secret_refs(desired).items():
        secret = api.get(naming.SECRET.path(namespace, ref.name))
        if secret is None:
            return f"{where}: Secret {ref.name!r} not found in namespace {namespace!r}"
        keys = set(secret.get("data") or {}) | set(secret.get("stringData") or {})
        if ref.key not in keys:
            return f"{where}: Secret {ref.name!r} has no key {ref.key!r}"
    return None


def _conditions(
    report: rollout.Report, old: list[dict[str, Any]], generation: int | None, now: str
) -> list[dict[str, Any]]:
    """Keep ``lastTransitionTime`` when a condition's status did not change."""
    before = {c.get("type"): c for c in old or []}
    out = []
    for cond in report.conditions:
        prev = before.get(cond.type)
        since = (
            prev.get("lastTransitionTime") if prev and prev.get("status") == cond.status else None
        )
        out.append(
            {
                "type": cond.type,
                "status": cond.status,
                "reason": cond.reason,
                "message": cond.message,
                "lastTransitionTime": since or now,
                "observedGeneration": generation,
            }
        )
    return out


def _transition_events(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[Event]:
    before = {c.get("type"): c for c in old or []}
    events = []
    for cond in new:
        prev = before.get(cond["type"])
        if prev and prev.get("status") == cond["status"] and prev.get("reason") == cond["reason"]:
            continue
        kind = cond["type"]
        if kind == rollout.READY and cond["status"] == "True":
            events.append(Event("Normal", "Ready", cond["message"]))
        elif kind == rollout.STALLED and cond["status"] == "True":
            events.append(Event("Warning", cond["reason"], cond["message"]))
        elif kind == rollout.PAUSED and cond["status"] == "True":
            events.append(Event("Normal", "Paused", cond["message"]))
        elif kind.endswith("Ready") and kind != rollout.READY and cond["status"] == "True":
            events.append(Event("Normal", kind, cond["message"]))
    return events


def reconcile(
    api: KubeApi, namespace: str, name: str, *, clock: Callable[[], str] = now_rfc3339
) -> Outcome:
    """One pass. Never raises for a bad spec (that is reported as Stalled); API errors
    propagate so the caller can retry."""
    outcome = Outcome()
    group = api.get(group_path(namespace, name))
    if group is None or group.get("metadata", {}).get("deletionTimestamp"):
        return outcome
    meta = group["metadata"]
    generation = meta.get("generation")
    old_status = group.get("status") or {}
    annotations = meta.get("annotations") or {}
    paused = annotations.get(crd.PAUSED_ANNOTATION, "").lower() == "true"
    owner = objects.Owner(name=name, namespace=namespace, uid=meta.get("uid", ""))

    components: dict[str, dict[str, Any]] = {}
    try:
        naming.check_group_name(name)
        desired = crd.parse(group.get("spec"))
        resolved = resolve(desired)
        problem = _missing_secrets(api, namespace, desired)
        if problem:
            raise spec.InvalidSpecError(problem)
        revisions = _tls_revisions(api, owner, desired)
        seen = {n: _observe(api, owner, desired, resolved.of(n), revisions) for n in ORDER}
        for n, found in seen.items():
            found.growth = volumes.growth(api, owner, resolved.of(n), found.workload)
    except spec.InvalidSpecError as exc:
        reason = getattr(exc, "reason", "InvalidSpec")
        report = rollout.invalid_report(ORDER, str(exc), reason)
        components = old_status.get("components") or {}
    else:
        paused = paused or desired.paused
        observed = {n: s.observed for n, s in seen.items()}
        plan = rollout.plan(ORDER, observed, topology.gate_map(desired.order))
        if not paused:
            for comp in plan.apply:
                kinds = _apply(api, owner, desired, resolved.of(comp), seen[comp])
                outcome.applied.append(comp)
                outcome.events.append(
                    Event("Normal", "Applied", f"{comp}: applied {', '.join(kinds)}")
                )
        report = rollout.report(ORDER, observed, plan, paused=paused)
        for n in ORDER:
            obs = observed[n]
            components[n] = {
                "readyReplicas": obs.ready_replicas,
                "desiredReplicas": obs.desired_replicas,
                "image": seen[n].image,
                "message": report.components.get(n, ""),
            }
        outcome.ready = plan.done
    conditions = _conditions(report, old_status.get("conditions") or [], generation, clock())
    new_status = {
        "observedGeneration": generation,
        "conditions": conditions,
        "components": components,
    }
    if new_status != {k: old_status.get(k) for k in new_status}:
        api.patch_status(group_path(namespace, name), {"status": new_status})
        outcome.status_written = True
        outcome.events.extend(_transition_events(old_status.get("conditions") or [], conditions))
    return outcome


class StillDeleting(MadGroupError):
    """A component's objects are still going away; try again shortly."""


def teardown(api: KubeApi, group: Mapping[str, Any], emit: Callable[[Event], None]) -> None:
    """Delete the children in reverse dependency order, one component at a time: a
    component's objects must be gone before the one it depends on is touched. PVCs stay
    unless ``storage.retainOnDelete`` is false."""
    meta = group["metadata"]
    owner = objects.Owner(meta["name"], meta["namespace"], meta.get("uid", ""))
    try:
        desired = crd.parse(group.get("spec"))
        resolved = resolve(desired)
    except spec.InvalidSpecError:
        desired = crd.KubeMadGroupSpec()  # names do not depend on the spec; keep all data
        resolved = resolve(desired)
    for comp in topology.stop_order():
        part = resolved.of(comp.name)
        manifests = objects.component_objects(owner, desired, part)
        paths = [_path(m) for m in reversed(manifests)] + objects.superseded(owner, part)
        storage = objects.storage_of(part)
        if storage is not None and not storage.retainOnDelete:
            paths += [
                naming.PVC.path(owner.namespace, claim)
                for claim in objects.claim_names(owner, part)
            ]
        paths += [_secret_path(owner, g) for g in _generated(owner, desired, comp.name)]
        deleted = [p for p in paths if api.delete(p)]
        if deleted:
            emit(Event("Normal", "Deleting", f"{comp.name}: deleting {len(deleted)} objects"))
        remaining = [p for p in paths if api.get(p) is not None]
        if remaining:
            left = ", ".join(p.rsplit("/", 2)[-2] + "/" + p.rsplit("/", 1)[-1] for p in remaining)
            raise StillDeleting(f"waiting for {comp.name} to be deleted: {left}")
