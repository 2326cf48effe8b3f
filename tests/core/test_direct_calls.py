"""The direct path answers exactly as the SDK does: every request below goes to two copies
of one MAD, one with MAD_DIRECT_TOOL_CALLS on and one with it off, and the replies must be
identical (status, content type, body). The SDK endpoint counts what reaches it, so the
test also shows which requests took the direct path."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

import pytest
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import MCPError
from mcp.types import CallToolResult, TextContent
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, LATEST_MODERN_VERSION
from pydantic import Field

from mads.core.arguments import error_result
from mads.core.service import MCP_BODY_LIMIT, MadService
from mads.core.settings import MadSettings

HEADERS = {
    "host": "127.0.0.1:8000",
    "content-type": "application/json",
    "accept": "application/json, text/event-stream",
}


class Forwarder:
    """Server middleware answering ``fiedler_*`` calls itself, as a gateway relays them."""

    def forwards(self, name: str) -> bool:
        return name.startswith("fiedler_")

    async def forward(self, name: str, arguments: dict[str, Any]) -> CallToolResult:
        if arguments.get("fail"):
            return error_result(f"cannot relay {name}: fiedler is busy; retry after 5 s")
        reply = {"task_id": "t-1", "echo": arguments}
        return CallToolResult(
            content=[TextContent(type="text", text=json.dumps(reply))], structured_content=reply
        )

    async def __call__(self, ctx: Any, call_next: Any) -> Any:
        if ctx.method == "tools/call" and isinstance(ctx.params, dict):
            name = ctx.params.get("name")
            if isinstance(name, str) and self.forwards(name):
                return await self.forward(name, ctx.params.get("arguments") or {})
        return await call_next(ctx)


def build(direct: bool) -> MadService:
    service = MadService("rogers", MadSettings(mad_name="rogers", mad_direct_tool_calls=direct))
    forwarder = Forwarder()
    service.mcp.middleware.append(forwarder)
    service.forward_directly(forwarder)

    @service.tool("rogers_lookup", description="Look a name up.")
    async def lookup(
        name: Annotated[str, Field(min_length=1, description="The name.")],
        count: Annotated[int, Field(ge=0)] = 1,
    ) -> dict[str, Any]:
        if name == "ghost":
            raise ToolError(f"unknown name {name!r}")
        if name == "boom":
            raise RuntimeError("the lookup table is gone")
        if name == "protocol":
            raise MCPError(code=-32602, message="no such name space", data={"name": name})
        return {"name": name, "count": count}

    @service.tool("rogers_echo", description="Echo text.")
    def echo(text: str) -> str:
        return text

    @service.tool("rogers_whoami", description="Uses the request context.")
    async def whoami(ctx: Context) -> str:
        return "context" if ctx is not None else "none"

    return service


class Endpoint:
    """One MAD's ASGI app, called in-process; counts requests reaching the SDK."""

    def __init__(self, service: MadService) -> None:
        self.service = service
        self.app = service.app()
        self.sdk_requests = 0
        manager = service.mcp.session_manager
        inner = manager.asgi_app

        async def counted(scope, receive, send):
            self.sdk_requests += 1
            await inner(scope, receive, send)

        manager.asgi_app = counted

    async def post(
        self, body: bytes, headers: dict[str, str], repeated: tuple[tuple[str, str], ...] = ()
    ) -> tuple[int, str, bytes]:
        raw_headers = [(k.encode(), v.encode()) for k, v in (*headers.items(), *repeated)]
        raw_headers.append((b"content-length", str(len(body)).encode()))
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/mcp",
            "raw_path": b"/mcp",
            "query_string": b"",
            "root_path": "",
            "headers": raw_headers,
            "client": ("127.0.0.1", 40000),
            "server": ("127.0.0.1", 8000),
        }
        chunks = [body[i : i + 65536] for i in range(0, len(body), 65536)] or [b""]

        async def receive():
            if chunks:
                chunk = chunks.pop(0)
                return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}
            return {"type": "http.disconnect"}

        sent: list[dict[str, Any]] = []

        async def send(message):
            sent.append(message)

        await self.app(scope, receive, send)
        start = next(m for m in sent if m["type"] == "http.response.start")
        content_type = dict(start["headers"]).get(b"content-type", b"").decode()
        body_out = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
        return start["status"], content_type, body_out


@contextlib.asynccontextmanager
async def endpoints() -> AsyncIterator[tuple[Endpoint, Endpoint]]:
    """The two copies, running. (A context manager, not a fixture: the SDK's task group
    must be left in the task that entered it.)"""
    direct, sdk = Endpoint(build(True)), Endpoint(build(False))
    async with direct.service._lifespan(direct.app), sdk.service._lifespan(sdk.app):
        yield direct, sdk


def call(name: str, arguments: Any = None, *, request_id: Any = 1, **extra: Any) -> bytes:
    params: dict[str, Any] = {"name": name}
    if arguments is not None:
        params["arguments"] = arguments
    message = {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}
    message.update(extra)
    return json.dumps(message).encode()


DIRECT_CASES = {
    "result": call("rogers_lookup", {"name": "ada", "count": 2}),
    "string id": call("rogers_lookup", {"name": "ada"}, request_id="req-7"),
    "plain text result": call("rogers_echo", {"text": "hello"}),
    "no arguments member": call("rogers_lookup"),
    "null arguments": json.dumps(
        {
            "jsonrpc": "2.0",
            "id": 3,
            "method": "tools/call",
            "params": {"name": "rogers_lookup", "arguments": None},
        }
    ).encode(),
    "tool error": call("rogers_lookup", {"name": "ghost"}),
    "unexpected exception": call("rogers_lookup", {"name": "boom"}),
    "protocol error from the tool": call("rogers_lookup", {"name": "protocol"}),
    "unknown argument": call("rogers_lookup", {"name": "ada", "colour": "red"}),
    "wrong type": call("rogers_lookup", {"name": "ada", "count": "many"}),
    "coercible type": call("rogers_lookup", {"name": "ada", "count": "3"}),
    "out of range": call("rogers_lookup", {"name": "ada", "count": -1}),
    "missing argument": call("rogers_lookup", {}),
    "nested argument": call("rogers_echo", {"text": [[[["deep"]]]]}),
    "forwarded tool": call("fiedler_converse", {"prompt": "hi", "n": [1, 2]}),
    "forwarded tool without arguments": call("fiedler_converse"),
    "forwarded tool's error": call("fiedler_converse", {"fail": True}),
}

SDK_CASES = {
    "tool that needs the request context": call("rogers_whoami", {}),
    "unknown tool": call("rogers_nothing", {}),
    "arguments not an object": call("rogers_lookup", ["ada"]),
    "forwarded tool, arguments not an object": call("fiedler_converse", ["hi"]),
    "_meta in params": json.dumps(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "rogers_echo", "arguments": {"text": "x"}, "_meta": {"a": 1}},
        }
    ).encode(),
    "boolean id": call("rogers_echo", {"text": "x"}, request_id=True),
    "null id": call("rogers_echo", {"text": "x"}, request_id=None),
    "tools/list": b'{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}',
    "notification": b'{"jsonrpc":"2.0","method":"notifications/initialized"}',
    "batch": b"[" + call("rogers_echo", {"text": "x"}) + b"]",
    "malformed JSON": b'{"jsonrpc":"2.0","id":1,"method":"tools/call",',
    "not an object": b'"tools/call"',
    "wrong jsonrpc version": call("rogers_echo", {"text": "x"}).replace(b'"2.0"', b'"1.0"'),
    "extra member": call("rogers_echo", {"text": "x"}, extra=1),
    "oversized body": call("rogers_echo", {"text": "x" * (MCP_BODY_LIMIT + 10)}),
    "not UTF-8": call("rogers_echo", {"text": "caf\u00e9"}).replace(b"\\u00e9", b"\xe9"),
    "nesting too deep to parse": b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":'
    + b'{"name":"rogers_echo","arguments":{"text":'
    + b"[" * 100_000
    + b"]" * 100_000
    + b"}}}",
}


@pytest.mark.parametrize("case", sorted(DIRECT_CASES))
@pytest.mark.parametrize("version", [None, *HANDSHAKE_PROTOCOL_VERSIONS])
async def test_direct_replies_equal_the_sdk_replies(case: str, version) -> None:
    headers = dict(HEADERS)
    if version is not None:
        headers["mcp-protocol-version"] = version
    body = DIRECT_CASES[case]
    async with endpoints() as (direct, sdk):
        assert await direct.post(body, headers) == await sdk.post(body, headers)
    assert (direct.sdk_requests, sdk.sdk_requests) == (0, 1)


@pytest.mark.parametrize("case", sorted(SDK_CASES))
async def test_everything_else_reaches_the_sdk_unchanged(case: str) -> None:
    headers = {**HEADERS, "mcp-protocol-version": "2025-06-18"}
    body = SDK_CASES[case]
    async with endpoints() as (direct, sdk):
        assert await direct.post(body, headers) == await sdk.post(body, headers)
    assert direct.sdk_requests == sdk.sdk_requests == 1


HEADER_CASES = {
    "wrong content type": {"content-type": "text/plain"},
    "no accept": {"accept": ""},
    "accepts only event streams": {"accept": "text/event-stream"},
    "foreign host": {"host": "evil.example"},
    "foreign origin": {"origin": "http://evil.example"},
    "modern protocol version": {"mcp-protocol-version": "2026-07-28"},
    "unknown protocol version": {"mcp-protocol-version": "1999-01-01"},
    "session id": {"mcp-session-id": "abc"},
}


REPEATED_HEADERS = {
    "two protocol versions": (("mcp-protocol-version", "2025-03-26"),),
    "two content types": (("content-type", "text/plain"),),
    "two accept headers": (("accept", "text/event-stream"),),
}


@pytest.mark.parametrize("case", sorted(REPEATED_HEADERS))
async def test_repeated_headers_reach_the_sdk_unchanged(case: str) -> None:
    headers = {**HEADERS, "mcp-protocol-version": "2025-11-25"}
    body = DIRECT_CASES["result"]
    repeated = REPEATED_HEADERS[case]
    async with endpoints() as (direct, sdk):
        assert await direct.post(body, headers, repeated) == await sdk.post(body, headers, repeated)
        assert direct.sdk_requests == sdk.sdk_requests == 1


@pytest.mark.parametrize("case", sorted(HEADER_CASES))
async def test_unusual_headers_reach_the_sdk_unchanged(case: str) -> None:
    headers = {**HEADERS, **HEADER_CASES[case]}
    body = DIRECT_CASES["result"]
    async with endpoints() as (direct, sdk):
        assert await direct.post(body, headers) == await sdk.post(body, headers)
    assert direct.sdk_requests == sdk.sdk_requests == 1


async def test_a_refused_call_runs_nothing_on_either_path() -> None:
    ran: list[str] = []
    async with endpoints() as pair:
        for endpoint in pair:
            original = endpoint.service.mcp.call_tool

            async def spy(name, arguments, context=None, _original=original):
                ran.append(name)
                return await _original(name, arguments, context)

            endpoint.service.mcp.call_tool = spy
            status, _, reply = await endpoint.post(
                call("rogers_lookup", {"name": "ada", "colour": "red"}), HEADERS
            )
            assert status == 200
            assert json.loads(reply)["result"]["isError"] is True
    assert ran == []


def modern_call(name: str, arguments: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    """A 2026-07-28 request: the envelope in ``params._meta`` and the routing headers."""
    meta = {
        "io.modelcontextprotocol/protocolVersion": LATEST_MODERN_VERSION,
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    body = json.dumps(
        {
            "jsonrpc": "2.0",
            "id": 9,
            "method": "tools/call",
            "params": {"name": name, "arguments": arguments, "_meta": meta},
        }
    ).encode()
    headers = {
        **HEADERS,
        "mcp-protocol-version": LATEST_MODERN_VERSION,
        "mcp-method": "tools/call",
        "mcp-name": name,
    }
    return body, headers


MODERN_CASES = {
    "result": ("rogers_lookup", {"name": "ada"}),
    "tool error": ("rogers_lookup", {"name": "ghost"}),
    "refused by the argument check": ("rogers_lookup", {"name": "ada", "colour": "red"}),
}


@pytest.mark.parametrize("case", sorted(MODERN_CASES))
async def test_the_modern_protocol_is_the_sdks_and_well_formed(case: str) -> None:
    """2026-07-28 requests are the SDK's on both copies, and every result carries the
    ``resultType`` that protocol requires (the argument check's refusal included)."""
    body, headers = modern_call(*MODERN_CASES[case])
    async with endpoints() as (direct, sdk):
        reply = await direct.post(body, headers)
        assert reply == await sdk.post(body, headers)
        assert direct.sdk_requests == sdk.sdk_requests == 1
    status, _, raw = reply
    assert status == 200
    assert json.loads(raw)["result"]["resultType"] == "complete"
