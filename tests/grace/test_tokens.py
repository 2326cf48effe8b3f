"""Scoped, limited front-door tokens (GRACE_TOKENS_FILE), on real processes: a token scoped
to one tool cannot call another (403 naming the scope, nothing done); a token limited to
5 requests/s sending 50 in a second is refused with 429 and Retry-After, Fiedler sees at
most the limit, and another token is unaffected. Every refusal is counted and logged
once per token and reason, never with the token."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
from mcp_types.version import LATEST_HANDSHAKE_VERSION

from mads.grace import tokens
from tests.support.grace import new_token
from tests.support.group import ProcessGroup
from tests.support.group import mad_group as mad_group  # the fixture
from tests.support.tool_calls import ToolCallClient
from tests.support.waiting import async_wait_for

REQUESTS = "mad.fiedler.requests"


def _file(path: Path, entries: list[dict[str, object]]) -> Path:
    path.write_text(json.dumps({"tokens": entries}))
    return path


def test_a_bad_tokens_file_is_one_clear_line_without_its_hashes(tmp_path: Path) -> None:
    good = "0" * 64
    cases = {
        "not json": ("{", "is not JSON"),
        "bad hash": ({"tokens": [{"name": "a", "sha256": "abc"}]}, "sha256"),
        "unknown field": ({"tokens": [{"name": "a", "sha256": good, "x": 1}]}, "x"),
        "twice": (
            {"tokens": [{"name": "a", "sha256": good}, {"name": "a", "sha256": "1" * 64}]},
            "token name 'a' twice",
        ),
        "same hash": (
            {"tokens": [{"name": "a", "sha256": good}, {"name": "b", "sha256": good}]},
            "have the same sha256",
        ),
        "zero rate": (
            {"tokens": [{"name": "a", "sha256": good, "limits": {"requests_per_second": 0}}]},
            "requests_per_second",
        ),
    }
    for case, (content, expected) in cases.items():
        path = tmp_path / f"{case}.json"
        path.write_text(content if isinstance(content, str) else json.dumps(content))
        with pytest.raises(tokens.TokenFileError) as caught:
            tokens.load_file(path)
        message = str(caught.value)
        assert expected in message and "\n" not in message, (case, message)
        assert good not in message and "1" * 64 not in message, case
    with pytest.raises(tokens.TokenFileError, match="cannot be read"):
        tokens.load_file(tmp_path / "missing.json")


def test_the_rate_limit_is_a_bucket_of_one_seconds_worth() -> None:
    now = [0.0]
    limiter = tokens.Limiter(clock=lambda: now[0])
    five = tokens.Principal("five", requests_per_second=5)
    admitted = 0
    for _ in range(50):
        if limiter.admit(five) is None:
            admitted += 1
            limiter.release(five)
    assert admitted == 5
    refusal = limiter.admit(five)
    assert refusal is not None and refusal.kind == "rate"
    assert "over its limit of 5 requests/s" in refusal.reason
    assert tokens.retry_after(refusal.wait_s) == "1"
    now[0] += 1.0
    assert sum(limiter.admit(five) is None for _ in range(50)) == 5
    two = tokens.Principal("two", concurrent_calls=2)
    assert limiter.admit(two) is None and limiter.admit(two) is None
    over = limiter.admit(two)
    assert over is not None and over.kind == "concurrency" and "2 calls in flight" in over.reason
    limiter.release(two)
    assert limiter.admit(two) is None


def admitted(limiter: tokens.Limiter, principal: tokens.Principal, tries: int) -> int:
    """How many of ``tries`` requests, one after another, the limiter lets through."""
    count = 0
    for _ in range(tries):
        if limiter.admit(principal) is None:
            count += 1
            limiter.release(principal)
    return count


def test_the_default_limits_hold_for_whoever_sets_none_of_its_own() -> None:
    now = [0.0]
    limiter = tokens.Limiter(clock=lambda: now[0], default_rate=3, default_concurrency=2)
    plain = tokens.Principal("api-token-1")
    assert admitted(limiter, plain, 9) == 3
    now[0] += 1.0
    assert limiter.admit(plain) is None and limiter.admit(plain) is None
    over = limiter.admit(plain)
    assert over is not None and over.kind == "concurrency" and "2 calls in flight" in over.reason
    # Its own limits win over the defaults, each kind on its own.
    faster = tokens.Principal("faster", requests_per_second=10)
    assert admitted(limiter, faster, 20) == 10
    wider = tokens.Principal("wider", concurrent_calls=4)
    assert [limiter.admit(wider) is None for _ in range(3)] == [True, True, True]
    over = limiter.admit(wider)
    assert over is not None and over.kind == "rate"  # three a second: the default rate


async def test_scopes_and_limits_hold_and_other_tokens_are_unaffected(
    mad_group: ProcessGroup, tmp_path: Path
) -> None:
    reader, limited, admin = new_token(), new_token(), new_token()
    tokens_file = _file(
        tmp_path / "tokens.json",
        [
            {
                "name": "reader",
                "sha256": tokens.digest(reader),
                "scopes": {"tools": ["fiedler_get_task_status"]},
            },
            {
                "name": "limited",
                "sha256": tokens.digest(limited),
                "limits": {"requests_per_second": 5},
            },
        ],
    )
    mad_group.start("sequential_thinking")
    grace = mad_group.start(
        "grace", {"GRACE_API_TOKENS": admin, "GRACE_TOKENS_FILE": str(tokens_file)}
    )
    fiedler = mad_group.start("fiedler")
    clients = {
        name: ToolCallClient(f"{grace.url}/mcp", token=token, connections=50)
        for name, token in (("reader", reader), ("limited", limited), ("admin", admin))
    }
    redis = mad_group.redis.client()
    try:

        async def offered() -> bool:
            done, _ = await clients["admin"].call("fiedler_list_tasks", {})
            return done

        await async_wait_for(offered, timeout=60, what="Grace to relay Fiedler's tools")
        before = redis.xlen(REQUESTS)

        # Out of scope: 403 naming the scope, nothing handed to Fiedler.
        converse = {"prompt": "System check, please respond with OK.", "requester_id": "t"}
        done, said = await clients["reader"].call("fiedler_converse", converse)
        assert not done and "HTTP 403" in said
        assert "token \\'reader\\' lacks the scope for tool \\'fiedler_converse\\'" in said
        assert redis.xlen(REQUESTS) == before
        done, said = await clients["reader"].call("fiedler_get_task_status", {"task_id": "x"})
        assert "HTTP" not in str(said)  # in scope: answered (an unknown task, as a tool error)
        before = redis.xlen(REQUESTS)

        # Over the limit: 50 in about a second from "limited", 20 from "admin" meanwhile.
        async def burst(name: str, count: int) -> list[tuple[bool, object]]:
            return await asyncio.gather(
                *(clients[name].call("fiedler_list_tasks", {}) for _ in range(count))
            )

        limited_results, admin_results = await asyncio.gather(
            burst("limited", 50), burst("admin", 20)
        )
        refused = [said for done, said in limited_results if not done]
        assert len(refused) >= 40
        assert all("HTTP 429" in str(said) for said in refused)
        assert all(done for done, _ in admin_results)
        relayed = redis.xlen(REQUESTS) - before
        assert relayed <= 10 + len(admin_results)

        async with httpx.AsyncClient() as http:
            for _ in range(10):
                reply = await http.post(
                    f"{grace.url}/mcp",
                    headers={
                        "Authorization": f"Bearer {limited}",
                        "Accept": "application/json, text/event-stream",
                        "MCP-Protocol-Version": LATEST_HANDSHAKE_VERSION,
                    },
                    json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                )
                if reply.status_code == 429:
                    break
            assert reply.status_code == 429 and int(reply.headers["retry-after"]) >= 1
            metrics = (await http.get(f"{grace.url}/metrics")).text
        counted = {
            line.split("{")[1].split("}")[0]: float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith("grace_refusals_total{")
        }
        assert counted['reason="rate",token="limited"'] >= 40
        assert counted['reason="scope",token="reader"'] == 1
    finally:
        for client in clients.values():
            await client.close()
    log = grace.log_text()
    assert log.count("Refused a request from token 'limited'") == 1
    assert log.count("Refused a request from token 'reader'") == 1
    assert not any(secret in log for secret in (reader, limited, admin))
    assert "fiedler_converse" not in fiedler.log_text()
