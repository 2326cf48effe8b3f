#!/usr/bin/env python3
"""Bring-up overhead of ``madgroup up``.

In one run, in a throw-away project directory on free ports:

1. each component alone: started by the same launcher as ``madgroup up`` once the ones it
   needs are running, its start-to-ready time measured with a tight readiness poll, nothing
   else starting meanwhile; then all stopped;
2. ``madgroup up`` (the real CLI) in the guide's order: wall time from running the command
   until it returns with every component ready; then ``madgroup down``;
3. the same with ``--order graph``.

Each MAD's own start-to-ready has a goal of its own, <= 0.4 s (Redis is not a MAD): a
verdict line says which MADs meet it. The guide's order starts the components one after
another (each waits for the one before it), so its floor is the sum of the times alone:
goal wall / sum <= 1.10. The graph's order starts a component once what it talks to is
ready, so its floor is the critical path (each component's time alone, along the longest
chain of gates): goal wall / path <= 1.15. A benchmark: it prints, it never asserts.

    .venv/bin/python bench/bringup.py [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "operator")]

from madgroup import topology  # noqa: E402
from madgroup.local import envfile, launcher, ports, processes, readiness  # noqa: E402
from madgroup.local.state import StateDir  # noqa: E402

MADGROUP = str(Path(sys.executable).parent / "madgroup")
GOAL = {"guide": 1.10, "graph": 1.15}
MAD_GOAL_S = 0.4
"""Each MAD's own start-to-ready (process start to ``/readyz`` 200), at most."""


def free_offset() -> int:
    offset = ports.free_offset(range(12000, 24000, 37))  # below the ephemeral port range
    if offset is None:
        raise SystemExit("no free port offset found")
    return offset


def alone(project: Path, offset: int) -> dict[str, float]:
    """Each component's own start-to-ready time, started one at a time."""
    state = StateDir(project / ".bench-alone")
    state.ensure()
    dotenv = envfile.load(project / ".env")
    password = dotenv[envfile.PASSWORD_KEY]
    ports = {c.name: c.port + offset for c in topology.COMPONENTS}
    started: list[subprocess.Popen[bytes]] = []
    took: dict[str, float] = {}
    try:
        for comp in topology.start_order():
            t0 = time.perf_counter()
            proc = launcher.launch(comp, ports, dotenv, state)
            started.append(proc)
            deadline = time.monotonic() + 60
            while not readiness.ready(comp, ports[comp.name], password, timeout=0.5):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"{comp.name} did not become ready (see {state.logs})")
                time.sleep(0.005)
            took[comp.name] = time.perf_counter() - t0
    finally:
        for proc in reversed(started):
            processes.terminate(proc.pid, None)
            proc.wait()
    return took


def in_run(project: Path) -> float:
    """Sum of each component's start-to-ready inside the last ``madgroup up`` (its events)."""
    starts: dict[str, float] = {}
    total = 0.0
    for line in (project / ".madgroup" / "events.log").read_text().splitlines():
        _, stamp, name, event, *_ = line.split(" ")
        when = float(stamp[2:])
        if event == "starting":
            starts[name] = when
        elif event == "ready" and name in starts:
            total += when - starts.pop(name)
    return total


def all_ready(project: Path) -> float:
    """From the supervisor's start to its ``all_ready`` in the last run (its events)."""
    times: dict[str, float] = {}
    for line in (project / ".madgroup" / "events.log").read_text().splitlines():
        _, stamp, name, event, *_ = line.split(" ")
        if name == "supervisor" and event in ("started", "all_ready"):
            times.setdefault(event, float(stamp[2:]))
    return times["all_ready"] - times["started"]


def critical_path(took: dict[str, float], order: topology.Order) -> float:
    """The longest chain of gates, each link a component's own start-to-ready time."""
    done: dict[str, float] = {}
    for comp in topology.start_order():
        gates = topology.gates(comp, order)
        done[comp.name] = took[comp.name] + max((done[g] for g in gates), default=0.0)
    return max(done.values())


def group_up(project: Path, offset: int, order: topology.Order) -> float:
    events = project / ".madgroup" / "events.log"
    if events.exists():
        events.unlink()
    t0 = time.perf_counter()
    result = subprocess.run(
        [MADGROUP, "up", "--port-offset", str(offset), "--order", order],
        cwd=project,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t0
    if result.returncode != 0:
        subprocess.run([MADGROUP, "down"], cwd=project, capture_output=True)
        raise SystemExit(f"madgroup up failed:\n{result.stdout}{result.stderr}")
    subprocess.run([MADGROUP, "down"], cwd=project, capture_output=True, check=True)
    return wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternating alone / up; medians (default 3)"
    )
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="madgroup-bench-") as tmp:
        project = Path(tmp)
        shutil.copy(REPO / ".env.example", project / ".env.example")
        # As a user starts: the administrator's password, each MAD's bus password and the
        # internal credential, all in .env.
        init = subprocess.run([MADGROUP, "init"], cwd=project, capture_output=True, text=True)
        if init.returncode != 0:
            raise SystemExit(f"madgroup init failed:\n{init.stdout}{init.stderr}")
        offset = free_offset()
        per: dict[str, list[float]] = {c.name: [] for c in topology.COMPONENTS}
        floors: dict[str, list[float]] = {order: [] for order in topology.ORDERS}
        walls: dict[str, list[float]] = {order: [] for order in topology.ORDERS}
        inside: list[float] = []
        supervised: dict[str, list[float]] = {order: [] for order in topology.ORDERS}
        for _ in range(args.rounds):
            took = alone(project, offset)
            for name, seconds in took.items():
                per[name].append(seconds)
            for order in topology.ORDERS:
                floors[order].append(critical_path(took, order))
                walls[order].append(group_up(project, offset, order))
                supervised[order].append(all_ready(project))
                if order == "guide":
                    inside.append(in_run(project))
    print(
        f"load average (1 min) {load_before:.2f} before, {os.getloadavg()[0]:.2f} after, on "
        f"{os.cpu_count()} cores: other work on the machine slows every number below"
    )
    print(f"component             alone start-to-ready (median of {args.rounds})")
    mads: dict[str, float] = {}
    for name, values in per.items():
        median = statistics.median(values)
        note = ""
        if topology.component(name).is_mad:
            mads[name] = median
            note = "  ok" if median <= MAD_GOAL_S else f"  over {MAD_GOAL_S:.1f} s"
        print(f"  {name:<20} {median:7.3f} s  (min {min(values):.3f}, max {max(values):.3f}){note}")
    over = [name for name, took in mads.items() if took > MAD_GOAL_S]
    slowest = max(mads, key=mads.__getitem__)
    print(
        f"verdict: {'misses' if over else 'meets'} the goal <= {MAD_GOAL_S:.1f} s per MAD: "
        f"{len(mads) - len(over)} of {len(mads)} within it"
        + (f", over it: {', '.join(over)}" if over else "")
        + f"; slowest {slowest} at {mads[slowest]:.3f} s"
    )
    for order in topology.ORDERS:
        floor = statistics.median(floors[order])
        wall = statistics.median(walls[order])
        ratio = wall / floor
        what = "sum of the components alone" if order == "guide" else "critical path of the graph"
        print(f"{order} order:")
        print(f"  floor: {what:<27} {floor:7.3f} s")
        print(f"  madgroup up --order {order}, wall   {wall:7.3f} s")
        if order == "guide":
            print(
                f"    (inside it, the components' own start-to-ready summed to "
                f"{statistics.median(inside):.3f} s: the rest is the command's own overhead)"
            )
        ready = statistics.median(supervised[order])
        print(
            f"  of which the supervisor's start to all ready {ready:7.3f} s "
            f"(ratio {ready / floor:.3f}; the rest is the command starting and returning)"
        )
        verdict = "meets" if ratio <= GOAL[order] else "misses"
        print(
            f"  ratio wall / floor                {ratio:7.3f}  ({verdict} the goal <= "
            f"{GOAL[order]:.2f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
