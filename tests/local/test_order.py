"""The two start orders, locally: the guide's (each component after the one before it) and
the dependency graph's (``--order graph``: sequential_thinking needs nothing, grace only
redis; rogers and fiedler need redis and sequential_thinking). Grace and
sequential_thinking are made slow, so what runs side by side shows. The assertions are on
the order of events; the all-ready times of both are printed for the reader."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator

import pytest
from madgroup import topology

from tests.support.local_group import Group

DELAY = "1.0"


def bring_up(root_factory: pytest.TempPathFactory, order: str) -> Iterator[Group]:
    group = Group(
        root_factory.mktemp(f"order-{order}") / "project",
        env={
            "MADGROUP_DELAY_GRACE_S": DELAY,
            "MADGROUP_DELAY_SEQUENTIAL_THINKING_S": DELAY,
        },
    )
    group.mg("init")
    try:
        group.up_result = group.up("--order", order)
        yield group
    finally:
        group.cleanup()


@pytest.fixture(scope="module")
def guide(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Group]:
    yield from bring_up(tmp_path_factory, "guide")


@pytest.fixture(scope="module")
def graph(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Group]:
    yield from bring_up(tmp_path_factory, "graph")


def at(group: Group, name: str, event: str) -> float:
    times = [t for t, n, e, _ in group.events() if n == name and e == event]
    assert times, f"no {event!r} event for {name}"
    return times[0]


def all_ready_after(group: Group) -> float:
    """From the supervisor's start to its "all_ready"."""
    return at(group, "supervisor", "all_ready") - at(group, "supervisor", "started")


def test_guide_order_starts_each_component_after_the_one_before_is_ready(guide: Group) -> None:
    names = topology.COMPONENT_NAMES
    for before, after in itertools.pairwise(names):
        assert at(guide, after, "starting") >= at(guide, before, "ready"), (before, after)
    assert "conditions (order: guide):" in guide.mg("status").stdout


def test_graph_order_starts_independent_components_side_by_side(graph: Group) -> None:
    redis_ready = at(graph, "redis", "ready")
    thinking_ready = at(graph, "sequential_thinking", "ready")
    # sequential_thinking needs nothing: it starts with redis.
    assert at(graph, "sequential_thinking", "starting") < redis_ready
    # grace needs only redis: it starts beside sequential_thinking, not after it.
    assert at(graph, "grace", "starting") >= redis_ready
    assert at(graph, "grace", "starting") < thinking_ready
    assert at(graph, "sequential_thinking", "starting") < at(graph, "grace", "ready")
    # rogers and fiedler need sequential_thinking, and not each other.
    for name in ("rogers", "fiedler"):
        assert at(graph, name, "starting") >= thinking_ready, name
    assert at(graph, "fiedler", "starting") < at(graph, "rogers", "ready")
    assert at(graph, "rogers", "starting") < at(graph, "fiedler", "ready")
    shown = graph.mg("status").stdout
    assert "conditions (order: graph):" in shown
    assert re.search(r"^  Ready +True +AllComponentsReady", shown, re.MULTILINE), shown
    # The group works the same way in either order.
    graph.mg("smoke")


def test_both_orders_all_ready_times(
    guide: Group, graph: Group, capsys: pytest.CaptureFixture[str]
) -> None:
    times = {"guide": all_ready_after(guide), "graph": all_ready_after(graph)}
    with capsys.disabled():
        print(
            f"\nall ready (grace and sequential_thinking each {DELAY} s slow): "
            + ", ".join(f"{order} order {took:.2f} s" for order, took in times.items())
        )
    # What the graph order saves is grace's wait for sequential_thinking: in the guide's
    # order grace starts only after it is ready; in the graph's, before.
    assert at(guide, "grace", "starting") >= at(guide, "sequential_thinking", "ready")
    assert at(graph, "grace", "starting") < at(graph, "sequential_thinking", "ready")
