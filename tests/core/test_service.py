"""MadService in-process: tool calls with the same checks as over MCP, clean error text."""

from typing import Annotated

import pytest
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from mads.core.service import MadService, allowed_host_patterns
from mads.core.settings import MadSettings
from tests.support.mad_process import MadProcess
from tests.support.thinking import thinking_fixture

thinking = thinking_fixture()


@pytest.fixture
def service() -> MadService:
    svc = MadService("rogers", MadSettings(mad_name="rogers"))

    @svc.tool("rogers_lookup", description="Look a name up.")
    def lookup(name: Annotated[str, Field(description="The name.")]) -> dict[str, str]:
        if name == "ghost":
            raise ToolError(f"unknown name {name!r}")
        return {"name": name}

    return svc


async def test_results_and_tool_errors_without_the_sdk_prefix(service: MadService) -> None:
    assert await service.call_tool_locally("rogers_lookup", {"name": "x"}) == (
        True,
        {"name": "x"},
    )
    assert await service.call_tool_locally("rogers_lookup", {"name": "ghost"}) == (
        False,
        "unknown name 'ghost'",
    )


async def test_arguments_are_checked_like_over_mcp(service: MadService) -> None:
    assert await service.call_tool_locally("rogers_lookup", {"name": "x", "extra": 1}) == (
        False,
        "invalid arguments for rogers_lookup: unknown argument(s): 'extra' (expected: name)",
    )
    assert await service.call_tool_locally("rogers_lookup", {}) == (
        False,
        "invalid arguments for rogers_lookup: name: required",
    )
    assert await service.call_tool_locally("nope", {}) == (False, "unknown tool 'nope' on rogers")


async def test_the_published_schema_forbids_unknown_arguments(service: MadService) -> None:
    (definition,) = await service.tool_definitions()
    assert definition["inputSchema"]["additionalProperties"] is False
    assert definition["inputSchema"]["properties"]["name"]["description"] == "The name."


def test_host_patterns_cover_loopback_and_service_names() -> None:
    patterns = allowed_host_patterns(["grace"])
    for host in ("127.0.0.1", "127.0.0.1:*", "localhost:*", "[::1]:*", "grace", "grace:*"):
        assert host in patterns


async def test_an_unknown_prompt_is_a_clear_invalid_params_error(thinking: MadProcess) -> None:
    """The MADs offer no prompts: prompts/get answers -32602 naming the prompt, and the MAD
    logs no traceback (the SDK alone answers error code 0 and logs one)."""
    import httpx

    request = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "prompts/get",
        "params": {"name": "test_simple_prompt"},
    }
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    async with httpx.AsyncClient() as client:
        reply = (await client.post(f"{thinking.url}/mcp", json=request, headers=headers)).json()
    assert reply["error"]["code"] == -32602, reply
    assert reply["error"]["message"] == "Unknown prompt: 'test_simple_prompt'"
    assert "Traceback" not in thinking.log_text()


async def test_an_unknown_tool_is_a_clear_invalid_params_error(thinking: MadProcess) -> None:
    """tools/call of a tool the MAD does not serve answers -32602 naming the tool, as the
    MCP specification has it (the SDK alone answers a tool result with isError)."""
    import httpx

    request = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "no_such_tool", "arguments": {}},
    }
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    async with httpx.AsyncClient() as client:
        reply = (await client.post(f"{thinking.url}/mcp", json=request, headers=headers)).json()
    assert reply["error"] == {"code": -32602, "message": "Unknown tool: 'no_such_tool'"}, reply
    assert "Traceback" not in thinking.log_text()
