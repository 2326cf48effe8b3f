#!/usr/bin/env python3
"""Bring-up overhead of ``madgroup up``.

In one run, in a throw-away project directory on free ports:

1. each component alone: started by the same launcher as ``madgroup up`` once the ones it
   needs are running, its start-to-ready time measured with a tight readiness poll, nothing
   else starting meanwhile; then all stopped;
2. ``madgroup up`` (the real CLI): wall time from running the command until it returns with
   every component ready; then ``madgroup down``.

Prints both and the ratio wall / sum(alone). The components must start one after another
(each waits for the one before it), so the sum is the floor and the goal is a ratio <= 1.10.

    .venv/bin/python bench/bringup.py [--rounds N]
"""

from __future__ import annotations

import argparse
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
GOAL = 1.10


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


def group_up(project: Path, offset: int) -> float:
    events = project / ".madgroup" / "events.log"
    if events.exists():
        events.unlink()
    t0 = time.perf_counter()
    result = subprocess.run(
        [MADGROUP, "up", "--port-offset", str(offset)],
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
    with tempfile.TemporaryDirectory(prefix="madgroup-bench-") as tmp:
        project = Path(tmp)
        shutil.copy(REPO / ".env.example", project / ".env.example")
        envfile.init(project / ".env", project / ".env.example")
        offset = free_offset()
        sums, walls, inside, per = [], [], [], {c.name: [] for c in topology.COMPONENTS}
        for _ in range(args.rounds):
            took = alone(project, offset)
            for name, seconds in took.items():
                per[name].append(seconds)
            sums.append(sum(took.values()))
            walls.append(group_up(project, offset))
            inside.append(in_run(project))
    print("component             alone start-to-ready")
    for name, values in per.items():
        print(f"  {name:<20} {statistics.median(values):7.3f} s")
    total = statistics.median(sums)
    wall = statistics.median(walls)
    ratio = wall / total
    print(f"sum of the components alone  {total:7.3f} s")
    print(f"madgroup up, wall time       {wall:7.3f} s")
    print(
        f"  (inside it, the components' own start-to-ready summed to "
        f"{statistics.median(inside):.3f} s: the rest is the command's own overhead)"
    )
    verdict = "meets" if ratio <= GOAL else "misses"
    print(f"ratio wall / sum             {ratio:7.3f}  ({verdict} the goal <= {GOAL:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
