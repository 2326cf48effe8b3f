"""The Kubernetes objects of one MadGroup, rendered from the shared topology.

Pure functions: given the group's identity and its validated spec, return plain manifests.
Nothing here talks to a cluster, so every object can be checked against the Kubernetes
schemas offline.
"""

from __future__ import annotations

import base64
import copy
import secrets
from dataclasses import dataclass
from typing import Any

from madgroup import topology
from madgroup.kube import naming
from madgroup.kube.crd import KubeMadGroupSpec, KubeStorageSpec, WithResources
from madgroup.spec import API_VERSION, KIND, PASSWORD_VARIABLE, SecretKeyRef
from mads.core import tls

PASSWORD_KEY = "password"
TOKEN_KEY = "token"
CREDENTIALS_DIR = "/run/madgroup"
"""Where Redis's init container writes the ACL file (an in-memory emptyDir) for Redis."""
ACL_VOLUME = "bus-acl"
ACL_PATH = f"{CREDENTIALS_DIR}/users.acl"
POD_UID = 10001
CONTAINER_SECURITY_CONTEXT: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
}
"""Every container's securityContext (the MADs', Redis's and the operator's); use a
``copy.deepcopy`` of it so that no two manifests share objects (no YAML anchors)."""
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


def _metadata(owner: Owner, name: str, component: str | None) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": owner.namespace,
        "labels": naming.labels(owner.name, component),
    }
    if owner.uid:
        meta["ownerReferences"] = [owner.reference()]
    return meta


def password_ref(owner: Owner, spec: KubeMadGroupSpec) -> SecretKeyRef:
    """Where the Redis password lives: the user's Secret, or the one the operator generates."""
    declared = spec.password()
    if declared is not None:
        return declared
    return SecretKeyRef(name=naming.password_secret_name(owner.name), key=PASSWORD_KEY)


@dataclass(frozen=True)
class GeneratedSecret:
    """A Secret the operator makes once (a fresh CSPRNG value) and never re-renders onto
    an existing one: that would change a credential under running pods."""

    name: str
    key: str

    def ref(self) -> SecretKeyRef:
        return SecretKeyRef(name=self.name, key=self.key)

    def values(self) -> dict[str, bytes]:
        return {self.key: secrets.token_urlsafe(32).encode()}

    def manifest(self, owner: Owner) -> Manifest:
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": _metadata(owner, self.name, topology.bus().name),
            "type": "Opaque",
            "data": {k: base64.b64encode(v).decode() for k, v in self.values().items()},
        }


TLS_CA_KEY = "ca.crt"
TLS_CERT_KEY = "tls.crt"
TLS_KEY_KEY = "tls.key"
TLS_DIR = "/run/madgroup-tls"
TLS_VOLUME = "bus-tls"
"""Where a pod mounts the bus's TLS Secret (Redis: all three keys; a MAD: ``ca.crt``)."""


@dataclass(frozen=True)
class TlsSecret(GeneratedSecret):
    """Redis's certificate, its key and the CA that signed it, laid out as cert-manager
    writes a Certificate's Secret (``ca.crt``, ``tls.crt``, ``tls.key``). The CA is made
    for this one certificate and its key is dropped: nothing else can ever be signed by
    it. Renewal: delete the Secret; the operator makes a new one."""

    hosts: tuple[str, ...] = ()

    def values(self) -> dict[str, bytes]:
        ca = tls.new_ca(self.name)
        server = tls.issue(ca, topology.bus().name, self.hosts)
        return {
            TLS_CA_KEY: ca.cert_pem(),
            TLS_CERT_KEY: server.cert_pem(),
            TLS_KEY_KEY: server.key_pem(),
        }

    def manifest(self, owner: Owner) -> Manifest:
        out = super().manifest(owner)
        out["type"] = "kubernetes.io/tls"
        return out


def tls_secret(owner: Owner) -> TlsSecret:
    bus = topology.bus().name
    return TlsSecret(
        naming.tls_secret_name(owner.name, bus),
        TLS_CA_KEY,
        hosts=(*allowed_hosts(owner, bus), "localhost", "127.0.0.1"),
    )


def _admin_secret(owner: Owner) -> GeneratedSecret:
    return GeneratedSecret(naming.password_secret_name(owner.name), PASSWORD_KEY)


def _bus_secret(owner: Owner, user: str) -> GeneratedSecret:
    return GeneratedSecret(naming.bus_secret_name(owner.name, user), PASSWORD_KEY)


def _internal_secret(owner: Owner) -> GeneratedSecret:
    return GeneratedSecret(naming.internal_token_secret_name(owner.name), TOKEN_KEY)


def password_secret(owner: Owner) -> Manifest:
    """A new administrator's password Secret."""
    return _admin_secret(owner).manifest(owner)


def generated_secrets(owner: Owner, spec: KubeMadGroupSpec) -> list[GeneratedSecret]:
    """What the operator generates for the group, created with Redis (whose ACL file needs
    every bus password): the administrator's password and each MAD's bus password unless
    the spec references a Secret of its own, and the group's internal credential."""
    found = [] if spec.password() is not None else [_admin_secret(owner)]
    found += [_bus_secret(owner, u) for u in topology.bus_users() if spec.bus_password(u) is None]
    found.append(_internal_secret(owner))
    if spec.tls.enabled:
        found.append(tls_secret(owner))
    return found


def bus_password_ref(owner: Owner, spec: KubeMadGroupSpec, user: str) -> SecretKeyRef:
    return spec.bus_password(user) or _bus_secret(owner, user).ref()


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


def service(owner: Owner, spec: KubeMadGroupSpec, name: str) -> Manifest:
    comp = topology.component(name)
    svc_type = str(getattr(spec.component(name), "serviceType", "ClusterIP"))
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


def allowed_hosts(owner: Owner, name: str) -> list[str]:
    """The names a client inside the cluster may use to reach a MAD's Service."""
    svc = naming.child_name(owner.name, name)
    ns = owner.namespace
    return [svc, f"{svc}.{ns}", f"{svc}.{ns}.svc", f"{svc}.{ns}.svc.cluster.local"]


def environment(owner: Owner, spec: KubeMadGroupSpec, name: str) -> list[dict[str, Any]]:
    """The container's env: the topology's, pointing at the group's Services, plus secrets
    by reference (never by value)."""
    comp = topology.component(name)

    def address(other: str) -> tuple[str, int]:
        return naming.child_name(owner.name, other), topology.component(other).port

    env: list[dict[str, Any]] = [
        {"name": key, "value": value}
        for key, value in topology.environment(
            comp, address, allowed_hosts=allowed_hosts(owner, name)
        ).items()
    ]
    for binding in spec.bindings(name):
        if comp.is_mad and binding.variable == PASSWORD_VARIABLE:
            continue  # a MAD connects as its own bus user, never as the administrator
        if binding.value is not None:
            env.append({"name": binding.variable, "value": binding.value})
        else:
            env.append(_secret_env(binding.variable, binding.secret or password_ref(owner, spec)))
    if spec.tls.enabled:
        env += [
            {"name": k, "value": v}
            for k, v in topology.tls_environment(comp, _tls_files().ca).items()
        ]
    if comp.bus_user is not None:
        env.append({"name": topology.BUS_USERNAME_VARIABLE, "value": comp.bus_user})
        env.append(_secret_env(PASSWORD_VARIABLE, bus_password_ref(owner, spec, comp.bus_user)))
    if topology.needs_internal_token(comp):
        env.append(_secret_env(topology.INTERNAL_TOKEN_VARIABLE, _internal_secret(owner).ref()))
    return env


def _acl_writer(owner: Owner, spec: KubeMadGroupSpec) -> dict[str, Any]:
    """Redis's init container: a shell script in Redis's own image (so a new MAD image
    never restarts the bus) writes the ACL file, hashes of the administrator's and every
    bus user's password, read from their Secrets (:func:`mads.core.access.acl_script`)."""
    env = [_secret_env(PASSWORD_VARIABLE, password_ref(owner, spec))]
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


def _tls_files() -> topology.TlsFiles:
    return topology.TlsFiles(
        ca=f"{TLS_DIR}/{TLS_CA_KEY}",
        cert=f"{TLS_DIR}/{TLS_CERT_KEY}",
        key=f"{TLS_DIR}/{TLS_KEY_KEY}",
    )


def _probes(comp: topology.Component, tls_on: bool = False) -> dict[str, Any]:
    if comp.probe.kind == topology.ProbeKind.REDIS_PING:
        # The password comes from the container's env; the pod spec never holds it.
        over = f"--tls --cacert {_tls_files().ca} " if tls_on else ""
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
    return {
        "readinessProbe": {
            "httpGet": {"path": comp.probe.path, "port": _port_name(comp)},
            "periodSeconds": 5,
            "timeoutSeconds": 3,
            "failureThreshold": 3,
        },
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": _port_name(comp)},
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


def pod_template(owner: Owner, spec: KubeMadGroupSpec, name: str) -> dict[str, Any]:
    comp = topology.component(name)
    settings = spec.kube(name)
    mounts: list[dict[str, Any]] = [{"name": "tmp", "mountPath": "/tmp"}]
    if comp.data_path:
        mounts.append({"name": "data", "mountPath": comp.data_path})
    volumes: list[dict[str, Any]] = [
        {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}}
    ]
    init: list[dict[str, Any]] = []
    if not comp.is_mad:
        mounts.append({"name": ACL_VOLUME, "mountPath": CREDENTIALS_DIR, "readOnly": True})
        volumes.append({"name": ACL_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}})
        init.append(_acl_writer(owner, spec))
    tls_on = spec.tls.enabled and (not comp.is_mad or comp.uses_bus)
    if tls_on:
        # Redis gets its certificate and key; a MAD on the bus only the CA's certificate.
        source: dict[str, Any] = {"secretName": tls_secret(owner).name, "defaultMode": 0o440}
        if comp.is_mad:
            source["items"] = [{"key": TLS_CA_KEY, "path": TLS_CA_KEY}]
        mounts.append({"name": TLS_VOLUME, "mountPath": TLS_DIR, "readOnly": True})
        volumes.append({"name": TLS_VOLUME, "secret": source})
    container: dict[str, Any] = {
        "name": comp.dns_name,
        "image": spec.image_of(name),
        "imagePullPolicy": spec.image.pullPolicy,
        "command": comp.command(users_file=ACL_PATH, tls=_tls_files() if tls_on else None),
        "ports": [{"name": _port_name(comp), "containerPort": comp.port, "protocol": "TCP"}],
        "env": environment(owner, spec, name),
        **_probes(comp, tls_on),
        "resources": _resources(settings),
        "securityContext": copy.deepcopy(CONTAINER_SECURITY_CONTEXT),
        "volumeMounts": mounts,
    }
    pod: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": POD_UID,
            "runAsGroup": POD_UID,
            "fsGroup": POD_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    if init:
        pod["initContainers"] = init
    pod["containers"] = [container]
    pod["volumes"] = volumes
    return {"metadata": {"labels": naming.labels(owner.name, name)}, "spec": pod}


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


def storage_of(spec: KubeMadGroupSpec, name: str) -> KubeStorageSpec | None:
    return spec.storage_of(name)


def workload(owner: Owner, spec: KubeMadGroupSpec, name: str) -> Manifest:
    """A StatefulSet for components with data (Redis, Fiedler), a Deployment otherwise."""
    comp = topology.component(name)
    settings = spec.component(name)
    body: dict[str, Any] = {
        "replicas": settings.replicas,
        "selector": {"matchLabels": naming.selector_labels(owner.name, name)},
        "template": pod_template(owner, spec, name),
    }
    storage = storage_of(spec, name)
    if comp.stateful and storage is not None:
        body["serviceName"] = naming.child_name(owner.name, name)
        body["volumeClaimTemplates"] = [_claim(storage)]
        body["persistentVolumeClaimRetentionPolicy"] = {
            "whenDeleted": "Retain" if storage.retainOnDelete else "Delete",
            "whenScaled": "Retain",
        }
        kind, api_version = "StatefulSet", "apps/v1"
    else:
        body["strategy"] = {"type": "RollingUpdate"}
        kind, api_version = "Deployment", "apps/v1"
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": _metadata(owner, naming.child_name(owner.name, name), name),
        "spec": body,
    }


def claim_names(owner: Owner, spec: KubeMadGroupSpec, name: str) -> list[str]:
    """The PersistentVolumeClaims a component's StatefulSet creates (``data-<sts>-<i>``)."""
    if storage_of(spec, name) is None:
        return []
    sts = naming.child_name(owner.name, name)
    return [f"data-{sts}-{i}" for i in range(spec.component(name).replicas)]


def component_objects(owner: Owner, spec: KubeMadGroupSpec, name: str) -> list[Manifest]:
    """What the operator applies for one component, in order (the generated password Secret
    is created separately, once). The NetworkPolicy comes with Redis: it protects Redis
    before Redis exists."""
    out: list[Manifest] = []
    if not topology.component(name).is_mad:
        out.append(network_policy(owner))
    out.append(service(owner, spec, name))
    out.append(workload(owner, spec, name))
    return out
