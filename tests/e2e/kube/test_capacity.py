"""Placement, disruption budgets, autoscaling and volume growth on the real server: the
declared scheduling fields reach the Pods and the scheduler honours them (kwok's nodes are
in zones a, b and c), the PodDisruptionBudgets are as declared and the disruption controller
counts their pods, an autoscaled component's count belongs to its HorizontalPodAutoscaler
(what the HPA writes through the scale subresource stays across the operator's passes),
and a grown ``storage.size`` raises the claims and recreates the StatefulSet around the
same claims, while a smaller one is refused by the API server."""

from __future__ import annotations

import json
from typing import Any

from madgroup.kube import autoscaling, crd, naming

from tests.e2e.kube import harness
from tests.e2e.kube.cluster.control_plane import Cluster
from tests.support import evidence
from tests.support.waiting import wait_for

GROUP = "demo"
TIMEOUT = harness.ROLLOUT_TIMEOUT
ZONE = "topology.kubernetes.io/zone"
PRIORITY_CLASS = "madgroup-e2e"


def _patch_group(cluster: Cluster, namespace: str, patch: dict[str, Any]) -> None:
    cluster.kubectl(
        "patch", "madgroup", GROUP, "-n", namespace, "--type", "merge", "-p", json.dumps(patch)
    )


def _pods(cluster: Cluster, namespace: str, component: str) -> list[dict[str, Any]]:
    selector = f"{harness.INSTANCE}={GROUP},{harness.COMPONENT}={component}"
    return harness.items(cluster, "pods", namespace, selector)


def _zones(cluster: Cluster) -> dict[str, str]:
    """Node name -> its zone label."""
    nodes = json.loads(cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    return {n["metadata"]["name"]: n["metadata"]["labels"][ZONE] for n in nodes}


def _exists(cluster: Cluster, kind: str, namespace: str, name: str) -> bool:
    found = cluster.kubectl("get", kind, name, "-n", namespace, check=False)
    return found.returncode == 0


def _ready_again(cluster: Cluster, namespace: str, after: int) -> dict[str, Any]:
    """The group Ready for a generation newer than ``after``."""

    def newer() -> dict[str, Any] | None:
        group = harness.get(cluster, "madgroup", namespace, GROUP)
        return group if group["metadata"]["generation"] > after else None

    wait_for(newer, timeout=30, interval=0.5, what="the spec change stored")
    return harness.wait_ready(cluster, namespace, GROUP)


def test_placement_reaches_the_pods_and_budgets_are_as_declared(
    cluster: Cluster, operator: harness.OperatorProcess
) -> None:
    namespace = "placement"
    harness.restricted_namespace(cluster, namespace)
    harness.apply_document(
        cluster,
        {
            "apiVersion": "scheduling.k8s.io/v1",
            "kind": "PriorityClass",
            "metadata": {"name": PRIORITY_CLASS},
            "value": 1000,
            "description": "the e2e suite's placement test",
        },
    )
    toleration = {"key": "dedicated", "operator": "Equal", "value": "mad", "effect": "NoSchedule"}
    spread = {"maxSkew": 1, "topologyKey": ZONE, "whenUnsatisfiable": "DoNotSchedule"}
    zone_c = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": ZONE, "operator": "In", "values": ["zone-c"]}]}
                ]
            }
        }
    }
    harness.apply_document(
        cluster,
        harness.sample(
            namespace,
            redis={"disruptionBudget": {"minAvailable": 1}},
            sequentialThinking={
                "replicas": 3,
                "topologySpreadConstraints": [spread],
                "disruptionBudget": {"enabled": False},
            },
            grace={"replicas": 2},
            rogers={
                "nodeSelector": {ZONE: "zone-b"},
                "tolerations": [toleration],
                "priorityClassName": PRIORITY_CLASS,
            },
            fiedler={"storage": {"size": "1Gi"}, "affinity": zone_c},
        ),
    )
    harness.wait_ready(cluster, namespace, GROUP)
    zones = _zones(cluster)

    # Declared spread, DoNotSchedule over zones: one of the three pods in each zone.
    thinking = _pods(cluster, namespace, "sequential-thinking")
    assert sorted(zones[p["spec"]["nodeName"]] for p in thinking) == ["zone-a", "zone-b", "zone-c"]
    constraint = thinking[0]["spec"]["topologySpreadConstraints"][0]
    assert constraint["topologyKey"] == ZONE
    assert constraint["labelSelector"]["matchLabels"][harness.COMPONENT] == "sequential-thinking"
    # The default for a replicated component: prefer one pod per node.
    for pod in _pods(cluster, namespace, "grace"):
        assert pod["spec"]["topologySpreadConstraints"] == [
            {
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {
                    "matchLabels": naming.selector_labels(GROUP, "grace"),
                },
            }
        ]
    # A node selector, a toleration and a priority class; the scheduler put it in zone b.
    (rogers,) = _pods(cluster, namespace, "rogers")
    assert rogers["spec"]["nodeSelector"] == {ZONE: "zone-b"}
    assert toleration in rogers["spec"]["tolerations"]
    assert rogers["spec"]["priorityClassName"] == PRIORITY_CLASS
    assert rogers["spec"]["priority"] == 1000  # admission resolved the class
    assert zones[rogers["spec"]["nodeName"]] == "zone-b"
    # Required node affinity: zone c.
    (fiedler,) = _pods(cluster, namespace, "fiedler")
    assert fiedler["spec"]["affinity"] == zone_c
    assert zones[fiedler["spec"]["nodeName"]] == "zone-c"
    # A single-instance component spreads nothing.
    (redis,) = _pods(cluster, namespace, "redis")
    assert "topologySpreadConstraints" not in redis["spec"]

    # Budgets: grace's default, redis's as declared, sequential thinking's turned off, none
    # for Rogers and Fiedler (one pod each, nothing declared).
    budgets = {
        b["metadata"]["name"]: b
        for b in harness.items(cluster, "pdb", namespace, f"{harness.INSTANCE}={GROUP}")
    }
    assert sorted(budgets) == ["demo-grace", "demo-redis"]
    assert budgets["demo-grace"]["spec"]["maxUnavailable"] == 1
    assert budgets["demo-redis"]["spec"]["minAvailable"] == 1

    def counted() -> dict[str, Any] | None:
        status = harness.get(cluster, "pdb", namespace, "demo-grace").get("status") or {}
        return status if status.get("expectedPods") == 2 else None

    status = wait_for(counted, timeout=60, interval=0.5, what="the disruption controller")
    assert status["disruptionsAllowed"] == 1
    assert status["currentHealthy"] == 2

    # Declared off, grace's budget goes; declared back to the default, thinking's comes.
    generation = harness.get(cluster, "madgroup", namespace, GROUP)["metadata"]["generation"]
    _patch_group(
        cluster,
        namespace,
        {
            "spec": {
                "grace": {"disruptionBudget": {"enabled": False}},
                "sequentialThinking": {"disruptionBudget": None},
            }
        },
    )
    _ready_again(cluster, namespace, generation)
    wait_for(
        lambda: not _exists(cluster, "pdb", namespace, "demo-grace"),
        timeout=60,
        interval=0.5,
        what="grace's budget deleted",
    )
    thinking_budget = harness.get(cluster, "pdb", namespace, "demo-sequential-thinking")
    assert thinking_budget["spec"]["maxUnavailable"] == 1
    evidence.record(
        "kube e2e placement",
        "thinking's 3 pods one per zone (DoNotSchedule), rogers in zone-b, fiedler in "
        "zone-c; budgets as declared, and one declared off deleted",
    )


def test_an_autoscaled_count_is_the_autoscalers(
    cluster: Cluster, operator: harness.OperatorProcess
) -> None:
    namespace = "autoscale"
    harness.restricted_namespace(cluster, namespace)
    harness.apply_document(
        cluster,
        harness.sample(
            namespace,
            grace={
                "replicas": 2,
                "resources": {"requests": {"cpu": "100m"}},
                "autoscaling": {"minReplicas": 1, "maxReplicas": 5},
            },
        ),
    )
    group = harness.wait_ready(cluster, namespace, GROUP)

    hpa = harness.get(cluster, "hpa", namespace, "demo-grace")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "demo-grace",
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 5)
    assert hpa["metadata"]["ownerReferences"][0]["uid"] == group["metadata"]["uid"]
    deployment = harness.get(cluster, "deployment", namespace, "demo-grace")
    assert deployment["spec"]["replicas"] == 2  # where it starts
    assert not autoscaling.operator_owns_replicas(deployment), "the count was not handed over"

    # What an HPA does: write the count through the scale subresource.
    cluster.kubectl(
        "patch",
        "deployment",
        "demo-grace",
        "-n",
        namespace,
        "--subresource=scale",
        "--type=merge",
        "-p",
        json.dumps({"spec": {"replicas": 4}}),
    )
    # A spec change elsewhere makes the operator apply (fiedler's template), and its repair
    # passes look at grace again and again.
    generation = group["metadata"]["generation"]
    _patch_group(
        cluster, namespace, {"spec": {"fiedler": {"resources": {"limits": {"memory": "512Mi"}}}}}
    )
    group = _ready_again(cluster, namespace, generation)
    looked = _operator_reads(cluster, namespace, "demo-grace")
    wait_for(
        lambda: _operator_reads(cluster, namespace, "demo-grace") >= looked + 3,
        timeout=60,
        interval=0.5,
        what="three more passes of the operator over grace",
    )
    deployment = harness.get(cluster, "deployment", namespace, "demo-grace")
    assert deployment["spec"]["replicas"] == 4
    group = harness.wait_ready(cluster, namespace, GROUP)
    # Readiness counts the Deployment's own count.
    assert group["status"]["components"]["grace"]["desiredReplicas"] == 4
    assert group["status"]["components"]["grace"]["readyReplicas"] == 4

    # Autoscaling taken away: the HPA goes and the declared count comes back.
    generation = group["metadata"]["generation"]
    _patch_group(cluster, namespace, {"spec": {"grace": {"autoscaling": None}}})
    _ready_again(cluster, namespace, generation)
    wait_for(
        lambda: not _exists(cluster, "hpa", namespace, "demo-grace"),
        timeout=60,
        interval=0.5,
        what="grace's autoscaler deleted",
    )
    assert harness.get(cluster, "deployment", namespace, "demo-grace")["spec"]["replicas"] == 2
    evidence.record(
        "kube e2e autoscaling",
        "an HPA made for grace; 4 replicas written through the scale subresource stayed "
        f"across {looked + 3}+ operator reads; autoscaling removed: HPA deleted, 2 again",
    )


def _operator_reads(cluster: Cluster, namespace: str, name: str) -> int:
    return sum(
        1
        for r in harness.audit(cluster)
        if r.user == harness.operator_user()
        and r.verb == "get"
        and r.resource == "deployments"
        and r.name == name
        and r.namespace == namespace
    )


def _claims(cluster: Cluster, namespace: str) -> dict[str, dict[str, Any]]:
    return {c["metadata"]["name"]: c for c in harness.items(cluster, "pvc", namespace)}


def test_a_grown_size_expands_the_claims_and_a_smaller_one_is_refused(
    cluster: Cluster, operator: harness.OperatorProcess
) -> None:
    namespace = "volumes"
    harness.restricted_namespace(cluster, namespace)
    document = harness.sample(namespace)
    harness.apply_document(cluster, document)
    group = harness.wait_ready(cluster, namespace, GROUP)
    claim = "data-demo-fiedler-0"
    before = _claims(cluster, namespace)
    assert before[claim]["spec"]["resources"]["requests"]["storage"] == "1Gi"
    sts_before = harness.get(cluster, "statefulset", namespace, "demo-fiedler")
    (pod_before,) = _pods(cluster, namespace, "fiedler")

    document["spec"]["fiedler"] = {"storage": {"size": "2Gi"}}
    harness.apply_document(cluster, document)
    _ready_again(cluster, namespace, group["metadata"]["generation"])

    def recreated() -> dict[str, Any] | None:
        sts = harness.get(cluster, "statefulset", namespace, "demo-fiedler")
        new = sts["metadata"]["uid"] != sts_before["metadata"]["uid"]
        return sts if new else None

    sts = wait_for(recreated, timeout=TIMEOUT, interval=0.5, what="fiedler's StatefulSet recreated")
    harness.wait_ready(cluster, namespace, GROUP)
    template = sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]
    assert template["storage"] == "2Gi"
    after = _claims(cluster, namespace)
    assert after[claim]["spec"]["resources"]["requests"]["storage"] == "2Gi"
    # The same claims (Redis's untouched), mounted by the new StatefulSet's pod, which is
    # told its volume's new size (so it restarts: the template changed).
    assert {n: c["metadata"]["uid"] for n, c in after.items()} == {
        n: c["metadata"]["uid"] for n, c in before.items()
    }
    assert after["data-demo-redis-0"]["spec"]["resources"]["requests"]["storage"] == "1Gi"
    (pod_after,) = _pods(cluster, namespace, "fiedler")
    assert pod_after["metadata"]["ownerReferences"][0]["uid"] == sts["metadata"]["uid"]
    claims = [
        v["persistentVolumeClaim"]["claimName"]
        for v in pod_after["spec"]["volumes"]
        if "persistentVolumeClaim" in v
    ]
    assert claims == [claim]
    env = {e["name"]: e.get("value") for e in pod_after["spec"]["containers"][0]["env"]}
    assert env["FIEDLER_VOLUME_BYTES"] == str(2 << 30)
    assert pod_before["metadata"]["ownerReferences"][0]["uid"] == sts_before["metadata"]["uid"]
    deletions = [
        r
        for r in harness.audit(cluster)
        if r.user == harness.operator_user()
        and r.verb == "delete"
        and r.resource == "statefulsets"
        and r.namespace == namespace
    ]
    assert [r.name for r in deletions] == ["demo-fiedler"]

    # Smaller: the API server refuses it, in one line, in the operator's own words.
    document["spec"]["fiedler"] = {"storage": {"size": "1Gi"}}
    refused = harness.apply_document(cluster, document, check=False)
    assert refused.returncode != 0
    line = refused.stderr.strip()
    assert len(line.splitlines()) == 1, line
    assert "spec.fiedler.storage.size" in line
    assert crd.shrink_message("2Gi", "1Gi") in line
    stored = harness.get(cluster, "madgroup", namespace, GROUP)
    assert stored["spec"]["fiedler"]["storage"]["size"] == "2Gi"
    evidence.record(
        "kube e2e volumes",
        f"1Gi -> 2Gi: {claim} raised, StatefulSet recreated (orphan delete) around the same "
        f"claims by uid; 2Gi -> 1Gi refused: {line}",
    )
