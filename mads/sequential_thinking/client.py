"""The link from a MAD to the Sequential Thinking MCP server: part of Sequential Thinking's
public contract, for the MADs that call it (Rogers, Fiedler).

Checks the server with MCP ``initialize`` + ``tools/list`` at start and then periodically,
logs ``Successfully connected to Sequential Thinking MCP server`` on every (re)connect, and
reports ``Sequential Thinking Connected: True|False`` — the link never crashes its MAD.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from pydantic import Field, field_validator

from mads.core.mcp_client import McpUnreachableError, call_tool, list_tools
from mads.core.service import MadService
from mads.core.settings import BusSettings
from mads.core.status import StatusLine, connected_line
from mads.sequential_thinking.contract import (
    CONNECTED_LOG,
    DEFAULT_URL,
    LINK_NAME,
    TOOL_NAME,
)

__all__ = ["CONNECTED_LOG", "TOOL_NAME", "ThinkingClientSettings", "ThinkingLink", "link"]


class ThinkingClientSettings(BusSettings):
    """A MAD that also uses the Sequential Thinking MCP server."""

    sequential_thinking_url: str = DEFAULT_URL
    sequential_thinking_check_s: float = Field(
        default=5.0,
        gt=0,
        le=300,
        description="Seconds between checks of the link while it is up (readiness follows).",
    )

    @field_validator("sequential_thinking_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value


class ThinkingLink:
    def __init__(
        self,
        url: str,
        logger: logging.Logger,
        *,
        check_interval: float = 5.0,
        retry_interval: float = 1.0,
        timeout: float = 10.0,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.url = url
        self.headers = dict(headers or {})
        self.log = logger
        self.check_interval = check_interval
        self.retry_interval = retry_interval
        self.timeout = timeout
        self.connected = False
        self.last_error: str | None = None
        self.tool_schema: dict[str, Any] | None = None

    def status_line(self) -> StatusLine:
        return connected_line(LINK_NAME, self.connected, self.last_error)

    async def check(self) -> bool:
        try:
            tools = await list_tools(self.url, timeout=self.timeout, headers=self.headers)
        except McpUnreachableError as exc:
            return self._down(exc.reason)
        except Exception as exc:  # a broken peer must not take this MAD down
            return self._down(f"{type(exc).__name__}: {exc}".splitlines()[0])
        tool = next((t for t in tools if t.name == TOOL_NAME), None)
        if tool is None:
            return self._down(f"{self.url} does not offer the {TOOL_NAME} tool")
        self.tool_schema = {
            "name": tool.name,
            "description": tool.description or "",
            "inputSchema": tool.input_schema,
        }
        if not self.connected:
            self.connected = True
            self.last_error = None
            self.log.info(CONNECTED_LOG)
        return True

    def _down(self, reason: str) -> bool:
        if self.connected or reason != self.last_error:
            self.log.warning(
                "Sequential Thinking MCP server at %s unavailable: %s", self.url, reason
            )
        self.connected = False
        self.last_error = reason
        return False

    async def run(self) -> None:
        """Keep checking for the life of the process."""
        while True:
            ok = await self.check()
            await asyncio.sleep(self.check_interval if ok else self.retry_interval)

    async def think(self, arguments: Mapping[str, Any]) -> Any:
        """Call ``sequentialthinking``; marks the link down if the server is unreachable."""
        try:
            return await call_tool(
                self.url, TOOL_NAME, arguments, timeout=self.timeout, headers=self.headers
            )
        except McpUnreachableError as exc:
            self._down(exc.reason)
            raise


def link(service: MadService, settings: ThinkingClientSettings) -> ThinkingLink:
    """Keep ``service`` linked to Sequential Thinking: its status line, its readiness and the
    background check come with it."""
    thinking = ThinkingLink(
        settings.sequential_thinking_url,
        service.log,
        check_interval=settings.sequential_thinking_check_s,
        headers=settings.internal_headers,
    )
    service.add_status(thinking.status_line)
    service.add_readiness(LINK_NAME, lambda: thinking.connected)
    service.add_background(thinking.run)
    return thinking
