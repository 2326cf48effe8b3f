"""``spec.order: graph`` on the substrates that take a declaration file: compose's
``depends_on`` follows the dependency graph, and the operator applies independent
components side by side (the local runner's is in tests/local/test_order.py)."""

from __future__ import annotations

from pathlib import Path

import yaml
from madgroup.compose.render import render_files
from madgroup.spec import read_document

from tests.support.kube import (
    Apiserver,
    Operator,
    create_group,
    has_condition,
    mark_ready,
    workload,
)
from tests.support.sample import sample_with
from tests.support.waiting import async_wait_for

GRAPH = {
    "redis": set(),
    "sequential_thinking": set(),
    "grace": {"redis"},
    "rogers": {"redis", "sequential_thinking"},
    "fiedler": {"redis", "sequential_thinking"},
}


def test_compose_depends_on_follows_the_graph(tmp_path: Path) -> None:
    path = sample_with(tmp_path, {"order": "graph"})
    services = yaml.safe_load(render_files(read_document(path))["docker-compose.yml"])["services"]
    for name, needs in GRAPH.items():
        depends = dict(services[name].get("depends_on", {}))
        depends.pop("bus_users", None)  # the credentials one-shot, before Redis
        assert set(depends) == needs, name
        assert all(d == {"condition": "service_healthy"} for d in depends.values())


async def test_the_operator_applies_independent_components_side_by_side(
    apiserver: Apiserver, operator: Operator
) -> None:
    await create_group(apiserver, "graph", {"order": "graph"})
    # Nothing is ready yet: what needs nothing is applied, what needs something is not.
    await async_wait_for(
        lambda: (
            workload(apiserver, "graph", "redis")
            and workload(apiserver, "graph", "sequential_thinking")
        ),
        what="redis and sequential_thinking applied together",
    )
    assert workload(apiserver, "graph", "grace") is None
    # grace needs only redis: applied while sequential_thinking is still not ready.
    await mark_ready(apiserver, "graph", "redis")
    await async_wait_for(lambda: workload(apiserver, "graph", "grace"), what="grace applied")
    assert workload(apiserver, "graph", "rogers") is None
    assert workload(apiserver, "graph", "fiedler") is None
    # rogers and fiedler need sequential_thinking, not each other nor grace.
    await mark_ready(apiserver, "graph", "sequential_thinking")
    await async_wait_for(
        lambda: workload(apiserver, "graph", "rogers") and workload(apiserver, "graph", "fiedler"),
        what="rogers and fiedler applied together",
    )
    for name in ("grace", "rogers", "fiedler"):
        await mark_ready(apiserver, "graph", name)
    await async_wait_for(has_condition(apiserver, "graph", "Ready", "True"), what="Ready=True")


async def test_the_guide_order_applies_one_component_at_a_time(
    apiserver: Apiserver, operator: Operator
) -> None:
    await create_group(apiserver, "guide", {})
    await async_wait_for(lambda: workload(apiserver, "guide", "redis"), what="redis applied")
    await mark_ready(apiserver, "guide", "redis")
    await async_wait_for(
        lambda: workload(apiserver, "guide", "sequential_thinking"),
        what="sequential_thinking applied",
    )
    assert workload(apiserver, "guide", "grace") is None
