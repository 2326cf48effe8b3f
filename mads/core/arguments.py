"""Checking tool arguments before a tool runs, with errors a person can act on.

The SDK validates arguments too, but it ignores unknown names and reports a type mismatch
as a multi-line pydantic dump. This middleware checks every ``tools/call`` for the tools a
MAD registered: unknown argument names (for strict tools) and invalid values come back as
one-line tool errors, e.g. ``invalid arguments for fiedler_converse: prompt: Field
required``; nothing of the tool runs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from mcp.server.mcpserver.utilities.func_metadata import FuncMetadata, func_metadata
from mcp.types import CallToolResult, TextContent
from pydantic import ValidationError


@dataclass(frozen=True)
class ToolSignature:
    metadata: FuncMetadata
    names: frozenset[str]
    strict: bool

    @classmethod
    def of(cls, fn: Callable[..., Any], strict: bool) -> ToolSignature:
        metadata = func_metadata(fn)
        names = frozenset(
            field.alias or name for name, field in metadata.arg_model.model_fields.items()
        )
        return cls(metadata, names, strict)

    def problems(self, arguments: Any) -> str | None:
        if not isinstance(arguments, dict):
            return f"arguments must be a JSON object, not {type(arguments).__name__}"
        if self.strict:
            unknown = sorted(set(arguments) - self.names)
            if unknown:
                expected = ", ".join(sorted(self.names)) or "none"
                return f"unknown argument(s): {', '.join(unknown)} (expected: {expected})"
        try:
            self.metadata.validate_arguments(arguments)
        except ValidationError as exc:
            return "; ".join(_describe(error) for error in exc.errors())
        return None


def _describe(error: Any) -> str:
    where = ".".join(str(part) for part in error.get("loc", ())) or "arguments"
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    if error.get("type") == "missing":
        message = "required"
    return f"{where}: {message}"


def error_result(message: str) -> CallToolResult:
    """A tool error as the middleware's own result. A model, not a dict: the SDK sends a
    short-circuited result as it is, and the 2026-07-28 protocol needs the ``resultType``
    the model carries."""
    return CallToolResult(content=[TextContent(type="text", text=message)], is_error=True)


class ArgumentCheck:
    """Server middleware (``MCPServer(middleware=[...])``) guarding ``tools/call``."""

    def __init__(self, on_refusal: Callable[[str, str], None] | None = None) -> None:
        self.signatures: dict[str, ToolSignature] = {}
        self._on_refusal = on_refusal

    def add(self, name: str, fn: Callable[..., Any], strict: bool) -> None:
        self.signatures[name] = ToolSignature.of(fn, strict)

    def refusal(self, name: str, arguments: Any) -> CallToolResult | None:
        """The error result for a call to one of these tools that must not run, else None."""
        signature = self.signatures.get(name)
        if signature is None:
            return None
        problem = signature.problems(arguments or {})
        if problem is None:
            return None
        if self._on_refusal:
            self._on_refusal(name, problem)
        return error_result(f"invalid arguments for {name}: {problem}")

    async def __call__(self, ctx: Any, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
        if ctx.method == "tools/call" and isinstance(ctx.params, dict):
            name = ctx.params.get("name")
            if isinstance(name, str):
                refused = self.refusal(name, ctx.params.get("arguments"))
                if refused is not None:
                    return refused
        return await call_next(ctx)
