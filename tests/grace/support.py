"""Helpers shared by the Grace tests: an MCP session to Grace with a bearer token, and the
processes behind a gateway test (Sequential Thinking, Grace, Fiedler)."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcp import ClientSession

from mads.core.mcp_client import error_text, result_data, session
from tests.support.mad_process import MadProcess
from tests.support.redis_server import RedisServer


def new_token() -> str:
    return secrets.token_urlsafe(24)


@dataclass
class Gateway:
    thinking: MadProcess
    grace: MadProcess
    fiedler: MadProcess
    thinking_env: dict[str, str]
    """What a MAD that talks to the bus and to Sequential Thinking is started with."""


def start_gateway(
    start_mad: Callable[..., MadProcess],
    redis_server: RedisServer,
    tmp_path: Path,
    *,
    grace_env: dict[str, str] | None = None,
    fiedler_env: dict[str, str] | None = None,
    every: dict[str, str] | None = None,
) -> Gateway:
    """Sequential Thinking, Grace and Fiedler on ``redis_server``; ``every`` goes to all
    three, ``grace_env``/``fiedler_env`` to one."""
    common = every or {}
    st = start_mad("sequential_thinking", env=common)
    thinking = {**redis_server.env, "SEQUENTIAL_THINKING_URL": st.url + "/mcp", **common}
    grace = start_mad("grace", env={**redis_server.env, **common, **(grace_env or {})})
    db = {"FIEDLER_DB_PATH": str(tmp_path / "f.db")}
    fiedler = start_mad("fiedler", env={**thinking, **db, **(fiedler_env or {})})
    return Gateway(st, grace, fiedler, thinking)


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
