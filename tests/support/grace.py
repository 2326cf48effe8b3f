"""Talking to Grace as an outside client does: a bearer token, an MCP session with it, and a
tool call's result or its error text."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from typing import Any

from mcp import ClientSession

from mads.core.mcp_client import error_text, result_data, session


def new_token() -> str:
    return secrets.token_urlsafe(24)


@contextlib.asynccontextmanager
async def grace_session(
    url: str, token: str | None, extra: dict[str, str] | None = None
) -> AsyncIterator[ClientSession]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    headers.update(extra or {})
    async with session(f"{url}/mcp", headers=headers) as s:
        yield s


async def call(s: ClientSession, tool: str, arguments: dict[str, Any]) -> tuple[bool, Any]:
    result = await s.call_tool(tool, arguments)
    if result.is_error:
        return False, error_text(result)
    return True, result_data(result)


async def ok(s: ClientSession, tool: str, arguments: dict[str, Any]) -> Any:
    success, data = await call(s, tool, arguments)
    assert success, data
    return data
