"""The reference Sequential Thinking server (npm, stdio) and ours (HTTP), side by side.

Both sessions live in one event loop on a helper thread (an anyio blocking portal), so
synchronous tests, hypothesis's included, call them one argument set at a time.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from anyio.from_thread import BlockingPortal, start_blocking_portal
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.shared.exceptions import MCPError

from mads.core.mcp_client import session
from tests.support import npm
from tests.support.mad_process import MadProcess

HERE = Path(__file__).resolve().parent
REFERENCE = (
    HERE / "node_modules" / "@modelcontextprotocol" / "server-sequential-thinking" / "dist"
) / "index.js"
TOOL = "sequentialthinking"


@dataclass(frozen=True)
class Outcome:
    """What one server made of one argument set: the structured result, or refused."""

    accepted: bool
    result: dict[str, Any] | None
    message: str

    @classmethod
    def of(cls, reply: Any) -> Outcome:
        text = " ".join(c.text for c in reply.content if getattr(c, "type", "") == "text")
        if reply.is_error:
            return cls(False, None, text)
        return cls(True, reply.structured_content, text)


class Pair:
    """Calls the reference and ours with the same arguments, in the same order."""

    def __init__(self, portal: BlockingPortal, reference: ClientSession, ours: ClientSession):
        self._portal = portal
        self._reference = reference
        self._ours = ours

    def call(self, arguments: dict[str, Any]) -> tuple[Outcome, Outcome]:
        return (
            self._portal.call(_call, self._reference, arguments),
            self._portal.call(_call, self._ours, arguments),
        )


async def _call(client: ClientSession, arguments: dict[str, Any]) -> Outcome:
    try:
        return Outcome.of(await client.call_tool(TOOL, arguments))
    except MCPError as error:  # refused as a JSON-RPC error rather than a tool error
        return Outcome(False, None, str(error))


@contextlib.asynccontextmanager
async def _sessions(url: str) -> AsyncIterator[tuple[ClientSession, ClientSession]]:
    parameters = StdioServerParameters(
        command="node",
        args=[str(npm.installed(HERE, REFERENCE))],
        # The reference draws every thought on stderr unless told not to.
        env={"PATH": os.environ["PATH"], "DISABLE_THOUGHT_LOGGING": "true"},
    )
    async with (
        stdio_client(parameters) as (read, write),
        ClientSession(read, write) as reference,
        session(url) as ours,
    ):
        await reference.initialize()
        yield reference, ours


@contextlib.contextmanager
def side_by_side(ours: MadProcess) -> Iterator[Pair]:
    """A fresh reference process and a session with ``ours`` (already running)."""
    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(_sessions(f"{ours.url}/mcp")) as (reference, mine),
    ):
        yield Pair(portal, reference, mine)
