"""Fiedler's concurrency is what reaches the LLM: on a slow endpoint (the fake server answers
each request after 2 s), the most requests it ever answers at once is exactly the declared
concurrency — never more, and no smaller ceiling of Fiedler's own (its HTTP connection pool
follows the setting) — and with nothing declared, Fiedler's default for an LLM endpoint."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import pytest

from mads.fiedler.settings import LLM_CONCURRENCY
from tests.support.fake_llm import FakeLLM
from tests.support.fiedler import Fiedler
from tests.support.tool_calls import ToolCallClient
from tests.support.waiting import wait_for

ANSWER_S = 2.0
CALLERS = 32


@pytest.fixture
def slow_llm() -> Iterator[FakeLLM]:
    """A fresh fake endpoint per test (its peak counts this test's requests only)."""
    server = FakeLLM()
    server.answer_delay = ANSWER_S
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def converse(fiedler: Fiedler, calls: int) -> set[str]:
    """``calls`` fiedler_converse calls from :data:`CALLERS` callers at once; the task ids."""
    client = ToolCallClient(f"{fiedler.process.url}/mcp", connections=CALLERS)
    remaining = iter(range(calls))
    task_ids: set[str] = set()

    async def caller() -> None:
        for n in remaining:
            arguments = {"prompt": f"answer number {n}", "requester_id": "concurrency-test"}
            ok, result = await client.call("fiedler_converse", arguments)
            assert ok, result
            task_ids.add(result["task_id"])

    try:
        await asyncio.gather(*(caller() for _ in range(CALLERS)))
    finally:
        await client.close()
    return task_ids


def run(fiedler: Fiedler, llm: FakeLLM, calls: int, concurrency: int) -> None:
    """Every call stored, then every task COMPLETED (a generous deadline: the work takes
    ``calls / concurrency`` rounds of the endpoint's answer time)."""
    task_ids = asyncio.run(converse(fiedler, calls))
    assert len(task_ids) == calls
    rounds = -(-calls // concurrency)
    wait_for(
        lambda: fiedler.rows("status = 'COMPLETED'") == calls,
        timeout=60 + 4 * rounds * ANSWER_S,
        interval=0.5,
        what=f"{calls} tasks COMPLETED",
    )
    assert fiedler.rows("status != 'COMPLETED'") == 0
    assert len(llm.requests) == calls
    assert llm.in_flight == 0


@pytest.mark.parametrize("concurrency", [64, 256])
def test_the_declared_concurrency_is_the_peak_of_requests_at_the_llm(
    start_fiedler: Callable[..., Fiedler], slow_llm: FakeLLM, concurrency: int
) -> None:
    fiedler = start_fiedler({**slow_llm.fiedler_env, "FIEDLER_MAX_CONCURRENCY": str(concurrency)})
    run(fiedler, slow_llm, calls=1000, concurrency=concurrency)
    assert slow_llm.peak == concurrency


def test_with_nothing_declared_the_peak_is_the_default(
    start_fiedler: Callable[..., Fiedler], slow_llm: FakeLLM
) -> None:
    fiedler = start_fiedler(slow_llm.fiedler_env)
    run(fiedler, slow_llm, calls=4 * LLM_CONCURRENCY, concurrency=LLM_CONCURRENCY)
    assert slow_llm.peak == LLM_CONCURRENCY
