"""Grace as a real process with Rogers and Sequential Thinking on a real Redis: the status
block, the relay tools, the gateway to Rogers' tools, and every refusal."""

import json
import uuid

import httpx

from tests.support.grace import call, grace_session, new_token, ok
from tests.support.group import ProcessGroup
from tests.support.group import mad_group as mad_group  # the fixture
from tests.support.redis_server import RedisServer
from tests.support.waiting import async_wait_for

GRACE_BLOCK = """[GraceV0 Status]
- MAD Name: grace
- Status: HEALTHY
- Conversation Bus Connected: True
"""


async def test_grace_relays_and_refuses(mad_group: ProcessGroup) -> None:
    token = new_token()
    mad_group.start("sequential_thinking")
    grace = mad_group.start(
        "grace",
        {
            "GRACE_API_TOKENS": f"{new_token()},{token}",
            "GRACE_MAX_BUFFER": "5",
            "GRACE_MAX_PAYLOAD_BYTES": "2048",
        },
    )
    mad_group.start("rogers")

    status = grace.cli("mad-status")
    assert (status.returncode, status.stdout) == (0, GRACE_BLOCK)
    assert "Access: bearer token required on /mcp" in grace.log_text()

    async with grace_session(grace.url, token) as s:
        # The gateway lists Rogers' tools next to Grace's own and relays a call to them.
        async def listed() -> set[str]:
            names = {t.name for t in (await s.list_tools()).tools}
            return names if "rogers_get_connections" in names else set()

        names = await async_wait_for(listed, timeout=15, what="rogers tools listed by grace")
        assert {
            "grace_send_message",
            "grace_subscribe",
            "grace_poll_messages",
            "rogers_get_stats",
        } <= names
        tool = next(t for t in (await s.list_tools()).tools if t.name == "rogers_get_stats")
        assert "hours" in tool.input_schema["properties"]

        async def grace_healthy() -> bool:
            reply = await ok(s, "rogers_get_connections", {})
            return any(
                c["mad_id"] == "grace" and c["status"] == "HEALTHY" for c in reply["connections"]
            )

        await async_wait_for(grace_healthy, timeout=15, what="grace HEALTHY via the gateway")
        success, error = await call(s, "rogers_get_stats", {"hours": "many"})
        assert not success and "hours" in error

        # Subscribe; wait until the fan-out delivers (subscriptions apply asynchronously).
        client_id = str(uuid.uuid4())
        await ok(s, "grace_subscribe", {"client_id": client_id, "topics": ["mad.topic.t.*"]})

        async def delivered() -> list:
            await ok(s, "grace_send_message", {"channel": "mad.topic.t.probe", "payload": {}})
            return (await ok(s, "grace_poll_messages", {"client_id": client_id}))["messages"]

        await async_wait_for(delivered, timeout=15, what="first delivery to the client")
        await ok(s, "grace_poll_messages", {"client_id": client_id})  # drain late probes

        sent = await ok(
            s,
            "grace_send_message",
            {
                "channel": "mad.topic.t.news",
                "payload": {"n": 1},
                "recipient_id": "someone",
                "conversation_id": "conv-1",
                "correlation_id": "corr-1",
            },
        )
        assert sent["status"] == "success"

        async def one_message() -> dict | None:
            got = await ok(s, "grace_poll_messages", {"client_id": client_id})
            return got if got["messages"] else None

        got = await async_wait_for(one_message, timeout=10, what="the message in the buffer")
        message = got["messages"][0]
        assert message["message_id"] == sent["message_id"]
        assert message["sender_id"] == "grace"
        assert (message["recipient_id"], message["conversation_id"], message["correlation_id"]) == (
            "someone",
            "conv-1",
            "corr-1",
        )
        assert message["payload"] == {"n": 1}
        assert got["dropped"] == 0

        # Bounded buffer: 8 sent, 5 kept (the newest), 3 reported dropped.
        for n in range(8):
            await ok(s, "grace_send_message", {"channel": "mad.topic.t.news", "payload": {"n": n}})

        async def full() -> bool:
            return (
                await redis_server_buffer_len(mad_group.redis, client_id) == 5
                and await redis_dropped(mad_group.redis, client_id) == 3
            )

        await async_wait_for(full, timeout=10, what="buffer full with 3 dropped")
        got = await ok(s, "grace_poll_messages", {"client_id": client_id})
        assert [m["payload"]["n"] for m in got["messages"]] == [3, 4, 5, 6, 7]
        assert (got["dropped"], got["remaining"]) == (3, 0)

        # Refusals: each a clear error, and nothing published.
        refusals = [
            (
                "grace_send_message",
                {"channel": "mad.system.heartbeat.fiedler", "payload": {"x": 1}},
                "is not for outside clients",
            ),
            (
                "grace_send_message",
                {"channel": "mad.fiedler.task.status", "payload": {}},
                "is not for outside clients",
            ),
            (
                "grace_send_message",
                {"channel": "mad.direct.grace.abc", "payload": {}},
                "relay replies",
            ),
            (
                "grace_send_message",
                {"channel": "mad.topic.t.news", "payload": {"x": "y" * 4096}},
                "over the 2048-byte limit",
            ),
            (
                "grace_send_message",
                {"channel": "mad.topic.t.news", "payload": {}, "sender_id": "fiedler"},
                "unknown argument",
            ),
            ("grace_send_message", {"channel": "mad.topic.t.*", "payload": {}}, "wildcards"),
            ("grace_poll_messages", {"client_id": "nobody"}, "unknown client_id 'nobody'"),
            ("grace_subscribe", {"client_id": "c", "topics": ["mad.system.*"]}, "mad.system"),
        ]
        for tool, arguments, expected in refusals:
            success, error = await call(s, tool, arguments)
            assert not success, (tool, arguments)
            assert expected in error, error
            assert "Traceback" not in error

        sentinel = await ok(
            s, "grace_send_message", {"channel": "mad.topic.t.news", "payload": {"sentinel": True}}
        )
        got = await async_wait_for(one_message, timeout=10, what="the sentinel")
        assert [m["message_id"] for m in got["messages"]] == [sentinel["message_id"]]
        assert mad_group.redis.client().hget("mad.grace.clients", "nobody") is None

    # HTTP-level refusals: no token, wrong token, malformed JSON body.
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    headers = {"Accept": "application/json, text/event-stream"}
    async with httpx.AsyncClient(base_url=grace.url, timeout=10) as http:
        missing = await http.post("/mcp", json=body, headers=headers)
        wrong = await http.post(
            "/mcp", json=body, headers={**headers, "Authorization": "Bearer not-the-token-123"}
        )
        malformed = await http.post(
            "/mcp",
            content=b'{"jsonrpc": "2.0", "id": 1, "method": ',
            headers={
                **headers,
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/json",
            },
        )
        probe = await http.get("/readyz")
    assert missing.status_code == 401 and "missing bearer token" in missing.json()["error"]
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid bearer token"
    assert malformed.status_code == 400
    assert "parse" in json.dumps(malformed.json()).lower()
    assert probe.status_code == 200
    assert token not in grace.log_text()


async def redis_server_buffer_len(redis_server: RedisServer, client_id: str) -> int:
    return int(redis_server.client().llen(f"mad.grace.buffer.{client_id}"))


async def redis_dropped(redis_server: RedisServer, client_id: str) -> int:
    return int(redis_server.client().get(f"mad.grace.dropped.{client_id}") or 0)
