"""The operator end to end against the emulated API server: ordered, readiness-gated
rollout, drift repair, updates, failures, pause, invalid specs, restarts."""

from __future__ import annotations

import base64
import json

from madgroup import topology
from madgroup.kube import naming
from madgroup.rollout import camel

from tests.support.kube import (
    DEPLOYMENTS,
    GROUPS,
    NS,
    POLICIES,
    SECRETS,
    SERVICES,
    STATEFULSETS,
    children,
    condition,
    create_group,
    generated_secrets,
    group,
    group_path,
    has_condition,
    mark_ready,
    patch_group,
    request,
    roll_out,
    workload,
)
from tests.support.waiting import async_wait_for


async def test_components_come_up_one_at_a_time_in_dependency_order(apiserver, operator):
    created = await create_group(apiserver, "demo")
    await async_wait_for(lambda: workload(apiserver, "demo", "redis"), what="redis applied")
    await async_wait_for(has_condition(apiserver, "demo", "Ready", "False"), what="Ready=False")

    # Only Redis's objects exist until Redis is ready.
    assert children(apiserver) == {
        SECRETS: generated_secrets("demo"),
        SERVICES: ["demo-redis"],
        DEPLOYMENTS: [],
        STATEFULSETS: ["demo-redis"],
        POLICIES: ["demo-internal"],
    }
    assert condition(apiserver, "demo", "Ready")["reason"] == "RedisNotReady"

    applied = ["redis"]
    for comp, nxt in zip(topology.COMPONENT_NAMES, topology.COMPONENT_NAMES[1:], strict=False):
        await mark_ready(apiserver, "demo", comp)
        await async_wait_for(lambda n=nxt: workload(apiserver, "demo", n), what=f"{nxt} applied")
        applied.append(nxt)
        for later in topology.COMPONENT_NAMES[len(applied) :]:
            assert workload(apiserver, "demo", later) is None, f"{later} applied too early"
            assert apiserver.live(SERVICES, NS, naming.child_name("demo", later)) is None
        await async_wait_for(
            has_condition(
                apiserver,
                "demo",
                f"{topology.component(comp).name.title().replace('_', '')}Ready",
                "True",
            ),
            what=f"{comp} reported ready",
        )

    await mark_ready(apiserver, "demo", "fiedler")
    await async_wait_for(has_condition(apiserver, "demo", "Ready", "True"), what="Ready=True")
    live = group(apiserver, "demo")
    assert live["status"]["observedGeneration"] == live["metadata"]["generation"]
    assert live["metadata"]["generation"] == created["metadata"]["generation"]
    for comp in topology.COMPONENT_NAMES:
        block = live["status"]["components"][comp]
        assert block["readyReplicas"] == block["desiredReplicas"] == 1
    assert condition(apiserver, "demo", "Reconciling")["status"] == "False"
    assert condition(apiserver, "demo", "Stalled")["status"] == "False"
    assert children(apiserver)[DEPLOYMENTS] == [
        "demo-grace",
        "demo-rogers",
        "demo-sequential-thinking",
    ]
    assert children(apiserver)[STATEFULSETS] == ["demo-fiedler", "demo-redis"]


async def test_a_deleted_child_is_restored(apiserver, operator):
    await create_group(apiserver, "demo")
    await roll_out(apiserver, "demo")
    grace = naming.child_name("demo", "grace")
    uid = apiserver.live(DEPLOYMENTS, NS, grace)["metadata"]["uid"]

    await apiserver.remove(DEPLOYMENTS, NS, grace)
    restored = await async_wait_for(
        lambda: apiserver.live(DEPLOYMENTS, NS, grace), what="grace restored"
    )
    assert restored["metadata"]["uid"] != uid
    await async_wait_for(
        has_condition(apiserver, "demo", "Ready", "False", "GraceNotReady"),
        what="Ready=False while the restored grace starts",
    )
    await mark_ready(apiserver, "demo", "grace")
    await async_wait_for(has_condition(apiserver, "demo", "Ready", "True"), what="Ready=True again")


async def test_an_edited_child_is_repaired_by_the_timer(apiserver, operator):
    await create_group(apiserver, "demo")
    await roll_out(apiserver, "demo")
    svc = naming.child_name("demo", "rogers")
    await apiserver.change(SERVICES, NS, svc, {"spec": {"ports": [{"port": 9999}]}}, status=False)
    await async_wait_for(
        lambda: apiserver.live(SERVICES, NS, svc)["spec"]["ports"][0]["port"] == 8002,
        what="the Service's port restored",
    )


async def test_an_image_change_rolls_through_the_components_in_order(apiserver, operator):
    await create_group(apiserver, "demo")
    await roll_out(apiserver, "demo")
    await patch_group(apiserver, "demo", {"spec": {"image": {"tag": "0.2.0"}}})

    def image(comp: str) -> str:
        return workload(apiserver, "demo", comp)["spec"]["template"]["spec"]["containers"][0][
            "image"
        ]

    mads = [c for c in topology.COMPONENT_NAMES if c != "redis"]
    for i, comp in enumerate(mads):
        await async_wait_for(lambda c=comp: image(c).endswith(":0.2.0"), what=f"{comp} updated")
        for later in mads[i + 1 :]:
            assert image(later).endswith(":0.1.0"), f"{later} updated before {comp} was ready"
        await async_wait_for(
            has_condition(apiserver, "demo", "Ready", "False", f"{camel(comp)}NotReady"),
            what=f"Ready=False waiting for {comp}",
        )
        await mark_ready(apiserver, "demo", comp)
    await async_wait_for(has_condition(apiserver, "demo", "Ready", "True"), what="Ready=True")
    live = group(apiserver, "demo")
    assert live["metadata"]["generation"] == 2
    assert live["status"]["observedGeneration"] == 2
    assert live["status"]["components"]["fiedler"]["image"] == "ghcr.io/madgroup/fiedler:0.2.0"


async def test_a_component_that_never_becomes_ready_halts_the_rollout(apiserver, operator):
    await create_group(apiserver, "demo")
    for comp in ("redis", "sequential_thinking"):
        await async_wait_for(lambda c=comp: workload(apiserver, "demo", c), what=f"{comp} applied")
        await mark_ready(apiserver, "demo", comp)
    await async_wait_for(lambda: workload(apiserver, "demo", "grace"), what="grace applied")
    await mark_ready(apiserver, "demo", "grace", ready=0)

    await async_wait_for(
        has_condition(apiserver, "demo", "Ready", "False", "GraceNotReady"),
        what="Ready=False naming grace",
    )
    assert "grace" in condition(apiserver, "demo", "Ready")["message"]
    assert condition(apiserver, "demo", "GraceReady")["status"] == "False"
    assert condition(apiserver, "demo", "Reconciling")["status"] == "True"
    # Several repair passes later, still nothing after grace.
    passes = len(apiserver.served)
    await async_wait_for(lambda: len(apiserver.served) > passes + 60, what="more reconcile passes")
    assert workload(apiserver, "demo", "rogers") is None
    assert workload(apiserver, "demo", "fiedler") is None
    assert group(apiserver, "demo")["status"]["components"]["grace"]["readyReplicas"] == 0


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


async def test_the_pause_annotation_stops_all_changes(apiserver, operator):
    await create_group(apiserver, "demo", annotations={"madgroup.io/paused": "true"})
    await async_wait_for(has_condition(apiserver, "demo", "Paused", "True"), what="Paused=True")
    assert condition(apiserver, "demo", "Reconciling")["reason"] == "Paused"
    assert all(not names for names in children(apiserver).values())

    await patch_group(
        apiserver, "demo", {"metadata": {"annotations": {"madgroup.io/paused": None}}}
    )
    await async_wait_for(
        lambda: workload(apiserver, "demo", "redis"), what="redis applied after unpause"
    )
    await mark_ready(apiserver, "demo", "redis")
    await async_wait_for(
        lambda: workload(apiserver, "demo", "sequential_thinking"), what="st applied"
    )

    # Paused mid-flight: a spec change and a deleted child are both left alone.
    await patch_group(
        apiserver, "demo", {"metadata": {"annotations": {"madgroup.io/paused": "true"}}}
    )
    await async_wait_for(
        has_condition(apiserver, "demo", "Paused", "True"), what="Paused=True again"
    )
    before = children(apiserver)
    await patch_group(apiserver, "demo", {"spec": {"image": {"tag": "9.9.9"}}})
    await apiserver.remove(SERVICES, NS, "demo-redis")
    passes = len(apiserver.served)
    await async_wait_for(lambda: len(apiserver.served) > passes + 60, what="more reconcile passes")
    after = children(apiserver)
    assert after[SERVICES] == [n for n in before[SERVICES] if n != "demo-redis"]
    assert after[DEPLOYMENTS] == before[DEPLOYMENTS] == ["demo-sequential-thinking"]
    st = workload(apiserver, "demo", "sequential_thinking")
    assert st["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":0.1.0")


async def test_an_invalid_spec_is_stalled_and_changes_nothing(apiserver, operator):
    await create_group(apiserver, "demo", {"fiedler": {"replicas": 3}})
    await async_wait_for(
        has_condition(apiserver, "demo", "Stalled", "True", "InvalidSpec"), what="Stalled=True"
    )
    message = condition(apiserver, "demo", "Stalled")["message"]
    assert "spec.fiedler.replicas" in message and "less than or equal to 1" in message
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


async def test_an_operator_restart_mid_rollout_resumes_without_duplicates(apiserver, operator):
    await create_group(apiserver, "demo")
    for comp in ("redis", "sequential_thinking"):
        await async_wait_for(lambda c=comp: workload(apiserver, "demo", c), what=f"{comp} applied")
        await mark_ready(apiserver, "demo", comp)
    await async_wait_for(lambda: workload(apiserver, "demo", "grace"), what="grace applied")
    made = {n: apiserver.live(SECRETS, NS, n)["data"] for n in generated_secrets("demo")}
    await operator.stop()

    await mark_ready(apiserver, "demo", "grace")  # happens while no operator runs
    await operator.start()
    await async_wait_for(lambda: workload(apiserver, "demo", "rogers"), what="rogers applied")
    await mark_ready(apiserver, "demo", "rogers")
    await async_wait_for(lambda: workload(apiserver, "demo", "fiedler"), what="fiedler applied")
    await mark_ready(apiserver, "demo", "fiedler")
    await async_wait_for(has_condition(apiserver, "demo", "Ready", "True"), what="Ready=True")

    assert children(apiserver) == {
        SECRETS: generated_secrets("demo"),
        SERVICES: sorted(naming.child_name("demo", c) for c in topology.COMPONENT_NAMES),
        DEPLOYMENTS: ["demo-grace", "demo-rogers", "demo-sequential-thinking"],
        STATEFULSETS: ["demo-fiedler", "demo-redis"],
        POLICIES: ["demo-internal"],
    }
    # Created exactly once each: no second create, no credential ever regenerated.
    creates = [
        r
        for r in apiserver.served
        if r.method == "POST"
        and r.resource is not None
        and r.resource.plural not in ("events", "madgroups")
    ]
    # the generated Secrets; everything else is server-side applied
    assert len(creates) == len(generated_secrets("demo"))
    assert {n: apiserver.live(SECRETS, NS, n)["data"] for n in made} == made
    for (res, _ns, _name), obj in list(apiserver.objects.items()):
        if res.plural in ("deployments", "statefulsets"):
            assert sum(1 for v in obj.history if v is None) == 0, f"{_name} was recreated"


async def test_deletion_tears_down_in_reverse_order_and_keeps_volumes(apiserver, operator):
    await create_group(apiserver, "demo")
    await roll_out(apiserver, "demo")
    start = len(apiserver.served)
    await request(apiserver, "DELETE", group_path("demo"))
    await async_wait_for(lambda: apiserver.live(GROUPS, NS, "demo") is None, what="the group gone")
    assert all(not names for names in children(apiserver).values()), children(apiserver)
    deletes = [
        r.name
        for r in apiserver.served[start:]
        if r.method == "DELETE"
        and r.resource is not None
        and r.resource.plural in ("deployments", "statefulsets")
    ]
    assert deletes == [
        "demo-fiedler",
        "demo-rogers",
        "demo-grace",
        "demo-sequential-thinking",
        "demo-redis",
    ]
    pvc_deletes = [
        r
        for r in apiserver.served[start:]
        if r.method == "DELETE"
        and r.resource is not None
        and r.resource.plural == "persistentvolumeclaims"
    ]
    assert pvc_deletes == []


async def test_deletion_removes_volumes_when_the_spec_says_so(apiserver, operator):
    await create_group(apiserver, "demo", {"fiedler": {"storage": {"retainOnDelete": False}}})
    await roll_out(apiserver, "demo")
    start = len(apiserver.served)
    await request(apiserver, "DELETE", group_path("demo"))
    await async_wait_for(lambda: apiserver.live(GROUPS, NS, "demo") is None, what="the group gone")
    pvc_deletes = [
        r.name
        for r in apiserver.served[start:]
        if r.method == "DELETE"
        and r.resource is not None
        and r.resource.plural == "persistentvolumeclaims"
    ]
    assert pvc_deletes == ["data-demo-fiedler-0"]


async def test_no_credential_reaches_status_events_or_logs(apiserver, operator, caplog):
    caplog.set_level("DEBUG")
    await create_group(apiserver, "demo")
    await roll_out(apiserver, "demo")
    values = []
    for name in generated_secrets("demo"):
        (encoded,) = apiserver.live(SECRETS, NS, name)["data"].values()
        value = base64.b64decode(encoded).decode()
        assert len(value) >= 32, name
        values += [value, encoded]
    assert len(set(values)) == len(values), "two generated credentials are the same"
    for (res, _ns, name), obj in list(apiserver.objects.items()):
        if res.plural == "secrets" or obj.deleted:
            continue
        text = json.dumps(obj.raw)
        assert not [v for v in values if v in text], f"{res.plural}/{name} leaks a credential"
    events = apiserver.names("v1/events", NS)
    assert events, "the operator posted no events"
    assert not [v for v in values if v in caplog.text]
