"""The sample MadGroup, applied with kubectl in a namespace that enforces PodSecurity
``restricted``, rolls out in order through the real controllers and reaches Ready; the order
is read back from the API server's own records."""

from __future__ import annotations

import base64

import pytest
from madgroup import topology

from tests.e2e.kube import harness
from tests.e2e.kube.cluster.control_plane import Cluster
from tests.support import evidence


@pytest.mark.parametrize("order", ["guide", "graph"])
def test_the_sample_rolls_out_in_order_under_restricted_pod_security(
    cluster: Cluster, operator: harness.OperatorProcess, order: str
) -> None:
    namespace = f"rollout-{order}"
    harness.restricted_namespace(cluster, namespace)
    applied = harness.apply_document(cluster, harness.sample(namespace, order=order))
    assert "madgroup.madgroup.io/demo created" in applied.stdout

    group = harness.wait_ready(cluster, namespace, "demo")

    assert harness.condition(group, "Ready")["reason"] == "AllComponentsReady"
    status = group["status"]["components"]
    for component in topology.COMPONENT_NAMES:
        assert status[component]["readyReplicas"] == status[component]["desiredReplicas"]
    pods = harness.items(cluster, "pods", namespace, f"{harness.INSTANCE}=demo")
    assert len(pods) == sum(s["desiredReplicas"] for s in status.values())
    assert all(p["status"].get("phase") == "Running" for p in pods)

    hops = harness.rollout_hops(cluster, namespace, "demo", order)
    assert hops, "no gate in the order"
    for hop in hops:
        evidence.record(
            f"kube e2e order {order}",
            f"{hop.after} first object created {hop.created:%H:%M:%S} >= {hop.before} "
            f"pods Ready {hop.ready:%H:%M:%S} (gap {hop.gap:.0f} s)",
        )
    early = [h for h in hops if h.created < h.ready]
    assert not early, "created before what it waits for was Ready: " + "; ".join(
        f"{h.after} at {h.created} before {h.before} Ready at {h.ready}" for h in early
    )


def test_no_credential_reaches_an_object_an_event_or_a_log(
    cluster: Cluster, operator: harness.OperatorProcess
) -> None:
    """Every Secret the operator generated is read back (as the administrator) and looked
    for, raw and base64, in every other object of the namespace, its events, the operator's
    log and the API server's audit log."""
    namespace = "credentials"
    harness.restricted_namespace(cluster, namespace)
    harness.apply_document(cluster, harness.sample(namespace))
    harness.wait_ready(cluster, namespace, "demo")

    secrets = harness.items(cluster, "secrets", namespace, f"{harness.INSTANCE}=demo")
    values: list[str] = []
    for secret in secrets:
        for encoded in (secret.get("data") or {}).values():
            values += [encoded, base64.b64decode(encoded).decode(errors="replace")]
    assert len(secrets) >= 5 and values, "the operator generated no credentials"
    everything = cluster.kubectl(
        "get",
        "all,events,networkpolicies,pdb,configmaps,pvc,madgroups",
        "-n",
        namespace,
        "-o",
        "json",
    ).stdout
    places = {
        "the namespace's objects and events": everything,
        "the operator's log": operator.output(),
        "the audit log": cluster.audit_log.read_text(),
    }
    for where, text in places.items():
        leaked = [v for v in values if len(v) >= 16 and v in text]
        assert not leaked, f"a generated credential appears in {where}"
