"""One group, brought up with slow dependencies, then abused: start order under delay, a MAD
killed with SIGKILL, a dependent crashing while its gate is down, Redis stopped and killed,
and the supervisor itself killed."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from madgroup import topology
from madgroup.local import processes

from tests.support.local_group import MADGROUP, Group, bus_connected
from tests.support.waiting import wait_for

GRACE_DELAY = 2.5
THINKING_DELAY = 1.5
BUS_MADS = ("grace", "rogers", "fiedler")


@pytest.fixture(scope="module")
def slow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Group]:
    group = Group(
        tmp_path_factory.mktemp("supervision") / "project",
        env={
            "MAD_HEARTBEAT_S": "0.5",
            "SEQUENTIAL_THINKING_CHECK_S": "0.5",
            "MADGROUP_DELAY_GRACE_S": str(GRACE_DELAY),
            "MADGROUP_DELAY_SEQUENTIAL_THINKING_S": str(THINKING_DELAY),
        },
    )
    group.mg("init")
    try:
        group.up_result = group.up()
        yield group
    finally:
        group.cleanup()


def first(group: Group, name: str, event: str, after: float = 0.0) -> float | None:
    return next(
        (t for t, n, e, _ in group.events() if n == name and e == event and t >= after), None
    )


def component(group: Group, name: str) -> dict:
    return group.state()["components"][name]


def test_components_start_only_when_their_slow_dependencies_are_ready(slow: Group) -> None:
    for comp in topology.COMPONENTS:
        started = first(slow, comp.name, "starting")
        assert started is not None, comp.name
        for gate in topology.gates(comp):
            gate_ready = first(slow, gate, "ready")
            assert gate_ready is not None and gate_ready <= started, (comp.name, gate)
    # The delays really made the dependencies slow, and nothing jumped ahead of them.
    assert first(slow, "grace", "ready") - first(slow, "grace", "starting") >= GRACE_DELAY
    thinking_ready = first(slow, "sequential_thinking", "ready")
    assert thinking_ready - first(slow, "sequential_thinking", "starting") >= THINKING_DELAY
    assert first(slow, "rogers", "starting") >= first(slow, "grace", "ready")
    # What each component saw when it started: its dependencies answering at once.
    assert "Ready to accept connections" in slow.log("redis")
    for name in BUS_MADS:
        log = slow.log(name)
        assert "Successfully connected to Rogers Conversation Bus (Redis)" in log, name
        assert "Error 111" not in log and "Connection refused" not in log, log
    for name in ("rogers", "fiedler"):
        assert "Successfully connected to Sequential Thinking MCP server" in slow.log(name)
    # The progress display (plain lines: not a terminal): waiting, starting, ready + timing.
    shown = slow.up_result.stdout
    for name in topology.COMPONENT_NAMES:
        for phase in ("waiting", "starting", "ready in"):
            assert re.search(rf"^{name} +{phase}", shown, re.MULTILINE), (name, phase, shown)


def rogers_connections(group: Group) -> dict[str, dict]:
    out = group.mg("exec", "rogers", "mad-cli", "rogers_get_connections").stdout
    return {c["mad_id"]: c for c in json.loads(out)["connections"]}


def test_kill_9_of_a_mad_brings_it_back_and_rogers_sees_it_healthy(slow: Group) -> None:
    old = slow.pid("fiedler")
    os.kill(old, signal.SIGKILL)
    wait_for(
        lambda: (
            component(slow, "fiedler")["phase"] == "ready"
            and component(slow, "fiedler")["pid"] != old
        ),
        timeout=30,
        what="fiedler restarted and ready",
    )
    assert component(slow, "fiedler")["restarts"] == 1
    back = component(slow, "fiedler")["ready_at"]

    def healthy_again() -> bool:
        seen = rogers_connections(slow).get("fiedler")
        if not seen or seen["status"] != "HEALTHY":
            return False
        heard = datetime.fromisoformat(seen["last_heartbeat"].replace("Z", "+00:00"))
        return heard.timestamp() >= back - 0.5

    wait_for(healthy_again, timeout=30, interval=0.5, what="rogers: fiedler HEALTHY again")


def test_kill_9_of_sequential_thinking_leaves_its_dependents_up_but_not_ready(
    slow: Group,
) -> None:
    """The planner restarts the component that died and nothing else: rogers and fiedler
    report not ready while their gate is gone, and ready again once it is back."""
    dependents = ("rogers", "fiedler")
    kept = {name: (slow.pid(name), component(slow, name)["restarts"]) for name in dependents}
    others = {topology.REDIS, "grace", *dependents}
    since = max(t for t, *_ in slow.events())
    old = slow.pid("sequential_thinking")
    os.kill(old, signal.SIGKILL)

    def later(name: str, event: str) -> list[float]:
        return [t for t, n, e, _ in slow.events() if n == name and e == event and t > since]

    wait_for(
        lambda: all(later(name, "not_ready") for name in dependents),
        timeout=30,
        what="rogers and fiedler seen not ready while sequential_thinking is down",
    )
    wait_for(
        lambda: all(
            component(slow, name)["phase"] == "ready"
            for name in ["sequential_thinking", *dependents]
        ),
        timeout=60,
        what="sequential_thinking restarted, rogers and fiedler ready again",
    )
    thinking = component(slow, "sequential_thinking")
    assert thinking["pid"] != old and later("sequential_thinking", "restarting")
    thinking_ready = min(later("sequential_thinking", "ready"))
    for name in dependents:
        # Not restarted: the same process, which went not ready and came back by itself,
        # and only after its gate was ready again.
        assert (slow.pid(name), component(slow, name)["restarts"]) == kept[name], name
        assert min(later(name, "ready")) >= thinking_ready, name
        assert min(later(name, "not_ready")) <= thinking_ready, name
    for name in others:
        assert not later(name, "restarting") and not later(name, "exited"), name
    shown = slow.mg("status").stdout
    assert re.search(r"^  Ready +True +AllComponentsReady", shown, re.MULTILINE), shown


def test_status_shows_the_operators_conditions(slow: Group) -> None:
    """A component stopped on request: its condition and everything gated on it say so,
    in the operator's words; started again, the group is Ready."""
    slow.mg("stop", "sequential_thinking")

    def conditions() -> str:
        return slow.mg("status").stdout

    wait_for(
        lambda: re.search(r"^  RogersReady +False +NotReady", conditions(), re.MULTILINE),
        timeout=30,
        what="status: RogersReady False NotReady",
    )
    shown = conditions()
    for line in (
        r"^conditions \(order: guide\):$",
        r"^  Ready +False +SequentialThinkingNotReady - sequential_thinking is not progressing: "
        r"stopped on request",
        r"^  Stalled +True +SequentialThinkingNotProgressing",
        r"^  RedisReady +True +Ready - 1/1 replicas ready$",
        r"^  SequentialThinkingReady +False +NotProgressing - stopped on request",
        r"^  FiedlerReady +False +NotReady - 0/1 replicas ready$",
    ):
        assert re.search(line, shown, re.MULTILINE), (line, shown)
    slow.up("sequential_thinking")
    wait_for(
        lambda: re.search(r"^  Ready +True +AllComponentsReady", conditions(), re.MULTILINE),
        timeout=60,
        what="status: Ready True",
    )
    shown = conditions()
    for name in topology.COMPONENT_NAMES:
        cond = f"{''.join(p.capitalize() for p in name.split('_'))}Ready"
        assert re.search(rf"^  {cond} +True +Ready", shown, re.MULTILINE), (cond, shown)
    assert re.search(r"^  Reconciling +False +Reconciled", shown, re.MULTILINE), shown


def test_a_dependent_is_not_restarted_before_its_gates_are_ready(slow: Group) -> None:
    slow.mg("stop", "sequential_thinking")
    old = slow.pid("rogers")
    os.kill(old, signal.SIGKILL)
    wait_for(
        lambda: "waiting for sequential_thinking" in component(slow, "rogers")["message"],
        timeout=20,
        what="rogers held back while sequential_thinking is stopped",
    )
    assert not processes.alive(component(slow, "rogers")["pid"], None)
    slow.up("sequential_thinking")
    wait_for(lambda: component(slow, "rogers")["phase"] == "ready", timeout=40, what="rogers")
    thinking_back = max(
        t for t, n, e, _ in slow.events() if n == "sequential_thinking" and e == "ready"
    )
    rogers_back = max(t for t, n, e, _ in slow.events() if n == "rogers" and e == "restarting")
    assert rogers_back >= thinking_back


def test_redis_down_every_mad_reports_the_bus_down_then_reconnects(slow: Group) -> None:
    follow = subprocess.Popen(
        [MADGROUP, "logs", "-f", "--tail", "0", "grace"],
        cwd=slow.root,
        env=slow.env,
        stdout=subprocess.PIPE,
        text=True,
    )
    followed: list[str] = []
    reader = threading.Thread(target=lambda: followed.extend(iter(follow.stdout.readline, "")))
    reader.start()
    slow.mg("stop", "redis")
    for name in BUS_MADS:
        slow.wait_status(name, lambda r: bus_connected(r) == "False", timeout=20)
    shown = slow.mg("exec", "grace", "mad-status", check=False)
    assert shown.returncode == 1
    assert "- Conversation Bus Connected: False" in shown.stdout.splitlines()
    slow.up("redis")
    for name in BUS_MADS:
        slow.wait_status(name, lambda r: bus_connected(r) == "True", timeout=30)
    # `logs -f` showed grace reconnecting as it happened.
    try:
        wait_for(
            lambda: any(
                line.startswith(
                    "grace | INFO:grace:Successfully connected to Rogers Conversation Bus (Redis)"
                )
                for line in followed
            ),
            timeout=10,
            what="logs -f shows grace reconnecting",
        )
    finally:
        follow.terminate()
        follow.wait(timeout=10)
        reader.join(timeout=5)

    # Killed outright, Redis is restarted by the supervisor and everyone reconnects.
    old = slow.pid("redis")
    os.kill(old, signal.SIGKILL)
    wait_for(
        lambda: (
            component(slow, "redis")["phase"] == "ready" and component(slow, "redis")["pid"] != old
        ),
        timeout=30,
        what="redis restarted",
    )
    for name in BUS_MADS:
        slow.wait_status(name, lambda r: r["status"] == "HEALTHY", timeout=30)
    assert slow.mg("health", check=False).returncode == 0


def test_a_crashed_supervisor_loses_nothing(slow: Group) -> None:
    state = slow.state()
    os.kill(state["supervisor_pid"], signal.SIGKILL)
    wait_for(lambda: "supervisor: not running" in slow.mg("status").stdout, timeout=10)
    kept = {n: slow.pid(n) for n in ("redis", "sequential_thinking", "rogers", "fiedler")}
    grace = slow.pid("grace")
    os.kill(grace, signal.SIGKILL)  # dies while nobody supervises
    wait_for(lambda: not processes.alive(grace, None), timeout=10, what="grace gone")
    out = slow.up().stdout
    assert "adopting" in out
    for name, pid in kept.items():
        assert slow.pid(name) == pid, name
    assert slow.pid("grace") != grace and component(slow, "grace")["phase"] == "ready"
    # The new supervisor watches the adopted processes too.
    old = slow.pid("fiedler")
    os.kill(old, signal.SIGKILL)
    wait_for(
        lambda: (
            component(slow, "fiedler")["phase"] == "ready"
            and component(slow, "fiedler")["pid"] != old
        ),
        timeout=30,
        what="adopted fiedler restarted",
    )
    assert Path(slow.state_dir / "supervisor.lock").exists()
