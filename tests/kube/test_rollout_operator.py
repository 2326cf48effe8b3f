"""The operator end to end against the emulated API server: ordered, readiness-gated
rollout, drift repair, updates, failures, pause, invalid specs, restarts."""

from __future__ import annotations

from madgroup import topology
from madgroup.kube import naming

from .conftest import (
    DEPLOYMENTS,
    NS,
    POLICIES,
    SECRETS,
    SERVICES,
    STATEFULSETS,
    children,
    condition,
    create_group,
    eventually,
    group,
    has_condition,
    mark_ready,
    workload,
)


async def test_components_come_up_one_at_a_time_in_dependency_order(apiserver, operator):
    created = await create_group(apiserver, "demo")
    await eventually(lambda: workload(apiserver, "demo", "redis"), "redis applied")
    await eventually(has_condition(apiserver, "demo", "Ready", "False"), "Ready=False")

    # Only Redis's objects exist until Redis is ready.
    assert children(apiserver) == {
        SECRETS: ["demo-redis-password"],
        SERVICES: ["demo-redis"],
        DEPLOYMENTS: [],
        STATEFULSETS: ["demo-redis"],
        POLICIES: ["demo-internal"],
    }
    assert condition(apiserver, "demo", "Ready")["reason"] == "RedisNotReady"

    applied = ["redis"]
    for comp, nxt in zip(topology.COMPONENT_NAMES, topology.COMPONENT_NAMES[1:], strict=False):
        await mark_ready(apiserver, "demo", comp)
        await eventually(lambda n=nxt: workload(apiserver, "demo", n), f"{nxt} applied")
        applied.append(nxt)
        for later in topology.COMPONENT_NAMES[len(applied) :]:
            assert workload(apiserver, "demo", later) is None, f"{later} applied too early"
            assert apiserver.live(SERVICES, NS, naming.child_name("demo", later)) is None
        await eventually(
            has_condition(
                apiserver,
                "demo",
                f"{topology.component(comp).name.title().replace('_', '')}Ready",
                "True",
            ),
            f"{comp} reported ready",
        )

    await mark_ready(apiserver, "demo", "fiedler")
    await eventually(has_condition(apiserver, "demo", "Ready", "True"), "Ready=True")
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
