"""Checking tool arguments before a tool runs, with errors a person can act on.

Every call is checked against the tool's published ``inputSchema`` itself — the schema a
client reads in ``tools/list`` is the schema that is enforced, with JSON's own types: a
boolean is not an integer, ``"5"`` is not a number, a string is not an object. Unknown
argument names are refused for strict tools (their schema says
``additionalProperties: false``). The SDK's own (lenient) validation runs afterwards for
what a schema cannot say. Problems come back as one-line tool errors, e.g. ``invalid
arguments for <tool>: prompt: required``; nothing of the tool runs. Values a
client sent appear quoted and cut short, never whole: so do the names in a path to a
problem that the schema does not declare (``payload.'<a client's key>'``), however short.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import jsonschema
from jsonschema.exceptions import ValidationError as SchemaError
from jsonschema.exceptions import best_match
from mcp.shared.exceptions import MCPError
from mcp.types import CallToolResult, TextContent
from pydantic import ValidationError

from mads.core.logs import quoted

INVALID_PARAMS = -32602

MAX_PROBLEMS = 3
MAX_NAMES = 5
MAX_PATH = 160
"""The most characters of a path to a problem (``a.b.0.c``) an error shows."""


@dataclass(frozen=True)
class ToolSignature:
    """What a call to one tool must satisfy."""

    schema: Mapping[str, Any]
    validator: Any
    validate_more: Callable[[dict[str, Any]], Any]
    """The SDK's own validation (custom validators a JSON schema cannot express)."""
    declared: frozenset[str] = frozenset()
    """Every property name the schema declares, at any depth: the names a problem's path
    shows as they are (anything else in a path came from the client and is quoted)."""

    @classmethod
    def of(
        cls, schema: Mapping[str, Any], validate_more: Callable[[dict[str, Any]], Any]
    ) -> ToolSignature:
        """The signature enforcing ``schema`` itself — the very object, not a copy, so what
        a tool publishes and what is enforced cannot drift apart."""
        validator_class = jsonschema.validators.validator_for(
            schema, jsonschema.Draft202012Validator
        )
        validator_class.check_schema(dict(schema))  # a check only: nothing keeps this copy
        return cls(schema, validator_class(schema), validate_more, declared_names(schema))

    def problems(self, arguments: Any) -> str | None:
        if not isinstance(arguments, dict):
            return f"arguments must be a JSON object, not {json_type(arguments)}"
        errors = sorted(self.validator.iter_errors(arguments), key=lambda e: list(e.path))
        if errors:
            # One "required" error per missing name, each described with all of them: once.
            described = list(
                dict.fromkeys(describe(error, self.schema, self.declared) for error in errors)
            )
            if len(described) > MAX_PROBLEMS:
                more = len(described) - MAX_PROBLEMS
                described = [*described[:MAX_PROBLEMS], f"and {more} more"]
            return "; ".join(described)
        try:
            self.validate_more(arguments)
        except ValidationError as exc:
            return "; ".join(
                _describe_pydantic(error, self.declared) for error in exc.errors()[:MAX_PROBLEMS]
            )
        return None


def declared_names(schema: Any) -> frozenset[str]:
    """The property names ``schema`` declares anywhere in it (``$defs`` included)."""
    names: set[str] = set()
    pending = [schema]
    while pending:
        node = pending.pop()
        if isinstance(node, Mapping):
            properties = node.get("properties")
            if isinstance(properties, Mapping):
                names.update(str(name) for name in properties)
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
    return frozenset(names)


def path_text(parts: Iterable[Any], declared: frozenset[str]) -> str:
    """A path to a problem: declared names and item indices as they are, every other part
    (a name the client chose) quoted and cut short; ``arguments`` for the top level."""
    shown = [
        str(part)
        if (isinstance(part, int) and not isinstance(part, bool)) or part in declared
        else quoted(part, 40)
        for part in parts
    ]
    where = ".".join(shown) or "arguments"
    return where if len(where) <= MAX_PATH else f"{where[: MAX_PATH - 3]}..."


def json_type(value: Any) -> str:
    """The JSON name of a value's type."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def describe(
    error: SchemaError, schema: Mapping[str, Any], declared: frozenset[str] | None = None
) -> str:
    """One schema violation in a line: where, and what was expected."""
    if declared is None:
        declared = declared_names(schema)
    top = not error.absolute_path
    where = path_text(error.absolute_path, declared)
    kind = str(error.validator)
    # What the rule demanded, the value given and the schema holding the rule: JSON data.
    value: Any = error.validator_value
    instance: Any = error.instance
    own_schema: Any = error.schema
    if kind == "required":
        missing = [name for name in value if isinstance(instance, dict) and name not in instance]
        return "; ".join(f"{name}: required" for name in missing) or f"{where}: required"
    if kind == "additionalProperties":
        allowed = sorted((schema.get("properties") or {}) if top else ())
        extra = sorted(set(instance) - set(own_schema.get("properties") or {}))
        shown = ", ".join(quoted(name, 40) for name in extra[:MAX_NAMES])
        if len(extra) > MAX_NAMES:
            shown += f" and {len(extra) - MAX_NAMES} more"
        expected = ", ".join(allowed) or "none"
        return f"unknown argument(s): {shown} (expected: {expected})"
    if kind == "type":
        expected = " or ".join(value) if isinstance(value, list) else str(value)
        return f"{where}: must be {expected}, not {json_type(instance)}"
    if kind in ("anyOf", "oneOf"):
        types = [
            str(s["type"]) for s in value if isinstance(s, dict) and isinstance(s.get("type"), str)
        ]
        got = json_type(instance)
        simple = len(types) == len(value)
        if simple and not _one_of_types(got, types):
            return f"{where}: must be {' or '.join(types)}, not {got}"
        # The value has an allowed type but breaks that form's rule: say which rule.
        same_type = [e for e in error.context or () if e.validator != "type"]
        if same_type:
            return describe(best_match(same_type), schema, declared)
        return f"{where}: does not match any allowed form"
    if kind == "enum":
        return f"{where}: must be one of {', '.join(map(str, value))}"
    if kind in ("minLength", "maxLength"):
        word = "at least" if kind == "minLength" else "at most"
        return f"{where}: must have {word} {value} character(s)"
    if kind in ("minItems", "maxItems"):
        word = "at least" if kind == "minItems" else "at most"
        return f"{where}: must have {word} {value} item(s)"
    if kind in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        sign = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}
        return f"{where}: must be {sign[kind]} {value}"
    if kind == "pattern":
        # A schema may say in words what its pattern means (its "description").
        said = own_schema.get("description") if isinstance(own_schema, dict) else None
        return f"{where}: must be {said}" if said else f"{where}: must match {value}"
    return f"{where}: {kind} {quoted(value, 60)} not satisfied"


def _one_of_types(got: str, types: list[str]) -> bool:
    return got in types or (got == "integer" and "number" in types)


def _describe_pydantic(error: Any, declared: frozenset[str]) -> str:
    where = path_text(error.get("loc", ()), declared)
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    if error.get("type") == "missing":
        message = "required"
    return f"{where}: {message[:200]}"


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

    def add(self, name: str, signature: ToolSignature) -> None:
        self.signatures[name] = signature

    prompts: frozenset[str] = frozenset()
    """The prompts the MAD offers (none, today): a ``prompts/get`` for any other is refused
    here with ``-32602``, where the SDK would answer error code 0 and log a traceback."""

    async def _known_prompt(self, ctx: Any) -> None:
        params = ctx.params if isinstance(ctx.params, Mapping) else {}
        name = params.get("name")
        if name not in self.prompts:
            raise MCPError(code=INVALID_PARAMS, message=f"Unknown prompt: {quoted(str(name))}")

    def refusal(self, name: str, arguments: Any) -> CallToolResult | None:
        """The error result for a call to one of these tools that must not run, else None."""
        signature = self.signatures.get(name)
        if signature is None:
            return None
        problem = signature.problems({} if arguments is None else arguments)
        if problem is None:
            return None
        if self._on_refusal:
            self._on_refusal(name, problem)
        return error_result(f"invalid arguments for {name}: {problem}")

    async def __call__(self, ctx: Any, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
        if ctx.method == "prompts/get":
            await self._known_prompt(ctx)
        if ctx.method == "tools/call" and isinstance(ctx.params, dict):
            name = ctx.params.get("name")
            if isinstance(name, str):
                refused = self.refusal(name, ctx.params.get("arguments"))
                if refused is not None:
                    return refused
        return await call_next(ctx)


class UnknownTools:
    """Server middleware, last in the chain: a ``tools/call`` for a tool nothing before it
    answered (not one of ``known``, not relayed by a gateway) is refused with ``-32602``,
    as the MCP specification has it for an unknown tool, where the SDK would answer a tool
    result with ``isError``."""

    def __init__(self, known: Mapping[str, object]) -> None:
        self.known = known

    async def __call__(self, ctx: Any, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
        if ctx.method == "tools/call" and isinstance(ctx.params, Mapping):
            name = ctx.params.get("name")
            if isinstance(name, str) and name not in self.known:
                raise MCPError(code=INVALID_PARAMS, message=f"Unknown tool: {quoted(name)}")
        return await call_next(ctx)
