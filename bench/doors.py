"""One tool call straight to Fiedler against the same call through Grace, from the same
client at the same concurrency, alternately, with each process's CPU per call: what
``bench/calls.py --part relay`` and ``bench/tasks.py --part status`` measure, each with its
own call. Not a script of its own."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from bench.proc import cpu_seconds
from tests.support.fiedler import relayed_calls
from tests.support.grace import new_token
from tests.support.group import process_group
from tests.support.mad_process import MadProcess
from tests.support.tool_calls import ToolCallClient
from tests.support.waiting import wait_for

PULSE = {"MAD_HEARTBEAT_S": "5"}
"""As deployed: a MAD busy with the load is not taken for one that stopped."""

Accept = Callable[[dict[str, Any], bool, Any], bool]
"""Whether a call's answer (whether it succeeded, then its result or error) is the one
wanted to its arguments (first); the run stops at the first that is not."""


Arguments = dict[str, Any] | Callable[[], dict[str, Any]]
"""A call's arguments: the same for every call, or made anew for each."""


async def call_loop(
    url: str,
    token: str | None,
    tool: str,
    arguments: Arguments,
    accept: Accept,
    seconds: float,
    concurrency: int,
) -> int:
    """Calls of ``tool`` completed in ``seconds`` by ``concurrency`` callers, each waiting
    for its reply before the next."""
    client = ToolCallClient(f"{url}/mcp", token=token, connections=concurrency)
    deadline = time.monotonic() + seconds
    done = 0

    async def caller() -> None:
        nonlocal done
        while time.monotonic() < deadline:
            ok, data = await client.call(tool, arguments() if callable(arguments) else arguments)
            if not accept(arguments if isinstance(arguments, dict) else {}, ok, data):
                raise SystemExit(f"bench: {tool} refused: {data}")
            done += 1

    try:
        await asyncio.gather(*(caller() for _ in range(concurrency)))
    finally:
        await client.close()
    return done


def finished_tasks(url: str) -> int:
    """Tasks Fiedler has carried out to an end since it started (its /metrics)."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return sum(
        int(float(line.split()[-1]))
        for line in text.splitlines()
        if line.startswith("fiedler_task_status_changes_total{")
        and any(f'status="{s}"' in line for s in ("COMPLETED", "FAILED", "CANCELLED"))
    )


def settle(url: str, tasks: int) -> None:
    """Until Fiedler has carried out ``tasks`` (every task made so far): a run does not pay
    for the work the run before it left behind (a direct run accepts calls faster than the
    tasks are carried out)."""
    wait_for(lambda: finished_tasks(url) >= tasks, timeout=600, interval=0.1, what="Fiedler idle")


def compare(
    workdir: Path,
    tool: str,
    arguments: Callable[[MadProcess], Arguments],
    accept: Accept,
    *,
    seconds: float,
    rounds: int,
    concurrency: int,
    makes_task: bool = False,
) -> float:
    """Sequential Thinking, Fiedler and Grace on a fresh bus; ``tool`` with
    ``arguments(fiedler)`` straight to Fiedler and through Grace, ``rounds`` alternations of
    ``seconds`` each after a warm-up, each run begun with Fiedler idle (``makes_task``:
    each call made one task, and every one of them is finished first; then each way's
    calls over the time until its tasks were carried out is printed too). Prints calls/s each
    way, the CPU per call of each process (the client's too: the machine's cores are shared
    by all of them), and returns the ratio through Grace / direct."""
    token = new_token()
    with process_group(workdir / "doors") as group:
        group.start("sequential_thinking")
        fiedler = group.start("fiedler", PULSE)
        grace = group.start("grace", {"GRACE_API_TOKENS": token, **PULSE})
        args = arguments(fiedler)
        targets = {"direct": (fiedler.url, None), "through Grace": (grace.url, token)}
        pids = {
            name: process.process.pid if process.process else 0
            for name, process in (("Fiedler", fiedler), ("Grace", grace), ("Redis", group.redis))
        }
        pids["client"] = os.getpid()

        made = finished_tasks(fiedler.url)

        def run(url: str, key: str | None, length: float) -> int:
            nonlocal made
            done = asyncio.run(call_loop(url, key, tool, args, accept, length, concurrency))
            made += done if makes_task else 0
            return done

        for url, key in targets.values():  # warm up
            settle(fiedler.url, made)
            run(url, key, 1.0)
        calls = dict.fromkeys(targets, 0)
        relayed = dict.fromkeys(targets, 0)
        elapsed = dict.fromkeys(targets, 0.0)
        finished = dict.fromkeys(targets, 0.0)
        """Each way's time from its first call to the last of its tasks finished."""
        cpu = {(label, name): 0.0 for label in targets for name in pids}
        for _ in range(rounds):
            for label, (url, key) in targets.items():
                settle(fiedler.url, made)
                before = {name: cpu_seconds(pid) for name, pid in pids.items()}
                relayed_before = int(relayed_calls(fiedler.url, tool))
                start = time.monotonic()
                n = run(url, key, seconds)
                took = time.monotonic() - start
                calls[label] += n
                relayed[label] += int(relayed_calls(fiedler.url, tool)) - relayed_before
                elapsed[label] += took
                for name, pid in pids.items():
                    cpu[(label, name)] += cpu_seconds(pid) - before[name]
                if makes_task:
                    settle(fiedler.url, made)
                    finished[label] += time.monotonic() - start
                print(f"{label:>14}: {n / took:,.0f} {tool} calls/s")
    rates = {label: calls[label] / elapsed[label] for label in targets}
    for label, rate in rates.items():
        per_call = ", ".join(
            f"{name} {cpu[(label, name)] * 1000 / max(calls[label], 1):.2f} ms" for name in pids
        )
        print(
            f"{label:>14}: {rate:,.0f} calls/s over all rounds (concurrency {concurrency}); "
            f"CPU per call: {per_call}; carried out by Fiedler as relayed calls: "
            f"{relayed[label]:,} of {calls[label]:,}"
        )
    ratio = rates["through Grace"] / rates["direct"]
    print(f"ratio {tool} calls/s, through Grace / direct: {ratio:.2f} (goal >= 0.7)")
    if makes_task:
        carried = {label: calls[label] / finished[label] for label in targets}
        for label, rate in carried.items():
            print(f"{label:>14}: {rate:,.0f} calls/s accepted and their tasks carried out")
        print(
            f"ratio {tool} calls/s accepted and carried out, through Grace / direct: "
            f"{carried['through Grace'] / carried['direct']:.2f} (what the group sustains: "
            "calls accepted faster than their tasks are carried out pile up)"
        )
    return ratio
