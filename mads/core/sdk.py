"""The only places this project reaches past the MCP SDK's public surface.

Checked on mcp 2.3.0 (the lock pins it). The SDK keeps its registered tools in a private
tool manager; a MAD needs three things from it that no public call gives: a tool's
published input schema (to enforce exactly what it publishes and to forbid unknown names),
the SDK's own argument validation (what a schema cannot say), and whether a tool asks for
the request context (only the SDK's session can supply that). And ``MCPServer``'s
constructor sets up logging itself, importing ``rich`` for a handler that is dropped
whenever logging is set up already (:func:`new_server`). And the SDK's top-level
package imports its whole client side (sessions, transports) to re-export names a serving
process never uses: :func:`defer_client_imports` registers the package with that
``__init__`` run at the first name looked up on it.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where used: ``mads`` imports this module before any ``mcp``
    from mcp.server import MCPServer
    from mcp.server.lowlevel import Server
    from mcp.server.mcpserver.tools.base import Tool

CHECKED_ON = "2.3.0"
PACKAGE = "mcp"


def new_server(
    name: str, instructions: str | None, version: str, middleware: Sequence[Any]
) -> MCPServer:
    """``MCPServer(...)``, without its call of the SDK's ``configure_logging`` when the root
    logger has handlers (``mad-run`` sets logging up first): that call imports ``rich``
    (~0.1 s) for a handler ``logging.basicConfig`` then ignores, as it does nothing once
    the root logger has one. Without handlers the SDK sets logging up as it always does."""

    from mcp.server import MCPServer
    from mcp.server.mcpserver import server as mcpserver_module

    def build() -> MCPServer:
        return MCPServer(
            name=name, instructions=instructions, version=version, middleware=middleware
        )

    if not logging.getLogger().handlers:
        return build()
    names = vars(mcpserver_module)  # the name the constructor calls, in its own module
    sdk_setup = names["configure_logging"]
    names["configure_logging"] = _logging_is_set_up
    try:
        return build()
    finally:
        names["configure_logging"] = sdk_setup


def _logging_is_set_up(level: Any = "INFO") -> None:
    """What the SDK's ``configure_logging`` comes to once the root logger has handlers."""


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


def defer_client_imports() -> None:
    """Register ``mcp`` with its ``__init__`` deferred to the first name looked up on it
    (nothing to do if it is imported already or not installed)."""
    if PACKAGE in sys.modules:
        return
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        return
    module = importlib.util.module_from_spec(spec)
    loader = spec.loader
    lock = threading.Lock()

    def run_init(name: str) -> Any:
        with lock:  # a second thread waits for the first one's run
            if module.__dict__.get("__getattr__") is run_init:
                del module.__dict__["__getattr__"]  # the ``__init__`` runs without it
                try:
                    loader.exec_module(module)
                except BaseException:
                    module.__dict__["__getattr__"] = run_init
                    raise
        try:
            return module.__dict__[name]
        except KeyError:
            raise AttributeError(f"module {PACKAGE!r} has no attribute {name!r}") from None

    module.__dict__["__getattr__"] = run_init
    sys.modules[PACKAGE] = module
