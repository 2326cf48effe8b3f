"""The direct path for a MAD's own tools: single stateless ``tools/call`` requests answered
without the SDK's per-request session machinery.

In stateless mode the SDK builds a transport, a JSON-RPC dispatcher, a server connection
and three tasks for every HTTP request, then tears them down; that costs about five times
what running the tool does (measured in-process: ~2.2 ms against ~0.4 ms of CPU for
the front door's message relay). For a front door that must relay a thousand messages a second,
that is the whole budget.

:class:`DirectToolCalls` sits in front of the MCP endpoint and answers only the plainest
request: one JSON-RPC ``tools/call`` for a tool the MAD registered itself, no ``_meta``,
no session, a handshake-era protocol version, headers that the SDK's own checks accept.
It runs the same argument check, the same ``MCPServer.call_tool``, the same error mapping
as the SDK's handler and shapes the result with the SDK's own per-version serializer, so
the reply is the one the SDK would give (``tests/core/test_direct_calls.py`` compares the
two byte for byte). Anything else — ``initialize``, ``tools/list``, notifications, the
gateway's relayed tools, malformed or oversized bodies, wrong headers — is handed to the
SDK untouched, which answers or refuses it as always.

A MAD that forwards tools it does not own (the front door's gateway relays the group's
tools over the bus) may hand them to the direct path too (:class:`ForwardedTools`): the same
plain request for such a tool is answered with what the forwarding middleware would have
returned through the SDK, sent as the SDK sends a middleware's result, so a relayed call
pays none of the SDK's per-request cost either.

What the direct path does not do: open an OpenTelemetry span per call. ``MAD_DIRECT_TOOL_
CALLS=false`` sends every request through the SDK.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import pydantic_core
from mcp.server import MCPServer
from mcp.server.transport_security import TransportSecurityMiddleware
from mcp.shared.exceptions import MCPError
from mcp.types import CallToolResult
from mcp_types import methods
from mcp_types.jsonrpc import JSONRPCError, JSONRPCResponse
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from opentelemetry.trace import SpanKind
from pydantic import ValidationError
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from mads.core import sdk, tracing
from mads.core.arguments import ArgumentCheck
from mads.core.edge import read_body, replay
from mads.core.invoke import INTERNAL_ERROR, run_checked

# The version the SDK assumes when a request carries no MCP-Protocol-Version header.
DEFAULT_PROTOCOL_VERSION = "2025-03-26"
_HEADER_VERSIONS = frozenset(v.encode() for v in HANDSHAKE_PROTOCOL_VERSIONS)
_DECIDING_HEADERS = frozenset({b"mcp-protocol-version", b"content-type", b"accept"})
_CALL_KEYS = frozenset({"jsonrpc", "id", "method", "params"})
_PARAM_KEYS = frozenset({"name", "arguments"})

log = logging.getLogger(__name__)


class ForwardedTools(Protocol):
    """Tools a MAD serves by forwarding them (an MCP server middleware of its own answers
    their ``tools/call``), offered to the direct path as well."""

    def forwards(self, name: str) -> bool:
        """Whether the middleware answers a plain ``tools/call`` of ``name`` itself."""

    async def forward(self, name: str, arguments: dict[str, Any]) -> CallToolResult:
        """What the middleware answers for that call."""


class DirectToolCalls:
    """ASGI middleware: the direct path in front of ``path``; everything else goes to
    ``app`` (the SDK's endpoint and the rest of the service) as it came."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        path: str,
        server: MCPServer,
        arguments: ArgumentCheck,
        security: TransportSecurityMiddleware,
        body_limit: int,
        forwarded: ForwardedTools | None = None,
    ) -> None:
        self.app = app
        self.forwarded = forwarded
        self.path = path
        self.server = server
        self.arguments = arguments
        self.security = security
        self.body_limit = body_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or scope["path"] != self.path
            or (version := self._eligible_version(scope)) is None
            or await self.security.validate_request(Request(scope), is_post=True) is not None
        ):
            await self.app(scope, receive, send)
            return
        body, read = await read_body(receive, self.body_limit)
        complete = read == "complete"
        call = self._direct_call(body) if complete else None
        if call is None:
            await self.app(scope, replay(body, complete, receive), send)
            return
        request_id, name, arguments = call
        with tracing.continued(None, f"tools/call {name}", SpanKind.SERVER):
            reply = await self._answer(request_id, name, arguments, version)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-length", str(len(reply)).encode()),
                    (b"content-type", b"application/json"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": reply})

    # -- which requests ------------------------------------------------------------------

    def _eligible_version(self, scope: Scope) -> str | None:
        """The protocol version when the headers are ones the direct path answers exactly
        as the SDK would, else None."""
        seen: dict[bytes, bytes] = {}
        for key, value in scope["headers"]:
            if key in _DECIDING_HEADERS:
                if key in seen:  # which one counts is the SDK's business
                    return None
                seen[key] = value
            elif key == b"mcp-session-id":
                return None
        version = seen.get(b"mcp-protocol-version")
        content_type = seen.get(b"content-type", b"")
        accept = seen.get(b"accept", b"")
        if version is not None and version not in _HEADER_VERSIONS:
            return None
        if content_type.split(b";")[0].strip().lower() != b"application/json":
            return None
        accepted = {part.split(b";")[0].strip().lower() for part in accept.split(b",")}
        if not accepted & {b"application/json", b"application/*", b"*/*"}:
            return None
        return version.decode() if version is not None else DEFAULT_PROTOCOL_VERSION

    def _direct_call(self, body: bytes) -> tuple[int | str, str, dict[str, Any]] | None:
        try:
            # The SDK's own parser: the same inputs are accepted, and nesting too deep for
            # it is refused with ValueError (json.loads would raise RecursionError).
            message = pydantic_core.from_json(body)
        except ValueError:
            return None
        if not isinstance(message, dict) or message.keys() != _CALL_KEYS:
            return None
        request_id, params = message["id"], message["params"]
        if (
            message["jsonrpc"] != "2.0"
            or message["method"] != "tools/call"
            or isinstance(request_id, bool)
            or not isinstance(request_id, int | str)
            or not isinstance(params, dict)
            or not params.keys() <= _PARAM_KEYS
        ):
            return None
        name, arguments = params.get("name"), params.get("arguments", {})
        if not isinstance(name, str) or not (
            self._is_direct_tool(name) or self._is_forwarded(name)
        ):
            return None
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict):
            return None
        return request_id, name, arguments

    def _is_direct_tool(self, name: str) -> bool:
        """A tool this MAD registered (not one relayed by a middleware) that does not ask
        for the request context, which only the SDK's session can give."""
        if name not in self.arguments.signatures:
            return False
        tool = sdk.registered_tool(self.server, name)
        return tool is not None and not sdk.wants_request_context(tool)

    def _is_forwarded(self, name: str) -> bool:
        return (
            self.forwarded is not None
            and name not in self.arguments.signatures
            and self.forwarded.forwards(name)
        )

    # -- the answer ----------------------------------------------------------------------

    async def _answer(
        self, request_id: int | str, name: str, arguments: dict[str, Any], version: str
    ) -> bytes:
        """The SDK handler's steps: argument check, call, error mapping, per-version shape."""
        if self.forwarded is not None and name not in self.arguments.signatures:
            forwarded = await self.forwarded.forward(name, arguments)
            # As from any middleware: a result it returns, the SDK sends on unshaped.
            return _dump(JSONRPCResponse(jsonrpc="2.0", id=request_id, result=_plain(forwarded)))
        refusal = self.arguments.refusal(name, arguments)
        if refusal is not None:
            # As from the ArgumentCheck middleware, whose result the SDK sends on unshaped.
            return _dump(JSONRPCResponse(jsonrpc="2.0", id=request_id, result=_plain(refusal)))
        try:
            outcome = await run_checked(self.server, name, arguments)
        except MCPError as exc:
            return _dump(JSONRPCError(jsonrpc="2.0", id=request_id, error=exc.error))
        result = _plain(outcome)
        try:
            result = methods.serialize_server_result("tools/call", version, result)
        except ValidationError:
            log.exception("tool %r returned an invalid result", name)
            error = MCPError(code=INTERNAL_ERROR, message="Handler returned an invalid result")
            return _dump(JSONRPCError(jsonrpc="2.0", id=request_id, error=error.error))
        return _dump(JSONRPCResponse(jsonrpc="2.0", id=request_id, result=result))


def _plain(result: CallToolResult) -> dict[str, Any]:
    """The SDK's wire form of a result model (``_dump_result`` in its runner)."""
    return result.model_dump(by_alias=True, mode="json", exclude_none=True)


def _dump(message: JSONRPCResponse | JSONRPCError) -> bytes:
    return message.model_dump_json(by_alias=True, exclude_unset=True).encode()
