"""Sequential Thinking as a real process, through the official MCP client."""

import httpx
import pytest

from mads.core.mcp_client import McpToolError, call_tool, list_tools, session
from tests.support.mad_process import MadProcess
from tests.support.thinking import thinking_fixture

REFERENCE_FIELDS = {
    "thoughtNumber",
    "totalThoughts",
    "nextThoughtNeeded",
    "branches",
    "thoughtHistoryLength",
}


thinking = thinking_fixture({"SEQUENTIAL_THINKING_MAX_HISTORY": "5"})
by_service_name = thinking_fixture({"MAD_ALLOWED_HOSTS": "sequential_thinking"})


async def test_tool_list_shows_the_reference_schema(thinking: MadProcess) -> None:
    tools = await list_tools(f"{thinking.url}/mcp")
    assert [t.name for t in tools] == ["sequentialthinking"]
    schema = tools[0].input_schema
    assert set(schema["required"]) == {
        "thought",
        "nextThoughtNeeded",
        "thoughtNumber",
        "totalThoughts",
    }
    assert set(schema["properties"]) == {
        "thought",
        "nextThoughtNeeded",
        "thoughtNumber",
        "totalThoughts",
        "isRevision",
        "revisesThought",
        "branchFromThought",
        "branchId",
        "needsMoreThoughts",
    }
    assert all(prop.get("description") for prop in schema["properties"].values())
    assert tools[0].description


async def test_a_sequence_with_revision_and_branch(thinking: MadProcess) -> None:
    url = f"{thinking.url}/mcp"
    async with session(url) as s:
        results = []
        for arguments in (
            {
                "thought": "Frame the problem",
                "thoughtNumber": 1,
                "totalThoughts": 3,
                "nextThoughtNeeded": True,
            },
            {
                "thought": "Reconsider the framing",
                "thoughtNumber": 2,
                "totalThoughts": 3,
                "nextThoughtNeeded": True,
                "isRevision": True,
                "revisesThought": 1,
            },
            {
                "thought": "Try another route",
                "thoughtNumber": 3,
                "totalThoughts": 3,
                "nextThoughtNeeded": False,
                "branchFromThought": 1,
                "branchId": "alt",
            },
        ):
            result = await s.call_tool("sequentialthinking", arguments)
            assert not result.is_error
            results.append(result.structured_content)
    assert all(set(r) == REFERENCE_FIELDS for r in results)
    assert [r["thoughtHistoryLength"] for r in results] == [1, 2, 3]
    assert [r["branches"] for r in results] == [[], [], ["alt"]]
    assert results[2] == {
        "thoughtNumber": 3,
        "totalThoughts": 3,
        "nextThoughtNeeded": False,
        "branches": ["alt"],
        "thoughtHistoryLength": 3,
    }


async def test_strings_are_coerced_like_the_reference(thinking: MadProcess) -> None:
    data = await call_tool(
        f"{thinking.url}/mcp",
        "sequentialthinking",
        {
            "thought": "x",
            "thoughtNumber": "4",
            "totalThoughts": "2",
            "nextThoughtNeeded": "true",
        },
    )
    assert data["thoughtNumber"] == 4
    assert data["totalThoughts"] == 4
    assert data["nextThoughtNeeded"] is True


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"thought": "x"}, "nextThoughtNeeded: required"),
        (
            {
                "thought": "x",
                "thoughtNumber": "three",
                "totalThoughts": 3,
                "nextThoughtNeeded": True,
            },
            "thoughtNumber: 'three' is not a number",
        ),
        (
            {"thought": "x", "thoughtNumber": 0, "totalThoughts": 3, "nextThoughtNeeded": True},
            "thoughtNumber: must be >= 1",
        ),
        (
            {"thought": 5, "thoughtNumber": 1, "totalThoughts": 3, "nextThoughtNeeded": True},
            "thought: must be string, not integer",
        ),
        (
            {
                "thought": "x",
                "thoughtNumber": 1,
                "totalThoughts": 3,
                "nextThoughtNeeded": True,
                "revisesThought": None,
            },
            "revisesThought: must be integer or string, not null",
        ),
        (
            {"thought": "x", "thoughtNumber": 1, "totalThoughts": 3, "nextThoughtNeeded": "maybe"},
            "nextThoughtNeeded: must be true or false",
        ),
    ],
)
async def test_bad_arguments_are_tool_errors(
    thinking: MadProcess, arguments: dict, message: str
) -> None:
    with pytest.raises(McpToolError) as info:
        await call_tool(f"{thinking.url}/mcp", "sequentialthinking", arguments)
    assert message in str(info.value)
    assert "\n" not in str(info.value)
    # Nothing was recorded.
    status = httpx.get(f"{thinking.url}/status").json()
    assert status["lines"][0]["value"] == "0/5"


async def test_history_cap_holds_over_http(thinking: MadProcess) -> None:
    async with session(f"{thinking.url}/mcp") as s:
        for n in range(1, 21):
            result = await s.call_tool(
                "sequentialthinking",
                {
                    "thought": f"t{n}",
                    "thoughtNumber": n,
                    "totalThoughts": 20,
                    "nextThoughtNeeded": n < 20,
                },
            )
    assert result.structured_content["thoughtHistoryLength"] == 5
    assert "MCP Server started on port" in thinking.log_text()


def test_service_host_names_pass_the_host_check(by_service_name: MadProcess) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}

    def post(host: str) -> httpx.Response:
        return httpx.post(
            f"{by_service_name.url}/mcp", json=body, headers={**headers, "Host": host}, timeout=10
        )

    assert post("sequential_thinking:8000").status_code == 200
    assert post("localhost").status_code == 200
    refused = post("evil.example:8000")
    assert refused.status_code == 421
