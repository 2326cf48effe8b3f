"""A relayed call to an owner that is down is answered once the owner has stayed down for
Grace's patience (two heartbeat periods, never under 5 s), not after the whole relay
timeout; it stays queued all the same. And arguments that are not an object are refused
as such, whatever their truthiness (an empty list is not "no arguments")."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from tests.support.grace import call, grace_session, new_token

RELAY_TIMEOUT_S = 600  # far beyond the test's own timeout: only the patience can answer


@pytest.mark.timeout(120)
async def test_a_down_owner_is_reported_before_the_relay_timeout(redis_server, start_mad) -> None:
    token = new_token()
    start_mad("sequential_thinking")
    grace = start_mad(
        "grace",
        env={
            **redis_server.env,
            "GRACE_API_TOKENS": token,
            "GRACE_RELAY_TIMEOUT_S": str(RELAY_TIMEOUT_S),
        },
    )
    async with grace_session(grace.url, token) as s:
        done, reply = await call(s, "rogers_get_stats", {})
    assert not done
    assert reply.startswith("rogers is down (never heard); "), reply
    waited = re.search(r"did not answer rogers_get_stats within (\d+) s", reply)
    assert waited is not None and int(waited.group(1)) < RELAY_TIMEOUT_S, reply
    assert "queued and will be carried out when rogers is back" in reply, reply
    # The request waits in Rogers' stream for Rogers.
    assert redis_server.client().xlen("mad.rogers.requests") == 1


@pytest.mark.parametrize("arguments", [[], [1], "", 0, False])
async def test_arguments_that_are_not_an_object_are_refused(
    redis_server, start_mad, arguments: object
) -> None:
    token = new_token()
    start_mad("sequential_thinking")
    grace = start_mad("grace", env={**redis_server.env, "GRACE_API_TOKENS": token})
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "rogers_get_stats", "arguments": arguments},
    }
    response = httpx.post(
        f"{grace.url}/mcp",
        content=json.dumps(body),
        headers={
            "authorization": f"Bearer {token}",
            "content-type": "application/json",
            "accept": "application/json, text/event-stream",
            "mcp-protocol-version": "2025-06-18",
        },
        timeout=60,
    )
    assert response.status_code == 200, response.text
    result = response.json()["result"]
    assert result["isError"] is True, result
    assert [c["text"] for c in result["content"]] == [
        "invalid arguments for rogers_get_stats: arguments must be a JSON object"
    ], result
    assert not redis_server.client().exists("mad.rogers.requests")
