"""``spec.backup``: a CronJob that writes ``madgroup backup``'s archive to a PVC.

Its pod runs beside the component that keeps a data file (Fiedler on SQLite: its volume is
ReadWriteOnce, so the pod is scheduled onto the same node, where it may mount it too) and
carries the group's labels (the group's NetworkPolicy admits only its pods). An init
container in Redis's own image takes Redis's snapshot over the network (``redis-cli
--rdb``, the administrator's password from its Secret in the environment); the main
container, in the data keeper's image, copies its SQLite database with the online backup
API and writes the archive, keeping the newest ``retention`` (``python -m madgroup.backup
archive``). A component whose declaration keeps its data in a database outside the group
(Fiedler on PostgreSQL) is not copied: the archive's manifest says so, and that database's
own backups (CloudNativePG's, ``pg_dump``) are the way. The restore is documented
(docs/operator.md): a Job running ``python -m madgroup.backup restore`` with the group
paused.
"""

from __future__ import annotations

import copy
from typing import Any

from madgroup import topology
from madgroup.kube import certificates, naming
from madgroup.kube.crd import KubeMadGroupSpec
from madgroup.kube.credentials import password_ref
from madgroup.kube.meta import CONTAINER_SECURITY_CONTEXT, Manifest, Owner, pod_security_context
from madgroup.kube.meta import metadata as _metadata
from madgroup.resolved import ResolvedComponent, elsewhere_line

WORK = "/work"
ARCHIVES = "/backups"
DATA = "/data"


def name_of(owner: Owner) -> str:
    return f"{owner.name}-backup"


def keeper() -> topology.Component | None:
    """The component whose data file a backup copies (the one that keeps one)."""
    return next((comp for comp, _data in topology.data_keepers()), None)


def cron_job(
    owner: Owner, spec: KubeMadGroupSpec, keeper: ResolvedComponent, claim: str | None
) -> Manifest | None:
    """The CronJob, or None without ``spec.backup``. ``keeper``: the component that keeps
    a data file; ``claim``: its PVC (None when its data is in a database elsewhere)."""
    settings = spec.backup
    comp = keeper.component
    if settings is None or comp.data_file is None:
        return None
    bus = topology.bus()
    data_file = comp.data_file.filename
    tls_on = spec.tls.enabled
    snapshot = [
        "redis-cli",
        "-h",
        naming.child_name(owner.name, bus.name),
        "-p",
        str(bus.port),
        *(["--tls", "--cacert", certificates.files().ca] if tls_on else []),
        "--rdb",
        f"{WORK}/dump.rdb",
    ]
    redis_mounts: list[dict[str, Any]] = [{"name": "work", "mountPath": WORK}]
    volumes: list[dict[str, Any]] = [
        {"name": "work", "emptyDir": {}},
        {"name": "archives", "persistentVolumeClaim": {"claimName": settings.claimName}},
    ]
    archive_mounts: list[dict[str, Any]] = [
        {"name": "work", "mountPath": WORK},
        {"name": "archives", "mountPath": ARCHIVES},
    ]
    if keeper.data_elsewhere is not None:
        line = elsewhere_line(comp.name, keeper.data_elsewhere)
        keeps = ["--not-included", f"{comp.name}={line}"]
    else:
        assert claim is not None, "a component keeping its data file has a claim"
        volumes.append({"name": "data", "persistentVolumeClaim": {"claimName": claim}})
        archive_mounts.append({"name": "data", "mountPath": DATA})
        keeps = ["--sqlite", f"{comp.name}/{data_file}={DATA}/{data_file}"]
    if tls_on:
        volumes.append(certificates.volume(owner, spec, comp))
        redis_mounts.append(
            {"name": certificates.VOLUME, "mountPath": certificates.TLS_DIR, "readOnly": True}
        )
    ref = password_ref(owner, spec)
    archive = [
        "python",
        "-m",
        "madgroup.backup",
        "archive",
        *keeps,
        "--file",
        f"{bus.name}/dump.rdb={WORK}/dump.rdb",
        "--output-dir",
        ARCHIVES,
        "--keep",
        str(settings.retention),
    ]
    selector = naming.selector_labels(owner.name, comp.name)
    beside = {  # the keeper's ReadWriteOnce volume is mounted on its node only
        "podAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {
                    "labelSelector": {"matchLabels": selector},
                    "topologyKey": "kubernetes.io/hostname",
                }
            ]
        }
    }
    pod = {
        "metadata": {"labels": {**naming.labels(owner.name), naming.LABEL_COMPONENT: "backup"}},
        "spec": {
            "restartPolicy": "OnFailure",
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "securityContext": pod_security_context(),
            **({"affinity": beside} if "--sqlite" in keeps else {}),
            "initContainers": [
                {
                    "name": "redis-snapshot",
                    "image": spec.image_of(bus.name),
                    "imagePullPolicy": spec.image.pullPolicy,
                    "command": snapshot,
                    "env": [
                        {
                            "name": "REDISCLI_AUTH",
                            "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}},
                        }
                    ],
                    "securityContext": copy.deepcopy(CONTAINER_SECURITY_CONTEXT),
                    "volumeMounts": redis_mounts,
                }
            ],
            "containers": [
                {
                    "name": "archive",
                    "image": spec.image_of(comp.name),
                    "imagePullPolicy": spec.image.pullPolicy,
                    "command": archive,
                    "securityContext": copy.deepcopy(CONTAINER_SECURITY_CONTEXT),
                    "volumeMounts": archive_mounts,
                }
            ],
            "volumes": volumes,
        },
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": _metadata(owner, name_of(owner), None),
        "spec": {
            "schedule": settings.schedule,
            "concurrencyPolicy": "Forbid",
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {"spec": {"backoffLimit": 2, "template": pod}},
        },
    }
