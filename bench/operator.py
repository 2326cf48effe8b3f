"""Operator benchmark against the emulated API server (no cluster needed).

Measures, in one run:

- latency from "child marked ready" to "next component applied" (event driven: the
  child's watch event wakes the group's daemon; no polling interval is involved);
- the cost of bringing 1, 10 and 100 MadGroups to Ready, and of one steady-state
  reconcile pass per group, split into the time spent waiting for API responses and the
  operator's own work, to show the per-group cost stays flat (the emulator itself slows
  down as it stores more objects; the operator's share and its request count do not grow).

Run: ``.venv/bin/python bench/operator.py``
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "operator")]

import kmock  # noqa: E402
from madgroup import topology  # noqa: E402
from madgroup.kube import reconcile  # noqa: E402

from tests.support.kube import (  # noqa: E402
    NS,
    Operator,
    create_group,
    mark_ready,
    workload,
)
from tests.support.kube_emulator import Apiserver  # noqa: E402

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


@dataclass
class PassCost:
    """One steady-state reconcile pass, split into the time spent waiting for API responses
    (HTTP client + emulator) and the operator's own work (everything else)."""

    total_ms: float
    requests: float
    api_ms: float

    @property
    def own_ms(self) -> float:
        return self.total_ms - self.api_ms


def steady_passes(op: Operator, names: list[str]) -> PassCost:
    """One reconcile pass per group, nothing to change; the mean cost of a pass."""
    original = op.api._request
    requests, api_s = 0, 0.0
    this_thread = threading.get_ident()

    def timed(*args, **kwargs):  # type: ignore[no-untyped-def]
        nonlocal requests, api_s
        if threading.get_ident() != this_thread:  # the daemons' own passes
            return original(*args, **kwargs)
        began = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            requests += 1
            api_s += time.perf_counter() - began

    op.api._request = timed
    try:
        start = time.perf_counter()
        for n in names:
            reconcile.reconcile(op.api, NS, n)
        total_s = time.perf_counter() - start
    finally:
        op.api._request = original
    count = len(names)
    return PassCost(total_s / count * 1000, requests / count, api_s / count * 1000)


async def scale(apiserver: Apiserver, op: Operator, count: int) -> tuple[float, int, PassCost]:
    """Bring ``count`` groups to Ready, playing the kubelet for every applied component.

    Returns (wall seconds, API requests per group, the cost of a steady-state pass)."""
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
    return wall, per_group, await asyncio.to_thread(steady_passes, op, names)


async def main() -> None:
    logging.disable(logging.WARNING)
    async with Apiserver() as apiserver, kmock.Server(apiserver):
        op = Operator(apiserver, repair_interval=300.0)
        await op.start()
        try:
            samples = await latency(apiserver)
            print(f"child marked ready -> next component applied ({len(samples)} transitions):")
            print(
                f"  median {statistics.median(samples) * 1000:7.1f} ms"
                f"   max {max(samples) * 1000:7.1f} ms"
            )
            print()
            print(" groups   to Ready (s)   s/group   API requests/group")
            passes = {}
            for count in COUNTS:
                wall, per_group, passes[count] = await scale(apiserver, op, count)
                print(f"{count:7d}   {wall:12.2f}   {wall / count:7.3f}   {per_group:18d}")
            print()
            print("one steady-state pass (nothing to change), mean per group:")
            print(" groups   requests   ms total   ms in API calls   ms operator's own")
            base = passes[COUNTS[0]]
            for count, cost in passes.items():
                print(
                    f"{count:7d}   {cost.requests:8.1f}   {cost.total_ms:8.1f}"
                    f"   {cost.api_ms:15.1f}   {cost.own_ms:17.1f}"
                    f"  (own x{cost.own_ms / base.own_ms:.2f} of {COUNTS[0]} group(s))"
                )
        finally:
            # Every group's daemon may be inside a pass against the slow emulator.
            await op.stop(timeout=120.0)


if __name__ == "__main__":
    asyncio.run(main())
