"""The operator against the emulated API server, for what the real control plane
(tests/e2e/kube) cannot show quickly: a Deployment past its progress deadline, a spec that
slipped past the schema, a missing Secret reference. Ordered rollout, updates, pause,
repair, restarts, teardown and credentials are proven on the real control plane."""

from __future__ import annotations

from tests.support.kube import (
    DEPLOYMENTS,
    NS,
    SECRETS,
    children,
    condition,
    create_group,
    generated_secrets,
    has_condition,
    mark_ready,
    request,
    workload,
)
from tests.support.waiting import async_wait_for


async def test_a_deployment_past_its_deadline_is_reported_stalled(apiserver, operator):
    await create_group(apiserver, "demo")
    for comp in ("redis", "sequential_thinking"):
        await async_wait_for(lambda c=comp: workload(apiserver, "demo", c), what=f"{comp} applied")
        await mark_ready(apiserver, "demo", comp)
    await async_wait_for(lambda: workload(apiserver, "demo", "grace"), what="grace applied")
    await mark_ready(apiserver, "demo", "grace", ready=0)
    await apiserver.change(
        DEPLOYMENTS,
        NS,
        "demo-grace",
        {
            "status": {
                "conditions": [
                    {
                        "type": "Progressing",
                        "status": "False",
                        "reason": "ProgressDeadlineExceeded",
                        "message": "ReplicaSet has timed out progressing.",
                    }
                ]
            }
        },
        status=True,
    )
    await async_wait_for(
        has_condition(apiserver, "demo", "Stalled", "True", "GraceNotProgressing"),
        what="Stalled=True naming grace",
    )
    assert condition(apiserver, "demo", "Ready")["reason"] == "GraceNotReady"


async def test_an_invalid_spec_is_stalled_and_changes_nothing(apiserver, operator):
    await create_group(apiserver, "demo", {"fiedler": {"replicas": 3}})
    await async_wait_for(
        has_condition(apiserver, "demo", "Stalled", "True", "InvalidSpec"), what="Stalled=True"
    )
    message = condition(apiserver, "demo", "Stalled")["message"]
    assert "spec.fiedler.replicas" in message and "needs store.type postgresql" in message
    assert condition(apiserver, "demo", "Ready")["status"] == "False"
    assert all(not names for names in children(apiserver).values())


async def test_a_missing_secret_reference_is_stalled_until_it_exists(apiserver, operator):
    await create_group(
        apiserver, "demo", {"redis": {"passwordSecretRef": {"name": "bus", "key": "pw"}}}
    )
    await async_wait_for(
        has_condition(apiserver, "demo", "Stalled", "True", "InvalidSpec"), what="Stalled=True"
    )
    assert "Secret 'bus' not found" in condition(apiserver, "demo", "Stalled")["message"]
    assert all(not names for names in children(apiserver).values())

    await request(
        apiserver,
        "POST",
        f"/api/v1/namespaces/{NS}/secrets",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "bus", "namespace": NS},
            "data": {"pw": "c2VjcmV0"},
        },
    )
    redis = await async_wait_for(lambda: workload(apiserver, "demo", "redis"), what="redis applied")
    env = redis["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {
        "name": "REDIS_PASSWORD",
        "valueFrom": {"secretKeyRef": {"name": "bus", "key": "pw"}},
    } in env
    # no generated administrator's password
    assert children(apiserver)[SECRETS] == sorted(
        ["bus", *(n for n in generated_secrets("demo") if n != "demo-redis-password")]
    )
