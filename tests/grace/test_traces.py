"""One trace for one outside call: the client's W3C ``traceparent`` (an HTTP header, or
``_meta.traceparent`` on 2026-07-28) is continued by Grace, carried in the bus envelope to
Fiedler, kept by the task's run and passed to Sequential Thinking by the MCP client. Each
process writes its spans to one JSON-lines file (``MAD_TRACE_FILE``), which the test
reads. Real processes."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_types.version import LATEST_MODERN_VERSION

from mads.core.mcp_client import result_data
from tests.support.fake_llm import FakeLLM
from tests.support.grace import grace_session, new_token
from tests.support.group import ProcessGroup
from tests.support.group import mad_group as mad_group  # the fixture
from tests.support.waiting import async_wait_for


def spans(path: Path, trace_id: str) -> list[dict[str, str]]:
    if not path.exists():
        return []
    found = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [span for span in found if span["trace_id"] == trace_id]


@pytest.mark.parametrize("carried_by", ["http-header", "meta"])
async def test_one_trace_id_across_grace_fiedler_and_sequential_thinking(
    carried_by: str, mad_group: ProcessGroup, tmp_path: Path
) -> None:
    """``http-header``: the 2025-11-25 client's HTTP ``traceparent``; ``meta``: the official
    client on 2026-07-28 with ``_meta.traceparent`` on the call."""
    trace_file = tmp_path / "spans.jsonl"
    traced = {"MAD_TRACE_FILE": str(trace_file)}
    llm = FakeLLM().start()
    try:
        token = new_token()
        mad_group.start("sequential_thinking", traced)
        grace = mad_group.start("grace", {**traced, "GRACE_API_TOKENS": token})
        mad_group.start("fiedler", {**traced, **llm.fiedler_env})
        trace_id = secrets.token_hex(16)
        traceparent = f"00-{trace_id}-{secrets.token_hex(8)}-01"
        if carried_by == "http-header":
            async with grace_session(grace.url, token, extra={"traceparent": traceparent}) as s:
                await _run_a_task(s, {})
        else:
            http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30)
            transport = streamable_http_client(f"{grace.url}/mcp", http_client=http)
            async with http, Client(transport) as client:
                assert client.protocol_version == LATEST_MODERN_VERSION
                await _run_a_task(client, {"traceparent": traceparent})

        def all_three() -> list[dict[str, str]] | None:
            found = spans(trace_file, trace_id)
            services = {span["service"] for span in found}
            return found if {"grace", "fiedler", "sequential_thinking"} <= services else None

        found = await async_wait_for(all_three, timeout=15, what="spans from all three MADs")
        names = {(span["service"], span["name"]) for span in found}
        assert ("grace", "tools/call fiedler_converse") in names, names
        assert ("fiedler", "relay fiedler_converse") in names, names
        assert any(s == "fiedler" and n.startswith("fiedler task ") for s, n in names), names
        assert any(s == "sequential_thinking" and "sequentialthinking" in n for s, n in names)
    finally:
        llm.stop()


async def _run_a_task(client: Any, meta: dict[str, Any]) -> None:
    """fiedler_converse (with ``meta`` on that call) and its status until it is done."""

    async def offered() -> bool:
        return "fiedler_converse" in {t.name for t in (await client.list_tools()).tools}

    await async_wait_for(offered, timeout=20, what="fiedler tools through grace")
    arguments = {"prompt": "think: one trace", "requester_id": "ops"}
    reply = await client.call_tool("fiedler_converse", arguments, meta=meta or None)
    created = result_data(reply)

    async def finished() -> dict | None:
        found = await client.call_tool("fiedler_get_task_status", {"task_id": created["task_id"]})
        status = result_data(found)
        return status if status["status"] in ("COMPLETED", "FAILED") else None

    status = await async_wait_for(finished, timeout=30, interval=0.3, what="the task")
    assert status["status"] == "COMPLETED", status


async def test_without_tracing_no_span_is_written_and_envelopes_carry_none(tmp_path) -> None:
    from mads.core import tracing
    from mads.core.envelope import Envelope, encode

    assert not tracing.enabled()  # this test process never set a provider up
    assert tracing.current_traceparent() is None
    data = json.loads(encode(Envelope(sender_id="t", channel="mad.topic.x")))
    assert "traceparent" not in data
