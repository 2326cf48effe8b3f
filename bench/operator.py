"""Operator benchmark against the emulated API server (no cluster needed).

Measures, in one run:

- latency from "child marked ready" to "next component applied" (event driven: the
  child's watch event wakes the group's daemon; no polling interval is involved);
- the cost of bringing 1, 10 and 100 MadGroups to Ready, and of one steady-state
  reconcile pass per group, to show the per-group cost stays flat.

Run: ``.venv/bin/python bench/operator.py``
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "operator")]

import kmock  # noqa: E402
from madgroup import topology  # noqa: E402
from madgroup.kube import reconcile  # noqa: E402

from tests.kube.conftest import (  # noqa: E402
    NS,
    Operator,
    create_group,
    mark_ready,
    workload,
)
from tests.kube.emulator import Apiserver  # noqa: E402

ORDER = topology.COMPONENT_NAMES
COUNTS = tuple(int(a) for a in sys.argv[1:]) or (1, 10, 100)


async def _wait(check, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        await asyncio.sleep(0.001)
    raise TimeoutError("the operator did not act in time")


def _is_ready(apiserver: Apiserver, name: str) -> bool:
    live = apiserver.live("madgroup.io/v1alpha1/madgroups", NS, name) or {}
    conds = (live.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)


async def latency(apiserver: Apiserver, groups: int = 5) -> list[float]:
    """Seconds from marking a component ready to its successor's workload appearing."""
    samples = []
    for i in range(groups):
        name = f"lat-{i}"
        await create_group(apiserver, name)
        await _wait(lambda n=name: workload(apiserver, n, ORDER[0]))
        for comp, nxt in itertools.pairwise(ORDER):
            start = time.perf_counter()
            await mark_ready(apiserver, name, comp)
            await _wait(lambda n=name, c=nxt: workload(apiserver, n, c))
            samples.append(time.perf_counter() - start)
        await mark_ready(apiserver, name, ORDER[-1])
        await _wait(lambda n=name: _is_ready(apiserver, n))
    return samples


async def scale(apiserver: Apiserver, op: Operator, count: int) -> tuple[float, int, float]:
    """Bring ``count`` groups to Ready, playing the kubelet for every applied component.

    Returns (wall seconds, API requests per group, ms per steady-state reconcile pass)."""
    names = [f"s{count}-{i}" for i in range(count)]
    served = len(apiserver.served)
    start = time.perf_counter()
    await asyncio.gather(*(create_group(apiserver, n) for n in names))
    for comp in ORDER:
        await _wait(lambda c=comp: all(workload(apiserver, n, c) for n in names), 120)
        await asyncio.gather(*(mark_ready(apiserver, n, comp) for n in names))
    await _wait(lambda: all(_is_ready(apiserver, n) for n in names), 120)
    wall = time.perf_counter() - start
    per_group = (len(apiserver.served) - served) // count
    pass_start = time.perf_counter()
    for n in names:
        await asyncio.to_thread(reconcile.reconcile, op.api, NS, n)
    per_pass = (time.perf_counter() - pass_start) / count * 1000
    return wall, per_group, per_pass


async def main() -> None:
    logging.disable(logging.WARNING)
    async with Apiserver() as apiserver, kmock.Server(apiserver):
        op = Operator(apiserver, repair_interval=300.0)
        await op.start()
        try:
            samples = await latency(apiserver)
            print("child marked ready -> next component applied "
                  f"({len(samples)} transitions):")
            print(f"  median {statistics.median(samples) * 1000:7.1f} ms"
                  f"   max {max(samples) * 1000:7.1f} ms")
            print()
            print(" groups   to Ready (s)   s/group   API requests/group   ms/steady pass")
            baseline = None
            for count in COUNTS:
                wall, per_group, per_pass = await scale(apiserver, op, count)
                baseline = baseline or per_pass
                print(f"{count:7d}   {wall:12.2f}   {wall / count:7.3f}   {per_group:18d}"
                      f"   {per_pass:14.1f}  (x{per_pass / baseline:.2f} of 1 group)")
        finally:
            await op.stop()


if __name__ == "__main__":
    asyncio.run(main())
