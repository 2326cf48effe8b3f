"""Day two on the real server: an update rolls in order and halts at a component whose Pods
stay unready, pause holds, a hand edit is repaired, the operator killed mid-rollout is
resumed by the next one, deletion tears down and garbage-collects, Events are visible, and
the backup CronJob's Jobs run."""

from __future__ import annotations

import json
from typing import Any

from madgroup import topology

from tests.e2e.kube import harness
from tests.e2e.kube.cluster.control_plane import HOLD_UNREADY, STORAGE_CLASS, Cluster
from tests.support import evidence
from tests.support.waiting import wait_for

GROUP = "demo"
TIMEOUT = harness.ROLLOUT_TIMEOUT


def _rolled_out(cluster: Cluster, namespace: str, **spec: Any) -> None:
    harness.restricted_namespace(cluster, namespace)
    harness.apply_document(cluster, harness.sample(namespace, **spec))
    harness.wait_ready(cluster, namespace, GROUP)


def _patch_group(cluster: Cluster, namespace: str, patch: dict[str, Any]) -> None:
    cluster.kubectl(
        "patch", "madgroup", GROUP, "-n", namespace, "--type", "merge", "-p", json.dumps(patch)
    )


def _workload(cluster: Cluster, namespace: str, component: str) -> dict[str, Any]:
    kind = "statefulset" if topology.component(component).stateful else "deployment"
    name = f"{GROUP}-{topology.component(component).dns_name}"
    return dict(harness.get(cluster, kind, namespace, name))


def _image(cluster: Cluster, namespace: str, component: str) -> str:
    containers = _workload(cluster, namespace, component)["spec"]["template"]["spec"]["containers"]
    return str(containers[0]["image"])


def _children(cluster: Cluster, namespace: str) -> dict[str, str]:
    """Every object labelled as the group's, kind/name -> uid."""
    found = {}
    for kind in (
        "services",
        "deployments",
        "statefulsets",
        "networkpolicies",
        "pdb",
        "secrets",
        "cronjobs",
    ):
        for obj in harness.items(cluster, kind, namespace, f"{harness.INSTANCE}={GROUP}"):
            found[f"{obj['kind']}/{obj['metadata']['name']}"] = obj["metadata"]["uid"]
    return found


def _operator_requests(
    cluster: Cluster, verb: str, resource: str, name: str, namespace: str
) -> list[harness.Request]:
    return [
        r
        for r in harness.audit(cluster)
        if r.user == harness.operator_user()
        and r.verb == verb
        and r.resource == resource
        and r.name == name
        and r.namespace == namespace
        and not r.subresource
        and r.code < 300
    ]


def test_an_update_rolls_in_order_and_halts_at_a_component_that_stays_unready(
    cluster: Cluster, operator: harness.OperatorProcess
) -> None:
    namespace = "update"
    _rolled_out(cluster, namespace)
    held = f"ghcr.io/madgroup/rogers:{HOLD_UNREADY}"

    _patch_group(
        cluster, namespace, {"spec": {"image": {"tag": "0.1.1"}, "rogers": {"image": held}}}
    )

    def halted() -> dict[str, Any] | None:
        group = harness.get(cluster, "madgroup", namespace, GROUP)
        ready = harness.condition(group, "Ready")
        return group if ready.get("reason") == "RogersNotReady" else None

    wait_for(halted, timeout=TIMEOUT, interval=0.5, what="the update to halt at rogers")
    assert _image(cluster, namespace, "sequential_thinking").endswith(":0.1.1")
    assert _image(cluster, namespace, "grace").endswith(":0.1.1")
    assert _image(cluster, namespace, "rogers") == held
    # The operator keeps looking at fiedler (its repair passes) and leaves it alone.
    fiedler = f"{GROUP}-fiedler"
    looked = len(_operator_requests(cluster, "get", "statefulsets", fiedler, namespace))
    wait_for(
        lambda: (
            len(_operator_requests(cluster, "get", "statefulsets", fiedler, namespace))
            >= looked + 3
        ),
        timeout=60,
        interval=0.5,
        what="three more passes of the operator over fiedler",
    )
    assert _image(cluster, namespace, "fiedler").endswith(":0.1.0")

    _patch_group(cluster, namespace, {"spec": {"rogers": {"image": None}}})
    harness.wait_ready(cluster, namespace, GROUP)
    for component in ("rogers", "fiedler"):
        assert _image(cluster, namespace, component).endswith(":0.1.1")
    # fiedler's new template was applied only after rogers' new pods were Ready.
    rogers_ready = max(
        harness.parse_time(c["lastTransitionTime"])
        for p in harness.items(
            cluster, "pods", namespace, f"{harness.INSTANCE}={GROUP},{harness.COMPONENT}=rogers"
        )
        for c in p["status"]["conditions"]
        if c["type"] == "Ready" and c["status"] == "True"
    )
    fiedler_applied = max(
        r.at for r in _operator_requests(cluster, "patch", "statefulsets", fiedler, namespace)
    )
    evidence.record(
        "kube e2e update",
        f"halted at rogers; fiedler's template applied {fiedler_applied:%H:%M:%S.%f} after "
        f"rogers' pods Ready {rogers_ready:%H:%M:%S}",
    )
    assert fiedler_applied >= rogers_ready


def test_pause_holds_and_a_hand_edit_is_repaired(
    cluster: Cluster, operator: harness.OperatorProcess
) -> None:
    namespace = "pause"
    _rolled_out(cluster, namespace)

    cluster.kubectl("annotate", "madgroup", GROUP, "-n", namespace, "madgroup.io/paused=true")
    _patch_group(cluster, namespace, {"spec": {"image": {"tag": "0.2.0"}}})

    def seen_paused() -> bool:
        group = harness.get(cluster, "madgroup", namespace, GROUP)
        paused = harness.condition(group, "Paused")
        return bool(
            paused.get("status") == "True"
            and group["status"].get("observedGeneration") == group["metadata"]["generation"]
        )

    wait_for(seen_paused, timeout=60, interval=0.5, what="the operator to see the paused change")
    assert all(
        _image(cluster, namespace, c).endswith(":0.1.0")
        for c in topology.COMPONENT_NAMES
        if topology.component(c).is_mad
    )

    cluster.kubectl("annotate", "madgroup", GROUP, "-n", namespace, "madgroup.io/paused-")
    harness.wait_ready(cluster, namespace, GROUP)
    assert _image(cluster, namespace, "fiedler").endswith(":0.2.0")

    # A hand edit of a managed field, and a deleted child: both put back.
    cluster.kubectl(
        "set", "image", "deployment/demo-grace", "grace=example.org/evil:1", "-n", namespace
    )
    cluster.kubectl("delete", "service", "demo-rogers", "-n", namespace)
    wait_for(
        lambda: _image(cluster, namespace, "grace").endswith(":0.2.0"),
        timeout=60,
        interval=0.5,
        what="grace's image repaired",
    )
    wait_for(
        lambda: (
            cluster.kubectl(
                "get", "service", "demo-rogers", "-n", namespace, check=False
            ).returncode
            == 0
        ),
        timeout=60,
        interval=0.5,
        what="rogers' Service recreated",
    )
    harness.wait_ready(cluster, namespace, GROUP)


def test_a_new_operator_resumes_a_rollout_the_killed_one_left(
    cluster: Cluster, installed: Any, operator: harness.OperatorProcess, tmp_path: Any
) -> None:
    namespace = "resume"
    harness.restricted_namespace(cluster, namespace)
    harness.apply_document(cluster, harness.sample(namespace))

    def mid_rollout() -> bool:
        return (
            cluster.kubectl(
                "get", "deployment", "demo-grace", "-n", namespace, check=False
            ).returncode
            == 0
        )

    wait_for(mid_rollout, timeout=TIMEOUT, interval=0.1, what="grace's objects applied")
    operator.kill()
    before = _children(cluster, namespace)
    group = harness.get(cluster, "madgroup", namespace, GROUP)
    assert harness.condition(group, "Ready").get("status") != "True"

    with harness.operator_running(cluster, installed, tmp_path / "second.log"):
        harness.wait_ready(cluster, namespace, GROUP)
        after = _children(cluster, namespace)
    assert {k: after[k] for k in before} == before, "an object was made again"
    kinds = [key.split("/")[0] for key in after]
    workloads = kinds.count("Deployment") + kinds.count("StatefulSet")
    assert workloads == len(topology.COMPONENT_NAMES)
    assert kinds.count("Service") == len(topology.COMPONENT_NAMES)
    evidence.record(
        "kube e2e resume",
        f"operator killed with {len(before)} of the group's objects made; the next one "
        f"finished with {len(after)}, none made twice",
    )


def test_deleting_the_group_tears_down_in_reverse_order_and_keeps_its_data(
    cluster: Cluster, operator: harness.OperatorProcess
) -> None:
    namespace = "teardown"
    _rolled_out(cluster, namespace)
    claims = harness.items(cluster, "pvc", namespace)
    assert claims, "the stateful components made no claims"

    events = cluster.kubectl(
        "get", "events", "-n", namespace, "--field-selector", "involvedObject.kind=MadGroup"
    ).stdout
    assert "Applied" in events and "Ready" in events

    since = harness.now()
    cluster.kubectl("delete", "madgroup", GROUP, "-n", namespace, "--timeout=120s")

    def gone() -> bool:
        pods = harness.items(cluster, "pods", namespace)
        replicasets = harness.items(cluster, "replicasets", namespace)
        return not _children(cluster, namespace) and not pods and not replicasets

    wait_for(gone, timeout=TIMEOUT, interval=0.5, what="every child of the group gone")
    kept = {c["metadata"]["name"] for c in harness.items(cluster, "pvc", namespace)}
    assert kept == {c["metadata"]["name"] for c in claims}, "retainOnDelete claims must stay"
    deleted = [
        r.name
        for r in harness.audit(cluster)
        if r.user == harness.operator_user()
        and r.verb == "delete"
        and r.resource in ("deployments", "statefulsets")
        and r.namespace == namespace
        and r.at >= since
        and r.code < 300
    ]
    assert deleted == [f"{GROUP}-{c.dns_name}" for c in topology.stop_order()]


def test_deleting_a_group_that_keeps_no_data_removes_its_claims(
    cluster: Cluster, operator: harness.OperatorProcess
) -> None:
    namespace = "no-retain"
    no_retain = {"storage": {"size": "1Gi", "retainOnDelete": False}}
    _rolled_out(cluster, namespace, fiedler={"storage": no_retain["storage"]}, redis=no_retain)
    assert len(harness.items(cluster, "pvc", namespace)) == 2

    cluster.kubectl("delete", "madgroup", GROUP, "-n", namespace, "--timeout=120s")

    wait_for(
        lambda: not harness.items(cluster, "pvc", namespace),
        timeout=TIMEOUT,
        interval=0.5,
        what="the group's claims deleted",
    )


def test_owner_references_let_the_garbage_collector_remove_everything(
    cluster: Cluster, installed: Any, operator: harness.OperatorProcess
) -> None:
    """With the operator gone and its finalizer removed by hand, Kubernetes' own garbage
    collector removes every child: each names the group as its controller."""
    namespace = "collector"
    _rolled_out(cluster, namespace)
    operator.stop()

    cluster.kubectl(
        "patch",
        "madgroup",
        GROUP,
        "-n",
        namespace,
        "--type",
        "merge",
        "-p",
        json.dumps({"metadata": {"finalizers": None}}),
    )
    cluster.kubectl("delete", "madgroup", GROUP, "-n", namespace, "--wait=false")

    def collected() -> bool:
        return not _children(cluster, namespace) and not harness.items(cluster, "pods", namespace)

    wait_for(collected, timeout=TIMEOUT, interval=0.5, what="the garbage collector's sweep")


def test_the_backup_cronjob_runs_jobs(cluster: Cluster, operator: harness.OperatorProcess) -> None:
    namespace = "backup"
    harness.restricted_namespace(cluster, namespace)
    harness.apply_document(
        cluster,
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "madgroup-backups", "namespace": namespace},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": STORAGE_CLASS,
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    )
    _rolled_out(
        cluster,
        namespace,
        backup={"schedule": "* * * * *", "retention": 2, "claimName": "madgroup-backups"},
    )
    cronjob = harness.get(cluster, "cronjob", namespace, f"{GROUP}-backup")
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"

    def completed() -> list[dict[str, Any]]:
        jobs = harness.items(cluster, "jobs", namespace)
        return [
            j
            for j in jobs
            if any(
                c["type"] == "Complete" and c["status"] == "True"
                for c in (j.get("status") or {}).get("conditions") or []
            )
        ]

    jobs = wait_for(completed, timeout=150, interval=1, what="a backup Job to complete")
    evidence.record(
        "kube e2e backup",
        f"the CronJob's Job {jobs[0]['metadata']['name']} ran (kwok completed its pod)",
    )
