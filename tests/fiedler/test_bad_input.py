"""Bad input gets one clear error and writes nothing to the store."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from mads.core.mcp_client import McpToolError
from tests.support.fiedler import Fiedler, call
from tests.support.waiting import async_wait_for

TWO_MIB = 2 * 1024 * 1024


@pytest.fixture(scope="module")
def fiedler(start_fiedler_module: Callable[..., Fiedler]) -> Fiedler:
    return start_fiedler_module()


@pytest.mark.parametrize(
    ("tool", "arguments", "error"),
    [
        (
            "fiedler_converse",
            '{"prompt": "", "requester_id": "ops"}',
            "invalid arguments for fiedler_converse: prompt: must have at least 1 character(s)",
        ),
        (
            "fiedler_converse",
            '{"prompt": "   \\n ", "requester_id": "ops"}',
            "invalid arguments for fiedler_converse: prompt: must not be blank",
        ),
        (
            "fiedler_converse",
            '{"prompt": 42, "requester_id": "ops"}',
            "invalid arguments for fiedler_converse: prompt: must be string, not integer",
        ),
        (
            "fiedler_converse",
            '{"prompt": ["System check"], "requester_id": "ops"}',
            "invalid arguments for fiedler_converse: prompt: must be string, not array",
        ),
        (
            "fiedler_converse",
            '{"prompt": "System check, please respond with OK."}',
            "invalid arguments for fiedler_converse: requester_id: required",
        ),
        (
            "fiedler_converse",
            '{"prompt": "hi", "requester_id": "ops", "priority": "high"}',
            "invalid arguments for fiedler_converse: unknown argument(s): 'priority' "
            "(expected: prompt, request_id, requester_id)",
        ),
        (
            "fiedler_get_task_status",
            '{"task_id": "00000000-0000-0000-0000-000000000000"}',
            "unknown task_id '00000000-0000-0000-0000-000000000000': no such task",
        ),
        (
            "fiedler_get_task_status",
            '{"task_id": "x", "verbose": true}',
            "invalid arguments for fiedler_get_task_status: unknown argument(s): 'verbose' "
            "(expected: task_id)",
        ),
        (
            "fiedler_list_tasks",
            '{"status": "DONE"}',
            "invalid arguments for fiedler_list_tasks: status: must be one of PENDING, "
            "RUNNING, COMPLETED, FAILED",
        ),
        (
            "fiedler_list_tasks",
            '{"limit": 0}',
            "invalid arguments for fiedler_list_tasks: limit: must be >= 1",
        ),
    ],
)
async def test_bad_arguments_are_refused(
    fiedler: Fiedler, tool: str, arguments: str, error: str
) -> None:
    with pytest.raises(McpToolError) as refused:
        await call(fiedler, tool, json.loads(arguments))
    assert error in str(refused.value)
    assert "\n" not in str(refused.value)
    assert fiedler.rows() == 0


def test_bad_arguments_through_mad_cli(fiedler: Fiedler) -> None:
    for tool, arguments, error in (
        ("fiedler_converse", '{"prompt": "", "requester_id": "ops"}', "prompt: must have at least"),
        ("fiedler_converse", '{"prompt": "x", "requester_id": "o", "extra": 1}', "unknown arg"),
        ("fiedler_get_task_status", '{"task_id": "nope"}', "unknown task_id 'nope'"),
    ):
        result = fiedler.process.cli("mad-cli", tool, arguments)
        assert result.returncode == 1
        assert result.stdout == ""
        assert result.stderr.startswith(f"mad-cli: {tool} failed: ")
        assert error in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert fiedler.rows() == 0


def test_malformed_json_through_mad_cli(fiedler: Fiedler) -> None:
    for arguments in ('{"prompt": "OK", ', "[1, 2]"):
        result = fiedler.process.cli("mad-cli", "fiedler_converse", arguments)
        assert result.returncode == 2
        assert result.stderr.startswith("mad-cli: arguments ")
        assert len(result.stderr.strip().splitlines()) == 1
    assert fiedler.rows() == 0


def test_malformed_json_on_the_mcp_endpoint(fiedler: Fiedler) -> None:
    response = httpx.post(
        f"{fiedler.process.url}/mcp",
        content=b'{"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "fiedler_conv',
        headers={
            "content-type": "application/json",
            "accept": "application/json, text/event-stream",
        },
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == -32700  # JSON-RPC parse error
    assert fiedler.rows() == 0


async def test_two_mib_prompt_is_refused(fiedler: Fiedler) -> None:
    with pytest.raises(McpToolError) as refused:
        await call(fiedler, "fiedler_converse", {"prompt": "x" * TWO_MIB, "requester_id": "ops"})
    assert str(refused.value) == (
        "invalid arguments for fiedler_converse: prompt: must have at most 100000 character(s)"
    )
    assert fiedler.rows() == 0


async def test_refusals_are_logged_without_a_traceback(fiedler: Fiedler) -> None:
    refusal = "Refused call to fiedler_converse: prompt: must be string, not integer"
    before = fiedler.process.log_text().count(refusal)
    with pytest.raises(McpToolError):
        await call(fiedler, "fiedler_converse", {"prompt": 7, "requester_id": "audit"})
    log = fiedler.process.log_text()
    assert log.count(refusal) == before + 1
    assert "Traceback" not in log
    assert fiedler.rows() == 0


async def test_list_tasks_filters_by_status_and_requester(fiedler: Fiedler) -> None:
    # Runs last in this module: it is the one test here that writes.
    for requester in ("alpha", "alpha", "beta"):
        await call(
            fiedler, "fiedler_converse", {"prompt": "Respond with OK", "requester_id": requester}
        )
    await call(fiedler, "fiedler_converse", {"prompt": "no such check", "requester_id": "beta"})
    listing = await call(fiedler, "fiedler_list_tasks", {"requester_id": "alpha"})
    assert listing["count"] == 2
    assert {t["requester_id"] for t in listing["tasks"]} == {"alpha"}
    assert listing["tasks"][0]["prompt_preview"] == "Respond with OK"
    limited = await call(fiedler, "fiedler_list_tasks", {"limit": 1})
    assert limited["count"] == 1
    assert limited["tasks"][0]["prompt_preview"] == "no such check"
    failed = await async_wait_for(
        lambda: _listed(fiedler, {"status": "FAILED"}), what="the FAILED task to be listed"
    )
    assert [t["prompt_preview"] for t in failed] == ["no such check"]
    assert failed[0]["error_details"].startswith("no LLM provider is configured")
    result = fiedler.process.cli("mad-cli", "fiedler_list_tasks", '{"requester_id": "beta"}')
    assert json.loads(result.stdout)["count"] == 2
    assert fiedler.rows() == 4


async def _listed(fiedler: Fiedler, arguments: dict[str, object]) -> list[dict[str, object]]:
    return (await call(fiedler, "fiedler_list_tasks", arguments))["tasks"]
