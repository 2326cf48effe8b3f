"""The only places this project reaches past the MCP SDK's public surface.

Checked on mcp 2.3.0 (the lock pins it). The SDK keeps its registered tools in a private
tool manager; a MAD needs three things from it that no public call gives: a tool's
published input schema (to enforce exactly what it publishes and to forbid unknown names),
the SDK's own argument validation (what a schema cannot say), and whether a tool asks for
the request context (only the SDK's session can supply that).
"""

from __future__ import annotations

from typing import Any

from mcp.server import MCPServer
from mcp.server.lowlevel import Server
from mcp.server.mcpserver.tools.base import Tool

CHECKED_ON = "2.3.0"


def registered_tool(server: MCPServer, name: str) -> Tool | None:
    return server._tool_manager.get_tool(name)


def forbid_unknown_arguments(tool: Tool) -> None:
    """Say in the published schema that names it does not list are refused."""
    tool.parameters["additionalProperties"] = False


def published_schema(tool: Tool) -> dict[str, Any]:
    """The very object ``tools/list`` publishes as the tool's ``inputSchema``."""
    return tool.parameters


def sdk_validation(tool: Tool) -> Any:
    """The SDK's lenient validation of a call's arguments (raises pydantic's error)."""
    return tool.fn_metadata.validate_arguments


def wants_request_context(tool: Tool) -> bool:
    return tool.context_kwarg is not None


def lowlevel_server(server: MCPServer) -> Server[Any]:
    """The lowlevel server under ``server``: what a second transport of it is built on."""
    return server._lowlevel_server


def add_request_handler(server: MCPServer, method: str, params_type: Any, handler: Any) -> None:
    """Answer a request method the SDK does not serve itself (the ``tasks/*`` methods of
    both protocol generations, which the SDK never dispatches). ``MCPServer`` has no public
    way to add one; its lowlevel server does."""
    lowlevel_server(server).add_request_handler(method, params_type, handler)
