"""The Kubernetes objects of one MadGroup, rendered from the resolved declaration.

Pure functions: given the group's identity, its validated spec and one resolved component
(:mod:`madgroup.resolved`: its topology, declared settings and environment entries), return
plain manifests. Nothing here talks to a cluster, so every object can be checked against
the Kubernetes schemas offline.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from madgroup import topology
from madgroup.environment import (
    Address,
    Credential,
    CredentialKind,
    DataPath,
    Entry,
    File,
    Place,
    Secret,
    TlsPath,
    Value,
    VolumeSize,
)
from madgroup.kube import (
    autoscaling,
    backups,
    certificates,
    credentials,
    naming,
    placement,
    quantities,
)
from madgroup.kube.crd import KubeMadGroupSpec, KubeStorageSpec, WithResources
from madgroup.kube.credentials import PASSWORD_KEY, GeneratedSecret, bus_password_ref, password_ref
from madgroup.kube.meta import (
    CONTAINER_SECURITY_CONTEXT,
    Manifest,
    Owner,
    allowed_hosts,
    pod_security_context,
)
from madgroup.kube.meta import metadata as _metadata
from madgroup.resolved import ResolvedComponent
from madgroup.spec import SecretKeyRef

__all__ = ["PASSWORD_KEY", "Manifest", "Owner", "allowed_hosts", "generated_secrets"]

CREDENTIALS_DIR = "/run/madgroup"
"""Where Redis's init container writes the ACL file (an in-memory emptyDir) for Redis."""
ACL_VOLUME = "bus-acl"
ACL_PATH = f"{CREDENTIALS_DIR}/users.acl"
FILES_DIR = "/run/madgroup-files"
"""Where a pod mounts the ConfigMap of the files its declaration gives it."""
COMPANIONS_ANNOTATION = "madgroup.io/companions"
"""On a workload: the kinds of the optional objects made beside it (its autoscaler, its
disruption budget), so that one the declaration no longer asks for is deleted."""
FILES_ANNOTATION = "madgroup.io/files-sha256"
"""On a pod template: which files it runs with, so changed ones roll the pods (the MADs
read them at start)."""


def password_secret(owner: Owner) -> Manifest:
    """A new administrator's password Secret."""
    return credentials.admin_secret(owner).manifest(owner)


def generated_secrets(owner: Owner, spec: KubeMadGroupSpec) -> list[GeneratedSecret]:
    """What the operator generates for the group, created with Redis (whose ACL file needs
    every bus password, and which starts first): the credentials, and with TLS on the CA
    and every server's certificate unless cert-manager issues them."""
    return [*credentials.generated(owner, spec), *certificates.generated(owner, spec)]


def network_policy(owner: Owner) -> Manifest:
    """Every pod of the group except Grace accepts traffic only from the group's own pods:
    Redis is reachable only inside the group, Grace is the one door from outside."""
    exposed = [c.dns_name for c in topology.COMPONENTS if c.exposed]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _metadata(owner, naming.network_policy_name(owner.name), None),
        "spec": {
            "podSelector": {
                "matchLabels": naming.group_labels(owner.name),
                "matchExpressions": [
                    {"key": naming.LABEL_COMPONENT, "operator": "NotIn", "values": exposed}
                ],
            },
            "policyTypes": ["Ingress"],
            "ingress": [
                {"from": [{"podSelector": {"matchLabels": naming.group_labels(owner.name)}}]}
            ],
        },
    }


def _port_name(comp: topology.Component) -> str:
    """The port's protocol: ``redis`` for the bus, ``http`` for a MAD."""
    return str(comp.probe.kind)


def service(owner: Owner, part: ResolvedComponent) -> Manifest:
    comp, name = part.component, part.name
    svc_type = str(getattr(part.settings, "serviceType", "ClusterIP"))
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(owner, naming.child_name(owner.name, name), name),
        "spec": {
            "type": svc_type,
            "selector": naming.selector_labels(owner.name, name),
            "ports": [
                {
                    "name": _port_name(comp),
                    "port": comp.port,
                    "targetPort": _port_name(comp),
                    "protocol": "TCP",
                }
            ],
        },
    }


def _secret_env(var: str, ref: SecretKeyRef) -> dict[str, Any]:
    return {"name": var, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}


def environment(
    owner: Owner, spec: KubeMadGroupSpec, part: ResolvedComponent
) -> list[dict[str, Any]]:
    """The container's env: the component's entries as Kubernetes has them — addresses of
    the group's Services, secrets and credentials by reference (never by value)."""
    return [translate(owner, spec, part.component, entry) for entry in part.environment]


def translate(
    owner: Owner, spec: KubeMadGroupSpec, comp: topology.Component, entry: Entry
) -> dict[str, Any]:
    """One entry as a container's ``env`` item."""
    match entry:
        case Value():
            return {"name": entry.variable, "value": entry.value}
        case Secret():
            ref = SecretKeyRef(name=entry.ref.name, key=entry.ref.key)
            return _secret_env(entry.variable, ref)
        case File():
            return {"name": entry.variable, "value": f"{FILES_DIR}/{entry.variable}"}
        case Credential():
            return _secret_env(entry.variable, _credential_ref(owner, spec, entry))
        case Address():
            return {"name": entry.variable, "value": _address(owner, entry)}
        case DataPath():
            return {"name": entry.variable, "value": f"{topology.DATA_DIR}/{entry.filename}"}
        case TlsPath():
            path = getattr(certificates.files(), entry.part.value)
            return {"name": entry.variable, "value": str(path)}
        case VolumeSize():
            storage = getattr(spec.component(entry.component), "storage", None)
            assert isinstance(storage, KubeStorageSpec)
            return {"name": entry.variable, "value": str(quantities.whole_bytes(storage.size))}


def _credential_ref(owner: Owner, spec: KubeMadGroupSpec, entry: Credential) -> SecretKeyRef:
    """The Secret a credential is kept in: the declared one, or the one the operator
    generates."""
    match entry.kind:
        case CredentialKind.ADMIN_PASSWORD:
            return password_ref(owner, spec)
        case CredentialKind.BUS_PASSWORD:
            assert entry.user is not None
            return bus_password_ref(owner, spec, entry.user)
        case CredentialKind.INTERNAL_TOKEN:
            return credentials.internal_secret(owner).ref()
        case CredentialKind.METRICS_TOKEN:
            return credentials.metrics_secret(owner).ref()


def _address(owner: Owner, entry: Address) -> str:
    """Components reach each other by their Service's name."""
    service_name = naming.child_name(owner.name, entry.component)
    port = topology.component(entry.component).port
    match entry.place:
        case Place.HOST:
            return service_name
        case Place.PORT:
            return str(port)
        case Place.MCP_URL:
            return f"http://{service_name}:{port}/mcp"
        case Place.BIND:
            return "0.0.0.0"
        case Place.NAMES:
            return ",".join(allowed_hosts(owner, entry.component))


def _acl_writer(owner: Owner, spec: KubeMadGroupSpec) -> dict[str, Any]:
    """Redis's init container: a shell script in Redis's own image (so a new MAD image
    never restarts the bus) writes the ACL file, hashes of the administrator's and every
    bus user's password, read from their Secrets (:func:`mads.core.access.acl_script`)."""
    env = [_secret_env(topology.PASSWORD_VARIABLE, password_ref(owner, spec))]
    env += [
        _secret_env(topology.bus_password_variable(u), bus_password_ref(owner, spec, u))
        for u in topology.bus_users()
    ]
    return {
        "name": "bus-users",
        "image": spec.image_of(topology.bus().name),
        "imagePullPolicy": spec.image.pullPolicy,
        "command": ["sh", "-c", topology.acl_script(ACL_PATH)],
        "env": env,
        "securityContext": copy.deepcopy(CONTAINER_SECURITY_CONTEXT),
        "volumeMounts": [{"name": ACL_VOLUME, "mountPath": CREDENTIALS_DIR}],
    }


def _probes(comp: topology.Component, tls_on: bool = False) -> dict[str, Any]:
    """Readiness and liveness; with TLS on, Redis's ping is over TLS and a server's HTTP
    probes use HTTPS (the kubelet does not check the certificate)."""
    if comp.probe.kind == topology.ProbeKind.REDIS_PING:
        # The password comes from the container's env; the pod spec never holds it.
        over = f"--tls --cacert {certificates.files().ca} " if tls_on else ""
        ping = f'REDISCLI_AUTH="$REDIS_PASSWORD" redis-cli {over}ping | grep -q PONG'
        return {
            "readinessProbe": {
                "exec": {"command": ["sh", "-c", ping]},
                "periodSeconds": 5,
                "timeoutSeconds": 3,
                "failureThreshold": 3,
            },
            "livenessProbe": {
                "tcpSocket": {"port": _port_name(comp)},
                "initialDelaySeconds": 10,
                "periodSeconds": 10,
            },
        }
    scheme = {"scheme": "HTTPS"} if tls_on and topology.serves_tls(comp) else {}
    return {
        "readinessProbe": {
            "httpGet": {"path": comp.probe.path, "port": _port_name(comp), **scheme},
            "periodSeconds": 5,
            "timeoutSeconds": 3,
            "failureThreshold": 3,
        },
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": _port_name(comp), **scheme},
            "initialDelaySeconds": 10,
            "periodSeconds": 10,
            "timeoutSeconds": 3,
        },
    }


def _resources(settings: WithResources) -> dict[str, Any]:
    if settings.resources is None:
        return {}
    out: dict[str, Any] = {}
    if settings.resources.requests:
        out["requests"] = dict(settings.resources.requests)
    if settings.resources.limits:
        out["limits"] = dict(settings.resources.limits)
    return out


def pod_template(
    owner: Owner, spec: KubeMadGroupSpec, part: ResolvedComponent, tls_revision: str | None = None
) -> dict[str, Any]:
    """``tls_revision``: which certificate a server that reads it only at start runs with
    (a renewed one changes the template, so the pods roll)."""
    comp, name = part.component, part.name
    settings = part.settings
    assert isinstance(settings, WithResources)
    mounts: list[dict[str, Any]] = [{"name": "tmp", "mountPath": "/tmp"}]
    if part.keeps_volume and comp.data_path:
        mounts.append({"name": "data", "mountPath": comp.data_path})
    volumes: list[dict[str, Any]] = [
        {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}}
    ]
    init: list[dict[str, Any]] = []
    if not comp.is_mad:
        mounts.append({"name": ACL_VOLUME, "mountPath": CREDENTIALS_DIR, "readOnly": True})
        volumes.append({"name": ACL_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}})
        init.append(_acl_writer(owner, spec))
    files = part.files
    if files:
        mounts.append({"name": "files", "mountPath": FILES_DIR, "readOnly": True})
        volumes.append(
            {"name": "files", "configMap": {"name": naming.files_name(owner.name, name)}}
        )
    tls_on = certificates.uses_tls(spec, comp)
    if tls_on:
        mounts.append(
            {"name": certificates.VOLUME, "mountPath": certificates.TLS_DIR, "readOnly": True}
        )
        volumes.append(certificates.volume(owner, spec, comp))
    container: dict[str, Any] = {
        "name": comp.dns_name,
        "image": part.image,
        "imagePullPolicy": spec.image.pullPolicy,
        "command": part.command(users_file=ACL_PATH, tls=certificates.files() if tls_on else None),
        "ports": [{"name": _port_name(comp), "containerPort": comp.port, "protocol": "TCP"}],
        "env": environment(owner, spec, part),
        **_probes(comp, tls_on),
        "resources": _resources(settings),
        "securityContext": copy.deepcopy(CONTAINER_SECURITY_CONTEXT),
        "volumeMounts": mounts,
    }
    pod: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": pod_security_context(),
        **placement.pod_fields(owner, part),
    }
    if init:
        pod["initContainers"] = init
    pod["containers"] = [container]
    pod["volumes"] = volumes
    meta: dict[str, Any] = {"labels": naming.labels(owner.name, name)}
    annotations = {}
    if tls_revision is not None:
        annotations[certificates.REVISION_ANNOTATION] = tls_revision
    if files:
        digest = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
        annotations[FILES_ANNOTATION] = digest[:16]
    if annotations:
        meta["annotations"] = annotations
    return {"metadata": meta, "spec": pod}


def files_config_map(owner: Owner, part: ResolvedComponent) -> Manifest | None:
    """The files the declaration gives the component, as a ConfigMap its pods mount."""
    if not part.files:
        return None
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(owner, naming.files_name(owner.name, part.name), part.name),
        "data": part.files,
    }


def _claim(storage: KubeStorageSpec) -> dict[str, Any]:
    claim: dict[str, Any] = {
        "metadata": {"name": "data"},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": storage.size}},
        },
    }
    if storage.storageClassName:
        claim["spec"]["storageClassName"] = storage.storageClassName
    return claim


def storage_of(part: ResolvedComponent) -> KubeStorageSpec | None:
    """The volume a component keeps its data on (none when the declaration keeps its data
    in a database outside the group)."""
    found = getattr(part.settings, "storage", None)
    return found if isinstance(found, KubeStorageSpec) and part.keeps_volume else None


def workload_kind(part: ResolvedComponent) -> naming.Kind:
    """A StatefulSet for a component that keeps data on a volume of its own (Redis, Fiedler
    on SQLite), a Deployment otherwise (Fiedler on PostgreSQL included)."""
    return naming.STATEFULSET if storage_of(part) is not None else naming.DEPLOYMENT


def workload(
    owner: Owner, spec: KubeMadGroupSpec, part: ResolvedComponent, tls_revision: str | None = None
) -> Manifest:
    """The component's pods (:func:`workload_kind`). An autoscaled Deployment has no
    ``replicas``: the count is its autoscaler's (:mod:`madgroup.kube.autoscaling`)."""
    name = part.name
    body: dict[str, Any] = {
        "replicas": part.settings.replicas,
        "selector": {"matchLabels": naming.selector_labels(owner.name, name)},
        "template": pod_template(owner, spec, part, tls_revision),
    }
    if autoscaling.of(part) is not None:
        del body["replicas"]
    meta = _metadata(owner, naming.child_name(owner.name, name), name)
    meta["annotations"] = {
        COMPANIONS_ANNOTATION: ",".join(m["kind"] for m in companions(owner, part))
    }
    storage = storage_of(part)
    if storage is not None:
        body["serviceName"] = naming.child_name(owner.name, name)
        body["volumeClaimTemplates"] = [_claim(storage)]
        body["persistentVolumeClaimRetentionPolicy"] = {
            "whenDeleted": "Retain" if storage.retainOnDelete else "Delete",
            "whenScaled": "Retain",
        }
    else:
        body["strategy"] = {"type": "RollingUpdate"}
    made = workload_kind(part)
    return {"apiVersion": made.api_version, "kind": made.kind, "metadata": meta, "spec": body}


def companions(owner: Owner, part: ResolvedComponent) -> list[Manifest]:
    """The optional objects beside a component's workload: its HorizontalPodAutoscaler and
    its PodDisruptionBudget, as declared (or by default)."""
    found = (autoscaling.autoscaler(owner, part), placement.disruption_budget(owner, part))
    return [m for m in found if m is not None]


def retired(
    owner: Owner, part: ResolvedComponent, live: Mapping[str, Any]
) -> list[tuple[str, str]]:
    """The companions the live workload says were made (its :data:`COMPANIONS_ANNOTATION`)
    that the declaration no longer asks for: kind and API path of each."""
    annotations = (live.get("metadata") or {}).get("annotations") or {}
    made = {k for k in str(annotations.get(COMPANIONS_ANNOTATION, "")).split(",") if k}
    wanted = {m["kind"] for m in companions(owner, part)}
    name = naming.child_name(owner.name, part.name)
    return [
        (kind, naming.KINDS[kind].path(owner.namespace, name))
        for kind in sorted(made - wanted)
        if kind in naming.KINDS
    ]


def claim_names(owner: Owner, part: ResolvedComponent) -> list[str]:
    """The PersistentVolumeClaims a component's StatefulSet creates (``data-<sts>-<i>``)."""
    if storage_of(part) is None:
        return []
    sts = naming.child_name(owner.name, part.name)
    return [f"data-{sts}-{i}" for i in range(part.settings.replicas)]


def component_objects(
    owner: Owner,
    spec: KubeMadGroupSpec,
    part: ResolvedComponent,
    tls_revisions: Mapping[str, str] | None = None,
) -> list[Manifest]:
    """What the operator applies for one component, in order (the generated Secrets are
    created separately, once). The NetworkPolicy comes with Redis: it protects Redis
    before Redis exists; a cert-manager Certificate comes before the pods that mount its
    Secret. ``tls_revisions``: which certificate each TLS server's live Secret holds."""
    comp, name = part.component, part.name
    out: list[Manifest] = []
    if not comp.is_mad:
        out.append(network_policy(owner))
    out += certificates.certificates(owner, spec, name)
    files = files_config_map(owner, part)
    if files is not None:
        out.append(files)
    out.append(service(owner, part))
    revision = (tls_revisions or {}).get(name) if not comp.reloads_certificates else None
    out.append(workload(owner, spec, part, revision))
    out += companions(owner, part)
    if comp.keeps_data:
        claims = claim_names(owner, part)
        job = backups.cron_job(owner, spec, part, claims[0] if claims else None)
        if job is not None:
            out.append(job)
    return out


def superseded(owner: Owner, part: ResolvedComponent) -> list[str]:
    """The API paths of what a component had under another declaration and has no more:
    the workload of the other kind (Fiedler's StatefulSet once its tasks move to
    PostgreSQL, its Deployment back on SQLite) and a disruption budget it no longer gets
    (the workload that listed it as a companion is the one replaced). Only for a component
    whose shape the declaration can change (one that keeps data)."""
    if not part.component.keeps_data:
        return []
    name = naming.child_name(owner.name, part.name)
    other = naming.DEPLOYMENT if workload_kind(part) is naming.STATEFULSET else naming.STATEFULSET
    found = [other.path(owner.namespace, name)]
    if placement.disruption_budget(owner, part) is None:
        found.append(naming.PDB.path(owner.namespace, name))
    return found
