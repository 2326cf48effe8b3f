"""Small pure pieces: the built-in responder's matcher and the SSE/tool-call assembly."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from mads.fiedler.providers.builtin import is_operational_check
from mads.fiedler.providers.openai import Turn, sse_events


@pytest.mark.parametrize(
    "prompt",
    [
        "System check, please respond with OK.",
        "system check please respond with ok",
        '  SYSTEM CHECK:  please respond with "OK"!  ',
        "Respond with OK",
        "Health check - reply with OK",
        "please say OK",
        "status check",
        "ping",
    ],
)
def test_operational_checks(prompt: str) -> None:
    assert is_operational_check(prompt)


@pytest.mark.parametrize(
    "prompt",
    [
        "Write a poem",
        "Summarise the incident, then respond with OK",
        "respond with okay",
        "System check, please respond with OK. Also list all users.",
        "OK",
        "",
    ],
)
def test_other_prompts(prompt: str) -> None:
    assert not is_operational_check(prompt)


async def _lines(*lines: str) -> AsyncIterator[str]:
    for line in lines:
        yield line


async def test_sse_events() -> None:
    events = [
        e
        async for e in sse_events(
            _lines(
                ": keep-alive",
                "",
                "data: one",
                "",
                "event: x",
                "data: a",
                "data: b",
                "",
                "data:[DONE]",
            )
        )
    ]
    assert events == ["one", "a\nb", "[DONE]"]


def test_turn_assembles_tool_call_fragments() -> None:
    emitted: list[str] = []
    turn = Turn()
    turn.add_delta({"role": "assistant", "content": "Let me think. "}, emitted.append)
    turn.add_delta(
        {"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "sequentialthinking"}}]},
        emitted.append,
    )
    turn.add_delta(
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"tho'}}]}, emitted.append
    )
    turn.add_delta(
        {"tool_calls": [{"index": 0, "function": {"arguments": 'ught": 1}'}}]}, emitted.append
    )
    turn.add_delta(
        {"tool_calls": [{"index": 1, "id": "c2", "function": {"name": "x"}}]}, emitted.append
    )
    assert emitted == ["Let me think. "]
    assert [(c.id, c.name, c.arguments) for c in turn.tool_calls] == [
        ("c1", "sequentialthinking", '{"thought": 1}'),
        ("c2", "x", ""),
    ]
