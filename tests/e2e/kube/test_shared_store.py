"""Fiedler on PostgreSQL on the real server: a MadGroup whose tasks live in a CloudNativePG
cluster's database (its ``<cluster>-app`` Secret, as CloudNativePG writes it) with three
Fiedler replicas rolls out a Deployment with its disruption budget and no volume, the URI
referenced from the Secret and copied nowhere; moved back to SQLite, the Deployment gives
way to the StatefulSet and its claim."""

from __future__ import annotations

import base64
import json
import secrets
from typing import Any

from tests.e2e.kube import harness
from tests.e2e.kube.cluster.control_plane import Cluster
from tests.support import evidence
from tests.support.waiting import wait_for

NAMESPACE = "shared-store"
CLUSTER = "tasks"
"""The CloudNativePG cluster's name: its application Secret is ``tasks-app``."""
REPLICAS = 3
FIEDLER = f"{harness.INSTANCE}=demo,{harness.COMPONENT}=fiedler"


def _app_secret(password: str) -> dict[str, Any]:
    """The Secret CloudNativePG writes for a cluster's application user (its keys as the
    operator documents them)."""
    host = f"{CLUSTER}-rw"
    uri = f"postgresql://app:{password}@{host}.{NAMESPACE}:5432/app"
    data = {
        "username": "app",
        "user": "app",
        "password": password,
        "host": host,
        "port": "5432",
        "dbname": "app",
        "uri": uri,
        "jdbc-uri": f"jdbc:postgresql://{host}.{NAMESPACE}:5432/app?password={password}&user=app",
        "pgpass": f"{host}:5432:app:app:{password}\n",
    }
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/basic-auth",
        "metadata": {"name": f"{CLUSTER}-app", "namespace": NAMESPACE},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def _fiedler_kinds(cluster: Cluster) -> set[str]:
    found = set()
    for kind in ("deployments", "statefulsets", "pdb"):
        for obj in harness.items(cluster, kind, NAMESPACE, FIEDLER):
            found.add(obj["kind"])
    return found


def test_fiedler_on_postgresql_runs_replicas_as_a_deployment_with_its_budget(
    cluster: Cluster, operator: harness.OperatorProcess
) -> None:
    harness.restricted_namespace(cluster, NAMESPACE)
    password = secrets.token_urlsafe(24)
    harness.apply_document(cluster, _app_secret(password))
    document = harness.sample(NAMESPACE)
    document["spec"]["fiedler"] = {
        "replicas": REPLICAS,
        "store": {"type": "postgresql", "uriSecretRef": {"name": f"{CLUSTER}-app"}},
    }
    harness.apply_document(cluster, document)
    group = harness.wait_ready(cluster, NAMESPACE, "demo")

    fiedler = group["status"]["components"]["fiedler"]
    assert fiedler["desiredReplicas"] == fiedler["readyReplicas"] == REPLICAS
    (deployment,) = harness.items(cluster, "deployments", NAMESPACE, FIEDLER)
    assert deployment["spec"]["replicas"] == REPLICAS
    assert deployment["status"]["readyReplicas"] == REPLICAS
    assert harness.items(cluster, "statefulsets", NAMESPACE, FIEDLER) == []
    (budget,) = harness.items(cluster, "pdb", NAMESPACE, FIEDLER)
    assert budget["spec"]["maxUnavailable"] == 1
    assert budget["spec"]["selector"] == deployment["spec"]["selector"]
    claims = [c["metadata"]["name"] for c in harness.items(cluster, "pvc", NAMESPACE)]
    assert claims and not [c for c in claims if "fiedler" in c], claims  # Redis's only
    pod = deployment["spec"]["template"]["spec"]
    assert pod["topologySpreadConstraints"][0]["topologyKey"] == "kubernetes.io/hostname"
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["FIEDLER_STORE"]["value"] == "postgresql"
    assert env["FIEDLER_STORE_URI"]["valueFrom"]["secretKeyRef"] == {
        "name": f"{CLUSTER}-app",
        "key": "uri",
    }
    pods = harness.items(cluster, "pods", NAMESPACE, FIEDLER)
    assert len(pods) == REPLICAS
    evidence.record(
        "kube e2e shared store",
        f"fiedler on PostgreSQL: Deployment {REPLICAS}/{REPLICAS} ready, "
        f"PodDisruptionBudget maxUnavailable 1, claims {claims}",
    )

    # The password (and the URI holding it) is nowhere the group writes: not in an object,
    # an event, the MadGroup's status, nor the operator's log.
    everything = cluster.kubectl(
        "get",
        "all,events,networkpolicies,pdb,configmaps,pvc,madgroups",
        "-n",
        NAMESPACE,
        "-o",
        "json",
    ).stdout
    encoded = base64.b64encode(password.encode()).decode()
    places = {"the namespace": everything, "the operator's log": operator.output()}
    for where, text in places.items():
        assert password not in text and encoded not in text, f"the password is in {where}"

    # Back on SQLite with one replica: the StatefulSet and its claim, the Deployment and
    # its budget deleted by the operator.
    sqlite = {"replicas": 1, "store": {"type": "sqlite", "uriSecretRef": None}}
    patch = {"spec": {"fiedler": sqlite}}
    cluster.kubectl(
        "patch", "madgroup", "demo", "-n", NAMESPACE, "--type", "merge", "-p", json.dumps(patch)
    )
    harness.wait_ready(cluster, NAMESPACE, "demo")
    wait_for(
        lambda: _fiedler_kinds(cluster) == {"StatefulSet"},
        timeout=harness.ROLLOUT_TIMEOUT,
        interval=0.5,
        what="Fiedler's Deployment and budget gone, its StatefulSet there",
    )
    (sts,) = harness.items(cluster, "statefulsets", NAMESPACE, FIEDLER)
    sts_env = {e["name"] for e in sts["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "FIEDLER_STORE_URI" not in sts_env and "FIEDLER_DB_PATH" in sts_env
    claims = [c["metadata"]["name"] for c in harness.items(cluster, "pvc", NAMESPACE)]
    assert "data-demo-fiedler-0" in claims
