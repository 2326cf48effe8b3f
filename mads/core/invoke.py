"""Running one of a MAD's own tools: the one path every caller takes.

The SDK's MCP handler, the direct path (:mod:`mads.core.direct_calls`) and in-process calls
(``MadService.call_tool_locally``, which serves calls relayed over the bus) all check the
arguments with the same :class:`~mads.core.arguments.ArgumentCheck` and, for the direct
path and in-process calls, run the tool here: ``MCPServer.call_tool`` with the SDK
handler's error mapping (a tool's own error is a tool error; anything unexpected is logged
with its traceback and becomes a tool error too). ``tests/core/test_direct_calls.py`` holds
the direct path's replies byte-identical to the SDK handler's.
"""

from __future__ import annotations

import logging
from typing import Any

from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.shared.exceptions import MCPError
from mcp.types import CallToolResult

from mads.core.arguments import ArgumentCheck, error_result
from mads.core.mcp_client import error_text, result_data, strip_sdk_prefix

INTERNAL_ERROR = -32603

log = logging.getLogger(__name__)


async def run_checked(server: MCPServer, name: str, arguments: dict[str, Any]) -> CallToolResult:
    """Run a tool whose arguments were already checked. Raises :class:`MCPError` only for
    what the SDK answers with a JSON-RPC error (a handler that returned no result)."""
    try:
        outcome = await server.call_tool(name, arguments)
    except MCPError:
        raise
    except ToolError as exc:
        if isinstance(exc, UnexpectedToolError):
            log.exception("Tool %r raised an unexpected exception", name)
        return error_result(str(exc))
    except Exception as exc:
        log.exception("Tool %r raised an unexpected exception", name)
        return error_result(str(exc))
    if not isinstance(outcome, CallToolResult):
        raise MCPError(code=INTERNAL_ERROR, message="Handler returned an invalid result")
    return outcome


async def run_as_data(
    server: MCPServer, check: ArgumentCheck, name: str, arguments: Any
) -> tuple[bool, Any]:
    """Check and run a tool in-process: ``(True, data)`` or ``(False, one-line error)``."""
    if name not in check.signatures:
        return False, f"unknown tool {name!r}"
    refusal = check.refusal(name, arguments)
    if refusal is not None:
        return False, error_text(refusal)
    try:
        result = await run_checked(server, name, arguments)
    except MCPError as exc:
        return False, exc.error.message
    if result.is_error:
        return False, strip_sdk_prefix(error_text(result, name), name)
    return True, result_data(result)
