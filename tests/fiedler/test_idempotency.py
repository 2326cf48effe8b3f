"""fiedler_converse with a request_id: a lost reply can be retried safely. The same
requester_id and request_id return the task the first call made, however often the call
is repeated — directly or relayed through Grace — across a crash (a real SIGKILL) between
storing the task and replying."""

from __future__ import annotations

import signal
from collections.abc import Callable

import httpx
import pytest

from mads.core.mcp_client import McpToolError
from tests.fiedler.conftest import Fiedler, call, wait_terminal
from tests.support.grace import grace_session, new_token, ok
from tests.support.group import ProcessGroup
from tests.support.waiting import async_wait_for

PROMPT = "System check, please respond with OK."


def converse_over_http(fiedler: Fiedler, request_id: str) -> httpx.Response:
    return httpx.post(
        f"{fiedler.process.url}/mcp",
        json={
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {
                "name": "fiedler_converse",
                "arguments": {"prompt": PROMPT, "requester_id": "ops", "request_id": request_id},
            },
        },
        headers={"accept": "application/json, text/event-stream"},
        timeout=30,
    )


async def test_a_retry_after_a_crash_between_store_and_reply_makes_one_task(
    start_fiedler: Callable[..., Fiedler], group: ProcessGroup
) -> None:
    crashing = start_fiedler({"MAD_FAILPOINTS": "fiedler.converse.after_store"})
    with pytest.raises(httpx.HTTPError):  # the process died before it replied
        converse_over_http(crashing, "ticket-41")
    assert crashing.process.process is not None
    # Killed by SIGKILL, as kill -9 kills it: subprocess reports the signal as -9 (a
    # shell or a container runtime would say 137).
    assert crashing.process.process.wait(timeout=30) == -signal.SIGKILL
    assert "Failpoint fiedler.converse.after_store" in crashing.process.log_text()
    assert crashing.rows() == 1, "the task was stored before the crash"

    fiedler = start_fiedler()
    first = await call(
        fiedler,
        "fiedler_converse",
        {"prompt": PROMPT, "requester_id": "ops", "request_id": "ticket-41"},
    )
    # The same retry as an outside client sends it: through Grace, relayed over the bus.
    token = new_token()
    grace = group.start("grace", {"GRACE_API_TOKENS": token})
    try:
        async with grace_session(grace.url, token) as s:

            async def relayed() -> bool:
                return "fiedler_converse" in {t.name for t in (await s.list_tools()).tools}

            await async_wait_for(relayed, timeout=30, what="fiedler's tools listed by grace")
            again = await ok(
                s,
                "fiedler_converse",
                {"prompt": PROMPT, "requester_id": "ops", "request_id": "ticket-41"},
            )
    finally:
        grace.stop()
    assert first["task_id"] == again["task_id"]
    assert fiedler.rows() == 1
    final = await wait_terminal(fiedler, first["task_id"])
    assert (final["status"], final["result_payload"]) == ("COMPLETED", "OK")
    done = await call(
        fiedler,
        "fiedler_converse",
        {"prompt": PROMPT, "requester_id": "ops", "request_id": "ticket-41"},
    )
    assert done == {
        "status": "completed",
        "task_id": first["task_id"],
        "stream_topic": f"mad.stream.{first['task_id']}",
    }
    assert fiedler.rows() == 1


async def test_keys_are_per_requester_and_checked(start_fiedler: Callable[..., Fiedler]) -> None:
    fiedler = start_fiedler()
    a = await call(
        fiedler, "fiedler_converse", {"prompt": PROMPT, "requester_id": "a", "request_id": "k"}
    )
    b = await call(
        fiedler, "fiedler_converse", {"prompt": PROMPT, "requester_id": "b", "request_id": "k"}
    )
    assert a["task_id"] != b["task_id"]
    for bad in ("", "has space", "x" * 129, 7):
        with pytest.raises(McpToolError) as refused:
            await call(
                fiedler,
                "fiedler_converse",
                {"prompt": PROMPT, "requester_id": "a", "request_id": bad},
            )
        assert "request_id" in str(refused.value)
    assert fiedler.rows() == 2
