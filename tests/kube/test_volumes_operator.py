"""What a grown or shrunk ``storage.size`` does when it cannot be carried out, against the
emulated API server (the growth itself runs on the real control plane, tests/e2e/kube):
a claim whose StorageClass does not allow expansion stops the group with one line, and a
smaller size that got past the CRD's rule is refused by the operator in the rule's words;
in both cases nothing is changed."""

from __future__ import annotations

from typing import Any

from madgroup.kube import crd

from tests.support.kube import (
    NS,
    STATEFULSETS,
    condition,
    create_group,
    has_condition,
    patch_group,
    request,
    roll_out,
    workload,
)
from tests.support.kube_emulator import Apiserver
from tests.support.waiting import async_wait_for

CLAIMS = "v1/persistentvolumeclaims"
EVENTS = "v1/events"
CLAIM = "data-demo-fiedler-0"


def _template_size(sts: dict[str, Any]) -> str:
    return str(sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"])


async def _bound_claim(apiserver: Apiserver, storage_class: str, size: str) -> None:
    """Play the StatefulSet controller and the provisioner: Fiedler's claim, bound."""
    await request(
        apiserver,
        "POST",
        f"/api/v1/namespaces/{NS}/persistentvolumeclaims",
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": CLAIM, "namespace": NS},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": storage_class,
                "resources": {"requests": {"storage": size}},
            },
            "status": {"phase": "Bound", "capacity": {"storage": size}},
        },
    )


async def test_a_claim_that_cannot_expand_stalls_the_group_and_changes_nothing(
    apiserver: Apiserver, operator: Any
) -> None:
    await request(
        apiserver,
        "POST",
        "/apis/storage.k8s.io/v1/storageclasses",
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {"name": "fixed"},
            "provisioner": "example.org/fixed",
        },
    )
    storage = {"size": "1Gi", "storageClassName": "fixed"}
    await create_group(apiserver, "demo", {"fiedler": {"storage": storage}})
    await roll_out(apiserver, "demo")
    await _bound_claim(apiserver, "fixed", "1Gi")
    before = workload(apiserver, "demo", "fiedler")
    assert before is not None

    await patch_group(apiserver, "demo", {"spec": {"fiedler": {"storage": {"size": "2Gi"}}}})
    await async_wait_for(
        has_condition(apiserver, "demo", "Stalled", "True", "VolumeNotExpandable"),
        what="Stalled=True, VolumeNotExpandable",
    )
    message = condition(apiserver, "demo", "Stalled")["message"]
    assert message == (
        "spec.fiedler.storage.size: cannot grow from 1Gi to 2Gi: PersistentVolumeClaim "
        f"{CLAIM} is of StorageClass fixed, which does not allow volume expansion "
        "(allowVolumeExpansion); nothing was changed"
    )
    assert condition(apiserver, "demo", "Ready")["reason"] == "VolumeNotExpandable"
    warned = await async_wait_for(
        lambda: [
            e
            for e in (apiserver.live(EVENTS, NS, n) for n in apiserver.names(EVENTS, NS))
            if e and e.get("type") == "Warning" and e.get("reason") == "VolumeNotExpandable"
        ],
        what="a Warning event",
    )
    assert warned[0]["message"] == message
    after = apiserver.live(STATEFULSETS, NS, "demo-fiedler")
    assert after == before  # neither deleted nor changed
    claim = apiserver.live(CLAIMS, NS, CLAIM)
    assert claim is not None
    assert claim["spec"]["resources"]["requests"]["storage"] == "1Gi"


async def test_a_smaller_size_past_the_schema_is_refused_in_the_rules_words(
    apiserver: Apiserver, operator: Any
) -> None:
    await create_group(apiserver, "demo", {"fiedler": {"storage": {"size": "2Gi"}}})
    await roll_out(apiserver, "demo")
    before = workload(apiserver, "demo", "fiedler")
    assert before is not None and _template_size(before) == "2Gi"

    # The emulator runs no CEL: this is an object the API server's rule did not see.
    await patch_group(apiserver, "demo", {"spec": {"fiedler": {"storage": {"size": "1Gi"}}}})
    await async_wait_for(
        has_condition(apiserver, "demo", "Stalled", "True", "InvalidSpec"),
        what="Stalled=True, InvalidSpec",
    )
    message = condition(apiserver, "demo", "Stalled")["message"]
    assert message == "spec.fiedler.storage.size: " + crd.shrink_message("2Gi", "1Gi")
    assert apiserver.live(STATEFULSETS, NS, "demo-fiedler") == before
