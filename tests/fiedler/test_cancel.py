"""Cancelling tasks (fiedler_cancel_task), on a real Fiedler process against a slow
OpenAI-compatible endpoint: a RUNNING task's provider stream is closed and the task ends
CANCELLED, saying who cancelled it; a PENDING one never runs; a finished one cannot be
cancelled; every change is logged and published like any other."""

from __future__ import annotations

import asyncio
import collections
import json
import random
from collections.abc import Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from mads.core.mcp_client import McpToolError
from tests.support.fake_llm import FakeLLM
from tests.support.fiedler import TERMINAL, Fiedler, call, wait_terminal
from tests.support.group import ProcessGroup
from tests.support.waiting import async_wait_for


class StatusWatcher:
    """Every status Fiedler publishes on mad.fiedler.task.status, by task."""

    def __init__(self, group: ProcessGroup) -> None:
        self.client = aioredis.Redis(port=group.redis.port, password=group.redis.password)
        self.pubsub = self.client.pubsub()
        self.seen: dict[str, list[dict[str, Any]]] = {}

    async def __aenter__(self) -> StatusWatcher:
        await self.pubsub.subscribe("mad.fiedler.task.status")
        confirmation = await self.pubsub.get_message(timeout=5)
        assert confirmation and confirmation["type"] == "subscribe"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.pubsub.aclose()
        await self.client.aclose()

    async def drain(self) -> dict[str, list[str]]:
        while (message := await self.pubsub.get_message(timeout=0.2)) is not None:
            if message["type"] == "message":
                payload = json.loads(message["data"])["payload"]
                self.seen.setdefault(payload["task_id"], []).append(payload)
        return {task: [p["status"] for p in found] for task, found in self.seen.items()}


async def converse(fiedler: Fiedler, prompt: str) -> str:
    created = await call(fiedler, "fiedler_converse", {"prompt": prompt, "requester_id": "ops"})
    return str(created["task_id"])


async def test_cancelling_a_running_task_closes_the_provider_stream(
    slow_fiedler: Fiedler, fake_llm: FakeLLM, group: ProcessGroup
) -> None:
    async with StatusWatcher(group) as watcher:
        running = await converse(slow_fiedler, "slow: a long answer")
        await async_wait_for(
            lambda: "slow: a long answer" in fake_llm.streaming, timeout=30, what="the stream"
        )
        waiting = await converse(slow_fiedler, "slow: never asked")

        # PENDING behind the slow one: cancelled, it never runs.
        reply = await call(
            slow_fiedler, "fiedler_cancel_task", {"task_id": waiting, "requester_id": "ops"}
        )
        assert reply["status"] == "CANCELLED"
        assert reply["error_details"] == "cancelled by ops (fiedler_cancel_task) before it ran"

        # RUNNING: the reply already says CANCELLED; the provider's stream was closed.
        reply = await call(
            slow_fiedler, "fiedler_cancel_task", {"task_id": running, "requester_id": "ops"}
        )
        assert reply["status"] == "CANCELLED", reply
        assert reply["error_details"] == "cancelled by ops (fiedler_cancel_task) while running"
        assert reply["result_payload"] is None
        await async_wait_for(
            lambda: "slow: a long answer" in fake_llm.disconnects,
            timeout=10,
            what="the provider connection to be closed",
        )

        # The runner takes the next task.
        after = await converse(slow_fiedler, "after the cancel")
        final = await wait_terminal(slow_fiedler, after)
        assert (
            final["status"] == "COMPLETED" and final["result_payload"] == "Echo: after the cancel"
        )

        # Again: the same answer, nothing changed.
        again = await call(slow_fiedler, "fiedler_cancel_task", {"task_id": running})
        assert again == reply

        async def both_cancelled() -> dict[str, list[str]] | None:
            found = await watcher.drain()
            ends = [found.get(task, [""])[-1] for task in (running, waiting)]
            return found if ends == ["CANCELLED", "CANCELLED"] else None

        seen = await async_wait_for(both_cancelled, timeout=10, what="the published statuses")
        assert seen[running] == ["PENDING", "RUNNING", "CANCELLED"], seen
        assert seen[waiting] == ["PENDING", "CANCELLED"]
        assert watcher.seen[running][-1]["error_details"] == reply["error_details"]
    assert fake_llm.requests_for("slow: never asked") == []
    assert slow_fiedler.rows("task_id = ? AND attempts = 0", (waiting,)) == 1
    log = slow_fiedler.process.log_text()
    for task in (running, waiting):
        assert f"Task {task} status changed to CANCELLED" in log


async def test_a_finished_or_unknown_task_cannot_be_cancelled(slow_fiedler: Fiedler) -> None:
    done = await converse(slow_fiedler, "quick")
    final = await wait_terminal(slow_fiedler, done)
    assert final["status"] == "COMPLETED"
    with pytest.raises(McpToolError, match="is already COMPLETED: a finished task cannot be"):
        await call(slow_fiedler, "fiedler_cancel_task", {"task_id": done})
    assert await call(slow_fiedler, "fiedler_get_task_status", {"task_id": done}) == final
    with pytest.raises(McpToolError, match="unknown task_id 'nope': no such task"):
        await call(slow_fiedler, "fiedler_cancel_task", {"task_id": "nope"})


async def test_50_tasks_cancelled_at_random_moments_across_kills_end_in_one_state(
    start_fiedler: Callable[..., Fiedler], fake_llm: FakeLLM
) -> None:
    """Cancels land on PENDING and RUNNING tasks, Fiedler is killed (SIGKILL) and started
    again twice in between: every task ends in exactly one terminal state, logged once, and
    one whose cancel was answered CANCELLED stays CANCELLED."""
    # About three seconds per answer, four at a time: the 50 take far longer than the cancel
    # waves, so the waves meet tasks in flight even on a slow, busy machine.
    fake_llm.delay = 0.3
    fiedler = start_fiedler(
        {
            "FIEDLER_LLM_PROVIDER": "openai",
            "FIEDLER_LLM_BASE_URL": fake_llm.base_url,
            "FIEDLER_LLM_MODEL": "test-model",
            "FIEDLER_LLM_TIMEOUT_S": "120",
            "FIEDLER_MAX_CONCURRENCY": "4",
        }
    )
    rng = random.Random(20261201)
    ids = [await converse(fiedler, f"chaos {n} " + "word " * 8) for n in range(50)]
    order = rng.sample(ids, len(ids))
    replies: dict[str, str] = {}
    for wave, targets in enumerate((order[:12], order[12:24], order[24:35])):
        for task_id in targets:
            await asyncio.sleep(rng.uniform(0, 0.15))
            try:
                reply = await call(
                    fiedler, "fiedler_cancel_task", {"task_id": task_id, "requester_id": "chaos"}
                )
            except McpToolError as exc:
                assert "is already COMPLETED" in str(exc), exc
                continue
            replies[task_id] = reply["status"]
        if wave < 2:
            fiedler.process.kill()  # SIGKILL: no shutdown code runs
            fiedler.process.start()
    fake_llm.delay = 0.0
    await async_wait_for(
        lambda: fiedler.rows("status IN ('COMPLETED', 'FAILED', 'CANCELLED')") == 50,
        timeout=120,
        interval=0.2,
        what="all 50 tasks terminal",
    )
    log = fiedler.process.log_text()
    for task_id in ids:
        ends = {s: log.count(f"Task {task_id} status changed to {s}") for s in TERMINAL}
        assert sum(ends.values()) == 1, (task_id, ends)
        (final,) = [s for s, n in ends.items() if n]
        assert fiedler.rows("task_id = ? AND status = ?", (task_id, final)) == 1
    for task_id, answered in replies.items():
        if answered == "CANCELLED":
            assert fiedler.rows("task_id = ? AND status = 'CANCELLED'", (task_id,)) == 1
    assert fiedler.rows("status = 'FAILED'") == 0
    landed = collections.Counter(replies.values())
    assert landed["CANCELLED"] >= 10, landed  # the waves did land
