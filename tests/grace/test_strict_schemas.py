"""Published input schemas are enforced as published, with JSON's types, on a MAD's own
endpoint and through Grace alike; and a relayed call too big for the bus is a clear tool
error, not a broken reply."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mads.core.mcp_client import session
from tests.support.grace import call, grace_session, new_token
from tests.support.group import ProcessGroup, process_group
from tests.support.waiting import async_wait_for

TOKEN = new_token()


@pytest.fixture(scope="module")
def group(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessGroup]:
    with process_group(tmp_path_factory.mktemp("strict")) as processes:
        processes.start("sequential_thinking")
        processes.start("fiedler")
        processes.start("rogers")
        processes.start("grace", {"GRACE_API_TOKENS": TOKEN})
        yield processes


WRONG_TYPES = [
    ("fiedler", "fiedler_list_tasks", {"limit": True}, "limit: must be integer, not boolean"),
    ("fiedler", "fiedler_list_tasks", {"limit": "5"}, "limit: must be integer, not string"),
    ("fiedler", "fiedler_list_tasks", {"limit": "5.0"}, "limit: must be integer, not string"),
    ("fiedler", "fiedler_converse", {"prompt": "x", "requester_id": 7}, "requester_id: must be"),
    ("rogers", "rogers_get_stats", {"hours": True}, "hours: must be number or null, not boolean"),
    (
        "grace",
        "grace_send_message",
        {"channel": "mad.topic.t", "payload": "{}"},
        "payload: must be object, not string",
    ),
]


@pytest.mark.parametrize(("mad", "tool", "arguments", "message"), WRONG_TYPES)
async def test_wrong_json_types_are_refused_directly_and_through_grace(
    group: ProcessGroup, mad: str, tool: str, arguments: dict, message: str
) -> None:
    direct = group[mad]
    headers = {"Authorization": f"Bearer {TOKEN}"} if mad == "grace" else {}
    async with session(f"{direct.url}/mcp", headers=headers) as s:
        ok, error = await call(s, tool, arguments)
    assert not ok and message in error, error
    async with grace_session(group["grace"].url, TOKEN) as s:
        await async_wait_for(lambda: _offered(s, tool), timeout=30, what=f"Grace to offer {tool}")
        ok, relayed = await call(s, tool, arguments)
    assert not ok and message in relayed, relayed


async def test_the_published_schema_is_the_enforced_one(group: ProcessGroup) -> None:
    async with session(f"{group['fiedler'].url}/mcp") as s:
        tools = {t.name: t for t in (await s.list_tools()).tools}
    schema = tools["fiedler_list_tasks"].input_schema
    assert schema["additionalProperties"] is False
    assert schema["properties"]["limit"]["type"] == "integer"
    async with session(f"{group['fiedler'].url}/mcp") as s:
        ok, data = await call(s, "fiedler_list_tasks", {"limit": 5.0})  # an integer in JSON
    assert ok, data


async def test_a_relayed_call_over_the_bus_limit_is_a_tool_error(group: ProcessGroup) -> None:
    prompt = "x" * (1024 * 1024 + 10)
    async with grace_session(group["grace"].url, TOKEN) as s:
        await async_wait_for(lambda: _offered(s, "fiedler_converse"), timeout=30, what="tools")
        ok, error = await call(s, "fiedler_converse", {"prompt": prompt, "requester_id": "big"})
    assert not ok
    assert "cannot relay fiedler_converse" in error and "bytes" in error, error[:300]
    assert "Traceback" not in group["grace"].log_text()


async def _offered(s, tool: str) -> bool:
    return tool in {t.name for t in (await s.list_tools()).tools}
