"""The substrate-free rollout rule."""

from __future__ import annotations

from madgroup import rollout, topology

ORDER = topology.COMPONENT_NAMES
READY = rollout.Observed(in_sync=True, ready_replicas=1, desired_replicas=1, rolled_out=True)
MISSING = rollout.Observed(in_sync=False, desired_replicas=1)
STARTING = rollout.Observed(in_sync=True, ready_replicas=0, desired_replicas=1, rolled_out=True)


def _obs(**states):
    return {name: states.get(name, MISSING) for name in ORDER}


def test_only_the_first_missing_component_is_applied():
    plan = rollout.plan(ORDER, _obs())
    assert plan.apply == ("redis",) and plan.waiting_for == "redis"
    plan = rollout.plan(ORDER, _obs(redis=READY))
    assert plan.apply == ("sequential_thinking",)


def test_a_component_that_is_not_ready_is_the_gate():
    plan = rollout.plan(ORDER, _obs(redis=READY, sequential_thinking=STARTING))
    assert plan.apply == () and plan.waiting_for == "sequential_thinking"
    report = rollout.report(ORDER, _obs(redis=READY, sequential_thinking=STARTING), plan)
    assert report.get("Ready").reason == "SequentialThinkingNotReady"
    assert report.get("Reconciling").status == "True"
    assert report.get("GraceReady").reason == "Pending"


def test_drift_in_an_earlier_component_is_repaired_first():
    observed = {name: READY for name in ORDER} | {"redis": MISSING}
    assert rollout.plan(ORDER, observed).apply == ("redis",)


def test_all_ready_is_done():
    plan = rollout.plan(ORDER, {name: READY for name in ORDER})
    assert plan.done
    report = rollout.report(ORDER, {name: READY for name in ORDER}, plan)
    assert report.get("Ready").status == "True"
    assert report.get("Stalled").status == "False"
    assert [c.type for c in report.conditions][4:] == [
        "RedisReady",
        "SequentialThinkingReady",
        "GraceReady",
        "RogersReady",
        "FiedlerReady",
    ]


def test_an_update_not_yet_rolled_out_is_not_ready():
    updating = rollout.Observed(
        in_sync=True, ready_replicas=1, desired_replicas=1, rolled_out=False
    )
    plan = rollout.plan(ORDER, _obs(redis=READY, sequential_thinking=updating))
    assert plan.waiting_for == "sequential_thinking"


def test_stuck_components_stall():
    stuck = rollout.Observed(
        in_sync=True, desired_replicas=1, rolled_out=True, stuck="deadline exceeded"
    )
    observed = _obs(redis=stuck)
    report = rollout.report(ORDER, observed, rollout.plan(ORDER, observed))
    assert report.get("Stalled").status == "True"
    assert report.get("Stalled").reason == "RedisNotProgressing"
