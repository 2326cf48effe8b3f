"""Answer providers: the built-in responder's limits, and an OpenAI-compatible endpoint
(the fake server in tests/support/fake_llm.py) streaming through Fiedler into
``mad.stream.<task_id>``, with a tool-call round trip into the real Sequential Thinking
process."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from tests.support.fake_llm import FakeLLM, echo_chunks
from tests.support.fiedler import Fiedler, call, wait_terminal
from tests.support.group import ProcessGroup
from tests.support.waiting import async_wait_for

API_KEY = "sk-test-do-not-log-4f1c9a"


@pytest.fixture
def openai_fiedler(start_fiedler: Callable[..., Fiedler], fake_llm: FakeLLM) -> Fiedler:
    return start_fiedler(
        {
            "FIEDLER_LLM_PROVIDER": "openai",
            "FIEDLER_LLM_BASE_URL": fake_llm.base_url,
            "FIEDLER_LLM_MODEL": "test-model",
            "FIEDLER_LLM_API_KEY": API_KEY,
            "FIEDLER_LLM_TIMEOUT_S": "1",
            "FIEDLER_LLM_RETRIES": "1",
        }
    )


class StreamWatcher:
    """Pattern-subscribed to ``mad.stream.*`` before the task exists (its id is not known
    until fiedler_converse answers)."""

    def __init__(self, group: ProcessGroup) -> None:
        self.client = aioredis.Redis(
            host="127.0.0.1", port=group.redis.port, password=group.redis.password
        )
        self.pubsub = self.client.pubsub()

    async def __aenter__(self) -> StreamWatcher:
        await self.pubsub.psubscribe("mad.stream.*")
        confirmation = await self.pubsub.get_message(timeout=5)
        assert confirmation and confirmation["type"] == "psubscribe"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.pubsub.aclose()
        await self.client.aclose()

    async def until_done(self, task_id: str, timeout: float = 30) -> list[dict[str, Any]]:
        """Every envelope on mad.stream.<task_id>, up to and including the final one."""
        seen: list[dict[str, Any]] = []

        async def final() -> list[dict[str, Any]] | None:
            message = await self.pubsub.get_message(timeout=1)
            if message is None or message["type"] != "pmessage":
                return None
            envelope = json.loads(message["data"])
            if envelope["channel"] == f"mad.stream.{task_id}":
                seen.append(envelope)
            return seen if seen and seen[-1]["payload"].get("done") else None

        what = f"the final envelope on mad.stream.{task_id}"
        return await async_wait_for(final, timeout=timeout, interval=0, what=what)


async def test_builtin_fails_other_prompts_naming_the_variables(
    start_fiedler: Callable[..., Fiedler],
) -> None:
    fiedler = start_fiedler()
    reply = await call(
        fiedler, "fiedler_converse", {"prompt": "Write a haiku", "requester_id": "t"}
    )
    status = await wait_terminal(fiedler, reply["task_id"])
    assert status["status"] == "FAILED"
    assert status["result_payload"] is None
    assert "no LLM provider is configured" in status["error_details"]
    for variable in (
        "FIEDLER_LLM_PROVIDER=openai",
        "FIEDLER_LLM_BASE_URL",
        "FIEDLER_LLM_MODEL",
        "FIEDLER_LLM_API_KEY",
    ):
        assert variable in status["error_details"]
    assert f"Task {reply['task_id']} status changed to FAILED" in fiedler.process.log_text()

    # Close variants of the operational check still pass.
    reply = await call(
        fiedler,
        "fiedler_converse",
        {"prompt": "  SYSTEM CHECK: respond with ok! ", "requester_id": "t"},
    )
    status = await wait_terminal(fiedler, reply["task_id"])
    assert (status["status"], status["result_payload"]) == ("COMPLETED", "OK")


async def test_openai_streams_chunks_in_order(
    openai_fiedler: Fiedler, fake_llm: FakeLLM, group: ProcessGroup, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fake_llm, "delay", 0.05)  # undone after the test: fake_llm is shared
    prompt = "tell me about the streaming bus in five words"
    async with StreamWatcher(group) as watcher:
        reply = await call(
            openai_fiedler, "fiedler_converse", {"prompt": prompt, "requester_id": "t"}
        )
        messages = await watcher.until_done(reply["task_id"])
    status = await wait_terminal(openai_fiedler, reply["task_id"])

    chunks, final = messages[:-1], messages[-1]
    expected = echo_chunks(prompt)
    assert [m["payload"]["delta"] for m in chunks] == expected
    assert [m["payload"]["seq"] for m in messages] == list(range(1, len(expected) + 2))
    assert all(m["sender_id"] == "fiedler" for m in messages)
    assert final["payload"]["done"] is True
    assert final["payload"]["status"] == "COMPLETED"
    assert status["status"] == "COMPLETED"
    assert status["result_payload"] == "".join(expected) == f"Echo: {prompt}"

    sent = fake_llm.requests_for(prompt)
    assert len(sent) == 1
    assert sent[0]["model"] == "test-model" and sent[0]["stream"] is True
    assert fake_llm.authorizations[-1] == f"Bearer {API_KEY}"
    assert API_KEY not in openai_fiedler.process.log_text()


async def test_openai_tool_call_round_trip_into_sequential_thinking(
    openai_fiedler: Fiedler, fake_llm: FakeLLM, group: ProcessGroup
) -> None:
    fake_llm.delay = 0.0
    prompt = "think: split the rollout into stages"
    async with StreamWatcher(group) as watcher:
        reply = await call(
            openai_fiedler, "fiedler_converse", {"prompt": prompt, "requester_id": "t"}
        )
        messages = await watcher.until_done(reply["task_id"])
    status = await wait_terminal(openai_fiedler, reply["task_id"])
    assert status["status"] == "COMPLETED", status["error_details"]

    first, second = fake_llm.requests_for(prompt)
    offered = first["tools"][0]["function"]
    assert offered["name"] == "sequentialthinking"
    assert {"thought", "nextThoughtNeeded", "thoughtNumber", "totalThoughts"} <= set(
        offered["parameters"]["required"]
    )
    # The streamed argument fragments were put back together, and the real service answered.
    call_message, tool_message = second["messages"][1], second["messages"][2]
    assert json.loads(call_message["tool_calls"][0]["function"]["arguments"]) == {
        "thought": "split the rollout into stages",
        "thoughtNumber": 1,
        "totalThoughts": 1,
        "nextThoughtNeeded": False,
    }
    assert tool_message["tool_call_id"] == "call_1"
    result = json.loads(tool_message["content"])
    assert result["thoughtNumber"] == 1 and result["nextThoughtNeeded"] is False
    assert result["thoughtHistoryLength"] >= 1

    answer = f"Thought recorded ({result['thoughtHistoryLength']})"
    assert status["result_payload"] == answer
    assert "".join(m["payload"].get("delta", "") for m in messages) == answer
    assert messages[-1]["payload"] == {
        "task_id": reply["task_id"],
        "seq": len(messages),
        "done": True,
        "status": "COMPLETED",
        "error_details": None,
    }


@pytest.mark.parametrize(
    ("prompt", "requests", "error"),
    [
        ("status: 401", 1, r"answered HTTP 401: simulated failure"),
        ("status: 500", 2, r"failed after 2 attempt\(s\).*HTTP 500: simulated failure"),
        ("hang", 2, r"failed after 2 attempt\(s\).*no response within 1 s"),
    ],
)
async def test_openai_failures_end_in_failed_with_the_reason(
    openai_fiedler: Fiedler, fake_llm: FakeLLM, prompt: str, requests: int, error: str
) -> None:
    reply = await call(openai_fiedler, "fiedler_converse", {"prompt": prompt, "requester_id": "t"})
    status = await wait_terminal(openai_fiedler, reply["task_id"])
    assert status["status"] == "FAILED"
    assert re.search(error, status["error_details"]), status["error_details"]
    assert len(fake_llm.requests_for(prompt)) == requests
    assert API_KEY not in status["error_details"]


async def test_openai_retries_a_transient_error(openai_fiedler: Fiedler, fake_llm: FakeLLM) -> None:
    prompt = "flaky: once more"
    reply = await call(openai_fiedler, "fiedler_converse", {"prompt": prompt, "requester_id": "t"})
    status = await wait_terminal(openai_fiedler, reply["task_id"])
    assert (status["status"], status["result_payload"]) == ("COMPLETED", f"Echo: {prompt}")
    assert len(fake_llm.requests_for(prompt)) == 2
