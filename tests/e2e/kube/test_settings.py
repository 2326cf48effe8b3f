"""Declared settings on the real server: a change rolls only the components it reaches, in
the order's sequence (each after the one before it is Ready again on its new template), and
the others keep their pods; a hand edit of a MAD's env is repaired to what the declaration
says, the declared setting included."""

from __future__ import annotations

import datetime
import itertools
import json
from typing import Any

from madgroup import topology

from tests.e2e.kube import harness
from tests.e2e.kube.cluster.control_plane import Cluster
from tests.support import evidence
from tests.support.waiting import wait_for

GROUP = "demo"
NAMESPACE = "settings"
TIMEOUT = harness.ROLLOUT_TIMEOUT


def _kind(component: str) -> str:
    return "statefulset" if topology.component(component).stateful else "deployment"


def _name(component: str) -> str:
    return f"{GROUP}-{topology.component(component).dns_name}"


def _workload(cluster: Cluster, component: str) -> dict[str, Any]:
    return dict(harness.get(cluster, _kind(component), NAMESPACE, _name(component)))


def _env(cluster: Cluster, component: str) -> dict[str, str]:
    (container,) = _workload(cluster, component)["spec"]["template"]["spec"]["containers"]
    return {item["name"]: item.get("value", "") for item in container.get("env", [])}


def _generations(cluster: Cluster) -> dict[str, int]:
    return {
        c: int(_workload(cluster, c)["metadata"]["generation"]) for c in topology.COMPONENT_NAMES
    }


def _patch_group(cluster: Cluster, spec: dict[str, Any]) -> None:
    cluster.kubectl(
        "patch", "madgroup", GROUP, "-n", NAMESPACE, "--type", "merge", "-p", json.dumps(spec)
    )


def _applied(cluster: Cluster, component: str, since: datetime.datetime) -> list[datetime.datetime]:
    """When the operator wrote the component's workload since ``since`` (the server's
    audit log)."""
    resource = f"{_kind(component)}s"
    return [
        r.at
        for r in harness.audit(cluster)
        if r.user == harness.operator_user()
        and r.verb == "patch"
        and r.resource == resource
        and r.name == _name(component)
        and r.namespace == NAMESPACE
        and not r.subresource
        and r.code < 300
        and r.at >= since
    ]


def _pods_ready(cluster: Cluster, component: str) -> datetime.datetime:
    """When the last of the component's pods turned Ready (kwok's condition time)."""
    label = topology.component(component).dns_name
    selector = f"{harness.INSTANCE}={GROUP},{harness.COMPONENT}={label}"
    return max(
        harness.parse_time(c["lastTransitionTime"])
        for pod in harness.items(cluster, "pods", NAMESPACE, selector)
        for c in pod["status"]["conditions"]
        if c["type"] == "Ready" and c["status"] == "True"
    )


def test_a_setting_rolls_only_what_it_reaches_in_order_and_hand_edits_are_repaired(
    cluster: Cluster, operator: harness.OperatorProcess
) -> None:
    harness.restricted_namespace(cluster, NAMESPACE)
    harness.apply_document(cluster, harness.sample(NAMESPACE))
    harness.wait_ready(cluster, NAMESPACE, GROUP)
    before = _generations(cluster)

    # One change, two settings: the heartbeat reaches the MADs on the bus, the concurrency
    # Fiedler alone. Redis and Sequential Thinking keep their templates.
    reached = [c.name for c in topology.COMPONENTS if c.bus_user is not None]
    assert reached == ["grace", "rogers", "fiedler"]
    changed_at = harness.now()
    _patch_group(cluster, {"spec": {"heartbeatSeconds": 2, "fiedler": {"concurrency": 64}}})
    harness.wait_ready(cluster, NAMESPACE, GROUP)

    assert _env(cluster, "fiedler")["FIEDLER_MAX_CONCURRENCY"] == "64"
    for component in topology.COMPONENT_NAMES:
        beat = _env(cluster, component).get("MAD_HEARTBEAT_S")
        assert beat == ("2" if component in reached else None), component
    after = _generations(cluster)
    for component in topology.COMPONENT_NAMES:
        rolled = after[component] != before[component]
        assert rolled == (component in reached), (component, before, after)
        assert bool(_applied(cluster, component, changed_at)) == (component in reached)
    # In order: each reached component's new template only once the one before it was
    # Ready again on its own new template.
    for earlier, later in itertools.pairwise(reached):
        earlier_ready = _pods_ready(cluster, earlier)
        later_applied = min(_applied(cluster, later, changed_at))
        assert later_applied >= earlier_ready, (earlier, earlier_ready, later, later_applied)
    evidence.record(
        "kube e2e settings",
        f"heartbeatSeconds and fiedler.concurrency rolled {', '.join(reached)} in order; "
        f"redis and sequential_thinking kept generation {before['redis']} and "
        f"{before['sequential_thinking']}",
    )

    # A hand edit of the declared variable, and of one the group computes: both put back.
    cluster.kubectl(
        "set", "env", f"statefulset/{_name('fiedler')}", "FIEDLER_MAX_CONCURRENCY=8",
        f"--namespace={NAMESPACE}",
    )  # fmt: skip
    cluster.kubectl(
        "set", "env", f"deployment/{_name('grace')}", "MAD_ALLOWED_HOSTS=evil.example",
        f"--namespace={NAMESPACE}",
    )  # fmt: skip
    wait_for(
        lambda: _env(cluster, "fiedler")["FIEDLER_MAX_CONCURRENCY"] == "64",
        timeout=60,
        interval=0.5,
        what="fiedler's declared concurrency repaired",
    )
    wait_for(
        lambda: "evil.example" not in _env(cluster, "grace")["MAD_ALLOWED_HOSTS"],
        timeout=60,
        interval=0.5,
        what="grace's allowed hosts repaired",
    )
    harness.wait_ready(cluster, NAMESPACE, GROUP)

    # The setting changed again: Fiedler alone rolls.
    before = _generations(cluster)
    changed_at = harness.now()
    _patch_group(cluster, {"spec": {"fiedler": {"concurrency": 128}}})
    harness.wait_ready(cluster, NAMESPACE, GROUP)
    wait_for(
        lambda: _env(cluster, "fiedler")["FIEDLER_MAX_CONCURRENCY"] == "128",
        timeout=TIMEOUT,
        interval=0.5,
        what="fiedler's new concurrency",
    )
    after = _generations(cluster)
    assert {c for c in after if after[c] != before[c]} == {"fiedler"}
    assert [c for c in topology.COMPONENT_NAMES if _applied(cluster, c, changed_at)] == ["fiedler"]
