"""Two operator replicas under one leader Lease: one reconciles, the other stands by, takes
over when the leader is killed mid-rollout, and the API server's audit log shows they never
wrote at the same time; a replica that stops cleanly hands the Lease over at once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.e2e.kube import harness
from tests.e2e.kube.cluster.control_plane import Cluster
from tests.support import evidence
from tests.support.waiting import wait_for

LEASE = "madgroup-operator"
WRITES = ("create", "patch", "update", "delete")


def _lease(cluster: Cluster) -> dict[str, Any]:
    out = cluster.kubectl(
        "get", "lease", LEASE, "-n", harness.OPERATOR_NAMESPACE, "-o", "json", check=False
    )
    return dict(json.loads(out.stdout)) if out.returncode == 0 else {}


def _holder(cluster: Cluster) -> str | None:
    return (_lease(cluster).get("spec") or {}).get("holderIdentity")


def _replica(
    cluster: Cluster, kubeconfig: Path, tmp_path: Path, name: str
) -> harness.OperatorProcess:
    return harness.OperatorProcess(cluster, kubeconfig, tmp_path / f"{name}.log").start(
        "--leader-elect", "--lease-duration", "6", env={"POD_NAME": name}
    )


def _writes(cluster: Cluster, replica: str, namespace: str) -> list[harness.Request]:
    """What ``replica`` wrote in ``namespace`` through its client (its user agent names it)."""
    return [
        r
        for r in harness.audit(cluster)
        if r.agent.startswith(f"madgroup-operator/{replica}")
        and r.verb in WRITES
        and r.namespace == namespace
        and r.code < 400
    ]


def test_the_standby_finishes_the_rollout_of_a_killed_leader(
    cluster: Cluster, installed: Path, tmp_path: Path
) -> None:
    since = harness.now()
    replicas = {n: _replica(cluster, installed, tmp_path, n) for n in ("replica-a", "replica-b")}
    try:
        leader = wait_for(lambda: _holder(cluster), timeout=60, interval=0.5, what="a leader")
        (standby,) = set(replicas) - {leader}
        namespace = "leader"
        harness.restricted_namespace(cluster, namespace)
        harness.apply_document(cluster, harness.sample(namespace))
        wait_for(
            lambda: (
                cluster.kubectl(
                    "get", "deployment", "demo-grace", "-n", namespace, check=False
                ).returncode
                == 0
            ),
            timeout=120,
            interval=0.1,
            what="grace's objects applied",
        )
        replicas[leader].kill()
        killed_at = harness.now()

        group = harness.wait_ready(cluster, namespace, "demo")
        assert harness.condition(group, "Ready")["status"] == "True"
        assert _holder(cluster) == standby
        assert "standing by" in replicas[standby].output()
        first, second = _writes(cluster, leader, namespace), _writes(cluster, standby, namespace)
        assert first and second, "each replica should have written while it led"
        assert max(w.at for w in first) < min(w.at for w in second), (
            "the two replicas wrote at the same time"
        )
        assert max(w.at for w in first) <= killed_at
        evidence.record(
            "kube e2e leader",
            f"{leader} killed mid-rollout after {len(first)} writes; {standby} took the Lease "
            f"{(min(w.at for w in second) - killed_at).total_seconds():.1f} s later and finished "
            f"with {len(second)} writes; no write of one fell among the other's",
        )

        # A clean stop gives the Lease up: a new replica takes it without waiting it out.
        newcomer = _replica(cluster, installed, tmp_path, "replica-c")
        replicas["replica-c"] = newcomer
        acquired = _lease(cluster)["spec"]["acquireTime"]
        replicas[standby].stop()
        wait_for(
            lambda: _holder(cluster) == "replica-c",
            timeout=30,
            interval=0.2,
            what="the newcomer holding the Lease",
        )
        assert _lease(cluster)["spec"]["acquireTime"] > acquired
        assert "gave up the leader lease" in replicas[standby].output()
        assert "lost the leader lease" not in replicas[standby].output()
    finally:
        for process in replicas.values():
            process.stop()
    refused = harness.forbidden(cluster, harness.operator_user(), since)
    assert not refused, "the operator was refused: " + "; ".join(refused)
